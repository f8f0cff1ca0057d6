"""The pipeline against a real MLflow tracking server (``mlflow server``: SQLite backend,
proxied artifacts): train registers a challenger, evaluate logs to its run, promote moves the
champion alias by the gates (comparing with the champion re-scored on the same test set); the
champion loads as an MLflow pyfunc and scores feature rows exactly as the model directory does;
an identical retraining registers no new version.

No test sets MLflow's process-wide tracking URI (MLflow would write it into the environment
of every later test): the server is reached through explicit clients and URIs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.modeling.model import RiskModel, load_model_dir
from riskmodel.modeling.training import build_panel, load_holdout, split_panel
from riskmodel.pipeline import read_features, read_labels
from riskmodel.provenance import fingerprint
from riskmodel.registry import promote
from training_helpers import fast_params, world, write_params

pytestmark = pytest.mark.slow

MLFLOW = Path(sys.executable).with_name("mlflow")
REPO = Path(__file__).resolve().parents[1]
NAME = "buyer-risk"
LENIENT = {"min_auc": 0.6, "max_auc_drop": 0.005, "max_ece": 0.05, "max_score_psi": 1.0}
runner = CliRunner()


def cli(*args: str | Path):
    res = runner.invoke(app, [str(a) for a in args])
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """The server runs uvicorn and a job runner as children: end its whole process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # children that outlived the parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(MLFLOW),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--workers",
                "1",
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"mlflow server exited {proc.returncode}:\n"
                        + log_path.read_text(errors="replace")[-3000:]
                    )
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        "mlflow server not healthy after 90 s:\n"
                        + log_path.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.5)
            yield url
        finally:
            _stop(proc)


@dataclass
class Pipeline:
    url: str
    raw: Path
    work: Path
    features: pd.DataFrame
    metrics: dict[str, float]
    run_id: str
    promote_output: str
    heads: set[str]  # HEAD of the repository before and after train


@pytest.fixture(scope="module")
def pipeline(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """features -> labels -> train (registers version 1) -> evaluate -> promote, through the
    CLI, with MLFLOW_TRACKING_URI pointing at the server."""
    raw = world(tmp_path_factory).raw
    work = tmp_path_factory.mktemp("mlflow_work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server)
        mp.chdir(work)
        params = write_params(work / "params.yaml", promote=LENIENT)
        heads = {_head()}
        for cmd in ("features", "labels"):
            res = cli(cmd, raw, "--params", params, "--out", f"{cmd}.parquet")
            assert res.exit_code == 0, res.output
        res = cli(
            "train",
            raw,
            "--params",
            params,
            "--features",
            "features.parquet",
            "--labels",
            "labels.parquet",
            "--out",
            "model",
        )
        assert res.exit_code == 0, res.output
        heads.add(_head())
        assert f"registered {NAME} version 1, alias challenger" in res.stdout
        res = cli(
            "evaluate",
            "model",
            "--params",
            params,
            "--features",
            "features.parquet",
            "--labels",
            "labels.parquet",
            "--out-dir",
            "reports",
            "--metrics",
            "metrics.json",
        )
        assert res.exit_code == 0, res.output
        res = cli("promote", "--params", params, "--out", "promotion.json")
        assert res.exit_code == 0, res.output
        yield Pipeline(
            url=server,
            raw=raw,
            work=work,
            features=pd.read_parquet(work / "features.parquet"),
            metrics=json.loads((work / "metrics.json").read_text()),
            run_id=json.loads((work / "model" / "registry.json").read_text())["run_id"],
            promote_output=res.stdout,
            heads=heads,
        )


def _head() -> str:
    """The repository's HEAD, asked of git directly (not through riskmodel.provenance)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def _expected_fingerprint(root: Path) -> str:
    """The documented fingerprint, computed here from its definition: SHA-256 over each
    file's path relative to ``root`` and its bytes, files in sorted path order."""
    h = hashlib.sha256()
    files = sorted((p for p in root.rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(root).parts)
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def client(pipeline: Pipeline) -> MlflowClient:
    return MlflowClient(pipeline.url, pipeline.url)


def test_first_model_becomes_champion(pipeline: Pipeline, client: MlflowClient) -> None:
    assert f"{NAME} version 1 is the champion" in pipeline.promote_output
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.version == "1"
    assert champion.run_id == pipeline.run_id
    assert client.get_model_version_by_alias(NAME, "challenger").version == "1"
    assert client.get_registered_model(NAME).aliases == {"champion": "1", "challenger": "1"}
    decision = json.loads((pipeline.work / "promotion.json").read_text())
    assert decision["promoted"] is True and decision["champion_before"] is None


def test_run_has_params_metrics_and_tags(pipeline: Pipeline, client: MlflowClient) -> None:
    run = client.get_run(pipeline.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "buyer-risk"
    p = run.data.params
    assert p["train.num_leaves"] == "15"
    assert p["train.n_estimators"] == "150"
    assert p["label.horizon_days"] == "365"
    assert p["calibration.method"] == "isotonic"
    assert json.loads(p["train.monotone"])["paydex_*"] == -1
    assert json.loads(p["master_scale.upper_bounds"])[-1] == 1.0
    m = run.data.metrics
    for key in (
        "test_auc",
        "test_ece",
        "score_psi",
        "train_auc",
        "best_iteration",
        "train_rows",
        "test_rows",
    ):
        assert key in m, key
    for key in ("test_auc", "test_ece", "score_psi"):
        assert m[key] == pytest.approx(pipeline.metrics[key], abs=1e-6)
    t = run.data.tags
    # the commit of this repository (HEAD may move under concurrent commits during the run)
    commit = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", t["git_commit"])
    assert commit is not None, t["git_commit"]
    assert commit.group(1) in pipeline.heads
    assert t["split_kind"] == "out_of_time"


def test_run_tags_the_raw_data_fingerprint(
    pipeline: Pipeline, client: MlflowClient, tmp_path: Path
) -> None:
    tag = client.get_run(pipeline.run_id).data.tags["raw_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{64}", tag)
    assert tag == _expected_fingerprint(pipeline.raw)
    # the same bytes in another folder give the same fingerprint; one changed byte does not
    copy = tmp_path / "copy"
    shutil.copytree(pipeline.raw, copy)
    assert fingerprint(copy) == tag
    victim = next(p for p in sorted(copy.rglob("*.parquet")) if p.stat().st_size > 100)
    data = bytearray(victim.read_bytes())
    data[50] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert fingerprint(copy) != tag
    assert _expected_fingerprint(copy) != tag


def test_run_has_artifacts(pipeline: Pipeline, client: MlflowClient) -> None:
    top = {a.path for a in client.list_artifacts(pipeline.run_id)}
    assert {"features.json", "training.json", "evaluation"} <= top
    evaluation = {a.path for a in client.list_artifacts(pipeline.run_id, "evaluation")}
    for name in (
        "roc.png",
        "calibration.png",
        "grades.png",
        "grades.csv",
        "roc.csv",
        "calibration.csv",
        "feature_psi.csv",
        "grade_distribution.csv",
        "metrics.json",
    ):
        assert f"evaluation/{name}" in evaluation, name
    # the png came through the server's artifact proxy intact
    local = mlflow.artifacts.download_artifacts(
        run_id=pipeline.run_id, artifact_path="evaluation/roc.png", tracking_uri=pipeline.url
    )
    assert Path(local).read_bytes() == (pipeline.work / "reports" / "roc.png").read_bytes()

    # the registered model (the run's artifact folder model/) holds the model files, the
    # same booster as the model directory train wrote
    assert "model" in top
    version = client.get_model_version(NAME, "1")
    assert version.run_id == pipeline.run_id
    assert re.fullmatch(r"[0-9a-f]{64}", version.tags["model_sha256"])
    model_dir = _download(client, pipeline.url, "1")
    assert (model_dir / "MLmodel").exists()
    booster = model_dir / "artifacts" / "riskmodel" / "booster.txt"
    assert (
        booster.read_bytes()
        == (pipeline.work / "model" / "artifacts" / "riskmodel" / "booster.txt").read_bytes()
    )


def _download(client: MlflowClient, url: str, version: str) -> Path:
    """A registered version's files, fetched through the server's artifact proxy."""
    source = client.get_model_version_download_uri(NAME, version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=url))


@pytest.fixture(scope="module")
def champion(pipeline: Pipeline, client: MlflowClient) -> mlflow.pyfunc.PyFuncModel:
    version = client.get_model_version_by_alias(NAME, "champion").version
    return mlflow.pyfunc.load_model(str(_download(client, pipeline.url, str(version))))


@pytest.fixture(scope="module")
def rows(pipeline: Pipeline) -> pd.DataFrame:
    """20 live and 5 defaulted rows, as `riskmodel features` wrote them."""
    f = pipeline.features
    return pd.concat(
        [f[f["status"] == "active"].head(20), f[f["status"] == "in_default"].head(5)],
        ignore_index=True,
    )


def _as_float(rows: pd.DataFrame) -> pd.DataFrame:
    ints = rows.select_dtypes("integer").columns
    return rows.astype(dict.fromkeys(ints, "float64"))


def test_champion_loads_as_pyfunc_and_scores(
    pipeline: Pipeline, champion: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame
) -> None:
    x = _as_float(rows)
    pred = champion.predict(x)
    assert list(pred.columns) == ["pd", "grade", "margin"]
    assert len(pred) == len(rows)
    local = load_model_dir(pipeline.work / "model").predict(rows)
    assert np.array_equal(pred["pd"].to_numpy(), local["pd"].to_numpy())
    assert np.array_equal(pred["margin"].to_numpy(), local["margin"].to_numpy())
    assert pred["grade"].tolist() == local["grade"].tolist()
    assert pred["grade"].iloc[-5:].tolist() == ["D"] * 5
    assert (pred["pd"].iloc[-5:] == 1.0).all()
    assert not (pred["grade"].iloc[:20] == "D").any()

    with pytest.raises(Exception) as exc:  # MLflow's schema check or ours
        champion.predict(x.drop(columns="dbt_wmean_365"))
    assert "dbt_wmean_365" in str(exc.value)


def test_champion_scores_the_features_frame_as_written(
    pipeline: Pipeline, champion: mlflow.pyfunc.PyFuncModel
) -> None:
    """The frame `riskmodel features` wrote, as it is (integer columns, text status), scores
    through the pyfunc exactly as through the model directory, bit for bit."""
    frame = pipeline.features.sample(n=2000, random_state=1)
    assert (frame["status"] == "in_default").any() and (frame["status"] == "active").any()
    pred = champion.predict(frame)
    local = load_model_dir(pipeline.work / "model").predict(frame)
    assert np.array_equal(pred["pd"].to_numpy(), local["pd"].to_numpy())
    assert np.array_equal(pred["margin"].to_numpy(), local["margin"].to_numpy())
    assert pred["grade"].tolist() == local["grade"].tolist()
    default = (frame["status"] == "in_default").to_numpy()
    assert (pred["grade"].to_numpy()[default] == "D").all()
    assert (pred["pd"].to_numpy()[default] == 1.0).all()


def test_champion_refuses_a_frame_without_status(
    champion: mlflow.pyfunc.PyFuncModel, rows: pd.DataFrame
) -> None:
    with pytest.raises(Exception, match="status"):  # MLflow's schema check or ours
        champion.predict(_as_float(rows).drop(columns="status"))
    with pytest.raises(Exception, match="'closed'"):
        champion.predict(rows.assign(status="closed"))


def _train(raw: Path, params: Path, out: str) -> str:
    res = cli("train", raw, "--params", params, "--features", "features.parquet",
              "--labels", "labels.parquet", "--out", out)
    assert res.exit_code == 0, res.output
    return res.stdout


def _auc(model: RiskModel, test: pd.DataFrame) -> float:
    x = test[["buyer_id", "as_of", "status", *model.spec.names]]
    return float(roc_auc_score(test["bad"].astype(float), model.predict(x)["pd"]))


def test_failing_gate_keeps_the_champion(
    pipeline: Pipeline, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.url)
    monkeypatch.chdir(pipeline.work)
    # another seed gives another model (an identical one would register no new version)
    strict = {"promote": {**LENIENT, "max_ece": 0.0, "max_auc_drop": 0.05},
              "train": {"seed": 7}}
    params = write_params(pipeline.work / "strict.yaml", **strict)
    out = _train(pipeline.raw, params, "model2")
    assert f"registered {NAME} version 2, alias challenger" in out
    res = cli("evaluate", "model2", "--params", params, "--features", "features.parquet",
              "--labels", "labels.parquet", "--out-dir", "reports2", "--metrics",
              "metrics2.json")
    assert res.exit_code == 0, res.output

    # the champion (version 1) is re-scored on the test set the challenger was evaluated on
    res = cli("promote", "--params", params, "--model", "model2", "--features",
              "features.parquet", "--labels", "labels.parquet", "--out", "promotion2.json")
    assert res.exit_code == 0, res.output
    assert "FAIL  test_ece" in res.stdout
    assert "pass  test_auc" in res.stdout and "pass  score_psi" in res.stdout
    assert "pass  test_auc_vs_champion" in res.stdout
    assert f"{NAME} version 2 not promoted: failed test_ece" in res.stdout
    decision = json.loads((pipeline.work / "promotion2.json").read_text())

    prm = fast_params(**strict)
    panel = build_panel(read_features(pipeline.work / "features.parquet"),
                        read_labels(pipeline.work / "labels.parquet"))
    test = split_panel(panel, prm).test
    # the holdout models: the shipped ones are refit on every labelled date, test included
    champ_auc = _auc(load_holdout(pipeline.work / "model"), test)
    chal_auc = _auc(load_holdout(pipeline.work / "model2"), test)
    assert champ_auc != chal_auc  # two different models
    assert decision["comparison"] == {"challenger_auc": pytest.approx(chal_auc, abs=1e-12),
                                      "champion_auc": pytest.approx(champ_auc, abs=1e-12),
                                      "test_rows": len(test)}
    # the challenger's AUC on this test set is the one its evaluation logged
    run2 = client.get_model_version(NAME, "2").run_id
    assert client.get_run(run2).data.metrics["test_auc"] == pytest.approx(chal_auc, abs=1e-9)
    assert decision["promoted"] is False
    assert decision["challenger"] == "2" and decision["champion_before"] == "1"
    assert [g["gate"] for g in decision["gates"] if not g["passed"]] == ["test_ece"]
    vs = next(g for g in decision["gates"] if g["gate"] == "test_auc_vs_champion")
    assert vs["limit"] == pytest.approx(champ_auc - 0.05)
    assert vs["test_rows"] == len(test)
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"

    # the library gives the same decision for the same test set
    same = promote(NAME, prm.promote, test_frame=test, project_dir=pipeline.work)
    assert same.comparison == decision["comparison"]

    res = cli("promote", "--params", params, "--strict")
    assert res.exit_code == 1
    assert "failed test_ece" in res.stdout
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"


def test_identical_retraining_registers_no_new_version(
    pipeline: Pipeline, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest version's params again (through the server): the same files, so no new
    version and no new run; the challenger alias, moved away, comes back to that version."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.url)
    monkeypatch.chdir(pipeline.work)
    before = {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")}
    assert max(before, key=int) == "2"  # model2 of the strict params (seed 7)
    exp = client.get_experiment_by_name("buyer-risk")
    runs = len(client.search_runs([exp.experiment_id]))
    client.set_registered_model_alias(NAME, "challenger", "1")
    out = _train(pipeline.raw, pipeline.work / "strict.yaml", "model_again")
    assert f"identical to the registered {NAME} version 2, alias challenger" in out
    after = {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")}
    assert after == before
    assert len(client.search_runs([exp.experiment_id])) == runs
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"
    registration = json.loads((pipeline.work / "model_again" / "registry.json").read_text())
    assert registration["version"] == "2"
    assert registration["run_id"] == client.get_model_version(NAME, "2").run_id
    assert registration["new_version"] is False
