"""``riskmodel score`` (local engine) end to end on a small trained and registered model: one
row per buyer with its status, PD, grade and reasons, the same numbers as ``riskmodel
explain`` and the features stage, lineage that matches the registry and the book, reruns
that give the same rows, a killed run that leaves no output, registry URIs and the messages
of bad input.

The world, the book, the features and two registered models (version 1, alias champion;
version 2, alias challenger) are built once by :func:`build_project` and shared with
``test_score_spark.py``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.modeling.model import load_model_dir
from riskmodel.pipeline import read_features
from training_helpers import write_params

pytestmark = pytest.mark.slow

runner = CliRunner()

NAME = "buyer-risk"
OBSERVED = dt.date(2023, 12, 31)
EARLIER = dt.date(2022, 6, 30)  # a quarterly snapshot date of the features file
#: a master scale that is not the default one, so grades must follow params
BOUNDS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0]
GRADES = [*(str(k) for k in range(1, 11)), "D"]
STATUSES = {"scored", "in_default", "no_recent_history"}
LINEAGE = ["model_name", "model_version", "model_run_id", "data_fingerprint", "scored_at"]
TRAIN = {"n_estimators": 60, "search": [{}]}


def columns(k: int) -> list[str]:
    return ["buyer_id", "as_of", "status", "pd", "grade", "grade_rank",
            *(f"reason_{i}" for i in range(1, k + 1)),
            *(f"reason_{i}_text" for i in range(1, k + 1)), *LINEAGE]


def cli(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Project:
    root: Path
    params: Path
    raw: Path
    book: Path
    features: Path
    model: Path  # version 1, alias champion
    model2: Path  # version 2, alias challenger
    run1: str
    run2: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root.resolve() / 'mlflow.db'}"


@dataclass(frozen=True)
class Scoring:
    out: Path
    started: dt.datetime
    ended: dt.datetime
    stdout: str

    def frame(self) -> pd.DataFrame:
        return read_scores(self.out)


_CACHE: dict[str, Any] = {}


def _no_tracking_env(mp: pytest.MonkeyPatch) -> None:
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)


def build_project(factory: pytest.TempPathFactory) -> Project:
    """A 1,500-buyer world in a 3-bucket book, its features and labels, and two models
    trained and registered into ``sqlite:///<root>/mlflow.db`` (once per session)."""
    if "project" in _CACHE:
        return _CACHE["project"]
    root = factory.mktemp("score")
    params = write_params(root / "params.yaml", train=TRAIN, book={"buckets": 3},
                          master_scale={"upper_bounds": BOUNDS})
    # a second model, different from the first, registered into the same store
    params2 = write_params(root / "params2.yaml", train={**TRAIN, "n_estimators": 40,
                                                         "num_leaves": 7},
                           book={"buckets": 3}, master_scale={"upper_bounds": BOUNDS})
    raw, book = root / "raw", root / "book"
    feats, labs = root / "features.parquet", root / "labels.parquet"
    model, model2 = root / "model", root / "model2"
    steps = [
        ("synth", "--out", raw, "--buyers", "1500", "--start", "2020-01-01", "--end",
         OBSERVED.isoformat(), "--seed", "8"),
        ("validate", raw, "--params", params, "--out", book),
        ("features", book, "--params", params, "--out", feats),
        ("labels", book, "--params", params, "--out", labs),
        ("train", book, "--params", params, "--features", feats, "--labels", labs, "--out",
         model),
        ("train", book, "--params", params2, "--features", feats, "--labels", labs, "--out",
         model2),
    ]
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        outputs = []
        for step in steps:
            res = cli(*step)
            assert res.exit_code == 0, (step[0], res.output)
            outputs.append(res.stdout)
    assert "registered buyer-risk version 1, alias challenger" in outputs[4]
    assert "registered buyer-risk version 2, alias challenger" in outputs[5]
    run1 = json.loads((model / "registry.json").read_text())["run_id"]
    run2 = json.loads((model2 / "registry.json").read_text())["run_id"]
    project = Project(root, params, raw, book, feats, model, model2, run1, run2)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=project.tracking_uri, registry_uri=project.tracking_uri)
    client.set_registered_model_alias(NAME, "champion", "1")
    _CACHE["project"] = project
    return project


def run_score(data: Path, out: Path, params: Path, *extra: str | Path,
              ok: bool = True) -> tuple[Any, Scoring]:
    """``riskmodel score DATA --params P --out OUT EXTRA``, timed by the wall clock."""
    started = dt.datetime.now(dt.UTC)
    res = cli("score", data, "--params", params, "--out", out, *extra)
    ended = dt.datetime.now(dt.UTC)
    if ok:
        assert res.exit_code == 0, res.output
    return res, Scoring(out, started, ended, res.stdout if ok else "")


def base_scoring(factory: pytest.TempPathFactory) -> Scoring:
    """The book scored at observed_until with the model folder of version 1 (once)."""
    if "base" not in _CACHE:
        project = build_project(factory)
        with pytest.MonkeyPatch.context() as mp:
            _no_tracking_env(mp)
            _, done = run_score(project.book, project.root / "scores", project.params,
                                "--model", project.model)
        _CACHE["base"] = done
    return _CACHE["base"]


def read_scores(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values("buyer_id", ignore_index=True)


def parts(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("part-*.parquet"))


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Every column but scored_at equal, the PDs bit for bit."""
    a, b = a.drop(columns="scored_at"), b.drop(columns="scored_at")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    bits_a = a["pd"].to_numpy(dtype=np.float64).view(np.uint64)
    bits_b = b["pd"].to_numpy(dtype=np.float64).view(np.uint64)
    assert np.array_equal(bits_a, bits_b)


def assert_same_parts(a: Path, b: Path) -> None:
    """The output parts of two runs, part file for part file, equal but for scored_at."""
    assert parts(a) == parts(b) and parts(a)
    for name in parts(a):
        ta = pq.read_table(a / name).drop_columns(["scored_at"])
        tb = pq.read_table(b / name).drop_columns(["scored_at"])
        assert ta.schema.equals(tb.schema), name
        assert ta.equals(tb), name


def staging_beside(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.scoring-*"))


def expected_grade(pd_value: float) -> str:
    """Grade k holds PDs in (bounds[k-2], bounds[k-1]]."""
    for k, upper in enumerate(BOUNDS, start=1):
        if pd_value <= upper:
            return str(k)
    raise AssertionError(pd_value)


def activity(raw: Path, as_of: dt.date, days: int = 365) -> tuple[set[str], set[str]]:
    """From the raw invoices: the buyers with an invoice issued in the ``days`` days up to
    ``as_of`` or one open at ``as_of``; and the buyers with any invoice issued by then."""
    inv = pd.read_parquet(raw / "invoices", columns=["buyer_id", "issue_date", "paid_date"])
    at = pd.Timestamp(as_of)
    issue = pd.to_datetime(inv["issue_date"])
    paid = pd.to_datetime(inv["paid_date"])
    issued = issue <= at
    recent = issued & (issue > at - pd.Timedelta(days=days))
    still_open = issued & (paid.isna() | (paid > at))
    return set(inv.loc[recent | still_open, "buyer_id"]), set(inv.loc[issued, "buyer_id"])


def features_at(project: Project, when: dt.date) -> pd.DataFrame:
    feats = read_features(project.features)
    return feats[feats["as_of"] == pd.Timestamp(when)].reset_index(drop=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_process_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tracking_env(monkeypatch)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return build_project(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scoring:
    return base_scoring(tmp_path_factory)


@pytest.fixture(scope="module")
def earlier(project: Project) -> Scoring:
    """The book scored at an earlier snapshot date, when some buyers had no invoice yet."""
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        _, done = run_score(project.book, project.root / "scores_earlier", project.params,
                            "--model", project.model, "--as-of", EARLIER.isoformat())
    return done


@pytest.fixture(scope="module")
def twelve(project: Project) -> dict[str, Path]:
    """The same raw data in a 12-bucket book (its own params file), and a clean scoring."""
    folder = project.root / "twelve"
    folder.mkdir()
    params = write_params(folder / "params.yaml", train=TRAIN, book={"buckets": 12},
                          master_scale={"upper_bounds": BOUNDS})
    book = folder / "book"
    res = cli("validate", project.raw, "--params", params, "--out", book)
    assert res.exit_code == 0, res.output
    assert "12 buckets" in res.stdout
    clean = folder / "clean"
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        run_score(book, clean, params, "--model", project.model)
    return {"params": params, "book": book, "clean": clean}


# --------------------------------------------------------------------------- output


def test_one_row_per_buyer_with_status_pd_grade_and_reasons(
        base: Scoring, project: Project) -> None:
    frame = base.frame()
    assert list(frame.columns) == columns(3)  # score.reasons defaults to 3
    buyers = pd.read_parquet(project.raw / "buyers.parquet", columns=["buyer_id"])
    assert len(frame) == len(buyers) == 1500
    assert not frame["buyer_id"].duplicated().any()
    assert set(frame["buyer_id"]) == set(buyers["buyer_id"])
    assert (frame["as_of"] == OBSERVED).all()
    assert set(frame["status"]) == STATUSES  # the small world has every status

    d = frame[frame["status"] == "in_default"]
    assert (d["pd"] == 1.0).all() and (d["grade"] == "D").all() and (d["grade_rank"] == 11).all()
    assert (d["reason_1"] == "R91").all()

    n = frame[frame["status"] == "no_recent_history"]
    for col in ("pd", "grade", "grade_rank", "reason_1", "reason_1_text"):
        assert n[col].isna().all(), col

    s = frame[frame["status"] == "scored"]
    assert ((s["pd"] > 0) & (s["pd"] < 1)).all()
    assert s["grade"].astype(str).tolist() == [expected_grade(p) for p in s["pd"]]
    assert (s["grade_rank"] == s["grade"].astype(str).astype(int)).all()
    assert s["grade"].astype(str).nunique() >= 4
    # model reasons: codes with their sentences, no code twice for a buyer
    assert s["reason_1"].notna().mean() > 0.95
    assert s["reason_1"].dropna().str.fullmatch(r"R\d\d").all()
    for i in (1, 2, 3):
        assert (s[f"reason_{i}"].isna() == s[f"reason_{i}_text"].isna()).all()
        assert (s[f"reason_{i}_text"].dropna().str.len() > 10).all()
    codes = s[["reason_1", "reason_2", "reason_3"]]
    assert (codes.nunique(axis=1) == codes.notna().sum(axis=1)).all()


def test_grade_sorts_in_master_scale_order(base: Scoring) -> None:
    frame = base.frame()
    grade = frame["grade"]
    assert isinstance(grade.dtype, pd.CategoricalDtype) and grade.dtype.ordered
    assert list(grade.cat.categories) == GRADES
    graded = frame.dropna(subset=["grade"]).sort_values("grade", kind="stable")
    assert graded["grade_rank"].is_monotonic_increasing
    assert graded["grade"].iloc[-1] == "D"
    assert set(graded["grade_rank"].astype(int)) <= set(range(1, 12))
    assert (frame.loc[frame["grade"] > "9", "grade"].astype(str).isin(["10", "D"])).all()
    # a better grade has the lower PD
    s = frame[frame["status"] == "scored"]
    by = s.groupby("grade", observed=True)["pd"]
    assert (by.max().shift(1).dropna() < by.min().iloc[1:]).all()


def test_in_default_and_no_recent_history_follow_the_data(base: Scoring, project: Project,
                                                          earlier: Scoring) -> None:
    """in_default as the features stage says; no_recent_history exactly the live buyers
    with no invoice issued in the 365 days up to the as-of date and nothing open, checked
    against the raw invoices."""
    for run, when in ((base, OBSERVED), (earlier, EARLIER)):
        frame = run.frame()
        assert (frame["as_of"] == when).all()
        feats = features_at(project, when)
        defaulted = set(feats.loc[feats["status"].astype(str) == "in_default", "buyer_id"])
        assert set(frame.loc[frame["status"] == "in_default", "buyer_id"]) == defaulted
        active, issued = activity(project.raw, when)
        none = set(frame.loc[frame["status"] == "no_recent_history", "buyer_id"])
        scored = set(frame.loc[frame["status"] == "scored", "buyer_id"])
        assert none and not none & active
        assert scored == active - defaulted
        assert set(frame["buyer_id"]) - issued <= none  # no invoice yet: not scored
    # a lapsed buyer (invoices once, none for a year) at observed_until
    frame = base.frame()
    _, issued = activity(project.raw, OBSERVED)
    lapsed = set(frame.loc[frame["status"] == "no_recent_history", "buyer_id"]) & issued
    assert lapsed
    # at the earlier date some buyers had no invoice yet, and they are in the output
    frame = earlier.frame()
    _, issued = activity(project.raw, EARLIER)
    assert len(frame) == 1500 and set(frame["buyer_id"]) - issued


# --------------------------------------------------------------------------- consistency


def test_pd_and_reasons_are_those_of_explain(base: Scoring, project: Project) -> None:
    out = project.root / "explain"
    res = cli("explain", "--model", project.model, "--features", project.features, "--out",
              out, "--as-of", OBSERVED.isoformat(), "--top", "3")
    assert res.exit_code == 0, res.output
    frame = base.frame().set_index("buyer_id")
    rated = frame[frame["status"] != "no_recent_history"]
    ex = pd.read_parquet(out / "scores.parquet").set_index("buyer_id")
    assert set(rated.index) <= set(ex.index)
    ex = ex.loc[rated.index]
    assert (rated["pd"].to_numpy() == ex["pd"].to_numpy()).all()
    assert (rated["grade"].astype(str).to_numpy() == ex["grade"].astype(str).to_numpy()).all()
    reasons = pd.read_parquet(out / "reasons.parquet")
    for k in (1, 2, 3):
        at = reasons[reasons["rank"] == k].set_index("buyer_id")
        code = at["code"].reindex(rated.index)
        text = at["text"].reindex(rated.index)
        assert rated[f"reason_{k}"].fillna("-").equals(code.fillna("-")), k
        assert rated[f"reason_{k}_text"].fillna("-").equals(text.fillna("-")), k
    assert rated["reason_1"].notna().sum() > 1000


def test_pd_at_an_earlier_date_is_the_models_pd_of_the_features(
        earlier: Scoring, project: Project) -> None:
    frame = earlier.frame().set_index("buyer_id")
    feats = features_at(project, EARLIER)
    model = load_model_dir(project.model)
    pred = model.predict(feats[["buyer_id", "as_of", "status", *model.spec.names]])
    pred.index = feats["buyer_id"]
    rated = frame[frame["status"] != "no_recent_history"]
    assert len(rated) > 1000
    assert (rated["pd"].to_numpy() == pred.loc[rated.index, "pd"].to_numpy()).all()
    assert (rated["grade"].astype(str).to_numpy()
            == pred.loc[rated.index, "grade"].astype(str).to_numpy()).all()


# --------------------------------------------------------------------------- lineage


def test_lineage_and_manifest(base: Scoring, project: Project) -> None:
    from mlflow import MlflowClient

    frame = base.frame()
    reg = json.loads((project.model / "registry.json").read_text())
    mv = MlflowClient(tracking_uri=project.tracking_uri,
                      registry_uri=project.tracking_uri).get_model_version(NAME, "1")
    assert reg["version"] == "1" and mv.run_id == reg["run_id"] == project.run1
    book = json.loads((project.book / "manifest.json").read_text())
    assert len(book["raw_fingerprint"]) == 64
    assert (frame["model_name"] == NAME).all()
    assert (frame["model_version"] == "1").all()
    assert (frame["model_run_id"] == project.run1).all()
    assert (frame["data_fingerprint"] == book["raw_fingerprint"]).all()
    assert frame["scored_at"].nunique() == 1
    stamp = frame["scored_at"].iloc[0].to_pydatetime()
    assert stamp.utcoffset() == dt.timedelta(0)
    assert base.started.replace(microsecond=0) <= stamp <= base.ended

    manifest = json.loads((base.out / "_scoring.json").read_text())
    assert manifest["kind"] == "riskmodel-scores"
    assert manifest["as_of"] == OBSERVED.isoformat()
    assert manifest["buyers"] == len(frame) == 1500
    assert manifest["by_status"] == frame["status"].value_counts().to_dict()
    grades = frame["grade"].astype(str)[frame["grade"].notna()].value_counts().to_dict()
    assert manifest["by_grade"] == grades
    assert manifest["reasons"] == 3 and manifest["engine"] == "local"
    assert manifest["model_uri"] == str(project.model)
    for name in LINEAGE[:-1]:
        assert manifest[name] == frame[name].iloc[0], name
    assert dt.datetime.fromisoformat(manifest["scored_at"]) == stamp
    assert manifest["parts"] == parts(base.out) == [f"part-{k:05d}.parquet" for k in range(3)]
    # beside the parts only files that Parquet readers skip (names starting with "_")
    data = sorted(p.name for p in base.out.iterdir() if not p.name.startswith("_"))
    assert data == manifest["parts"]
    for name in manifest["parts"]:  # each part sorted by buyer id
        ids = pq.read_table(base.out / name, columns=["buyer_id"])["buyer_id"].to_pylist()
        assert ids == sorted(ids) and ids
    by = frame["status"].value_counts()
    assert (f"scored {by['scored']:,}, in_default {by['in_default']:,}, no_recent_history "
            f"{by['no_recent_history']:,}") in base.stdout
    assert f"with {NAME} v1 (local)" in base.stdout


# --------------------------------------------------------------------------- reruns


def test_a_rerun_gives_the_same_rows_and_replaces_the_output(project: Project,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "scores"
    _, first = run_score(project.book, out, project.params, "--model", project.model)
    before = first.frame()
    saved = tmp_path / "first"
    shutil.copytree(out, saved)
    _, second = run_score(project.book, out, project.params, "--model", project.model)
    after = second.frame()
    assert_same_rows(before, after)
    assert_same_parts(saved, out)
    assert after["scored_at"].iloc[0] >= before["scored_at"].iloc[0]
    assert not staging_beside(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "scores"]


def test_the_bucket_count_changes_no_row(base: Scoring, twelve: dict[str, Path]) -> None:
    assert len(parts(twelve["clean"])) == 12
    assert_same_rows(base.frame(), read_scores(twelve["clean"]))


def test_a_raw_folder_scores_like_its_book(base: Scoring, project: Project,
                                           tmp_path: Path) -> None:
    _, done = run_score(project.raw, tmp_path / "scores", project.params, "--model",
                        project.model)
    assert_same_rows(base.frame(), done.frame())
    assert_same_parts(base.out, done.out)


RISKMODEL = Path(sys.executable).parent / "riskmodel"


def start_and_kill(book: Path, params: Path, out: Path, model: Path) -> Path:
    """Start ``riskmodel score`` in a subprocess and SIGKILL it once its staging folder holds
    a finished part under features/ or data/; returns the staging folder it left."""
    exe = str(RISKMODEL) if RISKMODEL.exists() else shutil.which("riskmodel")
    assert exe, "the riskmodel script of this environment"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_ROOT")}
    proc = subprocess.Popen([exe, "score", str(book), "--params", str(params), "--out",
                             str(out), "--model", str(model)], env=env, cwd=out.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging: Path | None = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = sorted(out.parent.glob(f".{out.name}.scoring-{proc.pid}-*"))
            if found and [*found[0].glob("features/part-*"), *found[0].glob("data/part-*")]:
                staging = found[0]
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()  # reaped: its pid is no longer alive
    assert staging is not None, "the run ended before writing a part"
    assert proc.returncode == -signal.SIGKILL
    return staging


def test_a_killed_run_leaves_no_output_and_a_rerun_cleans_up(
        project: Project, twelve: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores"
    staging = start_and_kill(twelve["book"], twelve["params"], out, project.model)
    assert not out.exists()
    assert staging.is_dir() and staging_beside(out) == [staging]
    _, done = run_score(twelve["book"], out, twelve["params"], "--model", project.model)
    assert not staging.exists() and not staging_beside(out)
    assert_same_rows(read_scores(twelve["clean"]), done.frame())
    assert_same_parts(twelve["clean"], out)


def test_a_killed_run_leaves_the_earlier_output_as_it_was(
        project: Project, twelve: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores"
    shutil.copytree(twelve["clean"], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    staging = start_and_kill(twelve["book"], twelve["params"], out, project.model)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert staging.is_dir()
    _, done = run_score(twelve["book"], out, twelve["params"], "--model", project.model)
    assert not staging.exists() and not staging_beside(out)
    assert_same_rows(read_scores(twelve["clean"]), done.frame())
    assert_same_parts(twelve["clean"], out)
    stamp = pd.Timestamp(json.loads((out / "_scoring.json").read_text())["scored_at"])
    assert (done.frame()["scored_at"] == stamp).all()


# --------------------------------------------------------------------------- registry URIs


def lineage_of(frame: pd.DataFrame) -> tuple[str, str, str]:
    values = frame[["model_name", "model_version", "model_run_id"]].drop_duplicates()
    assert len(values) == 1
    return tuple(values.iloc[0])  # type: ignore[return-value]


def test_the_champion_is_the_default_model(base: Scoring, project: Project,
                                           tmp_path: Path) -> None:
    _, done = run_score(project.book, tmp_path / "scores", project.params)
    frame = done.frame()
    assert lineage_of(frame) == (NAME, "1", project.run1)
    assert_same_rows(base.frame(), frame)
    manifest = json.loads((done.out / "_scoring.json").read_text())
    assert manifest["model_uri"] == f"models:/{NAME}@champion"
    assert not staging_beside(done.out)


def test_models_and_runs_uris(base: Scoring, project: Project, tmp_path: Path) -> None:
    _, folder = run_score(project.book, tmp_path / "folder2", project.params, "--model",
                          project.model2)
    v2 = folder.frame()
    assert lineage_of(v2) == (NAME, "2", project.run2)
    # a different model: the PDs differ
    assert (v2["pd"] != base.frame()["pd"]).sum() > 100

    _, alias = run_score(project.book, tmp_path / "alias", project.params, "--model",
                         f"models:/{NAME}@challenger")
    assert_same_rows(v2, alias.frame())
    _, run = run_score(project.book, tmp_path / "run", project.params, "--model",
                       f"runs:/{project.run2}/model")
    assert_same_rows(v2, run.frame())
    _, version = run_score(project.book, tmp_path / "version", project.params, "--model",
                           f"models:/{NAME}/1", "--explain", "0")
    frame = version.frame()
    assert lineage_of(frame) == (NAME, "1", project.run1)
    assert (frame["pd"].fillna(-1) == base.frame()["pd"].fillna(-1)).all()
    for out, uri in ((alias.out, f"models:/{NAME}@challenger"),
                     (run.out, f"runs:/{project.run2}/model")):
        assert json.loads((out / "_scoring.json").read_text())["model_uri"] == uri
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_explain_sets_the_reason_columns(base: Scoring, project: Project,
                                         tmp_path: Path) -> None:
    _, none = run_score(project.book, tmp_path / "none", project.params, "--model",
                        project.model, "--explain", "0")
    frame = none.frame()
    assert list(frame.columns) == columns(0)
    assert not [c for c in pq.read_schema(next(none.out.glob("part-*.parquet"))).names
                if c.startswith("reason")]
    full = base.frame()
    assert_same_rows(full.drop(columns=[c for c in full.columns if c.startswith("reason")]),
                     frame)
    assert json.loads((none.out / "_scoring.json").read_text())["reasons"] == 0
    _, one = run_score(project.book, tmp_path / "one", project.params, "--model",
                       project.model, "--explain", "1")
    frame = one.frame()
    assert list(frame.columns) == columns(1)
    assert frame["reason_1"].equals(full["reason_1"])
    assert frame["reason_1_text"].equals(full["reason_1_text"])


# --------------------------------------------------------------------------- errors


def assert_refused(res: Any, *words: str) -> None:
    assert res.exit_code == 2, res.output
    for word in words:
        assert word in res.stderr, (word, res.stderr)


def test_as_of_outside_the_book_is_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--as-of", "2024-01-01", ok=False)
    assert_refused(res, "--as-of 2024-01-01", "after the book's observed_until 2023-12-31")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--as-of", "2019-12-31", ok=False)
    assert_refused(res, "--as-of 2019-12-31", "before the book's first invoice (2020-01-01)")
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_be_found_is_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", tmp_path / "nomodel",
                       ok=False)
    assert_refused(res, "no such model folder", str(tmp_path / "nomodel"))
    res, _ = run_score(project.book, out, project.params, "--model",
                       f"models:/{NAME}@nosuchalias", ok=False)
    assert_refused(res, f"models:/{NAME}@nosuchalias", "'nosuchalias'")
    res, _ = run_score(project.book, out, project.params, "--model", f"models:/{NAME}/9",
                       ok=False)
    assert_refused(res, f"models:/{NAME}/9", "version 9")
    res, _ = run_score(project.book, out, project.params, "--model", "models:/nosuchmodel@x",
                       ok=False)
    assert_refused(res, "models:/nosuchmodel@x", "'nosuchmodel'")
    res, _ = run_score(project.book, out, project.params, "--model", f"runs:/{'0' * 32}/model",
                       ok=False)
    assert_refused(res, f"runs:/{'0' * 32}/model", "not found")
    assert list(tmp_path.iterdir()) == []


def test_the_default_model_without_a_store_is_refused_and_creates_no_store(
        project: Project, tmp_path: Path) -> None:
    """Scoring only reads the registry: a project with no MLflow store is told so, and is
    left without one (as ``promote`` does)."""
    params = tmp_path / "params.yaml"
    shutil.copyfile(project.params, params)
    res, _ = run_score(project.book, tmp_path / "scores", params, ok=False)
    assert_refused(res, f"models:/{NAME}@champion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_model_needing_features_the_data_cannot_give_is_refused(
        project: Project, tmp_path: Path) -> None:
    names = load_model_dir(project.model).spec.names
    assert "disputed_share_365" in names and "dbt_mean_180" in names
    # a book without dispute dates (contract 1.0 invoices)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("buyers.parquet", "events.parquet"):
        shutil.copyfile(project.raw / name, raw / name)
    inv = pq.read_table(project.raw / "invoices")
    assert "dispute_date" in inv.column_names
    (raw / "invoices").mkdir()
    pq.write_table(inv.drop_columns(["dispute_date"]), raw / "invoices" / "part-0.parquet")
    out = tmp_path / "scores"
    res, _ = run_score(raw, out, project.params, "--model", project.model, ok=False)
    assert_refused(res, "disputed_share_365", "no dispute_date column")
    # params whose windows do not make the model's features
    params = write_params(tmp_path / "params.yaml", train=TRAIN, book={"buckets": 3},
                          features={"windows": [90, 365]},
                          master_scale={"upper_bounds": BOUNDS})
    res, _ = run_score(project.book, out, params, "--model", project.model, ok=False)
    assert_refused(res, "_180", "features.windows")
    assert not out.exists() and not staging_beside(out)


def test_an_out_folder_that_is_not_a_scoring_output_is_left_alone(
        project: Project, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "sub" / "part-00000.parquet").write_bytes(b"not scores")
    res, _ = run_score(project.book, out, project.params, "--model", project.model, ok=False)
    assert_refused(res, str(out), "not a scoring output")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "keep.txt", "sub", "sub/part-00000.parquet"]
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "sub" / "part-00000.parquet").read_bytes() == b"not scores"
    afile = tmp_path / "afile"
    afile.write_text("x")
    res, _ = run_score(project.book, afile, project.params, "--model", project.model, ok=False)
    assert_refused(res, "afile")
    assert afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]


def test_bad_engine_options_are_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--engine", "foo", ok=False)
    assert_refused(res, "--engine 'foo'", "'local' or 'spark'")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--spark-master", "local[2]", ok=False)
    assert_refused(res, "--spark-master needs --engine spark")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--explain", "-1", ok=False)
    assert res.exit_code == 2
    assert list(tmp_path.iterdir()) == []
