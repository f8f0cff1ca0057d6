"""dvc.yaml lists, for every stage, the package modules its command imports.

Each stage's command is run as DVC would run it, in a fresh Python process on a small
synthetic project, and the ``riskmodel`` modules loaded by the end of the process are
(their files, so a file MLflow loads by path counts too) are compared with the stage's
``src/`` deps: every module must be covered by a dep (else DVC
would not rerun the stage when it changes), and every ``src/`` dep must hold a module the
stage loads (else the stage reruns for nothing).

The project is run as one of real data would be: ``evaluate.truth: null`` and no truth file
(only a synthetic world has one), so the stages are shown to run without it; the truth file
that the repository's params.yaml names is an optional input, covered by a data dep.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from riskmodel.data.synth import SynthConfig, write_world

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DEMO_TRUTH = "data/raw/truth.parquet"
#: the params files the stages read (the PD model's and the 30-day delay model's)
PARAMS_FILES = ("params.yaml", "params.delay30.yaml")
TRACE = """
import atexit, json, sys
out = sys.argv[1]
def _dump():
    files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})
    with open(out, "w") as fh:
        json.dump([f for f in files if "riskmodel" in f], fh)
atexit.register(_dump)
sys.argv = ["riskmodel", *sys.argv[2:]]
from riskmodel.cli import app
app()
"""


def covered(file: Path, deps: list[str]) -> bool:
    rel = file.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    project = tmp_path_factory.mktemp("dvcproject")
    for name in PARAMS_FILES:
        text = (ROOT / name).read_text()
        if name == "params.yaml":
            assert text.count(f"truth: {DEMO_TRUTH}") == 1
            text = text.replace(f"truth: {DEMO_TRUTH}", "truth: null")
        # gates any model passes: the small world's models become champions, so the stages
        # after promote (which score with the champion) run too
        for gate, value in (("min_auc", "0.0"), ("max_ece", "1.0"), ("max_auc_drop", "1.0"),
                            ("max_score_psi", "100.0")):
            text, n = re.subn(rf"(?m)^(  {gate}:\s*)[0-9.]+", rf"\g<1>{value}", text)
            assert n == 1, (name, gate)
        (project / name).write_text(text)
    write_world(SynthConfig(n_buyers=1200, start=dt.date(2019, 1, 1), end=dt.date(2023, 12, 31),
                            seed=4, chunk_buyers=600), project / "data" / "raw")
    (project / DEMO_TRUTH).unlink()  # real data have no truth file
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    env.pop("MLFLOW_ARTIFACT_ROOT", None)
    loaded = {}
    for name, stage in stages.items():
        argv = shlex.split(stage["cmd"])
        assert argv[0] == "riskmodel"
        out = project / f"{name}.modules.json"
        res = subprocess.run([sys.executable, "-c", TRACE, str(out), *argv[1:]], cwd=project,
                             env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{name}: {res.stdout}\n{res.stderr}"
        loaded[name] = json.loads(out.read_text())
        # the stage ran this checkout's package, or the comparison below would check nothing
        assert str(SRC / "riskmodel" / "cli.py") in loaded[name], (name, loaded[name][:3])
    return loaded


def stage_deps() -> dict[str, list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {n: [d for d in s.get("deps", []) if d.startswith("src/")] for n, s in stages.items()}


def test_every_imported_module_is_a_dep(traced: dict[str, list[str]]) -> None:
    missing = {}
    for stage, deps in stage_deps().items():
        files = [Path(f) for f in traced[stage] if Path(f).is_relative_to(SRC)]
        lost = [f.relative_to(ROOT).as_posix() for f in files if not covered(f, deps)]
        if lost:
            missing[stage] = lost
    assert missing == {}


def test_every_src_dep_is_imported(traced: dict[str, list[str]]) -> None:
    stale = {}
    for stage, deps in stage_deps().items():
        files = [Path(f) for f in traced[stage] if Path(f).is_relative_to(SRC)]
        unused = [d for d in deps if not any(covered(f, [d]) for f in files)]
        if unused:
            stale[stage] = unused
    assert stale == {}


def test_the_truth_file_is_an_optional_input_named_by_params() -> None:
    """evaluate and backtest take the truth file from params (never ``--truth`` in the
    command, which would break real data), list the params key, and depend on the folder
    holding the file the repository's params name, never on the file itself (DVC fails on a
    missing dep)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    truth = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["truth"]
    assert truth == DEMO_TRUTH  # the demo is a synthetic world
    for name, stage in stages.items():
        assert "--truth" not in stage["cmd"], name
        assert not any(str(d).endswith("truth.parquet") for d in stage.get("deps", [])), name
    for name in ("evaluate", "backtest"):
        stage = stages[name]
        assert {"evaluate", "evaluate.truth"} & set(stage["params"]), name
        data_deps = [d for d in stage["deps"] if not d.startswith("src/")]
        assert covered(ROOT / truth, data_deps), (name, data_deps)


def test_dvcignore_keeps_byte_code_out() -> None:
    lines = (ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in lines
