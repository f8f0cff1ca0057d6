"""A synthetic buyer world with known ground truth.

The generative model (documented for users in ``docs/synthetic-data.md``):

* Each buyer has a latent *distance to default* ``X`` that moves as a Brownian motion with a
  buyer drift, an idiosyncratic part and two shared factors, one per industry and one per
  country. Shared factor shocks move many buyers together, so defaults cluster.
* The buyer defaults the first time ``X`` reaches 0. Crossings between grid points are found
  exactly with the Brownian-bridge crossing probability, so the default time is the
  continuous-time first passage (its day is placed uniformly in the week it falls in).
* A defaulted buyer stops paying and stops trading. A credit event is recorded ``L`` days
  later, ``L`` uniform on {0, 5, ..., 30}; a live buyer never lets an invoice reach 60 days past
  due, so the contract's bad outcome (event, or 90 days past due) happens exactly at the event.
* Because ``X`` is a Brownian motion, ``P(first passage <= s | X(A) = x)`` has a closed form,
  and ``pd_true`` (the probability of the contract's bad outcome within 365 days given the
  state at ``A``) is exact: the mean of that closed form over the seven values of ``L``.
* Business cycles (``cycles=True``, the command line's default): each industry factor gets a
  known square-wave drift (a common credit cycle with per-industry period, phase and
  amplitude), with at most one turning point in any year; ``pd_true`` conditions on that known
  schedule and stays exact (closed form, plus one Gauss-Legendre quadrature over the killed
  density at a turning point inside the horizon). Shocks (``shocks=``) are surprise downward
  jumps of an industry factor on a date; ``pd_true`` does not anticipate them.
* Invoices arrive as a Poisson process whose rate grows with buyer size and falls with distress
  (buyers in trouble buy less) and with season; amounts grow with size; terms are 30 to 90
  days; days beyond terms rise as ``X`` falls, with buyer habits, noise, seasonality and
  disputes. A disputed invoice has a ``dispute_date`` (contract 1.1), uniform between its issue
  day and the day it is paid (or would have been; at the latest the last observed day or the
  day before the buyer's default), drawn from a stream of its own so that every other value is
  the same as without it. Firmographics are partly missing.

Everything is vectorised over buyers and invoices, one block of buyers at a time, so memory is
bounded by the block size whatever the number of buyers. The same seed and block size give
byte-identical files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.special import ndtr

YEAR = 365.0
EVENT_LAGS = np.arange(0, 31, 5)  # days from default to the recorded credit event
LIVE_MAX_DAYS_LATE = 59  # a live buyer pays every invoice by due + 59 days
COUNTRIES = np.array(["DE", "FR", "GB", "IT", "ES", "NL", "BE", "PL", "SE", "US"])
COUNTRY_WEIGHTS = np.array([0.2, 0.15, 0.13, 0.1, 0.08, 0.08, 0.06, 0.07, 0.05, 0.08])
CURRENCIES = np.array(["EUR", "EUR", "GBP", "EUR", "EUR", "EUR", "EUR", "PLN", "SEK", "USD"])
COUNTRY_VOL = np.array([0.1, 0.12, 0.12, 0.18, 0.18, 0.1, 0.12, 0.15, 0.1, 0.12])
INDUSTRIES = np.array(["A", "C", "F", "G", "H", "I", "J", "M", "N", "Q"])
INDUSTRY_WEIGHTS = np.array([0.04, 0.2, 0.12, 0.22, 0.08, 0.07, 0.07, 0.08, 0.07, 0.05])
INDUSTRY_VOL = np.array([0.15, 0.18, 0.27, 0.18, 0.21, 0.27, 0.15, 0.12, 0.18, 0.1])
INDUSTRY_LEVEL = np.array([0.1, 0.0, -0.35, -0.1, -0.15, -0.3, 0.05, 0.15, -0.1, 0.3])
EVENT_TYPES = np.array(["insolvency", "default", "claim", "restructuring", "write_off"])
EVENT_WEIGHTS = np.array([0.45, 0.25, 0.15, 0.1, 0.05])
TERMS = np.array([30, 45, 60, 90])
TERMS_WEIGHTS = np.array([0.45, 0.2, 0.25, 0.1])
N_SUPPLIERS = 5000
SIGMA_IDIO = 0.55  # per sqrt(year)
# business cycles (SynthConfig.cycles): one square-wave drift per industry factor
CYCLE_PERIOD_YEARS = (4.0, 6.0)  # the common credit cycle's period, drawn per seed
CYCLE_PERIOD_SPREAD = 0.15  # an industry's period is the common one times exp(U(-s, s))
CYCLE_PHASE_SPREAD = 0.6  # an industry's phase is the common one plus U(-s, s) radians
CYCLE_AMPLITUDE = 0.2  # drift per year of an industry with the median factor volatility 0.18
CYCLE_AMPLITUDE_SPREAD = (0.75, 1.25)  # times U(lo, hi) per industry
DEFAULT_SHOCK_SIZE = 0.5  # downward jump of X, in units of distance to default
_QUAD_NODES, _QUAD_WEIGHTS = np.polynomial.legendre.leggauss(48)
_QUAD_RANGE = 8.0  # standard deviations of X(t1) either side of its mean


@dataclass(frozen=True)
class Shock:
    """An industry downturn: on ``date`` the distance to default ``X`` of every buyer of
    ``industry`` that is trading then falls by ``size`` (a jump of the industry factor)."""

    industry: str
    date: dt.date
    size: float = DEFAULT_SHOCK_SIZE

    @classmethod
    def parse(cls, text: str) -> Shock:
        """``INDUSTRY:YYYY-MM-DD[:SIZE]``; raises ValueError with a message for the user."""
        parts = text.strip().split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--shock {text}: expected INDUSTRY:YYYY-MM-DD[:SIZE]")
        industry = parts[0].strip().upper()
        try:
            date = dt.date.fromisoformat(parts[1].strip())
        except ValueError:
            raise ValueError(f"--shock {text}: date {parts[1]} is not YYYY-MM-DD") from None
        size = DEFAULT_SHOCK_SIZE
        if len(parts) == 3:
            try:
                size = float(parts[2])
            except ValueError:
                raise ValueError(f"--shock {text}: size {parts[2]} is not a number") from None
        return cls(industry, date, size)


@dataclass(frozen=True)
class SynthConfig:
    n_buyers: int
    start: dt.date
    end: dt.date
    seed: int = 0
    truth_dates: list[dt.date] | None = None
    chunk_buyers: int = 10_000
    entrant_share: float = 0.35
    invoices_per_year: float = 14.0  # median for a median-size buyer
    extra: dict[str, float] = field(default_factory=dict)
    #: write ``dispute_date`` (contract 1.1); False writes invoices as contract 1.0 did
    dispute_dates: bool = True
    #: business cycles: a deterministic square-wave drift per industry factor (the command
    #: line turns them on by default; False is the world without cycles, as before)
    cycles: bool = False
    #: industry downturns: a surprise downward jump of an industry's factor on a date
    shocks: tuple[Shock, ...] = ()
    #: write ``exposures.parquet``, the credit lines under review (contract 1.1), from a
    #: stream of its own, so that every other table is the same as without it
    exposures: bool = True

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"--end {self.end} must be after --start {self.start}")
        if self.truth_dates:
            bad = [d for d in self.truth_dates if not self.start <= d <= self.end]
            if bad:
                raise ValueError(f"truth date {bad[0]} is outside [{self.start}, {self.end}]")
        for sh in self.shocks:
            spec = f"{sh.industry}:{sh.date}:{sh.size:g}"
            if sh.industry not in INDUSTRIES:
                raise ValueError(f"--shock {spec}: unknown industry {sh.industry!r} "
                                 f"(one of {', '.join(INDUSTRIES)})")
            if not self.start < sh.date <= self.end:
                raise ValueError(f"--shock {spec}: date {sh.date} is outside "
                                 f"({self.start}, {self.end}] (after --start, up to --end)")
            if not (np.isfinite(sh.size) and sh.size > 0):
                raise ValueError(f"--shock {spec}: size {sh.size:g} must be a positive, finite number")

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1

    def resolved_truth_dates(self) -> list[dt.date]:
        if self.truth_dates:
            return sorted(set(self.truth_dates))
        qe = pd.date_range(self.start, self.end, freq="QE")
        return [d.date() for d in qe]


def first_passage_prob(
    x: np.ndarray, mu: np.ndarray, sigma: np.ndarray, s: float | np.ndarray
) -> np.ndarray:
    """P(min over (0, s] of x + mu t + sigma W_t <= 0), the Brownian first-passage law."""
    x = np.maximum(x, 0.0)
    sq = sigma * np.sqrt(s)
    a = ndtr((-x - mu * s) / sq)
    # exp(-2 mu x / sigma^2) * Phi(...) computed in logs to stay finite for large drifts
    with np.errstate(over="ignore", divide="ignore"):
        log_b = -2.0 * mu * x / sigma**2 + np.log(np.maximum(ndtr((-x + mu * s) / sq), 1e-300))
    return np.clip(a + np.exp(np.minimum(log_b, 0.0)), 0.0, 1.0)


def pd_within(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray, horizon_days: int = 365) -> np.ndarray:
    """P(credit event within ``horizon_days``) for a live buyer at distance ``x``."""
    probs = [first_passage_prob(x, mu, sigma, (horizon_days - lag) / YEAR) for lag in EVENT_LAGS]
    return np.mean(probs, axis=0)


def pd_within_schedule(
    x: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    m1: np.ndarray,
    change_days: np.ndarray,
    m2: np.ndarray,
    horizon_days: int = 365,
) -> np.ndarray:
    """P(credit event within ``horizon_days``) for a live buyer at distance ``x`` whose drift is
    ``mu + m1`` for the first ``change_days`` days and ``mu + m2`` after (``change_days`` is
    ``inf`` where the drift does not change inside the horizon).

    Without a change it is the closed form. With one, the probability of passage by ``T`` is
    ``P(passage by t1) + E[P(passage in (t1, T] | X(t1)); no passage by t1]``: the first term
    and the inner probability are closed forms, and the expectation over the killed density of
    ``X(t1)`` is a 48-node Gauss-Legendre quadrature over 8 standard deviations either side
    of its mean (absolute error below 1e-7; see the tests)."""
    out = np.zeros(len(x))
    two_piece = change_days < horizon_days
    idx = np.flatnonzero(two_piece)
    if len(idx):
        xi, mi, si = np.maximum(x[idx], 0.0), mu[idx], sigma[idx]
        t1 = change_days[idx] / YEAR
        d1 = mi + m1[idx]
        s1 = si * np.sqrt(t1)
        centre = xi + d1 * t1
        lo = np.maximum(-centre / s1, -_QUAD_RANGE)
        half = (np.maximum(lo, _QUAD_RANGE) - lo) / 2
        z = lo[:, None] + half[:, None] * (_QUAD_NODES[None, :] + 1.0)
        y = np.maximum(centre[:, None] + s1[:, None] * z, 0.0)
        with np.errstate(over="ignore"):
            kill = -np.expm1(-2.0 * xi[:, None] * y / s1[:, None] ** 2)
        w = half[:, None] * _QUAD_WEIGHTS[None, :] * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi) * kill
        p1 = first_passage_prob(xi, d1, si, t1)
    for lag in EVENT_LAGS:
        s_days = horizon_days - lag
        p = np.empty(len(x))
        one = ~two_piece | (change_days >= s_days)
        p[one] = first_passage_prob(x[one], mu[one] + m1[one], sigma[one], s_days / YEAR)
        sub = ~one[idx]  # rows of idx whose change falls inside this lag's window
        if sub.any():
            t2 = (s_days - change_days[idx][sub]) / YEAR
            p2 = first_passage_prob(y[sub], (mi + m2[idx])[sub, None], si[sub, None],
                                    t2[:, None])
            p[idx[sub]] = np.clip(p1[sub] + (w[sub] * p2).sum(axis=1), 0.0, 1.0)
        out += p
    return out / len(EVENT_LAGS)


@dataclass
class _Factors:
    grid: np.ndarray  # day offsets from start, sorted, including 0, truth dates and the last day
    industry: np.ndarray  # (n_industries, n_grid): random walk + cycle drift - shock jumps
    country: np.ndarray  # (n_countries, n_grid)
    #: (n_industries, n_grid) downward jump at each grid point (shocks); None without shocks
    jump: np.ndarray | None = None
    #: per (industry, truth date): cycle drift after the date, days to its one change within
    #: a year (inf if none), drift after the change; None without cycles
    truth_m1: np.ndarray | None = None
    truth_change: np.ndarray | None = None
    truth_m2: np.ndarray | None = None


@dataclass(frozen=True)
class CycleParams:
    """The business cycles of a world: industry ``k`` has drift ``+amplitude[k]`` per year
    while ``sin(2 pi t / period[k] + phase[k]) >= 0`` (``t`` in years from the start) and
    ``-amplitude[k]`` otherwise, on the grid steps (evaluated at each step's midpoint)."""

    common_period: float
    common_phase: float
    period: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray

    def step_drift(self, points: np.ndarray) -> np.ndarray:
        """(n_industries, len(points) - 1): the drift on each step between day offsets."""
        mid = (points[:-1] + points[1:]) / 2.0 / YEAR
        arg = 2 * np.pi * mid[None, :] / self.period[:, None] + self.phase[:, None]
        return self.amplitude[:, None] * np.where(np.sin(arg) >= 0, 1.0, -1.0)


def cycle_params(seed: int) -> CycleParams:
    """The cycles of the world of ``seed``, from their own stream ``(seed, 1000004)``."""
    rng = np.random.default_rng([seed, 1_000_004])
    k = len(INDUSTRIES)
    period = rng.uniform(*CYCLE_PERIOD_YEARS)
    phase = rng.uniform(0.0, 2 * np.pi)
    periods = period * np.exp(rng.uniform(-CYCLE_PERIOD_SPREAD, CYCLE_PERIOD_SPREAD, k))
    phases = phase + rng.uniform(-CYCLE_PHASE_SPREAD, CYCLE_PHASE_SPREAD, k)
    amps = CYCLE_AMPLITUDE * INDUSTRY_VOL / 0.18 * rng.uniform(*CYCLE_AMPLITUDE_SPREAD, k)
    return CycleParams(period, phase, periods, phases, amps)


def _shock_days(cfg: SynthConfig) -> np.ndarray:
    return np.array([(sh.date - cfg.start).days for sh in cfg.shocks], dtype=np.int64)


def _factors(cfg: SynthConfig, truth_days: np.ndarray) -> _Factors:
    rng = np.random.default_rng([cfg.seed, 1_000_003])
    parts: list[np.ndarray] = [np.arange(0, cfg.n_days, 7), truth_days,
                               np.array([cfg.n_days - 1], dtype=np.int64)]
    if cfg.shocks:
        parts.append(_shock_days(cfg))
    grid = np.unique(np.concatenate(parts))
    dt_years = np.diff(grid) / YEAR

    def walk(vol: np.ndarray) -> np.ndarray:
        steps = rng.standard_normal((len(vol), len(dt_years))) * vol[:, None] * np.sqrt(dt_years)
        return np.concatenate([np.zeros((len(vol), 1)), np.cumsum(steps, axis=1)], axis=1)

    fac = _Factors(grid, walk(INDUSTRY_VOL), walk(COUNTRY_VOL))
    if cfg.cycles:
        # the drift schedule runs a year past the end, for the horizons of late truth dates
        ext = np.unique(np.concatenate([grid, np.arange(0, cfg.n_days + 372, 7)]))
        drift = cycle_params(cfg.seed).step_drift(ext)
        n_steps = len(grid) - 1
        fac.industry = fac.industry + np.concatenate(
            [np.zeros((len(INDUSTRIES), 1)), np.cumsum(drift[:, :n_steps] * dt_years, axis=1)],
            axis=1,
        )
        shape = (len(INDUSTRIES), len(truth_days))
        fac.truth_m1, fac.truth_m2 = np.zeros(shape), np.zeros(shape)
        fac.truth_change = np.full(shape, np.inf)
        for t, day in enumerate(truth_days):
            i = int(np.searchsorted(ext, day))
            for k in range(len(INDUSTRIES)):
                changes = i + 1 + np.flatnonzero(np.diff(drift[k, i:]) != 0)  # turning points
                soon = changes[ext[changes] - day < 365]
                if len(soon) > 1:  # cannot happen: half a period is longer than a year
                    raise RuntimeError("two cycle turning points within a year")
                fac.truth_m1[k, t] = fac.truth_m2[k, t] = drift[k, i]
                if len(soon):
                    fac.truth_change[k, t] = ext[soon[0]] - day
                    fac.truth_m2[k, t] = drift[k, soon[0]]
    if cfg.shocks:
        fac.jump = np.zeros_like(fac.industry)
        for sh, day in zip(cfg.shocks, _shock_days(cfg), strict=True):
            k = int(np.flatnonzero(INDUSTRIES == sh.industry)[0])
            fac.jump[k, int(np.searchsorted(grid, day))] += sh.size
        fac.industry = fac.industry - np.cumsum(fac.jump, axis=1)
    return fac


@dataclass
class Block:
    buyers: pd.DataFrame
    invoices: pa.Table
    events: pd.DataFrame
    truth: pd.DataFrame
    exposures: pd.DataFrame | None = None


def _block(cfg: SynthConfig, fac: _Factors, block: int, first: int, n: int) -> Block:
    rng = np.random.default_rng([cfg.seed, block])
    start = np.datetime64(cfg.start, "D")
    grid = fac.grid
    n_grid = len(grid)

    # ---- firmographics
    cty = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHTS)
    ind = rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_WEIGHTS)
    log_emp = rng.normal(2.5, 1.5, n)
    employees = np.maximum(1.0, np.round(np.exp(log_emp)))
    revenue = np.round(employees * np.exp(rng.normal(11.6, 0.5, n)), -2)
    age = np.clip(rng.lognormal(2.6, 0.8, n), 0.0, 150.0)
    founded = (cfg.start.year - np.floor(age)).astype(np.int64)

    # ---- latent credit quality at entry
    quality = (
        0.22 * (log_emp - 2.5)
        + 0.25 * (np.log1p(age) - 2.6)
        + INDUSTRY_LEVEL[ind]
        + rng.normal(0.0, 0.45, n)
    )
    x0 = np.exp(np.log(2.05) + quality)
    mu = rng.normal(0.0, 0.12, n) - 0.08 * (quality < -0.5)
    sigma = np.sqrt(SIGMA_IDIO**2 + INDUSTRY_VOL[ind] ** 2 + COUNTRY_VOL[cty] ** 2)

    # ---- trading start: at the start, or entering later on a grid point
    entrant = rng.random(n) < cfg.entrant_share
    entry_idx = np.where(entrant, rng.integers(0, n_grid - 1, n), 0)

    # ---- latent paths on the grid (relative to entry), exact first passage via the bridge
    dt_years = np.diff(grid) / YEAR
    idio = rng.standard_normal((n, n_grid - 1)) * (SIGMA_IDIO * np.sqrt(dt_years))
    incr = idio + mu[:, None] * dt_years
    incr += np.diff(fac.industry, axis=1)[ind] + np.diff(fac.country, axis=1)[cty]
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(incr, axis=1)], axis=1)
    x = x0[:, None] + cum - cum[np.arange(n), entry_idx][:, None]
    active_step = np.arange(n_grid - 1)[None, :] >= entry_idx[:, None]
    x_lo, x_hi = x[:, :-1], x[:, 1:]
    # the continuous part of a step ends just before any shock jump at its end point
    x_end = x_hi if fac.jump is None else x_hi + fac.jump[ind, 1:]
    with np.errstate(over="ignore"):
        p_bridge = np.exp(-2.0 * np.maximum(x_lo, 0) * np.maximum(x_end, 0)
                          / (sigma[:, None] ** 2 * dt_years[None, :]))
    crossed = active_step & ((x_end <= 0) | (rng.random(x_lo.shape) < p_bridge))
    by_jump = None
    if fac.jump is not None:  # a shock jump to X <= 0 defaults on the shock day itself
        by_jump = active_step & (x_hi <= 0) & ~crossed
        crossed |= by_jump
    has_default = crossed.any(axis=1)
    step = np.argmax(crossed, axis=1)
    span = grid[step + 1] - grid[step]
    default_day = np.where(
        has_default, grid[step] + 1 + np.floor(rng.random(n) * span).astype(np.int64), 10**9
    )
    if by_jump is not None:
        default_day = np.where(has_default & by_jump[np.arange(n), step], grid[step + 1],
                               default_day)
    lag = rng.choice(EVENT_LAGS, size=n)
    event_day = np.where(has_default, default_day + lag, 10**9)
    entry_day = grid[entry_idx]

    # ---- invoices: Poisson arrivals at a peak rate, thinned by distress and season
    base_rate = cfg.invoices_per_year * np.exp(0.5 * (log_emp - 2.5) + rng.normal(0, 0.4, n))
    base_rate = np.clip(base_rate, 1.0, 500.0) / YEAR  # per day
    peak = base_rate * 1.15
    last_day = np.minimum(default_day - 1, cfg.n_days - 1)
    span_days = np.maximum(last_day - entry_day + 1, 0)
    counts = rng.poisson(peak * span_days)
    owner = np.repeat(np.arange(n), counts)
    issue = entry_day[owner] + np.floor(rng.random(len(owner)) * span_days[owner]).astype(np.int64)
    gidx = np.searchsorted(grid, issue, side="right") - 1
    x_issue = x[owner, gidx]
    month = ((start + issue).astype("datetime64[M]").astype(np.int64) % 12) + 1
    season = 1.0 + 0.15 * np.cos(2 * np.pi * (month - 3) / 12) / 1.15
    keep_p = np.clip(0.35 + 0.65 * np.clip(x_issue / 1.2, 0, 1), 0, 1) * season / 1.15
    keep = rng.random(len(owner)) < keep_p
    owner, issue = owner[keep], issue[keep]
    order = np.lexsort((issue, owner))
    owner, issue = owner[order], issue[order]
    m = len(owner)

    buyer_terms = rng.choice(TERMS, size=n, p=TERMS_WEIGHTS)
    terms = np.where(rng.random(m) < 0.9, buyer_terms[owner], rng.choice(TERMS, size=m))
    due = issue + terms
    amount = np.round(np.exp(6.3 + 0.35 * log_emp[owner] + rng.normal(0, 0.8, m)), 2)
    amount = np.maximum(amount, 1.0)

    # payment: buyer habit + distress at the due date + season + noise (+ disputes)
    habit = np.clip(rng.normal(-1.0, 2.5, n), -10, 12)
    gdue = np.clip(np.searchsorted(grid, due, side="right") - 1, 0, n_grid - 1)
    stress = np.clip((3.0 - x[owner, gdue]) / 3.0, 0, 1)
    due_month = ((start + due).astype("datetime64[M]").astype(np.int64) % 12) + 1
    seasonal = 4.0 * np.isin(due_month, (8, 12))
    disputed = rng.random(m) < (0.015 + 0.05 * stress)
    dbt = (
        habit[owner]
        + 45.0 * stress**1.3
        + seasonal
        + rng.normal(0, 1, m) * (1.5 + 5.0 * stress)
        + disputed * rng.uniform(10, 35, m)
    )
    dbt = np.clip(np.round(dbt), -terms, LIVE_MAX_DAYS_LATE).astype(np.int64)
    paid = due + dbt
    unpaid = (paid >= default_day[owner]) | (paid > cfg.n_days - 1)

    seq = np.arange(m) - np.searchsorted(owner, owner)  # running number within the buyer
    buyer_num = first + np.arange(n)
    buyer_ids = _ids("B", buyer_num, 7)
    inv_ids = pc.binary_join_element_wise(
        _ids("I", buyer_num[owner], 7), _ids("", seq, 5), "-"
    )
    n_sup = np.clip(np.round(np.exp(0.3 * log_emp)), 1, 8).astype(np.int64)
    sup_base = rng.integers(0, N_SUPPLIERS, n)
    supplier = (sup_base[owner] + 97 * rng.integers(0, n_sup[owner])) % N_SUPPLIERS

    def dates(days: np.ndarray) -> np.ndarray:
        return (start + days).astype("datetime64[D]")

    paid_dates = pa.array(dates(paid), mask=unpaid)
    columns: dict[str, pa.Array] = {}
    if cfg.dispute_dates:
        # own stream (seed, block, 1): the draws above, and so every other value, are unchanged
        drng = np.random.default_rng([cfg.seed, block, 1])
        last = np.minimum(np.minimum(paid, cfg.n_days - 1), default_day[owner] - 1)
        dispute = issue + np.floor(drng.random(m) * (last - issue + 1)).astype(np.int64)
        columns["dispute_date"] = pa.array(dates(dispute), mask=~disputed)
    invoices = pa.table(
        {
            "invoice_id": inv_ids,
            "buyer_id": pc.take(buyer_ids, pa.array(owner)),
            "supplier_id": _ids("S", supplier, 5),
            "issue_date": pa.array(dates(issue)),
            "due_date": pa.array(dates(due)),
            "amount": pa.array(amount),
            "currency": pa.array(CURRENCIES[cty][owner]),
            "paid_date": paid_dates,
            "disputed": pa.array(disputed),
            **columns,
        }
    )

    buyers = pd.DataFrame(
        {
            "buyer_id": buyer_ids.to_numpy(zero_copy_only=False),
            "country": COUNTRIES[cty],
            "industry": INDUSTRIES[ind],
            "founded_year": pd.array(
                np.where(rng.random(n) < 0.1, -1, founded), dtype="Int64"
            ),
            "employees": np.where(rng.random(n) < 0.2 + 0.1 * (log_emp < 1.5), np.nan, employees),
            "annual_revenue": np.where(rng.random(n) < 0.25, np.nan, revenue),
        }
    )
    buyers.loc[buyers["founded_year"] == -1, "founded_year"] = pd.NA

    # ---- events: the credit event, sometimes a claim after it
    ev_mask = event_day <= cfg.n_days - 1
    ev_buyers = np.flatnonzero(ev_mask)
    ev_types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), size=len(ev_buyers), p=EVENT_WEIGHTS)]
    follow = rng.random(len(ev_buyers)) < 0.3
    follow_day = event_day[ev_buyers] + rng.integers(30, 121, len(ev_buyers))
    follow &= follow_day <= cfg.n_days - 1
    events = pd.DataFrame(
        {
            "buyer_id": np.concatenate([buyers["buyer_id"].to_numpy()[ev_buyers],
                                        buyers["buyer_id"].to_numpy()[ev_buyers[follow]]]),
            "event_date": dates(np.concatenate([event_day[ev_buyers], follow_day[follow]])),
            "event_type": np.concatenate([ev_types, np.full(follow.sum(), "claim")]),
        }
    ).sort_values(["buyer_id", "event_date"], kind="stable", ignore_index=True)

    # ---- truth: exact PD of the bad outcome within 365 days, for buyers not in default at A
    truth_parts = []
    for t, day in enumerate(_truth_days(cfg)):
        g = int(np.searchsorted(grid, day))
        started = entry_day <= day
        in_default = event_day <= day
        pending = (default_day <= day) & ~in_default
        live = started & ~in_default & ~pending
        pdv = np.zeros(n)
        if fac.truth_m1 is None or fac.truth_change is None or fac.truth_m2 is None:
            pdv[live] = pd_within(x[live, g], mu[live], sigma[live])
        else:  # given the state at A and the known cycle drift; future shocks unforeseen
            k = ind[live]
            pdv[live] = pd_within_schedule(x[live, g], mu[live], sigma[live],
                                           fac.truth_m1[k, t], fac.truth_change[k, t],
                                           fac.truth_m2[k, t])
        pdv[pending & started] = 1.0
        rows = started & ~in_default
        truth_parts.append(
            pd.DataFrame(
                {
                    "buyer_id": buyers["buyer_id"].to_numpy()[rows],
                    "as_of": np.full(rows.sum(), start + day, dtype="datetime64[D]"),
                    "pd_true": pdv[rows],
                }
            )
        )
    truth = pd.concat(truth_parts, ignore_index=True)
    exposures = None
    if cfg.exposures:
        paid_by_end = np.where(unpaid, -1, paid)
        exposures = _exposures(cfg, block, buyer_ids, CURRENCIES[cty], owner, supplier, issue,
                               due, paid_by_end, amount)
    return Block(buyers, invoices, events, truth, exposures)


def _exposures(cfg: SynthConfig, block: int, buyer_ids: pa.Array, currency: np.ndarray,
               owner: np.ndarray, supplier: np.ndarray, issue: np.ndarray, due: np.ndarray,
               paid: np.ndarray, amount: np.ndarray) -> pd.DataFrame:
    """The credit lines of a block: one per buyer-supplier pair with an invoice issued in the
    last 365 days. ``current_limit`` is about the pair's usual outstanding (a year's
    invoicing x (amount-weighted terms + days beyond terms of the invoices paid in the year)
    / 365) with noise, 0 for about 8% (new lines); about 40% of lines carry a
    ``requested_limit`` (every new line does): mostly above the current limit, some below,
    some far above (4-10x), a few 0. Days are offsets from the start; ``paid`` is -1 where
    unpaid at the end. Random draws come from the stream ``(seed, block, 2)``."""
    rng = np.random.default_rng([cfg.seed, block, 2])
    last = cfg.n_days - 1
    in_year = issue > last - 365
    paid_in_year = (paid >= 0) & (paid > last - 365)
    key = owner.astype(np.int64) * N_SUPPLIERS + supplier
    pairs, inverse = np.unique(key[in_year], return_inverse=True)
    m = len(pairs)
    invoiced = np.bincount(inverse, weights=amount[in_year], minlength=m)
    terms = np.bincount(inverse, weights=(amount * (due - issue))[in_year], minlength=m)
    pos = np.minimum(np.searchsorted(pairs, key), max(m - 1, 0))
    known = paid_in_year & (pairs[pos] == key) if m else np.zeros(len(key), dtype=bool)
    paid_amount = np.bincount(pos[known], weights=amount[known], minlength=m)
    late = np.bincount(pos[known], weights=(amount * (paid - due))[known], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        dbt = np.where(paid_amount > 0, late / np.where(paid_amount > 0, paid_amount, 1), 0.0)
    usual = invoiced * (terms / invoiced + np.maximum(dbt, 0.0)) / YEAR

    noise = rng.lognormal(0.0, 0.3, m)
    new = rng.random(m) < 0.08
    asks = new | (rng.random(m) < 0.35)
    kind = rng.random(m)
    up, down, far = rng.uniform(1.05, 2.0, m), rng.uniform(0.5, 1.0, m), rng.uniform(4, 10, m)
    current = np.where(new, 0.0, np.round(usual * noise, -2))
    base = np.maximum(current, usual)
    wish = np.where(kind < 0.60, base * up,
                    np.where(kind < 0.85, np.where(new, usual * up, current * down),
                             np.where(kind < 0.95, base * far, 0.0)))
    requested = np.where(asks, np.round(wish, -2), np.nan)
    pair_owner = (pairs // N_SUPPLIERS).astype(np.int64)
    return pd.DataFrame({
        "buyer_id": pc.take(buyer_ids, pa.array(pair_owner)).to_numpy(zero_copy_only=False),
        "supplier_id": _ids("S", pairs % N_SUPPLIERS, 5).to_numpy(zero_copy_only=False),
        "current_limit": current,
        "requested_limit": requested,
        "currency": currency[pair_owner],
    })


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def _truth_days(cfg: SynthConfig) -> np.ndarray:
    return np.array([(d - cfg.start).days for d in cfg.resolved_truth_dates()], dtype=np.int64)


def blocks(cfg: SynthConfig) -> Iterator[Block]:
    """Generate the world one block of buyers at a time."""
    fac = _factors(cfg, _truth_days(cfg))
    for block, first in enumerate(range(0, cfg.n_buyers, cfg.chunk_buyers)):
        n = min(cfg.chunk_buyers, cfg.n_buyers - first)
        yield _block(cfg, fac, block, first, n)


def write_world(cfg: SynthConfig, out: str | Path, progress: bool = False) -> dict[str, int]:
    """Write ``buyers.parquet``, ``invoices/part-*.parquet``, ``events.parquet``,
    ``truth.parquet`` and (with ``cfg.exposures``) ``exposures.parquet`` to ``out``; returns
    row counts. Memory is bounded by one block."""
    out = Path(out)
    inv_dir = out / "invoices"
    out.mkdir(parents=True, exist_ok=True)
    inv_dir.mkdir(exist_ok=True)
    for old in inv_dir.glob("part-*.parquet"):
        old.unlink()
    counts = {"buyers": 0, "invoices": 0, "events": 0, "truth": 0}
    if cfg.exposures:
        counts["exposures"] = 0
    writers: dict[str, pq.ParquetWriter] = {}
    n_blocks = -(-cfg.n_buyers // cfg.chunk_buyers)
    task_iter = _progress(blocks(cfg), n_blocks, "synth") if progress else blocks(cfg)
    try:
        for i, blk in enumerate(task_iter):
            pq.write_table(blk.invoices, inv_dir / f"part-{i:05d}.parquet")
            counts["invoices"] += blk.invoices.num_rows
            frames = [("buyers", blk.buyers), ("events", blk.events), ("truth", blk.truth)]
            if blk.exposures is not None:
                frames.append(("exposures", blk.exposures))
            for name, frame in frames:
                table = pa.Table.from_pandas(frame, schema=_SCHEMAS[name], preserve_index=False)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(out / f"{name}.parquet", _SCHEMAS[name])
                writers[name].write_table(table)
                counts[name] += table.num_rows
    finally:
        for w in writers.values():
            w.close()
    return counts


_SCHEMAS = {
    "buyers": pa.schema(
        [("buyer_id", pa.string()), ("country", pa.string()), ("industry", pa.string()),
         ("founded_year", pa.int64()), ("employees", pa.float64()),
         ("annual_revenue", pa.float64())]
    ),
    "events": pa.schema(
        [("buyer_id", pa.string()), ("event_date", pa.date32()), ("event_type", pa.string())]
    ),
    "truth": pa.schema(
        [("buyer_id", pa.string()), ("as_of", pa.date32()), ("pd_true", pa.float64())]
    ),
    "exposures": pa.schema(
        [("buyer_id", pa.string()), ("supplier_id", pa.string()),
         ("current_limit", pa.float64()), ("requested_limit", pa.float64()),
         ("currency", pa.string())]
    ),
}


def _progress(it: Iterator[Block], total: int, label: str) -> Iterator[Block]:
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        for item in it:
            yield item
            bar.advance(task)
