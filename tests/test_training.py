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
from riskmodel.params import MasterScaleParams, parse_params
from training_helpers import World, book_panel, fast_params, world

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
    # four dates before the test set are too few for a year's gap before validation
    assert split.test_embargo and split.validation_gap is False
    assert any(n.startswith("no gap between training and validation") for n in split.notes)
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
    meta = result.metadata()
    assert meta["split"]["test"]["rows"] == len(buyers["test"])
    assert any("not out of time" in n for n in meta["split"]["notes"])


# --------------------------------------------------------------------------- errors


@slow
def test_four_labelled_dates_train_without_embargo(w: World, panel: pd.DataFrame) -> None:
    """Four labelled dates (2022-03-31..12-31) span 9 months: no date before the test set has
    a label window that ends by its first date, so the split drops the embargo (and says so)
    instead of refusing, as it did before short histories were supported."""
    feats, labs = restrict(w, labelled_dates(panel)[-4:])
    result = train_model(feats, labs, w.params)
    split = result.split
    assert split.kind == "out_of_time"
    assert split.dates == {"train": ["2022-03-31"], "valid": ["2022-06-30"],
                           "test": ["2022-09-30", "2022-12-31"]}
    assert not split.test_embargo and split.validation_gap is False
    notes = result.metadata()["notes"]
    assert any(n.startswith("no embargo: the labelled as-of dates span 275 days") for n in notes)
    assert any(n.startswith("no gap between training and validation") for n in notes)


@slow
def test_too_many_test_dates_are_cut_to_keep_the_embargo(w: World,
                                                         panel: pd.DataFrame) -> None:
    # 9 labelled dates 2020-12-31..2022-12-31: 8, 7 or 6 test dates leave no date a year
    # before the first of them; 5 (from 2021-12-31) leave 2020-12-31, split by buyer
    split = split_panel(panel, fast_params(train={"test_dates": 8}))
    assert split.kind == "out_of_time_buyer_valid"
    assert split.dates["test"] == [d.date().isoformat() for d in labelled_dates(panel)[-5:]]
    assert split.dates["train"] == split.dates["valid"] == ["2020-12-31"]
    assert split.test_embargo
    assert "5 test date(s) instead of train.test_dates=8" in " ".join(split.notes)


@slow
def test_no_labelled_rows_is_a_training_error(w: World, panel: pd.DataFrame) -> None:
    unlabelled = sorted(
        set(pd.Timestamp(d) for d in w.features["as_of"].unique()) - set(labelled_dates(panel))
    )
    feats, labs = restrict(w, unlabelled)
    with pytest.raises(TrainingError, match="no labelled rows") as exc:
        train_model(feats, labs, w.params)
    # the second unlabelled date, 2023-06-30, is labelled with data to 2024-06-29 (2024 is a
    # leap year); a book of 913 days always has two labelled quarter ends
    assert "data observed to at least 2024-06-29" in str(exc.value)
    assert "913 days" in str(exc.value)


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
    assert set(hashes) == {"booster", "calibration", "master_scale", "features", "profile"}
    loaded = RiskModel.load(tmp_path / "m")
    a, b = model.predict(sample), loaded.predict(sample)
    assert np.array_equal(a["pd"].to_numpy(), b["pd"].to_numpy())
    assert np.array_equal(a["margin"].to_numpy(), b["margin"].to_numpy())
    assert loaded.spec == model.spec
    assert loaded.profile is not None and model.profile is not None
    assert loaded.profile.to_dict() == model.profile.to_dict()


# --------------------------------------------------------------------------- feature stability


@slow
def test_world_leaves_out_the_censored_and_drifting_features(trained: TrainResult) -> None:
    """The world starts on 2020-01-01, so the 180- and 365-day year-on-year features need
    history before the data start at the training dates (2020-12-31, 2021-03-31) and are
    missing there, while the test dates have them; history_days grows with the as-of date."""
    meta = trained.metadata()
    out = {e["feature"]: e for e in meta["excluded_features"]}
    for name in ("invoice_count_yoy_365", "invoice_amount_yoy_365", "invoice_count_yoy_180"):
        assert out[name]["reason"] == "missing_in_training"
        assert out[name]["missing_share_train"] == 1.0
        assert out[name]["missing_share_test"] < 0.5
    assert out["history_days"]["reason"] == "psi"
    assert out["history_days"]["psi"] > 0.5
    assert meta["feature_stability"]["psi_reference_dates"] == ["2020-12-31", "2021-03-31"]
    # left out of learning, not of the model's inputs: no tree uses them
    used = dict(zip(trained.model.booster.feature_name(),
                    trained.model.booster.feature_importance("split"), strict=True))
    assert all(used[name] == 0 for name in out)
    assert any(n.startswith("left out invoice_count_yoy_365") for n in meta["notes"])


STABLE_PANEL_PSI_REF = ["2020-03-31", "2020-06-30"]  # the two earliest training dates


def stability_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 60-month quarterly book (training dates 2020-03-31 and 2020-06-30, test dates
    2022-09-30 and 2022-12-31) with extra features: ``young`` is missing before 2021 and
    present after; ``drifting`` and ``drift_mono`` are noise plus 10 per year since 2020
    (so every test value is above every training value); ``flag`` is 0 before 2021 and
    0 or 1 after; ``sparse`` is missing or 1 at every date (two values, with the missing)."""
    feats, labs = book_panel(60, "quarterly", n_buyers=800, seed=3)
    feats = feats.copy()
    years = (feats["as_of"] - pd.Timestamp("2020-01-01")).dt.days / 365.25
    early = feats["as_of"] < pd.Timestamp("2021-01-01")
    rng = np.random.default_rng(9)
    feats["young"] = np.where(early, np.nan, feats["signal"] + rng.normal(size=len(feats)))
    feats["drifting"] = rng.normal(size=len(feats)) + 10 * years
    feats["drift_mono"] = rng.normal(size=len(feats)) + 10 * years
    feats["flag"] = np.where(early, 0.0, (rng.random(len(feats)) < 0.5).astype(float))
    feats["sparse"] = np.where(feats["signal"] > 0.5, 1.0, np.nan)
    return feats, labs


STABILITY_PARAMS = {"n_estimators": 60, "early_stopping_rounds": 20, "min_child_samples": 20,
                    "learning_rate": 0.2, "monotone": {"drift_mono": 1}}


def by_hand_psi_all_above(reference_shares: np.ndarray) -> float:
    """PSI when every actual value lies above the last quantile edge of the reference: the
    last bin holds all of it, every other bin (and the missing bin) the 1e-4 floor."""
    eps = 1e-4
    actual = np.r_[np.full(len(reference_shares) - 1, eps), 1.0]
    return float(np.sum((actual - reference_shares) * np.log(actual / reference_shares)))


def test_unstable_features_are_left_out_with_their_numbers() -> None:
    feats, labs = stability_frames()
    prm = parse_params({"train": STABILITY_PARAMS | {"exclude_features": ["noise"]}})
    result = train_model(feats, labs, prm)
    split = result.split
    assert split.dates["train"] == STABLE_PANEL_PSI_REF
    meta = result.metadata()
    out = {e["feature"]: e for e in meta["excluded_features"]}
    assert set(out) == {"noise", "young", "drifting", "flag"}
    assert out["noise"] == {"feature": "noise", "reason": "train.exclude_features",
                            "model_input": False}
    assert out["young"]["reason"] == "missing_in_training"
    assert (out["young"]["missing_share_train"], out["young"]["missing_share_test"]) == (1.0, 0.0)
    assert out["flag"]["reason"] == "constant_in_training"
    assert out["flag"]["distinct_train"] == 1
    assert out["drifting"]["reason"] == "psi"
    # ten quantile bins of the reference rows, a tenth in each (to a row), the test rows
    # all in the last: about 8.28
    ref_rows = int(split.train["as_of"].isin(pd.to_datetime(STABLE_PANEL_PSI_REF)).sum())
    tenth = np.full(10, 0.1)
    assert out["drifting"]["psi"] == pytest.approx(by_hand_psi_all_above(tenth),
                                                   rel=20 / ref_rows)
    assert out["drifting"]["psi"] == pytest.approx(8.283, abs=0.05)
    assert meta["feature_stability"] == {"max_feature_psi": 0.5,
                                         "psi_reference_dates": STABLE_PANEL_PSI_REF,
                                         "psi_test_dates": ["2022-09-30", "2022-12-31"]}
    # the monotone feature drifts as much but is kept, and said to be
    assert "drift_mono" not in out
    assert [k["feature"] for k in meta["drifting_features_kept"]] == ["drift_mono"]
    assert any(n.startswith("kept 1 train.monotone feature(s)") and "drift_mono (8.2" in n
               for n in meta["notes"])
    for name in ("young", "drifting", "flag"):
        assert any(n.startswith(f"left out {name}") for n in meta["notes"]), name
    # stable features stay: signal is learned, sparse (missing or 1) is not constant
    assert "signal" in result.model.spec.names and "sparse" not in out
    used = dict(zip(result.model.booster.feature_name(),
                    result.model.booster.feature_importance("split"), strict=True))
    assert used["signal"] > 0
    assert used["young"] == used["drifting"] == used["flag"] == 0
    # the left-out features are model inputs that change no prediction
    rows = feats.drop(columns="noise").sample(n=300, random_state=1)
    before = result.model.predict(rows)
    changed = rows.assign(young=-50.0, drifting=1e6, flag=1.0)
    after = result.model.predict(changed)
    assert np.array_equal(before["pd"].to_numpy(), after["pd"].to_numpy())
    assert json.loads(json.dumps(meta, default=str))["excluded_features"] == \
        meta["excluded_features"]


def test_psi_check_can_be_switched_off() -> None:
    feats, labs = stability_frames()
    prm = parse_params({"train": STABILITY_PARAMS | {"max_feature_psi": None}})
    meta = train_model(feats, labs, prm).metadata()
    reasons = {e["feature"]: e["reason"] for e in meta["excluded_features"]}
    # no PSI exclusion; features without information are still left out
    assert reasons == {"young": "missing_in_training", "flag": "constant_in_training"}
    assert meta["drifting_features_kept"] == []
    assert meta["feature_stability"]["max_feature_psi"] is None


def test_a_censored_monotone_feature_is_left_out_and_said() -> None:
    feats, labs = stability_frames()
    prm = parse_params({"train": STABILITY_PARAMS | {"monotone": {"young": 1}}})
    meta = train_model(feats, labs, prm).metadata()
    out = {e["feature"]: e for e in meta["excluded_features"]}
    assert out["young"]["monotone"] is True
    assert any(n.startswith("left out young (a train.monotone feature)")
               for n in meta["notes"])


# --------------------------------------------------------------------------- tree cap


def test_hitting_the_tree_cap_is_recorded() -> None:
    feats, labs = book_panel(48, "quarterly", n_buyers=600, seed=4)
    # 5 trees can never see 50 rounds without improvement: early stopping cannot trigger
    prm = parse_params({"train": {"n_estimators": 5, "early_stopping_rounds": 50,
                                  "min_child_samples": 20}})
    result = train_model(feats, labs, prm)
    meta = result.metadata()
    assert meta["hit_tree_cap"] is True and meta["trees_grown"] == 5
    assert any(n.startswith("early stopping did not trigger within train.n_estimators=5")
               for n in meta["notes"])


def test_early_stopping_before_the_cap_is_not_a_cap() -> None:
    feats, labs = book_panel(48, "quarterly", n_buyers=600, seed=4)
    # a large step on one signal: the validation AUC stops improving long before 400 trees
    prm = parse_params({"train": {"n_estimators": 400, "early_stopping_rounds": 5,
                                  "learning_rate": 0.5, "min_child_samples": 20}})
    meta = train_model(feats, labs, prm).metadata()
    assert meta["hit_tree_cap"] is False
    assert meta["trees_grown"] < 400
    assert meta["trees_grown"] == meta["best_iteration"] + 5
    assert not any("early stopping did not trigger" in n for n in meta["notes"])


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
