"""The ``riskmodel`` commands end to end on a small synthetic world, with a local MLflow store
(SQLite in the test folder): the files each stage writes, and the exit codes of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.features import FeatureConfig, feature_names
from riskmodel.modeling.model import FILES, load_model_dir
from riskmodel.pipeline import read_features, read_labels
from training_helpers import write_params

pytestmark = pytest.mark.slow

runner = CliRunner()
OBSERVED = "2023-12-31"


def cli(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_world") / "raw"
    res = cli(
        "synth",
        "--out",
        out,
        "--buyers",
        "1500",
        "--start",
        "2020-01-01",
        "--end",
        OBSERVED,
        "--seed",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert "wrote 1,500 buyers" in res.stdout
    return out


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    return tmp_path


def test_pipeline_writes_every_file(raw: Path, workdir: Path) -> None:
    # gates a small world's model passes, so the promotion is exercised
    params = write_params(
        workdir / "params.yaml", promote={"min_auc": 0.6, "max_ece": 0.05, "max_score_psi": 1.0}
    )
    feats, labs = Path("data/features.parquet"), Path("data/labels.parquet")
    book = Path("data/book")

    res = cli("validate", raw, "--params", params, "--out", book, "--rejects", "data/rejects",
              "--report", "data/validation.json")
    assert res.exit_code == 0, res.output
    manifest = json.loads((workdir / book / "manifest.json").read_text())
    report = json.loads((workdir / "data/validation.json").read_text())
    assert manifest["observed_until"] == report["observed_until"] == OBSERVED
    assert manifest["tables"] == report["tables"]
    assert report["tables"]["buyers"]["accepted"] == 1500
    assert (workdir / "data/rejects/invoices.parquet").exists()

    res = cli("features", book, "--params", params, "--out", feats)
    assert res.exit_code == 0, res.output
    frame = read_features(workdir / feats)
    assert (workdir / "data/features.peers.parquet").exists()
    assert list(frame.columns) == ["buyer_id", "as_of", "status", *feature_names(FeatureConfig())]
    assert frame["as_of"].dt.date.astype(str).min() == "2020-12-31"
    assert frame["as_of"].dt.date.astype(str).max() == OBSERVED
    assert frame["as_of"].nunique() == 13
    assert set(frame["status"]) == {"active", "in_default"}
    assert not frame.duplicated(["buyer_id", "as_of"]).any()
    assert f"wrote {len(frame):,} rows" in res.stdout

    res = cli("labels", book, "--params", params, "--out", labs)
    assert res.exit_code == 0, res.output
    lab = read_labels(workdir / labs)
    assert list(lab.columns) == ["buyer_id", "as_of", "in_default", "bad", "observed_days",
                                 "days_to_bad"]
    assert len(lab) == len(frame)
    labelled = lab[lab["bad"].notna()]
    assert labelled["as_of"].max() == pd.Timestamp("2022-12-31")
    assert not labelled["in_default"].any()
    assert 0 < labelled["bad"].astype(float).mean() < 0.2

    model_dir = Path("models/buyer-risk")
    res = cli(
        "train", book, "--params", params, "--features", feats, "--labels", labs, "--out", model_dir
    )
    assert res.exit_code == 0, res.output
    assert "registered buyer-risk version 1, alias challenger" in res.stdout
    m = workdir / model_dir
    assert (m / "MLmodel").exists()
    assert "python_function" in (m / "MLmodel").read_text()
    for name in FILES.values():
        assert (m / "artifacts" / "riskmodel" / name).exists()
    training = json.loads((m / "artifacts" / "riskmodel" / "training.json").read_text())
    assert training["split"]["kind"] == "out_of_time"
    assert training["split"]["dates"]["test"] == ["2022-09-30", "2022-12-31"]
    assert training["raw_fingerprint"] == manifest["raw_fingerprint"]
    assert len(training["raw_fingerprint"]) == 64
    registry = json.loads((m / "registry.json").read_text())
    assert registry["model_name"] == "buyer-risk" and registry["version"] == "1"
    assert (workdir / "mlflow.db").exists()
    assert (workdir / "mlartifacts").is_dir()  # the store's artifacts, beside params.yaml
    model = load_model_dir(m)
    pred = model.predict(frame.head(100))
    assert list(pred.columns) == ["pd", "grade", "margin"]

    res = cli(
        "evaluate",
        model_dir,
        "--params",
        params,
        "--features",
        feats,
        "--labels",
        labs,
        "--truth",
        raw / "truth.parquet",
        "--out-dir",
        "reports",
        "--metrics",
        "metrics.json",
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((workdir / "metrics.json").read_text())
    for key in (
        "test_auc",
        "test_gini",
        "test_ks",
        "test_brier",
        "test_ece",
        "test_log_loss",
        "test_mean_pd",
        "test_bad_rate",
        "train_auc",
        "score_psi",
        "feature_psi_max",
        "grades_tested",
        "grades_inside_999_count",
        "grades_outside_999",
        "grades_all_inside_999",
        "grades_red",
        "oracle_auc",
        "auc_to_oracle",
    ):
        assert key in metrics, key
    assert 0.6 < metrics["test_auc"] <= 1.0
    assert metrics["test_auc"] <= metrics["oracle_auc"] + 0.02
    assert metrics["test_gini"] == pytest.approx(2 * metrics["test_auc"] - 1, abs=1e-5)
    reports = workdir / "reports"
    for name in (
        "grades.csv",
        "calibration.csv",
        "roc.csv",
        "feature_psi.csv",
        "grade_distribution.csv",
        "roc.png",
        "calibration.png",
        "grades.png",
    ):
        assert (reports / name).stat().st_size > 0, name
    assert (reports / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grades = pd.read_csv(reports / "grades.csv")
    assert grades["grade"].astype(str).tolist() == [str(k) for k in range(1, 11)]
    assert grades["buyers"].sum() == training["split"]["test"]["rows"]
    psi = pd.read_csv(reports / "feature_psi.csv")
    left_out = {e["feature"] for e in training["excluded_features"]}
    assert left_out  # the yoy features are censored at every training date of this world
    # stability is judged on the features the model learned from
    assert set(psi["feature"]) == set(model.spec.names) - left_out
    roc = pd.read_csv(reports / "roc.csv")
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing

    res = cli("promote", "--params", params, "--out", "reports/promotion.json", "--model",
              model_dir, "--features", feats, "--labels", labs)
    assert res.exit_code == 0, res.output
    assert "buyer-risk version 1 is the champion" in res.stdout
    decision = json.loads((reports / "promotion.json").read_text())
    assert decision["promoted"] is True
    assert decision["challenger"] == "1" and decision["champion_before"] is None
    assert [g["gate"] for g in decision["gates"]] == ["test_auc", "test_ece", "score_psi"]
    assert all(g["passed"] for g in decision["gates"])
    assert decision["gates"][0]["value"] == pytest.approx(metrics["test_auc"], abs=1e-6)

    # promoting the champion again changes nothing and still passes
    res = cli("promote", "--params", params, "--strict")
    assert res.exit_code == 0, res.output
    assert "version 1 is the champion" in res.stdout


def test_train_from_raw_without_features(raw: Path, workdir: Path) -> None:
    params = write_params(workdir / "params.yaml")
    res = cli("train", raw, "--params", params, "--out", "m", "--no-register")
    assert res.exit_code == 0, res.output
    assert (workdir / "m" / "artifacts" / "riskmodel" / "booster.txt").exists()
    assert not (workdir / "m" / "registry.json").exists()
    assert not (workdir / "mlflow.db").exists()


def test_promote_without_a_registered_model_exits_2(workdir: Path) -> None:
    params = write_params(workdir / "params.yaml")
    res = cli("promote", "--params", params, "--out", "p.json")
    assert res.exit_code == 2, res.output
    assert "no MLflow store" in res.stderr and "run train first" in res.stderr
    assert not (workdir / "p.json").exists()
    assert not (workdir / "mlflow.db").exists()  # looking never creates a store


def test_train_with_a_missing_data_folder_exits_2_before_any_work(workdir: Path) -> None:
    res = cli("train", "no/such/raw", "--out", "m", "--no-register")
    assert res.exit_code == 2, res.output
    assert "no/such/raw" in res.stderr
    assert not (workdir / "m").exists()


def test_evaluate_with_a_missing_truth_file_exits_2(raw: Path, workdir: Path) -> None:
    res = cli("evaluate", "m", "--features", "f.parquet", "--labels", "l.parquet", "--truth",
              "nosuch/truth.parquet")
    assert res.exit_code == 2, res.output
    assert "nosuch/truth.parquet" in res.stderr


def test_train_refuses_to_replace_a_folder_it_did_not_write(raw: Path, workdir: Path) -> None:
    (workdir / "m").mkdir()
    (workdir / "m" / "notes.txt").write_text("keep me")
    res = cli("train", raw, "--out", "m", "--no-register")
    assert res.exit_code == 2, res.output
    assert "refusing to delete it" in res.stderr
    assert (workdir / "m" / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- exit 2


@pytest.mark.parametrize("command", ["features", "labels"])
def test_as_of_after_observed_until_exits_2(raw: Path, workdir: Path, command: str) -> None:
    res = cli(command, raw, "--as-of", "2023-06-30,2024-03-31", "--out", "x.parquet")
    assert res.exit_code == 2, res.output
    assert "as-of date 2024-03-31 is after observed_until 2023-12-31" in res.stderr
    assert not (workdir / "x.parquet").exists()


def test_as_of_not_a_date_exits_2(raw: Path, workdir: Path) -> None:
    res = cli("features", raw, "--as-of", "2023-13-01", "--out", "x.parquet")
    assert res.exit_code == 2
    assert "--as-of" in res.stderr
    assert not (workdir / "x.parquet").exists()


def test_as_of_before_observed_until_with_option(raw: Path, workdir: Path) -> None:
    # an earlier observation date rejects the later rows; allow that, to reach the as-of check
    params = workdir / "lenient.yaml"
    params.write_text("data:\n  max_reject_rate: 1.0\n")
    res = cli(
        "labels",
        raw,
        "--params",
        params,
        "--as-of",
        "2022-06-30",
        "--observed-until",
        "2022-03-31",
        "--out",
        "x.parquet",
    )
    assert res.exit_code == 2
    assert "after observed_until 2022-03-31" in res.stderr


def test_reject_share_above_the_limit_stops_every_command(raw: Path, workdir: Path) -> None:
    # observed until 2022-03-31: the invoices issued or paid after it are rejected (> 1%)
    res = cli("labels", raw, "--as-of", "2021-12-31", "--observed-until", "2022-03-31",
              "--out", "x.parquet")
    assert res.exit_code == 1
    assert "rejected share above data.max_reject_rate 1.00%: invoices" in res.stderr
    assert not (workdir / "x.parquet").exists()


@pytest.mark.parametrize("command", ["features", "labels", "train", "evaluate", "promote"])
def test_params_with_unknown_key_exits_2_naming_it(raw: Path, workdir: Path, command: str) -> None:
    params = workdir / "params.yaml"
    params.write_text("train:\n  num_leaves: 7\n  learnig_rate: 0.1\n")
    args: list[str | Path] = {
        "features": ["features", raw, "--out", "x.parquet"],
        "labels": ["labels", raw, "--out", "x.parquet"],
        "train": ["train", raw, "--out", "m", "--no-register"],
        "evaluate": ["evaluate", "m", "--features", "f.parquet", "--labels", "l.parquet"],
        "promote": ["promote"],
    }[command]
    res = cli(*args, "--params", params)
    assert res.exit_code == 2, res.output
    assert "train.learnig_rate" in res.stderr
    assert "Extra inputs are not permitted" in res.stderr
    assert not (workdir / "x.parquet").exists() and not (workdir / "m").exists()


def test_train_with_features_but_no_labels_exits_2(raw: Path, workdir: Path) -> None:
    for flags in (["--features", "f.parquet"], ["--labels", "l.parquet"]):
        res = cli("train", raw, "--out", "m", "--no-register", *flags)
        assert res.exit_code == 2, res.output
        assert "give both --features and --labels, or neither" in res.stderr
        assert not (workdir / "m").exists()


def test_train_with_unreadable_features_exits_2(raw: Path, workdir: Path) -> None:
    (workdir / "f.parquet").write_text("not parquet")
    (workdir / "l.parquet").write_text("not parquet")
    res = cli(
        "train",
        raw,
        "--out",
        "m",
        "--no-register",
        "--features",
        "f.parquet",
        "--labels",
        "l.parquet",
    )
    assert res.exit_code == 2
    assert "cannot read features" in res.stderr


def test_training_error_exits_2(raw: Path, workdir: Path) -> None:
    params = write_params(workdir / "params.yaml", train={"monotone": {"nosuch_*": 1}})
    res = cli("train", raw, "--params", params, "--out", "m", "--no-register")
    assert res.exit_code == 2
    assert "train.monotone: 'nosuch_*' matches no feature" in res.stderr
    assert not (workdir / "m").exists()


def test_evaluate_of_a_missing_model_exits_2(raw: Path, workdir: Path) -> None:
    res = cli("evaluate", "nomodel", "--features", "f.parquet", "--labels", "l.parquet")
    assert res.exit_code == 2
    assert "nomodel" in res.stderr
