"""The calibrator on data small enough to solve by hand (pooled adjacent violators for isotonic,
the saturated logistic fit for Platt), and the monotone constraints of the model: a model
trained with them never lowers the PD when a payment-delay feature rises, and the same check
catches the model trained without them."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from riskmodel.data.synth import SynthConfig
from riskmodel.modeling.calibration import PD_FLOOR, Calibrator
from riskmodel.modeling.model import RiskModel
from riskmodel.modeling.training import monotone_vector, train_model
from training_helpers import World, fast_params, world

TOP = 1.0 - PD_FLOOR  # the calibrator keeps PDs in [PD_FLOOR, 1 - PD_FLOOR]


# --------------------------------------------------------------------------- isotonic


def test_isotonic_pools_adjacent_violators_by_hand() -> None:
    """Margins 1..6 with outcomes 0 1 0 0 1 1. Pooled adjacent violators: 1 then 0 violates
    the order, pool {1, 0} = 1/2, then 0 again: pool {1, 0, 0} = 1/3; the ones after stay.
    Fit: 0, 1/3, 1/3, 1/3, 1, 1, clipped to [PD_FLOOR, 1 - PD_FLOOR]."""
    margin = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    cal = Calibrator("isotonic").fit(margin, y)
    fitted = cal.predict(margin)
    assert fitted == pytest.approx([PD_FLOOR, 1 / 3, 1 / 3, 1 / 3, TOP, TOP], abs=1e-12)
    # between fitted margins the PD is interpolated linearly; outside them it is clipped
    assert cal.predict(np.array([1.5, 4.5])) == pytest.approx(
        [(PD_FLOOR + 1 / 3) / 2, (1 / 3 + TOP) / 2], abs=1e-12)
    assert cal.predict(np.array([-100.0, 0.0, 7.0, 100.0])) == pytest.approx(
        [PD_FLOOR, PD_FLOOR, TOP, TOP], abs=1e-12)


def test_isotonic_averages_tied_margins_then_pools() -> None:
    """Margins 3 1 2 0 0 1 with outcomes 1 0 1 1 0 0. Tied margins first average: margin 0
    -> 1/2 (two rows), 1 -> 0 (two rows), 2 -> 1, 3 -> 1. 1/2 then 0 violates: pooled with
    weights 2 and 2, 1/4. Fit: 1/4 at margins 0 and 1, 1 at 2 and 3. Without the clipping the
    mean fitted PD would be the bad rate, (4 * 1/4 + 2 * 1) / 6 = 1/2."""
    margin = np.array([3.0, 1.0, 2.0, 0.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    cal = Calibrator("isotonic").fit(margin, y)
    assert cal.predict(np.array([0.0, 1.0, 2.0, 3.0])) == pytest.approx(
        [0.25, 0.25, TOP, TOP], abs=1e-12)
    assert cal.predict(np.array([0.5, 1.5])) == pytest.approx([0.25, (0.25 + TOP) / 2])
    assert cal.predict(margin).mean() == pytest.approx(y.mean() - 2 * PD_FLOOR / 6)


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        # already in order: nothing to pool
        ([0.0, 0.0, 1.0, 1.0], [PD_FLOOR, PD_FLOOR, TOP, TOP]),
        # in reverse order: everything pools into one block at the bad rate
        ([1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]),
        # 1 0 1 0: pools {1, 0} = 1/2, then 1/2 < 1 but 1 then 0 pools to 1/2: flat 1/2
        ([1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]),
        # 0 1 0 1: {1, 0} pools to 1/2 between a 0 and a 1
        ([0.0, 1.0, 0.0, 1.0], [PD_FLOOR, 0.5, 0.5, TOP]),
    ],
)
def test_isotonic_small_cases(y: list[float], expected: list[float]) -> None:
    margin = np.array([0.0, 1.0, 2.0, 3.0])
    cal = Calibrator("isotonic").fit(margin, np.array(y))
    assert cal.predict(margin) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- Platt


def test_platt_on_two_margins_is_the_saturated_logistic_fit() -> None:
    """Margins 0 (1 bad in 4) and 1 (3 bads in 4): a logistic curve with two parameters fits
    both rates exactly, so sigmoid(b) = 1/4 and sigmoid(a + b) = 3/4:
    b = logit(1/4) = -ln 3, a = logit(3/4) - logit(1/4) = 2 ln 3. (The fit's tiny L2 penalty,
    C = 1e6, moves them by about 1e-4.)"""
    margin = np.array([0.0] * 4 + [1.0] * 4)
    y = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    cal = Calibrator("platt").fit(margin, y)
    assert cal.params_["a"] == pytest.approx(2 * math.log(3), abs=1e-3)
    assert cal.params_["b"] == pytest.approx(-math.log(3), abs=1e-3)
    assert cal.predict(np.array([0.0, 0.5, 1.0])) == pytest.approx([0.25, 0.5, 0.75], abs=1e-3)


def test_platt_on_symmetric_margins_has_no_intercept() -> None:
    """Margins -2 (1 bad in 5) and +2 (4 bads in 5): b = 0 and 2a + 0 = logit(4/5) = ln 4, so
    a = ln 2: the calibrated PD at margin m is 1 / (1 + 2^-m)."""
    margin = np.array([-2.0] * 5 + [2.0] * 5)
    y = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    cal = Calibrator("platt").fit(margin, y)
    assert cal.params_["a"] == pytest.approx(math.log(2), abs=1e-3)
    assert cal.params_["b"] == pytest.approx(0.0, abs=1e-3)
    assert cal.predict(np.array([-2.0, 0.0, 1.0, 2.0])) == pytest.approx(
        [0.2, 0.5, 2 / 3, 0.8], abs=1e-3)


# --------------------------------------------------------------------------- monotone constraints

slow = pytest.mark.slow

#: a small world (1,000 buyers over four years): two models train in about a second
SMALL = SynthConfig(n_buyers=1000, start=dt.date(2020, 1, 1), end=dt.date(2023, 12, 31), seed=5)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory, SMALL)


@pytest.fixture(scope="module")
def rows(small: World) -> pd.DataFrame:
    live = small.features[small.features["status"] == "active"]
    return live.sample(n=150, random_state=3)


def violations(model: RiskModel, features: pd.DataFrame, rows: pd.DataFrame,
               feature: str, direction: int) -> tuple[int, np.ndarray]:
    """Set ``feature`` of every row to each value of a grid over its range (ascending); count
    the steps where the margin moves against ``direction`` (+1: must not fall, -1: must not
    rise). Also returns the margins (rows x grid values)."""
    col = features[feature].dropna().to_numpy(dtype=float)
    grid = np.unique(np.concatenate([np.quantile(col, np.linspace(0, 1, 21)),
                                     [col.min() - 1.0, col.max() * 2 + 10]]))
    stacked = pd.concat([rows.assign(**{feature: v}) for v in grid], ignore_index=True)
    margins = model.margin(stacked).reshape(len(grid), len(rows)).T
    steps = np.diff(margins, axis=1) * direction
    return int((steps < 0).sum()), margins


@slow
def test_monotone_check_passes_constrained_and_catches_unconstrained(
    small: World, rows: pd.DataFrame
) -> None:
    constrained = train_model(small.features, small.labels, small.params).model
    free = train_model(small.features, small.labels,
                       fast_params(train={"monotone": {"*": 0}})).model
    directions = dict(zip(constrained.spec.names,
                          monotone_vector(constrained.spec, small.params), strict=True))
    checked = {f: d for f, d in directions.items() if d}
    assert len(checked) > 20  # every payment-delay feature of params' monotone patterns
    found = {}
    for feature, direction in checked.items():
        bad_constrained, margins = violations(constrained, small.features, rows, feature,
                                              direction)
        assert bad_constrained == 0, feature
        # the PD is the calibrated margin, so it is monotone too
        pds = constrained.calibrator.predict(margins)
        assert (np.diff(pds, axis=1) * direction >= 0).all(), feature
        found[feature] = violations(free, small.features, rows, feature, direction)[0]
    # the same check fails for the model trained without constraints, on several features
    assert sum(n > 0 for n in found.values()) >= 3, found


@slow
def test_constrained_model_is_not_flat_in_the_delay_features(
    small: World, rows: pd.DataFrame
) -> None:
    """The check above is not vacuous: the constrained model's margin rises along the grid of
    its most important payment-delay feature for most rows."""
    model = train_model(small.features, small.labels, small.params).model
    gain = dict(zip(model.booster.feature_name(), model.booster.feature_importance("gain"),
                    strict=True))
    top = max((n for n in gain if n.startswith(("dbt_", "oldest_open", "overdue_"))),
              key=gain.__getitem__)
    _, margins = violations(model, small.features, rows, top, 1)
    assert (margins[:, -1] > margins[:, 0]).mean() > 0.5, top
