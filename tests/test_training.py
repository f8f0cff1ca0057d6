"""Training on a synthetic world: the out-of-time split and its embargo, the buyer holdout of a
single as-of date, configuration errors, and the fitted model's behaviour (monotone in payment
delays, blind to buyer ids and row order, grade D for defaults, strict about columns), with
the master scale and the calibrator on their own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskmodel.modeling.calibration import PD_FLOOR, Calibrator
from riskmodel.modeling.masterscale import DEFAULT_GRADE, MasterScale
from riskmodel.modeling.model import FeatureMismatchError, RiskModel
from riskmodel.modeling.training import (
    TARGET,
    TrainingError,
    TrainResult,
    build_panel,
    split_panel,
    train_model,
    trainable,
)
from riskmodel.params import MasterScaleParams
from training_helpers import World, fast_params, world

slow = pytest.mark.slow  # the tests that build the world and train

HORIZON = pd.Timedelta(days=365)


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory)


@pytest.fixture(scope="module")
def panel(w: World) -> pd.DataFrame:
    return build_panel(w.features, w.labels)


@pytest.fixture(scope="module")
def trained(w: World) -> TrainResult:
    return train_model(w.features, w.labels, w.params)


@pytest.fixture(scope="module")
def model(trained: TrainResult) -> RiskModel:
    return trained.model


@pytest.fixture(scope="module")
def sample(w: World) -> pd.DataFrame:
    """600 real rows of live buyers from every as-of date (the frame `features` writes)."""
    live = w.features[w.features["status"] == "active"]
    return live.sample(n=600, random_state=3).copy()


def labelled_dates(panel: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(pd.Timestamp(d) for d in panel.loc[trainable(panel), "as_of"].unique())


def restrict(w: World, dates: list[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
    keep_f = w.features["as_of"].isin(dates)
    keep_l = w.labels["as_of"].isin(dates)
    return w.features[keep_f], w.labels[keep_l]


# --------------------------------------------------------------------------- split


@slow
def test_world_has_enough_labelled_dates(panel: pd.DataFrame) -> None:
    # 2020-12-31 .. 2022-12-31 have a fully observed 365-day window (observed to 2023-12-31)
    dates = labelled_dates(panel)
    assert [d.date().isoformat() for d in (dates[0], dates[-1])] == ["2020-12-31", "2022-12-31"]
    assert len(dates) == 9


@slow
def test_out_of_time_split_is_disjoint_ordered_and_embargoed(w: World, panel: pd.DataFrame) -> None:
    split = split_panel(panel, w.params)
    assert split.kind == "out_of_time"
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    row_dates = {k: sorted(pd.Timestamp(d) for d in f["as_of"].unique()) for k, f in parts.items()}
    for k, ds in row_dates.items():
        assert ds, f"{k} is empty"
        assert [d.date().isoformat() for d in ds] == split.dates[k]
    # the latest labelled dates are the test set
    assert row_dates["test"] == labelled_dates(panel)[-w.params.train.test_dates :]
    assert len(row_dates["valid"]) == w.params.train.validation_dates
    # disjoint and in order: train < valid < test
    assert max(row_dates["train"]) < min(row_dates["valid"])
    assert max(row_dates["valid"]) < min(row_dates["test"])
    # embargo: no training or validation label window ends after the first test date
    first_test = min(row_dates["test"])
    for k in ("train", "valid"):
        assert (parts[k]["as_of"] + HORIZON <= first_test).all(), k
    # only live, labelled rows; no buyer-date is in two parts
    for f in parts.values():
        assert f[TARGET].notna().all()
        assert not f["in_default"].any()
    keys = [set(zip(f["buyer_id"], f["as_of"], strict=True)) for f in parts.values()]
    assert sum(map(len, keys)) == len(set().union(*keys))


@slow
def test_embargo_off_takes_the_dates_just_before_test(w: World, panel: pd.DataFrame) -> None:
    on = split_panel(panel, w.params)
    off = split_panel(panel, fast_params(train={"embargo": False}))
    dates = labelled_dates(panel)
    assert off.dates["test"] == on.dates["test"]
    assert off.dates["valid"] == [d.date().isoformat() for d in dates[-4:-2]]
    assert off.dates["train"] == [d.date().isoformat() for d in dates[:-4]]
    # with the embargo the validation window must end by the first test date, so it is earlier
    assert on.dates["valid"][-1] < off.dates["valid"][-1]
    first_test = pd.Timestamp(off.dates["test"][0])
    assert (off.valid["as_of"] + HORIZON > first_test).any()


@slow
def test_single_as_of_date_is_a_buyer_holdout(w: World, panel: pd.DataFrame) -> None:
    date = labelled_dates(panel)[4]
    feats, labs = restrict(w, [date])
    one = build_panel(feats, labs)
    prm = fast_params()
    split = split_panel(one, prm)
    assert split.kind == "buyer_holdout"
    iso = date.date().isoformat()
    assert split.dates == {"train": [iso], "valid": [iso], "test": [iso]}
    buyers = {k: set(getattr(split, k)["buyer_id"]) for k in ("train", "valid", "test")}
    assert not buyers["train"] & buyers["valid"]
    assert not buyers["train"] & buyers["test"]
    assert not buyers["valid"] & buyers["test"]
    everyone = set(one.loc[trainable(one), "buyer_id"])
    assert buyers["train"] | buyers["valid"] | buyers["test"] == everyone
    n = len(everyone)
    share = prm.train.holdout_share
    assert abs(len(buyers["test"]) / n - share) < 0.05
    assert abs(len(buyers["valid"]) / n - share) < 0.05
    # the side depends on the buyer only, not on the row order
    shuffled = split_panel(one.sample(frac=1.0, random_state=1), prm)
    assert set(shuffled.test["buyer_id"]) == buyers["test"]
    assert set(shuffled.valid["buyer_id"]) == buyers["valid"]
    # and a model trains on it
    result = train_model(feats, labs, prm)
    assert result.split.kind == "buyer_holdout"
    assert result.metadata()["split"]["test"]["rows"] == len(buyers["test"])


# --------------------------------------------------------------------------- errors


@slow
def test_too_few_dates_is_a_training_error(w: World, panel: pd.DataFrame) -> None:
    feats, labs = restrict(w, labelled_dates(panel)[-4:])
    with pytest.raises(TrainingError, match="not enough labelled as-of dates") as exc:
        train_model(feats, labs, w.params)
    assert "embargo" in str(exc.value)
    # too many test dates asked of the full panel
    with pytest.raises(TrainingError, match="not enough labelled as-of dates"):
        split_panel(panel, fast_params(train={"test_dates": 8}))


@slow
def test_no_labelled_rows_is_a_training_error(w: World, panel: pd.DataFrame) -> None:
    unlabelled = sorted(
        set(pd.Timestamp(d) for d in w.features["as_of"].unique()) - set(labelled_dates(panel))
    )
    feats, labs = restrict(w, unlabelled)
    with pytest.raises(TrainingError, match="no labelled rows"):
        train_model(feats, labs, w.params)


@slow
def test_unknown_monotone_pattern_is_a_training_error(w: World) -> None:
    prm = fast_params(train={"monotone": {"dbt_mean_*": 1, "dbt_nosuch_*": 1}})
    with pytest.raises(TrainingError, match=r"train\.monotone: 'dbt_nosuch_\*' matches no"):
        train_model(w.features, w.labels, prm)


@slow
def test_monotone_on_a_categorical_is_a_training_error(w: World) -> None:
    prm = fast_params(train={"monotone": {"industry": 1}})
    with pytest.raises(TrainingError, match="'industry' is categorical"):
        train_model(w.features, w.labels, prm)


@slow
def test_unknown_exclude_feature_is_a_training_error(w: World) -> None:
    prm = fast_params(train={"exclude_features": ["paydex_90", "no_such_feature"]})
    with pytest.raises(TrainingError, match="exclude_features") as exc:
        train_model(w.features, w.labels, prm)
    assert "no_such_feature" in str(exc.value)
    assert "paydex_90" not in str(exc.value)


@slow
def test_excluded_feature_is_not_a_model_feature(w: World) -> None:
    prm = fast_params(train={"exclude_features": ["log_revenue", "country"]})
    result = train_model(w.features, w.labels, prm)
    assert "log_revenue" not in result.model.spec.names
    assert "country" not in result.model.spec.categories
    rows = w.features.head(50)
    with pytest.raises(FeatureMismatchError, match="log_revenue"):
        result.model.predict(rows)
    out = result.model.predict(rows.drop(columns=["log_revenue", "country"]))
    assert len(out) == 50


@slow
def test_missing_label_rows_is_a_training_error(w: World) -> None:
    labs = w.labels.iloc[10:]
    with pytest.raises(TrainingError, match="10 feature rows have no label row"):
        build_panel(w.features, labs)


# --------------------------------------------------------------------------- model behaviour


@slow
def test_model_uses_the_payment_features(trained: TrainResult) -> None:
    gain = dict(
        zip(
            trained.model.booster.feature_name(),
            trained.model.booster.feature_importance("gain"),
            strict=True,
        )
    )
    top = sorted(gain, key=gain.get, reverse=True)[:10]
    assert any(
        n.startswith(("dbt_", "late_share_", "paydex_", "overdue_", "oldest_open")) for n in top
    ), top


def pd_grid(
    model: RiskModel, rows: pd.DataFrame, feature: str, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PD and margin of every row (rows) at every value of ``feature`` (columns)."""
    pds, margins = [], []
    for v in values:
        x = rows.copy()
        x[feature] = v
        pred = model.predict(x)
        pds.append(pred["pd"].to_numpy())
        margins.append(pred["margin"].to_numpy())
    return np.column_stack(pds), np.column_stack(margins)


def grid(frame: pd.DataFrame, feature: str) -> np.ndarray:
    col = frame[feature].dropna().to_numpy(dtype=float)
    qs = np.quantile(col, np.linspace(0, 1, 21))
    lo, hi = float(col.min()), float(col.max())
    return np.unique(np.concatenate([[lo - 1.0, 0.0], qs, [hi, hi * 2 + 10]]))


RISING = [
    "dbt_wmean_365",
    "dbt_mean_90",
    "dbt_p90_180",
    "dbt_max_365",
    "late_share_30_180",
    "late_share_0_90",
    "overdue_1_30",
    "overdue_90p",
    "oldest_open_dpd",
    "overdue_share_open",
    "due_60_unpaid_share",
]


@slow
@pytest.mark.parametrize("feature", RISING)
def test_raising_a_payment_delay_never_lowers_pd(
    w: World, model: RiskModel, sample: pd.DataFrame, feature: str
) -> None:
    values = grid(w.features, feature)
    pds, margins = pd_grid(model, sample, feature, values)
    # margin (before calibration) and PD are non-decreasing along the grid, row by row
    assert (np.diff(margins, axis=1) >= 0).all(), feature
    assert (np.diff(pds, axis=1) >= 0).all(), feature


@slow
@pytest.mark.parametrize("feature", ["paydex_90", "paydex_180", "paydex_365"])
def test_lowering_paydex_never_lowers_pd(
    w: World, model: RiskModel, sample: pd.DataFrame, feature: str
) -> None:
    values = np.sort(np.unique(np.concatenate([grid(w.features, feature), [1.0, 100.0]])))[::-1]
    pds, margins = pd_grid(model, sample, feature, values)
    assert (np.diff(margins, axis=1) >= 0).all(), feature
    assert (np.diff(pds, axis=1) >= 0).all(), feature


@slow
def test_payment_delay_moves_pd_somewhere(w: World, model: RiskModel, sample: pd.DataFrame) -> None:
    """The monotonicity tests are not vacuous: the most important delay feature moves the
    margin of (nearly) every row and the PD of many."""
    gain = dict(
        zip(model.booster.feature_name(), model.booster.feature_importance("gain"), strict=True)
    )
    top = max((n for n in gain if n.startswith("dbt_")), key=gain.__getitem__)
    pds, margins = pd_grid(model, sample, top, grid(w.features, top))
    assert (margins[:, -1] > margins[:, 0]).mean() > 0.9
    assert (pds[:, -1] > pds[:, 0]).mean() > 0.2


@slow
def test_buyer_ids_and_row_order_change_no_prediction(w: World, model: RiskModel) -> None:
    rows = w.features.sample(n=800, random_state=8)  # live and defaulted rows
    assert (rows["status"] == "in_default").any()
    before = model.predict(rows)

    rng = np.random.default_rng(0)
    renamed = rows.copy()
    ids = renamed["buyer_id"].unique()
    new_ids = dict(zip(ids, [f"X{n:07d}" for n in rng.permutation(len(ids))], strict=True))
    renamed["buyer_id"] = renamed["buyer_id"].map(new_ids)
    renamed = renamed.iloc[rng.permutation(len(renamed))]
    after = model.predict(renamed)
    assert after.index.equals(renamed.index)
    after = after.loc[rows.index]
    assert np.array_equal(after["pd"].to_numpy(), before["pd"].to_numpy())
    assert np.array_equal(after["margin"].to_numpy(), before["margin"].to_numpy())
    assert (after["grade"].to_numpy() == before["grade"].to_numpy()).all()

    # same rows, a fresh index and reversed column order of the features
    fresh = rows.iloc[::-1].reset_index(drop=True)
    fresh = fresh[list(fresh.columns[::-1])]
    again = model.predict(fresh)
    assert np.array_equal(again["pd"].to_numpy(), before["pd"].to_numpy()[::-1])
    assert np.array_equal(again["margin"].to_numpy(), before["margin"].to_numpy()[::-1])

    # one row alone scores as it does in a batch
    single = model.predict(rows.iloc[[5]])
    assert single["pd"].iloc[0] == before["pd"].iloc[5]


@slow
def test_in_default_rows_are_grade_d_with_pd_one(w: World, model: RiskModel) -> None:
    pred = model.predict(w.features)
    default = (w.features["status"] == "in_default").to_numpy()
    assert default.sum() > 100
    assert (pred.loc[default, "grade"] == DEFAULT_GRADE).all()
    assert (pred.loc[default, "pd"] == 1.0).all()
    live = pred.loc[~default]
    assert not (live["grade"] == DEFAULT_GRADE).any()
    assert set(live["grade"]) <= set(model.scale.grades)
    assert (live["pd"] >= PD_FLOOR).all() and (live["pd"] <= 1.0).all()
    # the grade is the master-scale grade of the PD
    assert (live["grade"].to_numpy() == model.scale.grade(live["pd"].to_numpy())).all()


@slow
def test_without_status_predict_is_refused(w: World, model: RiskModel) -> None:
    """Without ``status`` the defaulted buyers would be scored as live ones (their PD from
    the booster, not 1, and no grade D): the model refuses the frame and names the column."""
    rows = w.features[w.features["status"] == "in_default"].head(30)
    with pytest.raises(FeatureMismatchError, match="missing column 'status'"):
        model.predict(rows.drop(columns="status"))
    # the margin needs no status: it is the booster's score only
    assert len(model.margin(rows.drop(columns="status"))) == 30


@slow
@pytest.mark.parametrize("value", ["closed", "In_Default", ""])
def test_unknown_status_value_is_named(model: RiskModel, sample: pd.DataFrame,
                                       value: str) -> None:
    x = sample.copy()
    x["status"] = x["status"].astype(object)
    x.iloc[7, x.columns.get_loc("status")] = value
    with pytest.raises(FeatureMismatchError, match="unknown value") as exc:
        model.predict(x)
    assert repr(value) in str(exc.value) and "'active' or 'in_default'" in str(exc.value)


@slow
def test_empty_status_is_refused(model: RiskModel, sample: pd.DataFrame) -> None:
    x = sample.copy()
    x["status"] = x["status"].astype(object)
    x.iloc[[3, 9], x.columns.get_loc("status")] = None
    with pytest.raises(FeatureMismatchError, match="'status' is empty in 2 of 600 rows"):
        model.predict(x)


@slow
@pytest.mark.parametrize("column", ["dbt_mean_90", "industry", "oldest_open_dpd"])
def test_missing_feature_column_names_it(
    model: RiskModel, sample: pd.DataFrame, column: str
) -> None:
    with pytest.raises(FeatureMismatchError, match="missing feature columns") as exc:
        model.predict(sample.drop(columns=column))
    assert repr(column) in str(exc.value)


@slow
def test_unknown_column_names_it(model: RiskModel, sample: pd.DataFrame) -> None:
    x = sample.assign(credit_limit=1.0)
    with pytest.raises(FeatureMismatchError, match="does not know") as exc:
        model.predict(x)
    assert "'credit_limit'" in str(exc.value)
    # both problems at once are both named
    with pytest.raises(FeatureMismatchError) as exc:
        model.predict(x.drop(columns="paydex_90"))
    assert "'paydex_90'" in str(exc.value) and "'credit_limit'" in str(exc.value)


@slow
def test_buyer_id_and_as_of_are_optional(model: RiskModel, sample: pd.DataFrame) -> None:
    full = model.predict(sample)
    bare = model.predict(sample.drop(columns=["buyer_id", "as_of"]))
    assert np.array_equal(full["pd"].to_numpy(), bare["pd"].to_numpy())
    assert (full["grade"].to_numpy() == bare["grade"].to_numpy()).all()


@slow
def test_unseen_category_scores_like_missing(model: RiskModel, sample: pd.DataFrame) -> None:
    unseen = model.predict(sample.assign(country="ZZ"))
    missing = model.predict(sample.assign(country=None))
    assert np.array_equal(unseen["margin"].to_numpy(), missing["margin"].to_numpy())


@slow
def test_save_and_load_give_the_same_predictions(
    tmp_path, model: RiskModel, sample: pd.DataFrame
) -> None:
    hashes = model.save(tmp_path / "m")
    assert set(hashes) == {"booster", "calibration", "master_scale", "features"}
    loaded = RiskModel.load(tmp_path / "m")
    a, b = model.predict(sample), loaded.predict(sample)
    assert np.array_equal(a["pd"].to_numpy(), b["pd"].to_numpy())
    assert np.array_equal(a["margin"].to_numpy(), b["margin"].to_numpy())
    assert loaded.spec == model.spec


# --------------------------------------------------------------------------- master scale

BOUNDS = MasterScaleParams().upper_bounds


@pytest.mark.parametrize("k", range(10))
def test_pd_at_an_upper_bound_is_in_that_grade(k: int) -> None:
    scale = MasterScale(BOUNDS)
    b = BOUNDS[k]
    assert scale.grade(np.array([b]))[0] == str(k + 1)
    assert scale.grade(np.array([np.nextafter(b, 0.0)]))[0] == str(k + 1)
    if k < 9:
        assert scale.grade(np.array([np.nextafter(b, 2.0)]))[0] == str(k + 2)
    if k > 0:
        assert scale.grade(np.array([np.nextafter(BOUNDS[k - 1], 2.0)]))[0] == str(k + 1)


def test_master_scale_ends_and_default() -> None:
    scale = MasterScale(BOUNDS)
    pdv = np.array([0.0, PD_FLOOR, 0.5, 1.0, 0.01])
    assert scale.grade(pdv).tolist() == ["1", "1", "10", "10", "4"]
    assert scale.grade(pdv, np.array([False, True, False, False, True])).tolist() == [
        "1",
        DEFAULT_GRADE,
        "10",
        "10",
        DEFAULT_GRADE,
    ]
    bands = scale.bands()
    assert bands["grade"].tolist() == [str(k) for k in range(1, 11)]
    assert bands["pd_lower"].iloc[0] == 0.0
    assert (bands["pd_lower"].iloc[1:].to_numpy() == bands["pd_upper"].iloc[:-1].to_numpy()).all()
    assert MasterScale(scale.to_dict()["upper_bounds"]).upper_bounds.tolist() == BOUNDS


@pytest.mark.parametrize(
    "bounds", [[0.1, 0.1, 1.0], [0.2, 0.1, 1.0], [0.1, 0.5], [0.0, 1.0], [0.5]]
)
def test_master_scale_rejects_bad_bounds(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="master scale bounds"):
        MasterScale(bounds)


# --------------------------------------------------------------------------- calibrator


def _calibration_data(n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    margin = rng.normal(-3.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(float)
    return margin, y


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_is_monotone_and_round_trips(method: str) -> None:
    margin, y = _calibration_data()
    cal = Calibrator(method).fit(margin, y)  # type: ignore[arg-type]
    xs = np.linspace(-15, 10, 2001)
    p = cal.predict(xs)
    assert (np.diff(p) >= 0).all()
    assert (p >= PD_FLOOR).all() and (p <= 1.0).all()
    assert p[-1] > p[0]
    # calibrated probabilities are about the observed rate on the fitting data
    assert cal.predict(margin).mean() == pytest.approx(y.mean(), abs=0.01)
    data = json.loads(json.dumps(cal.to_dict()))
    assert data["method"] == method
    back = Calibrator.from_dict(data)
    assert np.array_equal(back.predict(xs), p)
    assert np.array_equal(back.predict(margin), cal.predict(margin))


def test_platt_recovers_a_logistic_link() -> None:
    margin, y = _calibration_data(20000)
    cal = Calibrator("platt").fit(margin, y)
    assert cal.params_["a"] == pytest.approx(1.0, abs=0.15)
    assert cal.params_["b"] == pytest.approx(0.0, abs=0.4)


def test_calibrator_predict_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Calibrator("isotonic").predict(np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Calibrator("platt").to_dict()


def test_calibrator_needs_both_outcomes_and_a_known_method() -> None:
    with pytest.raises(ValueError, match="both good and bad"):
        Calibrator().fit(np.array([0.0, 1.0, 2.0]), np.zeros(3))
    with pytest.raises(ValueError, match="as many labels"):
        Calibrator().fit(np.array([0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator("beta").fit(np.array([0.0, 1.0]), np.array([0.0, 1.0]))  # type: ignore[arg-type]
