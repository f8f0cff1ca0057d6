"""The MLflow registry layer against a real SQLite store in a temporary folder: where the store
lives, the pyfunc model directory (what it may replace, the required ``status``), registering
(an identical retraining reuses its version) and promotion (errors when there is nothing to
promote; the champion is re-scored on the current test set). The models are small LightGBM
models of a synthetic book with three features, fitted in a fraction of a second."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import FeatureSpec, RiskModel, load_model_dir
from riskmodel.params import MasterScaleParams, PromoteParams
from riskmodel.registry import (
    CHALLENGER,
    CHAMPION,
    HASH_TAG,
    ModelDirError,
    RegistryError,
    Store,
    check_replaceable,
    log_evaluation,
    log_training,
    promote,
    read_registration,
    save_pyfunc,
    tracking_uri,
    write_registration,
)

NAME = "buyer-risk"
EXPERIMENT = "buyer-risk"
GATES = PromoteParams(min_auc=0.55, max_auc_drop=0.005, max_ece=0.05, max_score_psi=1.0)
GOOD_METRICS = {"test_auc": 0.9, "test_ece": 0.001, "score_psi": 0.01}


# --------------------------------------------------------------------------- a small book


def book(n: int, seed: int) -> pd.DataFrame:
    """Rows as `riskmodel features` writes them (IDs, status, features) plus the label: x1
    drives default, x2 a little, x3 and x4 not at all."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logit = -2.0 + 1.6 * x[:, 0] + 0.4 * x[:, 1]
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame({
        "buyer_id": [f"B{seed}-{i:05d}" for i in range(n)],
        "as_of": pd.Timestamp("2024-06-30"),
        "status": "active",
        "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x[:, 3],
        "bad": bad,
    })


TRAIN = book(4000, seed=1)


def rows_for(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's ID columns and the model's features (a model refuses other columns)."""
    return frame[["buyer_id", "as_of", "status", *model.spec.names]]


def fit(names: list[str], rounds: int = 30) -> RiskModel:
    x, y = TRAIN[names].to_numpy(), TRAIN["bad"].to_numpy()
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "learning_rate": 0.1, "seed": 3,
         "deterministic": True, "num_threads": 1, "verbose": -1},
        lgb.Dataset(x, y, feature_name=names), num_boost_round=rounds,
    )
    margin = booster.predict(x, raw_score=True)
    cal = Calibrator("isotonic").fit(np.asarray(margin), y)
    return RiskModel(booster, cal, MasterScale(MasterScaleParams().upper_bounds),
                     FeatureSpec(names, {}))


@pytest.fixture(scope="module")
def strong() -> RiskModel:
    return fit(["x1", "x2"])


@pytest.fixture(scope="module")
def weak() -> RiskModel:
    """Knows only noise: AUC about 0.5 on any fresh book."""
    return fit(["x3"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder whose store is a SQLite database in it (given as MLFLOW_TRACKING_URI),
    with the working directory elsewhere, so that any use of the cwd would show."""
    proj = tmp_path / "project"
    proj.mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{proj / 'mlflow.db'}")
    return proj


def client_of(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def register(model: RiskModel, project: Path, metrics: dict[str, float] | None = None):
    reg = log_training(model, params={"train": {"seed": 3}}, metrics={"train_rows": 4000.0},
                       tags={"git_commit": "abc"}, artifacts={"features.json": {"a": 1}},
                       experiment=EXPERIMENT, model_name=NAME, project_dir=project)
    if metrics is not None:
        log_evaluation(reg.run_id, metrics, [], project_dir=project)
    return reg


def alias(project: Path, name: str) -> str:
    """The version an alias points at (the SQLite store answers an int, a server a str)."""
    return str(client_of(project).get_model_version_by_alias(NAME, name).version)


def versions(project: Path) -> list[str]:
    return sorted(str(v.version) for v in client_of(project).search_model_versions(f"name='{NAME}'"))


# --------------------------------------------------------------------------- the store


def test_store_is_in_the_project_dir_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strong: RiskModel
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    proj, cwd = tmp_path / "proj", tmp_path / "cwd"
    proj.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert tracking_uri(project_dir=proj) == f"sqlite:///{proj.resolve()}/mlflow.db"
    assert Store.at(proj).artifact_root == proj.resolve() / "mlartifacts"
    # None keeps the old meaning: the working directory
    assert tracking_uri() == f"sqlite:///{cwd.resolve()}/mlflow.db"

    reg = register(strong, proj, GOOD_METRICS)
    assert sorted(p.name for p in proj.iterdir()) == ["mlartifacts", "mlflow.db"]
    assert list(cwd.iterdir()) == []
    # the registered model's files are under the project's artifact root
    mv = client_of(proj).get_model_version(NAME, reg.version)
    assert mv.source.startswith((proj.resolve() / "mlartifacts").as_uri())
    assert len(list((proj / "mlartifacts").rglob("booster.txt"))) == 1
    assert "MLFLOW_TRACKING_URI" not in os.environ  # nothing was set process-wide


def test_two_project_dirs_in_one_process_stay_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strong: RiskModel, weak: RiskModel
) -> None:
    """MLflow's set_tracking_uri would write MLFLOW_TRACKING_URI into the process, and the
    second project would land in the first one's database."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    register(strong, a)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    register(weak, b)
    for proj, names in ((a, ["x1", "x2"]), (b, ["x3"])):
        assert versions(proj) == ["1"]
        run_id = client_of(proj).get_model_version(NAME, "1").run_id
        assert client_of(proj).get_run(run_id).data.params["train.seed"] == "3"
        registered = load_registered_model(proj, "1")
        assert registered.spec.names == names
    assert not (tmp_path / "mlflow.db").exists()


def load_registered_model(project: Path, version: str) -> RiskModel:
    """Independent of the code under test: the version's files read from its source path."""
    source = client_of(project).get_model_version(NAME, version).source
    assert source.startswith("file://")
    return load_model_dir(Path(source.removeprefix("file://")))


def test_env_tracking_uri_and_artifact_root_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strong: RiskModel
) -> None:
    db = tmp_path / "central" / "store.db"
    db.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp_path / "central" / "art"))
    proj = tmp_path / "proj"
    proj.mkdir()
    assert tracking_uri(project_dir=proj) == f"sqlite:///{db}"
    register(strong, proj)
    assert db.exists() and list(proj.iterdir()) == []
    assert list((tmp_path / "central" / "art").rglob("booster.txt"))
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from model_versions").fetchone()[0] == 1


def test_importing_the_registry_has_no_side_effects(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    code = ("import os, riskmodel.registry, riskmodel.mlflow_model; "
            "print(sorted(k for k in os.environ if k.startswith('MLFLOW_')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- save_pyfunc


def test_save_pyfunc_refuses_a_folder_it_did_not_write(tmp_path: Path, strong: RiskModel) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(ModelDirError, match="refusing to delete"):
        check_replaceable(precious)  # the same answer before any training is done
    with pytest.raises(ModelDirError) as exc:
        save_pyfunc(strong, precious)
    message = str(exc.value)
    assert str(precious) in message and "refusing to delete" in message
    assert "another output path" in message
    assert (precious / "chapter1.tex").read_text() == "years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.tex"]

    # an MLmodel file alone (another project's MLflow model) is not enough
    other = tmp_path / "other_model"
    other.mkdir()
    (other / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
    (other / "model.pkl").write_bytes(b"\x80")
    with pytest.raises(ModelDirError, match="refusing to delete it"):
        save_pyfunc(strong, other)
    assert (other / "model.pkl").exists()

    # a file in the way
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ModelDirError, match="not a folder"):
        save_pyfunc(strong, f)
    assert f.read_text() == "x"
    # nothing half-written was left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "other_model", "thesis"]


def test_save_pyfunc_writes_new_empty_and_replaces_its_own(
    tmp_path: Path, strong: RiskModel, weak: RiskModel
) -> None:
    sample = rows_for(weak, book(50, seed=9))
    new = tmp_path / "deep" / "new"
    save_pyfunc(strong, new, {"training.json": {"n": 1}})
    assert (new / "MLmodel").is_file()
    assert (new / "artifacts" / "riskmodel" / "training.json").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    save_pyfunc(strong, empty)
    assert (empty / "MLmodel").is_file()
    check_replaceable(empty)  # now a model directory: may be replaced
    check_replaceable(tmp_path / "not_there")
    assert not (tmp_path / "not_there").exists()

    # a model directory it wrote (with registry.json beside, as train adds) is replaced
    (new / "registry.json").write_text("{}")
    save_pyfunc(weak, new)
    assert not (new / "registry.json").exists()
    assert load_model_dir(new).spec.names == ["x3"]
    assert np.array_equal(load_model_dir(new).predict(sample)["margin"].to_numpy(),
                          weak.predict(sample)["margin"].to_numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "empty"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["new"]


# --------------------------------------------------------------------------- status


def test_pyfunc_requires_status_and_knows_its_values(tmp_path: Path, strong: RiskModel) -> None:
    save_pyfunc(strong, tmp_path / "m")
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    rows = rows_for(strong, book(20, seed=4))
    rows.loc[15:, "status"] = "in_default"

    pred = model.predict(rows)
    assert pred["grade"].tolist()[15:] == ["D"] * 5
    assert (pred["pd"].iloc[15:] == 1.0).all()
    assert not (pred["grade"].iloc[:15] == "D").any()
    local = strong.predict(rows)
    assert np.array_equal(pred["pd"].to_numpy(), local["pd"].to_numpy())

    # without status, defaulted buyers would be scored as live ones: refused
    with pytest.raises(Exception, match="status"):
        model.predict(rows.drop(columns="status"))
    with pytest.raises(Exception, match="'closed'"):
        model.predict(rows.assign(status="closed"))
    # buyer_id and as_of stay optional
    bare = model.predict(rows.drop(columns=["buyer_id", "as_of"]))
    assert np.array_equal(bare["pd"].to_numpy(), pred["pd"].to_numpy())


# --------------------------------------------------------------------------- registering


def test_identical_retraining_reuses_the_version(
    project: Path, strong: RiskModel, weak: RiskModel
) -> None:
    client = client_of(project)
    first = register(strong, project)
    assert first.new_version and first.version == "1"
    tag = client.get_model_version(NAME, "1").tags[HASH_TAG]
    assert re.fullmatch(r"[0-9a-f]{64}", tag) and tag == first.model_sha256

    # the same model again, and a model refitted from scratch to the same files
    for model in (strong, fit(["x1", "x2"])):
        again = register(model, project)
        assert not again.new_version
        assert (again.version, again.run_id) == ("1", first.run_id)
        assert again.model_sha256 == tag
    assert versions(project) == ["1"]
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert len(client.search_runs([exp.experiment_id])) == 1  # no run for the duplicate

    other = register(weak, project)
    assert other.new_version and other.version == "2"
    assert client.get_model_version(NAME, "2").tags[HASH_TAG] != tag
    assert alias(project, CHALLENGER) == "2"

    # the alias comes back to an identical latest version when it was moved away
    client.set_registered_model_alias(NAME, CHALLENGER, "1")
    back = register(weak, project)
    assert (back.new_version, back.version) == (False, "2")
    assert alias(project, CHALLENGER) == "2"
    # only the latest version is compared: the first model again is a new version
    third = register(strong, project)
    assert (third.new_version, third.version) == (True, "3")
    assert versions(project) == ["1", "2", "3"]


def test_a_new_version_logs_its_run(project: Path, strong: RiskModel) -> None:
    reg = register(strong, project, GOOD_METRICS)
    client = client_of(project)
    run = client.get_run(reg.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.seed"] == "3"
    assert run.data.tags["git_commit"] == "abc"
    assert run.data.metrics["train_rows"] == 4000.0
    assert run.data.metrics["test_auc"] == 0.9
    top = {a.path for a in client.list_artifacts(reg.run_id)}
    assert {"features.json", "model"} <= top
    assert read_registration(project) is None
    write_registration(project, reg)
    assert read_registration(project) == {
        "run_id": reg.run_id, "model_name": NAME, "version": "1", "new_version": True,
        "model_sha256": client.get_model_version(NAME, "1").tags[HASH_TAG]}
    registered = load_registered_model(project, reg.version)
    rows = rows_for(strong, book(200, seed=5))
    assert np.array_equal(registered.predict(rows)["pd"].to_numpy(),
                          strong.predict(rows)["pd"].to_numpy())


# --------------------------------------------------------------------------- promotion


def test_promote_without_a_registered_model_is_an_error(project: Path) -> None:
    with pytest.raises(RegistryError, match="no MLflow store at .*mlflow.db: run train first"):
        promote(NAME, GATES, test_frame=None, project_dir=project)
    assert not (project / "mlflow.db").exists()  # looking never creates a store
    client_of(project).search_experiments()  # an empty store
    with pytest.raises(RegistryError) as exc:
        promote(NAME, GATES, test_frame=None, project_dir=project)
    message = str(exc.value)
    assert f"no registered model '{NAME}'" in message
    assert f"sqlite:///{project / 'mlflow.db'}" in message and "run train first" in message

    client_of(project).create_registered_model(NAME)  # a name without a challenger
    with pytest.raises(RegistryError, match=f"no '{CHALLENGER}' alias: run train first"):
        promote(NAME, GATES, test_frame=None, project_dir=project)


def test_promote_refuses_a_model_directory_that_is_not_the_challenger(
        project: Path, strong: RiskModel) -> None:
    register(strong, project, GOOD_METRICS)
    with pytest.raises(RegistryError, match="challenger .* is version 1, but the model "
                                            "directory given is version 7"):
        promote(NAME, GATES, test_frame=None, project_dir=project, expected_challenger="7")


def test_first_challenger_becomes_champion(project: Path, strong: RiskModel) -> None:
    register(strong, project, GOOD_METRICS)
    decision = promote(NAME, GATES, test_frame=None, project_dir=project)
    assert decision.promoted and decision.challenger == "1"
    assert decision.champion_before is None and decision.comparison is None
    assert [g["gate"] for g in decision.gates] == ["test_auc", "test_ece", "score_psi"]
    assert alias(project, CHAMPION) == "1"


def test_champion_is_rescored_on_the_current_test_set(
    project: Path, strong: RiskModel, weak: RiskModel
) -> None:
    """The champion's logged AUC (of an old test set) is low and the challenger's is high;
    on the current test set the champion is far better, and that decides."""
    register(strong, project, {**GOOD_METRICS, "test_auc": 0.60})
    assert promote(NAME, GATES, test_frame=None, project_dir=project).promoted
    register(weak, project, {**GOOD_METRICS, "test_auc": 0.95})

    test = book(3000, seed=7)
    test.loc[:99, "bad"] = np.nan  # unlabelled rows are not counted
    decision = promote(NAME, GATES, test_frame=test, project_dir=project)

    labelled = test[test["bad"].notna()]
    y = labelled["bad"].to_numpy()
    feats = labelled.drop(columns="bad")
    champ_auc = roc_auc_score(y, strong.predict(feats[["status", "x1", "x2"]])["pd"])
    chal_auc = roc_auc_score(y, weak.predict(feats[["status", "x3"]])["pd"])
    assert champ_auc > 0.8 and chal_auc < 0.6  # the setting is what it claims

    assert not decision.promoted
    assert (decision.challenger, decision.champion_before) == ("2", "1")
    vs = next(g for g in decision.gates if g["gate"] == "test_auc_vs_champion")
    assert not vs["passed"]
    assert vs["champion_auc"] == pytest.approx(champ_auc, abs=1e-12)
    assert vs["challenger_auc"] == pytest.approx(chal_auc, abs=1e-12)
    assert vs["test_rows"] == 2900
    assert vs["limit"] == pytest.approx(champ_auc - GATES.max_auc_drop)
    assert decision.comparison == {"challenger_auc": vs["challenger_auc"],
                                   "champion_auc": vs["champion_auc"], "test_rows": 2900}
    assert decision.to_dict()["comparison"]["test_rows"] == 2900
    # the absolute gates used the challenger's logged metrics and passed
    assert all(g["passed"] for g in decision.gates if g["gate"] != "test_auc_vs_champion")
    assert alias(project, CHAMPION) == "1"

    # the other way round: a better challenger wins although its logged AUC is below the
    # champion's logged one
    register(fit(["x1", "x2", "x4"], rounds=60), project, {**GOOD_METRICS, "test_auc": 0.56})
    client_of(project).set_registered_model_alias(NAME, CHAMPION, "2")  # weak is champion
    decision = promote(NAME, GATES, test_frame=test, project_dir=project)
    assert decision.promoted and decision.champion_before == "2"
    assert decision.comparison is not None
    assert decision.comparison["challenger_auc"] > decision.comparison["champion_auc"]
    assert alias(project, CHAMPION) == "3"


def test_champion_that_cannot_score_the_test_set_fails_the_gate(
    project: Path, strong: RiskModel
) -> None:
    register(fit(["x1", "x2", "x4"]), project, GOOD_METRICS)
    promote(NAME, GATES, test_frame=None, project_dir=project)
    register(strong, project, GOOD_METRICS)
    test = book(1000, seed=8).drop(columns="x4")  # a feature the champion needs is gone
    decision = promote(NAME, GATES, test_frame=test, project_dir=project)
    vs = decision.gates[-1]
    assert vs["gate"] == "test_auc_vs_champion" and not vs["passed"]
    assert "champion cannot score" in vs["detail"] and "'x4'" in vs["detail"]
    assert not decision.promoted and decision.comparison is None
    assert alias(project, CHAMPION) == "1"


def test_without_a_test_set_a_champion_is_not_replaced(
    project: Path, strong: RiskModel, weak: RiskModel
) -> None:
    register(weak, project, GOOD_METRICS)
    promote(NAME, GATES, test_frame=None, project_dir=project)
    register(strong, project, GOOD_METRICS)
    decision = promote(NAME, GATES, test_frame=None, project_dir=project)
    assert not decision.promoted
    assert [g["gate"] for g in decision.failed()] == ["test_auc_vs_champion"]
    assert "no test set" in decision.failed()[0]["detail"]
    with pytest.raises(RegistryError, match="'bad'"):
        promote(NAME, GATES, test_frame=book(100, 2).drop(columns="bad"), project_dir=project)
    assert alias(project, CHAMPION) == "1"


@pytest.mark.parametrize(("metrics", "gate"), [
    ({**GOOD_METRICS, "test_auc": 0.54}, "test_auc"),       # min_auc 0.55
    ({**GOOD_METRICS, "test_ece": 0.06}, "test_ece"),       # max_ece 0.05
    ({**GOOD_METRICS, "score_psi": 1.5}, "score_psi"),      # max_score_psi 1.0
    (None, "test_auc"),                                      # never evaluated
])
def test_each_absolute_gate_can_stop_a_promotion(project: Path, strong: RiskModel,
                                                 metrics, gate: str) -> None:
    register(strong, project, metrics)
    decision = promote(NAME, GATES, test_frame=None, project_dir=project)
    assert not decision.promoted
    failed = {g["gate"]: g for g in decision.failed()}
    assert gate in failed
    if metrics is None:
        assert set(failed) == {"test_auc", "test_ece", "score_psi"}
        assert failed[gate]["detail"] == "metric missing: evaluate first"
    else:
        assert set(failed) == {gate}  # the others pass
    aliases = dict(client_of(project).get_registered_model(NAME).aliases)
    assert "champion" not in aliases
