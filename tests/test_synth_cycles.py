"""Business cycles and industry shocks of the synthetic world: the cycles move default rates
up and down over the years, a shock lifts its industry's PDs from its date on and not before,
``pd_true`` with a turning point inside the horizon agrees with an independent Monte-Carlo
simulation, bad ``--shock`` values are refused, and the output stays deterministic."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.data.synth import (
    EVENT_LAGS,
    YEAR,
    Shock,
    SynthConfig,
    blocks,
    cycle_params,
    pd_within,
    pd_within_schedule,
    write_world,
)

START, END = dt.date(2020, 1, 1), dt.date(2024, 12, 31)
runner = CliRunner()


def _world(**kw: object) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(truth with industry, buyers, events) of a small world, generated in memory."""
    args: dict[str, object] = dict(n_buyers=3000, start=START, end=END, seed=7,
                                   chunk_buyers=3000)
    args.update(kw)
    bl = list(blocks(SynthConfig(**args)))  # type: ignore[arg-type]
    buyers = pd.concat([b.buyers for b in bl], ignore_index=True)
    truth = pd.concat([b.truth for b in bl], ignore_index=True)
    truth = truth.merge(buyers[["buyer_id", "industry"]], on="buyer_id")
    events = pd.concat([b.events for b in bl], ignore_index=True)
    return truth, buyers, events


# ---------------------------------------------------------------- pd_true with a turning point


def test_one_change_pd_equals_closed_form_when_the_drift_does_not_change() -> None:
    """The quadrature path (a change inside the horizon) with the same drift on both sides
    must give the closed form, for states from near default to far from it."""
    rng = np.random.default_rng(11)
    n = 20_000
    x = np.exp(rng.uniform(np.log(0.005), np.log(6.0), n))
    mu, m = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    sigma = rng.uniform(0.3, 0.8, n)
    change = rng.integers(1, 365, n).astype(float)
    got = pd_within_schedule(x, mu, sigma, m, change, m)
    assert np.abs(got - pd_within(x, mu + m, sigma)).max() < 1e-7


def _monte_carlo(x: float, mu: float, sigma: float, m1: float, change: int, m2: float,
                 n_paths: int, seed: int) -> float:
    """Share of paths bad within 365 days: daily steps of a Brownian motion whose drift is
    ``mu + m1`` for ``change`` days and ``mu + m2`` after, with the exact Brownian-bridge
    crossing test on each day and a random event lag. Independent of the world's weekly grid
    and of the quadrature."""
    rng = np.random.default_rng(seed)
    days = 365
    drift = np.where(np.arange(days) < change, mu + m1, mu + m2) / YEAR
    sd = sigma / np.sqrt(YEAR)
    bad = 0
    for first in range(0, n_paths, 10_000):
        k = min(10_000, n_paths - first)
        path = x + np.cumsum(drift[None, :] + sd * rng.standard_normal((k, days)), axis=1)
        lo = np.concatenate([np.full((k, 1), x), path[:, :-1]], axis=1)
        with np.errstate(over="ignore"):
            bridge = np.exp(-2.0 * np.maximum(lo, 0) * np.maximum(path, 0) / sigma**2 * YEAR)
        crossed = (path <= 0) | (rng.random((k, days)) < bridge)
        first_day = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1) + 1, 10**6)
        lag = rng.choice(EVENT_LAGS, size=k)
        bad += int((first_day <= days - lag).sum())  # passage in day d is <= 365 - L iff d is
    return bad / n_paths


@pytest.mark.parametrize(
    ("x", "mu", "sigma", "m1", "change", "m2"),
    [
        (1.0, 0.0, 0.6, 0.3, 100, -0.4),  # a downturn starts 100 days ahead
        (0.6, -0.05, 0.57, -0.35, 250, 0.35),  # a recovery starts 250 days ahead
        (1.4, 0.1, 0.64, 0.2, 345, -0.5),  # the turn falls between the event lags' windows
    ],
)
def test_pd_true_with_a_turning_point_agrees_with_monte_carlo(
    x: float, mu: float, sigma: float, m1: float, change: int, m2: float
) -> None:
    one = np.ones(1)
    exact = float(pd_within_schedule(x * one, mu * one, sigma * one, m1 * one,
                                     change * one, m2 * one)[0])
    n = 40_000
    sim = _monte_carlo(x, mu, sigma, m1, change, m2, n, seed=change)
    tol = 4.5 * np.sqrt(exact * (1 - exact) / n)  # 4.5 binomial standard errors
    assert abs(sim - exact) < tol, (sim, exact, tol)
    if change < 300:  # the test can tell: ignoring the turn is off by far more than tol
        ignored = float(pd_within(x * one, (mu + m1) * one, sigma * one)[0])
        assert abs(sim - ignored) > 3 * tol, (sim, ignored, tol)


def test_the_world_simulates_the_drift_that_pd_true_assumes() -> None:
    """Same seed with and without cycles: the only difference in the industry factor paths is
    the cycle drift, and the schedule handed to pd_true is that drift."""
    from riskmodel.data.synth import _factors, _truth_days

    cfg = SynthConfig(n_buyers=10, start=START, end=END, seed=3, cycles=True)
    with_c = _factors(cfg, _truth_days(cfg))
    without = _factors(SynthConfig(n_buyers=10, start=START, end=END, seed=3),
                       _truth_days(cfg))
    grid = with_c.grid
    drift = cycle_params(3).step_drift(grid)
    expect = np.concatenate([np.zeros((len(drift), 1)),
                             np.cumsum(drift * np.diff(grid) / YEAR, axis=1)], axis=1)
    np.testing.assert_allclose(with_c.industry - without.industry, expect, atol=1e-12)
    np.testing.assert_array_equal(with_c.country, without.country)
    assert with_c.truth_m1 is not None and with_c.truth_change is not None
    assert with_c.truth_m2 is not None
    for t, day in enumerate(_truth_days(cfg)):
        i = int(np.searchsorted(grid, day))
        if i < len(grid) - 1:
            np.testing.assert_array_equal(with_c.truth_m1[:, t], drift[:, i])
    has_turn = np.isfinite(with_c.truth_change)
    assert has_turn.any() and (~has_turn).any()
    assert (with_c.truth_m2[has_turn] == -with_c.truth_m1[has_turn]).all()
    assert (with_c.truth_change[has_turn] < 365).all()


# ---------------------------------------------------------------- cycles in the world


def test_cycles_make_default_rates_rise_and_fall() -> None:
    """Cycles on and off draw the same random numbers, so the difference of the two worlds'
    mean pd_true is the cycles' doing: it must swing by percentage points and turn, and the
    realised defaults of each year must move the way the PDs at its start said."""
    cyc, _, ev_c = _world(cycles=True)
    flat, _, ev_f = _world(cycles=False)
    m_c = cyc.groupby("as_of")["pd_true"].mean()
    m_f = flat.groupby("as_of")["pd_true"].mean()
    assert (m_c.max() - m_c.min()) > 2 * (m_f.max() - m_f.min())

    d = (m_c - m_f).to_numpy()
    assert d.max() - d.min() > 0.03
    step = np.sign(np.diff(d))
    turns = np.flatnonzero(step[1:] != step[:-1])
    assert len(turns) >= 1  # at least one turning point inside the five years
    hi, lo = int(np.argmax(d)), int(np.argmin(d))
    assert 0 < min(hi, lo) or max(hi, lo) < len(d) - 1  # an extreme inside, not at an end

    # realised: defaults (first events) per year, cycle world minus flat world, against the
    # expected excess from the pd_true gap at the last truth date before the year
    def first_events(ev: pd.DataFrame) -> pd.Series:
        first = pd.to_datetime(ev.groupby("buyer_id")["event_date"].min())
        return first.dt.year.value_counts()

    excess = first_events(ev_c).sub(first_events(ev_f), fill_value=0)
    both = cyc.merge(flat, on=["buyer_id", "as_of"], suffixes=("_c", "_f"))
    both["gap"] = both["pd_true_c"] - both["pd_true_f"]
    gap = both.groupby("as_of")["gap"].sum()
    checked = 0
    for year in (2021, 2022, 2023, 2024):
        expected = gap[pd.Timestamp(year - 1, 12, 31)]
        if abs(expected) >= 15:
            assert np.sign(excess.get(year, 0)) == np.sign(expected), (year, expected, excess)
            checked += 1
    assert checked >= 2


def test_cycles_are_deterministic_per_seed_and_differ_between_seeds() -> None:
    a, b = cycle_params(5), cycle_params(5)
    assert a.common_period == b.common_period
    np.testing.assert_array_equal(a.phase, b.phase)
    c = cycle_params(6)
    assert c.common_phase != a.common_phase
    assert not np.array_equal(a.period, c.period)  # another seed, other cycles
    assert (a.period / 2 > 1.5).all()  # at most one turning point within any year


# ---------------------------------------------------------------- shocks


def test_a_shock_lifts_its_industry_from_its_date_and_not_before() -> None:
    shock_day = dt.date(2022, 6, 30)  # a truth date: the time grid, and so every draw, is kept
    plain, _, _ = _world(cycles=True)
    shocked, _, ev = _world(cycles=True, shocks=(Shock("F", shock_day, 0.5),))
    key = ["buyer_id", "as_of"]
    before = pd.Timestamp(shock_day)
    # before the shock: not anticipated, every truth row identical
    pd.testing.assert_frame_equal(
        plain[plain["as_of"] < before].sort_values(key, ignore_index=True),
        shocked[shocked["as_of"] < before].sort_values(key, ignore_index=True),
    )
    # other industries: identical at every date
    pd.testing.assert_frame_equal(
        plain[plain["industry"] != "F"].sort_values(key, ignore_index=True),
        shocked[shocked["industry"] != "F"].sort_values(key, ignore_index=True),
    )

    def f_over_rest(truth: pd.DataFrame) -> pd.Series:
        m = truth.groupby(["as_of", truth["industry"] == "F"])["pd_true"].mean().unstack()
        return m[True] / m[False]

    lift = f_over_rest(shocked) / f_over_rest(plain)
    assert np.allclose(lift[lift.index < before], 1.0)
    after = lift[lift.index >= before]
    assert after.iloc[0] > 2.0  # on the shock date: buyers it pushed into default are pending
    assert (after.iloc[1:4] > 1.3).all()  # and the industry stays riskier for a while
    # the jump defaults show up as events from the shock date on
    f_ids = set(shocked.loc[shocked["industry"] == "F", "buyer_id"])
    f_ev = ev[ev["buyer_id"].isin(f_ids)]
    in_month = f_ev["event_date"].between(np.datetime64(shock_day), np.datetime64(shock_day)
                                          + np.timedelta64(30, "D"))
    assert in_month.sum() >= 20


def test_a_shock_between_grid_points_defaults_buyers_on_its_day() -> None:
    day = dt.date(2022, 5, 11)  # not on the weekly grid, not a truth date: added to the grid
    truth, _, ev = _world(cycles=False, shocks=(Shock("I", day, 1.0),),
                          truth_dates=[day, dt.date(2022, 5, 10)])
    i_ids = set(truth.loc[truth["industry"] == "I", "buyer_id"])
    ev_i = ev[ev["buyer_id"].isin(i_ids)]
    # a jump default happens on the shock day, so its event comes 0, 5, ..., 30 days later
    offset = (pd.to_datetime(ev_i["event_date"]) - pd.Timestamp(day)).dt.days
    assert offset.isin(EVENT_LAGS).sum() >= 15
    pending = truth[(truth["as_of"] == pd.Timestamp(day)) & (truth["industry"] == "I")]
    assert (pending["pd_true"] == 1.0).sum() >= 10  # defaulted on the day, event not yet known
    m = truth.groupby(["as_of", truth["industry"] == "I"])["pd_true"].mean().unstack()
    ratio = m[True] / m[False]
    assert ratio[pd.Timestamp(day)] > 3 * ratio[pd.Timestamp(2022, 5, 10)]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("X:2022-06-30", "unknown industry 'X'"),
        ("F:2022-13-01", "date 2022-13-01 is not YYYY-MM-DD"),
        ("F:2019-06-30:1", "outside"),
        ("F:2020-01-01", "outside"),
        ("F:2025-01-01", "outside"),
        ("F:2022-06-30:0", "must be a positive, finite number"),
        ("F:2022-06-30:-1", "must be a positive, finite number"),
        ("F:2022-06-30:nan", "must be a positive, finite number"),
        ("F:2022-06-30:inf", "must be a positive, finite number"),
        ("F:2022-06-30:big", "size big is not a number"),
        ("F", "expected INDUSTRY:YYYY-MM-DD[:SIZE]"),
    ],
)
def test_bad_shock_values_exit_2_naming_the_option(tmp_path: Path, value: str, needle: str
                                                   ) -> None:
    out = tmp_path / "w"
    res = runner.invoke(app, ["synth", "--out", str(out), "--buyers", "10",
                              "--shock", value])
    assert res.exit_code == 2, res.output
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "--shock" in text and needle in text, text
    assert not out.exists()


# ---------------------------------------------------------------- determinism and defaults


def _md5s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.parquet"))}


def test_cli_default_is_cycles_and_output_is_byte_identical(tmp_path: Path) -> None:
    args = ["synth", "--buyers", "600", "--start", "2021-01-01", "--end", "2023-12-31",
            "--seed", "4", "--chunk-buyers", "300", "--shock", "c:2022-03-31:0.7",
            "--shock", "G:2023-02-14"]
    for name in ("a", "b"):
        res = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    assert _md5s(tmp_path / "a") == _md5s(tmp_path / "b")

    shocks = (Shock("C", dt.date(2022, 3, 31), 0.7), Shock("G", dt.date(2023, 2, 14)))
    cfg = dict(n_buyers=600, start=dt.date(2021, 1, 1), end=dt.date(2023, 12, 31), seed=4,
               chunk_buyers=300, shocks=shocks)
    write_world(SynthConfig(**cfg, cycles=True), tmp_path / "lib")  # type: ignore[arg-type]
    assert _md5s(tmp_path / "lib") == _md5s(tmp_path / "a")
    write_world(SynthConfig(**cfg), tmp_path / "flat")  # type: ignore[arg-type]
    assert _md5s(tmp_path / "flat")["truth.parquet"] != _md5s(tmp_path / "a")["truth.parquet"]


def test_no_cycles_is_the_world_without_cycles(tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "cli"), "--buyers", "500",
                              "--start", "2021-01-01", "--end", "2022-12-31", "--seed", "2",
                              "--no-cycles"])
    assert res.exit_code == 0, res.output
    write_world(SynthConfig(n_buyers=500, start=dt.date(2021, 1, 1), end=dt.date(2022, 12, 31),
                            seed=2), tmp_path / "lib")
    assert _md5s(tmp_path / "cli") == _md5s(tmp_path / "lib")
