"""The shipped model: capacity chosen walk-forward, refit on every labelled as-of date,
calibrated by cross-fitting; the holdout model keeps the test figures honest.

The panels here are built by hand (no feature engine), so that what each date teaches the
model is known: a signal that exists only in the latest labelled dates, pure noise a
high-capacity model memorises, and so on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.training import (
    HOLDOUT_FOLDER,
    _fit_fixed,
    _matrices,
    build_panel,
    crossfit_calibration,
    feature_spec,
    lgb_params,
    load_holdout,
    search_folds,
    split_panel,
    train_model,
)
from riskmodel.params import Params, parse_params

HORIZON = 365


def quarter_ends(n: int, start: str = "2019-03-31") -> list[pd.Timestamp]:
    return list(pd.date_range(start, periods=n, freq="QE"))


def hand_panel(n_buyers: int, dates: list[pd.Timestamp], signal: dict[pd.Timestamp, str],
               seed: int = 0, unlabelled: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features x1, x2 (standard normal) and a label whose log-odds are 2.5 x the feature
    ``signal[date]`` names, at each date; the last ``unlabelled`` dates have no label yet."""
    rng = np.random.default_rng(seed)
    feats, labs = [], []
    for i, d in enumerate(dates):
        x = rng.standard_normal((n_buyers, 2))
        col = 0 if signal[d] == "x1" else 1
        p = 1 / (1 + np.exp(-(-3.0 + 2.5 * x[:, col])))
        bad = (rng.random(n_buyers) < p).astype(float)
        if i >= len(dates) - unlabelled:
            bad[:] = np.nan
        ids = [f"B{j:05d}" for j in range(n_buyers)]
        feats.append(pd.DataFrame({"buyer_id": ids, "as_of": d, "status": "active",
                                   "x1": x[:, 0], "x2": x[:, 1]}))
        labs.append(pd.DataFrame({"buyer_id": ids, "as_of": d, "in_default": False,
                                  "bad": bad}))
    return pd.concat(feats, ignore_index=True), pd.concat(labs, ignore_index=True)


def params(**train: Any) -> Params:
    base: dict[str, Any] = {
        "num_leaves": 4, "max_depth": 2, "learning_rate": 0.1, "n_estimators": 300,
        "early_stopping_rounds": 20, "min_child_samples": 20, "test_dates": 1,
        "validation_dates": 2, "embargo": True, "monotone": {}, "max_feature_psi": None,
        "search": [{}], "search_folds": 2,
    }
    base.update(train)
    return parse_params({"snapshots": {"frequency": "quarterly"},
                         "label": {"horizon_days": HORIZON},
                         "train": base, "calibration": {"method": "platt"}})


def test_shipped_model_is_refit_on_every_labelled_date() -> None:
    dates = quarter_ends(12)
    f, lab = hand_panel(800, dates, dict.fromkeys(dates, "x1"), unlabelled=2)
    res = train_model(f, lab, params())
    labelled = [d.date().isoformat() for d in dates[:-2]]
    assert res.refit is not None
    assert res.refit["dates"] == labelled
    assert res.refit["rows"] == 800 * len(labelled)
    # the split fits on fewer dates: the embargo leaves a year out before the test date
    assert len(res.split.dates["train"]) + len(res.split.dates["valid"]) < len(labelled) - 1
    assert res.metadata()["trained_at_as_of"] == labelled[-1]
    # the trees of the split's early stopping are carried over
    assert res.model.booster.num_trees() == res.best_iteration
    assert res.holdout is not None
    assert res.holdout.booster.num_trees() == res.best_iteration
    assert res.model.booster.model_to_string() != res.holdout.booster.model_to_string()
    # the calibration dates are the latest labelled dates
    assert res.refit["calibration"]["dates"] == labelled[-4:]
    assert res.refit["calibration"]["rows"] == 800 * 4


def test_refit_learns_what_only_the_latest_dates_show() -> None:
    """Risk is driven by x2 until the last three labelled dates, then by x1. The holdout
    model (trained before the test date) cannot know; the refit model has seen it."""
    dates = quarter_ends(12)
    signal = {d: ("x1" if i >= 9 else "x2") for i, d in enumerate(dates)}
    f, lab = hand_panel(1500, dates, signal, seed=1)
    res = train_model(f, lab, params())
    fresh_f, fresh_l = hand_panel(3000, [dates[-1]], {dates[-1]: "x1"}, seed=99)
    y = fresh_l["bad"].to_numpy()
    frame = fresh_f.drop(columns=[])
    assert res.holdout is not None
    auc_holdout = roc_auc_score(y, res.holdout.predict(frame)["pd"])
    auc_shipped = roc_auc_score(y, res.model.predict(frame)["pd"])
    assert auc_shipped > auc_holdout + 0.1, (auc_shipped, auc_holdout)
    # without refit the holdout model is what ships
    plain = train_model(f, lab, params(refit=False))
    assert plain.refit is None
    assert plain.model.booster.model_to_string() == plain.holdout.booster.model_to_string()


def test_crossfit_calibration_is_out_of_fold() -> None:
    """Pure noise: a deep model memorises its own rows, so a calibrator fitted on its
    in-sample margins trusts them (slope near 1 or more); margins of buyers a model did not
    see carry no information, and the cross-fitted slope is near 0."""
    dates = quarter_ends(6)
    f, lab = hand_panel(600, dates, dict.fromkeys(dates, "x1"), seed=3)
    f["x1"] = np.random.default_rng(4).standard_normal(len(f))  # labels now pure noise
    prm_ = params(num_leaves=63, max_depth=-1, min_child_samples=2)
    panel = build_panel(f, lab)
    spec = feature_spec(panel, prm_)
    rows = _matrices(panel, spec, [])
    prm = lgb_params(prm_, [0, 0], rows.y)
    cal, info = crossfit_calibration(rows, prm, spec, 200, prm_)
    booster = _fit_fixed(prm, rows, spec, 200)
    latest = panel["as_of"].isin(dates[-4:]).to_numpy()
    in_sample = Calibrator("platt").fit(booster.predict(rows.x[latest], raw_score=True),
                                        rows.y[latest])
    assert info["rows"] == int(latest.sum())
    assert in_sample.params_["a"] > 0.5
    assert abs(cal.params_["a"]) < 0.15, cal.params_


def test_search_folds_walk_forward_without_test_dates() -> None:
    dates = quarter_ends(14)
    f, lab = hand_panel(300, dates, dict.fromkeys(dates, "x1"))
    prm = params(search_folds=3, validation_dates=1)
    panel = build_panel(f, lab)
    split = split_panel(panel, prm)
    folds = search_folds(split, panel, prm)
    assert len(folds) == 3
    test_dates = set(split.test["as_of"])
    horizon = pd.Timedelta(days=HORIZON)
    previous_valid = None
    for tr, va in folds:
        assert not (set(tr["as_of"]) | set(va["as_of"])) & test_dates
        assert tr["as_of"].max() + horizon <= va["as_of"].min()  # the embargo gap
        if previous_valid is not None:
            assert va["as_of"].max() < previous_valid  # each fold is earlier
        previous_valid = va["as_of"].min()
    assert folds[0][0].equals(split.train) and folds[0][1].equals(split.valid)


SEARCH = [{"num_leaves": 2, "max_depth": 1, "learning_rate": 0.2},
          {"num_leaves": 16, "max_depth": 4, "learning_rate": 0.1, "min_child_samples": 5}]


def tree_shape(res: Any) -> tuple[int, int]:
    """The most leaves and the greatest depth over the shipped model's trees."""
    def depth(node: dict[str, Any]) -> int:
        if "leaf_index" in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    info = res.model.booster.dump_model()["tree_info"]
    return (max(t["num_leaves"] for t in info), max(depth(t["tree_structure"]) for t in info))


def interaction_panel(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log-odds are 2 x1 x2: an interaction that stumps (an additive model) cannot
    learn, so deeper trees are clearly better (mean fold AUC about 0.83 against 0.71)."""
    dates = quarter_ends(12)
    f, lab = hand_panel(800, dates, dict.fromkeys(dates, "x1"), seed=seed)
    x1, x2 = f["x1"].to_numpy(), f["x2"].to_numpy()
    p = 1 / (1 + np.exp(-(-2.5 + 2.0 * x1 * x2)))
    lab["bad"] = (np.random.default_rng(seed + 1).random(len(lab)) < p).astype(float)
    return f, lab


@pytest.mark.parametrize(("tolerance", "winner"), [(1.0, 0), (0.0, 1)])
def test_search_winner_is_the_cheapest_near_the_best(tolerance: float, winner: int) -> None:
    """With a wide tolerance both candidates are near the best and the stumps, cheapest to
    explain, win; with none the deeper trees, whose AUC is clearly higher, win."""
    f, lab = interaction_panel()
    res = train_model(f, lab, params(search=SEARCH, search_tolerance=tolerance))
    table = res.search
    assert [r["num_leaves"] for r in table] == [2, 16]
    stumps, deep = table
    assert deep["mean_auc"] > stumps["mean_auc"] + 0.05, table  # the panel does its job
    for r in table:  # the explanation cost: trees x leaves x depth^2
        assert r["explain_cost"] == r["trees"] * r["num_leaves"] * r["max_depth"] ** 2
    assert stumps["explain_cost"] < deep["explain_cost"]
    assert [r["chosen"] for r in table] == [i == winner for i in range(len(table))]
    leaves, depth = tree_shape(res)
    if winner == 0:
        assert (leaves, depth) == (2, 1)
    else:  # the deeper candidate ships: trees beyond stumps, within its limits
        assert 2 < leaves <= 16 and 1 < depth <= 4, (leaves, depth)
    assert res.metadata()["capacity_search"] == table


def test_tree_cap_is_never_where_training_stops_silently() -> None:
    dates = quarter_ends(12)
    f, lab = hand_panel(800, dates, dict.fromkeys(dates, "x1"), seed=7)
    res = train_model(f, lab, params(n_estimators=3, early_stopping_rounds=2,
                                     learning_rate=0.001))
    # three doublings, still capped: the learning rate rose and the notes say so
    assert res.lgb_params["learning_rate"] == pytest.approx(0.008)
    assert res.search[0]["learning_rate_used"] == pytest.approx(0.008)
    assert res.hit_tree_cap
    assert any("learning rate 0.008 instead of 0.001" in n for n in res.notes)
    assert any("even at learning rate 0.008" in n for n in res.notes)


def test_holdout_model_is_saved_beside_the_shipped_one(tmp_path: Any) -> None:
    from riskmodel.modeling.model import load_model_dir, model_files
    from riskmodel.registry import save_pyfunc

    dates = quarter_ends(12)
    f, lab = hand_panel(500, dates, {d: ("x1" if i >= 9 else "x2")
                                     for i, d in enumerate(dates)}, seed=8)
    res = train_model(f, lab, params())
    assert res.holdout is not None
    save_pyfunc(res.model, tmp_path / "m", {"training.json": {}}, holdout=res.holdout)
    assert (model_files(tmp_path / "m") / HOLDOUT_FOLDER).is_dir()
    frame = f[f["as_of"] == dates[-1]]
    shipped = load_model_dir(tmp_path / "m").predict(frame)["pd"].to_numpy()
    held = load_holdout(tmp_path / "m").predict(frame)["pd"].to_numpy()
    np.testing.assert_allclose(shipped, res.model.predict(frame)["pd"], rtol=1e-12)
    np.testing.assert_allclose(held, res.holdout.predict(frame)["pd"], rtol=1e-12)
    assert np.abs(shipped - held).max() > 1e-3
    # a model without a holdout folder is its own holdout
    save_pyfunc(res.holdout, tmp_path / "h")
    np.testing.assert_allclose(load_holdout(tmp_path / "h").predict(frame)["pd"], held,
                               rtol=1e-12)


def level_panel(recent_factor: float, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """12 labelled quarter ends, then 3 whose windows are observed for 270, 180 and 90 days.
    Bad outcomes come uniformly over the year (F(t) = t / 365); in the partly observed
    windows the odds of going bad are ``recent_factor`` times those of the labelled
    years."""
    rng = np.random.default_rng(seed)
    dates = quarter_ends(15)
    f, lab = hand_panel(4000, dates, dict.fromkeys(dates, "x1"), seed=seed, unlabelled=3)
    lab["observed_days"] = pd.array([HORIZON] * len(lab), dtype="Int32")
    days = rng.integers(1, HORIZON + 1, len(lab))
    went_bad = lab["bad"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    lab["days_to_bad"] = pd.array(np.where(went_bad, days, -1), dtype="Int32")
    lab.loc[lab["days_to_bad"] == -1, "days_to_bad"] = pd.NA
    x1 = f["x1"].to_numpy()
    p = 1 / (1 + np.exp(-(-3.0 + np.log(recent_factor) + 2.5 * x1)))
    for k, t in zip((3, 2, 1), (270, 180, 90), strict=True):
        on = (lab["as_of"] == dates[-k]).to_numpy()
        within = rng.random(len(lab)) < p * t / HORIZON
        lab.loc[on, "observed_days"] = t
        hit = on & within
        lab.loc[on, "days_to_bad"] = pd.NA
        lab.loc[hit, "days_to_bad"] = rng.integers(1, t + 1, int(hit.sum()))
    return f, lab


@pytest.mark.parametrize(("factor", "low", "high"), [(2.0, 0.45, 0.85), (1.0, -0.15, 0.15)])
def test_recent_outcomes_move_the_level(factor: float, low: float, high: float) -> None:
    f, lab = level_panel(factor)
    res = train_model(f, lab, params())
    info = res.refit["calibration"]["recent_level"]
    assert info["applied"]
    assert info["dates"] == [d.date().isoformat() for d in quarter_ends(15)[-3:]]
    # twice the odds: log(2) = 0.69 on the log-odds, shrunk by bads / (bads + 30)
    assert low < info["shift"] < high, info
    off = train_model(f, lab, params_with_calibration(recent_level=False))
    frame = f[f["as_of"] == quarter_ends(15)[-1]]
    ratio = res.model.predict(frame)["pd"].mean() / off.model.predict(frame)["pd"].mean()
    assert off.refit["calibration"]["recent_level"]["applied"] is False
    if factor == 2.0:
        assert 1.25 < ratio < 2.0, ratio  # odds x2: less than x2 on the mean PD
    else:
        assert 0.85 < ratio < 1.15, ratio


def test_labels_without_partial_outcomes_leave_the_level_alone() -> None:
    f, lab = level_panel(2.0)
    res = train_model(f, lab.drop(columns=["observed_days", "days_to_bad"]), params())
    info = res.refit["calibration"]["recent_level"]
    assert info["applied"] is False and "observed_days" in info["reason"]


def params_with_calibration(**calibration: Any) -> Params:
    base = params()
    return base.model_copy(update={"calibration": base.calibration.model_copy(
        update=calibration)})


def test_holdout_level_reads_only_what_was_known_at_the_first_test_date() -> None:
    """The holdout model's level is read as of its first test date: outcomes after that day
    (here: every bad outcome dated later is moved or removed) change nothing."""
    f, lab = level_panel(2.0, seed=12)
    res = train_model(f, lab, params())
    first_test = min(pd.Timestamp(d) for d in res.split.dates["test"])
    info = res.holdout_level
    assert info["applied"]
    assert all(pd.Timestamp(d) < first_test for d in info["dates"])
    age = (first_test - lab["as_of"]).dt.days
    later = lab["days_to_bad"].astype("Float64") > age  # first bad after the first test date
    assert later.sum() > 100
    changed = lab.copy()
    changed.loc[later.fillna(False).to_numpy(dtype=bool), "days_to_bad"] = pd.NA
    again = train_model(f, changed, params())
    assert again.holdout_level == info
    # while the shipped model's level, read at the data's end, does see them
    assert again.refit["calibration"]["recent_level"] != res.refit["calibration"][
        "recent_level"]


def test_excluded_features_do_not_stop_the_level_reading() -> None:
    f, lab = level_panel(2.0, seed=13)
    res = train_model(f, lab, params(exclude_features=["x2"]))
    assert res.model.spec.names == ["x1"]
    assert res.refit["calibration"]["recent_level"]["applied"]
    assert res.holdout_level["applied"]
