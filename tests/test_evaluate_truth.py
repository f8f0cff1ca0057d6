"""The truth file of evaluate and backtest comes from params (``evaluate.truth``, null by
default: real data have none), the command line's ``--truth`` overrides it, and a truth file
that params name but that does not exist is an error naming the key and the path. Also the
domain check of evaluate: its warnings, their count in the metrics, and the note for a model
without a profile.

The model is a small LightGBM model fitted by hand on a panel of 400 buyers (no training
code involved), saved with the ``training.json`` that evaluate reads."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.domain import fit_profile
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import FeatureSpec, RiskModel, design_matrix
from riskmodel.modeling.training import build_panel, split_panel
from riskmodel.params import MasterScaleParams, Params, parse_params
from training_helpers import book_panel

runner = CliRunner()
SPEC = FeatureSpec(["signal", "noise", "industry", "country"],
                   {"industry": ["C", "G"], "country": ["DE", "FR"]})


def params_with(**evaluate: object) -> Params:
    return parse_params({"evaluate": evaluate} if evaluate else {})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """features.parquet, labels.parquet, two truth files and two model folders (``model``
    with a domain profile of its training rows, ``old`` without one)."""
    root = tmp_path_factory.mktemp("truth")
    feats, labs = book_panel(48, n_buyers=400, seed=2)
    odd = feats["buyer_id"].str[-1].isin(list("13579"))
    feats = feats.assign(industry=np.where(odd, "G", "C"), country=np.where(odd, "FR", "DE"))
    feats.to_parquet(root / "features.parquet")
    labs.to_parquet(root / "labels.parquet")
    # the true PD of the panel: the logistic of its signal; a second, useless one
    pd_true = 1 / (1 + np.exp(-(-2.0 + 1.5 * feats["signal"])))
    feats[["buyer_id", "as_of"]].assign(pd_true=pd_true).to_parquet(root / "truth.parquet")
    rng = np.random.default_rng(0)
    feats[["buyer_id", "as_of"]].assign(pd_true=rng.uniform(0.01, 0.2, len(feats))).to_parquet(
        root / "noise_truth.parquet")
    split = split_panel(build_panel(pipeline.read_features(root / "features.parquet"),
                                    pipeline.read_labels(root / "labels.parquet")), Params())
    x, y = design_matrix(split.train, SPEC), split.train["bad"].astype(float).to_numpy()
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": 1,
                         "deterministic": True, "num_threads": 1},
                        lgb.Dataset(x, y, feature_name=SPEC.names), num_boost_round=20)
    cal = Calibrator("platt").fit(np.asarray(booster.predict(x, raw_score=True)), y)
    scale = MasterScale(MasterScaleParams().upper_bounds)
    training = json.dumps({"split": {"dates": split.dates}})
    for name, profile in (("model", fit_profile(split.train, SPEC)), ("old", None)):
        RiskModel(booster, cal, scale, SPEC, profile=profile).save(root / name)
        (root / name / "training.json").write_text(training)
    return root


def run(project: Path, prm: Params, model: str = "model", **kw: object
        ) -> pipeline.EvaluateStageResult:
    return pipeline.evaluate(project / model, project / "features.parquet",
                             project / "labels.parquet", prm, out_dir=project / "reports",
                             metrics_path=project / "metrics.json", log=False, **kw)


def test_real_data_without_truth_evaluate_fine(project: Path) -> None:
    res = run(project, Params())
    assert Params().evaluate.truth is None
    assert 0.7 < res.evaluation.metrics["test_auc"] <= 1
    assert "oracle_auc" not in res.evaluation.metrics
    assert "oracle_auc" not in json.loads((project / "metrics.json").read_text())


def test_the_truth_of_params_is_used(project: Path) -> None:
    res = run(project, params_with(truth=str(project / "truth.parquet")))
    m = res.evaluation.metrics
    assert 0.7 < m["oracle_auc"] <= 1
    assert m["auc_to_oracle"] == pytest.approx(m["test_auc"] / m["oracle_auc"])


def test_a_truth_given_explicitly_overrides_params(project: Path) -> None:
    prm = params_with(truth=str(project / "truth.parquet"))
    by_params = run(project, prm).evaluation.metrics["oracle_auc"]
    given = run(project, prm, truth=project / "noise_truth.parquet").evaluation.metrics
    assert given["oracle_auc"] != pytest.approx(by_params)
    assert given["oracle_auc"] < 0.6  # a truth that knows nothing


def test_a_missing_truth_of_params_names_the_key_and_the_path(project: Path,
                                                              tmp_path: Path) -> None:
    prm = params_with(truth=str(tmp_path / "nosuch" / "truth.parquet"))
    with pytest.raises(pipeline.PipelineError,
                       match=r"params evaluate\.truth: .*nosuch/truth\.parquet: no such file "
                             r".*set evaluate\.truth: null"):
        pipeline.evaluate(project / "model", project / "features.parquet",
                          project / "labels.parquet", prm, out_dir=tmp_path / "r",
                          metrics_path=tmp_path / "m.json", log=False)
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.json").exists()


def test_backtest_checks_the_truth_of_params_before_any_work(tmp_path: Path) -> None:
    prm = params_with(truth="no/such/truth.parquet")
    with pytest.raises(pipeline.PipelineError, match=r"params evaluate\.truth: no/such/truth"):
        pipeline.backtest(object(), prm, cuts=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- command line


@pytest.fixture
def in_project(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("features.parquet", "labels.parquet"):
        (tmp_path / name).symlink_to(project / name)
    return tmp_path


def cli(project: Path, *args: str | Path, model: str = "model"):
    return runner.invoke(app, ["evaluate", str(project / model), "--features",
                               "features.parquet", "--labels", "labels.parquet", "--no-log",
                               *[str(a) for a in args]])


def test_cli_takes_the_truth_from_params_and_truth_overrides_it(project: Path,
                                                               in_project: Path) -> None:
    (in_project / "params.yaml").write_text(f"evaluate:\n  truth: {project / 'truth.parquet'}\n")
    res = cli(project)
    assert res.exit_code == 0, res.output
    from_params = json.loads((in_project / "metrics.json").read_text())["oracle_auc"]
    assert from_params > 0.7
    res = cli(project, "--truth", project / "noise_truth.parquet")
    assert res.exit_code == 0, res.output
    assert json.loads((in_project / "metrics.json").read_text())["oracle_auc"] < 0.6


def test_cli_without_truth_in_params_has_no_oracle(project: Path, in_project: Path) -> None:
    (in_project / "params.yaml").write_text("evaluate:\n  truth: null\n")
    res = cli(project)
    assert res.exit_code == 0, res.output
    assert "oracle_auc" not in json.loads((in_project / "metrics.json").read_text())


def test_cli_with_a_missing_truth_of_params_exits_2(project: Path, in_project: Path) -> None:
    (in_project / "params.yaml").write_text("evaluate:\n  truth: data/raw/truth.parquet\n")
    res = cli(project)
    assert res.exit_code == 2, res.output
    assert ("error: params evaluate.truth: data/raw/truth.parquet: no such file"
            in res.stderr)
    assert not (in_project / "metrics.json").exists()


# --------------------------------------------------------------------------- domain


def test_an_in_domain_test_set_gives_no_warning(project: Path) -> None:
    res = run(project, Params())
    assert res.domain == []
    assert res.evaluation.metrics["domain_warnings"] == 0
    assert json.loads((project / "metrics.json").read_text())["domain_warnings"] == 0


def test_a_test_set_outside_the_domain_is_reported(project: Path, in_project: Path,
                                                   tmp_path: Path) -> None:
    # the same model with the profile of rows whose signal was 3 higher
    model = RiskModel.load(project / "model")
    split = pipeline.test_set(project / "model", project / "features.parquet",
                              project / "labels.parquet", Params())[1]
    shifted = split.train.assign(signal=split.train["signal"] + 3)
    RiskModel(model.booster, model.calibrator, model.scale, model.spec,
              profile=fit_profile(shifted, SPEC)).save(tmp_path / "m")
    (tmp_path / "m" / "training.json").write_text(
        (project / "model" / "training.json").read_text())
    res = pipeline.evaluate(tmp_path / "m", project / "features.parquet",
                            project / "labels.parquet", Params(), out_dir=tmp_path / "r",
                            metrics_path=tmp_path / "metrics.json", log=False)
    assert [(w.feature, w.kind) for w in res.domain or []] == [("signal", "psi")]
    assert json.loads((tmp_path / "metrics.json").read_text())["domain_warnings"] == 1
    out = runner.invoke(app, ["evaluate", str(tmp_path / "m"), "--features",
                              str(project / "features.parquet"), "--labels",
                              str(project / "labels.parquet"), "--no-log", "--out-dir",
                              str(tmp_path / "r"), "--metrics", str(tmp_path / "m.json")])
    assert out.exit_code == 0, out.output
    assert "warning: test set: signal has shifted from its training distribution: PSI" \
        in out.stderr


def test_a_model_without_a_profile_says_so_once(project: Path, in_project: Path) -> None:
    res = run(project, Params(), model="old")
    assert res.domain is None
    assert "domain_warnings" not in res.evaluation.metrics
    out = cli(project, model="old")
    assert out.exit_code == 0, out.output
    assert out.stderr.count("no domain profile") == 1


def test_domain_warnings_are_cut_at_ten_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from riskmodel.cli import _domain_warnings
    from riskmodel.modeling.domain import DomainWarning

    ws = [("cut 2024-06-30: ", DomainWarning(f"f{i}", "psi", 5, f"f{i} moved", psi=1.0))
          for i in range(13)]
    _domain_warnings(ws, "x")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 11
    assert err[0] == "warning: cut 2024-06-30: f0 moved"
    assert err[-1] == "warning: ... and 3 more outside the training domain"
