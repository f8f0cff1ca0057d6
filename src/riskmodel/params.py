"""``params.yaml``: one section per stage, validated once into a typed, strict object.

Unknown keys are errors that name the key (``train.num_leavs: extra inputs are not
permitted``), so a typo never silently falls back to a default. A wrong value is an error that
names the key and the value (``data.observed_until: ... (got '2023-02-30')``): dates are read
from YAML as text and checked here, so an impossible date is a ``ParamsError`` like any other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Strict):
    raw: str = "data/raw"
    observed_until: dt.date | None = None
    mapping: str | None = None
    max_reject_rate: float = Field(default=0.01, ge=0, le=1)

    @field_validator("observed_until")
    @classmethod
    def _not_in_the_future(cls, v: dt.date | None) -> dt.date | None:
        today = dt.date.today()
        if v is not None and v > today:
            raise ValueError(f"{v.isoformat()} is after today ({today.isoformat()}): nothing "
                             "after the day of the run can have been observed")
        return v


class BookParams(_Strict):
    """How ``riskmodel validate`` lays out the book: buyers are hashed into buckets of about
    ``bucket_invoices`` invoices (or exactly ``buckets``); stages read a bucket at a time, so
    memory follows the bucket size. ``memory_limit`` bounds DuckDB in the whole-book
    duplicate-id check (it spills to disk beyond it)."""

    bucket_invoices: int = Field(default=1_000_000, gt=0)
    buckets: int | None = Field(default=None, gt=0)
    memory_limit: str = Field(default="2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class SnapshotParams(_Strict):
    """The as-of dates of the training panel: a list, or a frequency from the first date with
    ``history_days`` of history up to the last date whose label window is observed."""

    dates: list[dt.date] | None = None
    frequency: Literal["monthly", "quarterly"] | None = None
    history_days: int = Field(default=365, ge=0)

    @model_validator(mode="after")
    def _one_way(self) -> SnapshotParams:
        if (self.dates is None) == (self.frequency is None):
            raise ValueError("give exactly one of snapshots.dates and snapshots.frequency")
        return self

    def resolve(self, first_date: dt.date, last_date: dt.date) -> list[dt.date]:
        """The listed dates, or the month or quarter ends between ``first_date +
        history_days`` and ``last_date``. (Listed dates are used as given; the CLI rejects
        any after the observation date.)"""
        if self.dates is not None:
            return sorted(set(self.dates))
        start = first_date + dt.timedelta(days=self.history_days)
        freq = "ME" if self.frequency == "monthly" else "QE"
        return [d.date() for d in pd.date_range(start, last_date, freq=freq)]


class LabelParams(_Strict):
    horizon_days: int = Field(default=365, gt=0)
    dpd_threshold: int = Field(default=90, ge=0)


class FeatureParams(_Strict):
    windows: list[int] = [90, 180, 365]
    history_cap_days: int | None = Field(default=None, gt=0)
    #: a cycle value of a group (industry, country, portfolio) is missing when fewer buyers
    #: count in it (live buyers; for the new default rate, those live 3 months earlier)
    cycle_min_buyers: int = Field(default=30, ge=1)

    @field_validator("windows")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return sorted(set(v))


class CapacityCandidate(_Strict):
    """One capacity of the walk-forward search: overrides of the train section's values
    (a key left out keeps the section's value)."""

    num_leaves: int | None = Field(default=None, ge=2)
    max_depth: int | None = Field(default=None, ge=1)
    min_child_samples: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)


#: the default capacity search: from the compact model up to 16-leaf trees of depth 4
DEFAULT_SEARCH = [
    CapacityCandidate(),
    CapacityCandidate(num_leaves=4, max_depth=2, min_child_samples=400, learning_rate=0.1),
    CapacityCandidate(num_leaves=8, max_depth=3, min_child_samples=200, learning_rate=0.05),
    CapacityCandidate(num_leaves=16, max_depth=4, min_child_samples=400, learning_rate=0.05),
]


class TrainParams(_Strict):
    objective: Literal["binary"] = "binary"
    num_leaves: int = Field(default=4, ge=2)
    max_depth: int = Field(default=2, ge=-1)
    learning_rate: float = Field(default=0.05, gt=0)
    n_estimators: int = Field(default=1200, gt=0)
    early_stopping_rounds: int = Field(default=50, gt=0)
    min_child_samples: int = Field(default=100, ge=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    subsample_freq: int = Field(default=1, ge=0)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    class_weight: Literal["balanced"] | None = None
    seed: int = 42
    test_dates: int = Field(default=2, ge=1)
    validation_dates: int = Field(default=4, ge=1)
    holdout_share: float = Field(default=0.2, gt=0, lt=0.5)
    embargo: bool = True
    num_threads: int = Field(default=1, ge=1)
    #: overrides of the feature catalogue's monotone constraints (name or glob pattern: 1,
    #: -1, or 0 for none); the catalogue's defaults hold for every feature not named
    monotone: dict[str, Literal[1, -1, 0]] = {}
    exclude_features: list[str] = []
    #: leave a feature out of learning when its PSI between the earliest training dates and
    #: the test dates is higher (never a ``monotone`` feature); None: no PSI check
    max_feature_psi: float | None = Field(default=0.5, gt=0)
    #: capacities judged on walk-forward folds (each scores a later period than it trains
    #: on); empty: the section's own capacity only
    search: list[CapacityCandidate] = DEFAULT_SEARCH
    #: walk-forward folds of the search (fewer when the history is too short)
    search_folds: int = Field(default=2, ge=1)
    #: candidates within this mean AUC of the best are equal: the cheapest to explain wins
    search_tolerance: float = Field(default=0.002, ge=0)
    #: ship the model refit on every labelled as-of date (capacity and trees from the
    #: split, calibration cross-fitted); false: ship the model fitted on the split
    refit: bool = True


class CalibrationParams(_Strict):
    method: Literal["isotonic", "platt"] = "platt"
    #: the refit model is calibrated on out-of-fold margins of the latest ``dates`` labelled
    #: as-of dates, from ``crossfit_folds`` models that each leave a fold of buyers out
    crossfit_folds: int = Field(default=3, ge=2)
    dates: int = Field(default=4, ge=1)
    #: read the current default level from the latest as-of dates whose outcome window is
    #: partly observed (at least ``recent_min_days``), and shift the refit model's log-odds
    #: to it, with a weight of bads / (bads + ``recent_credibility_bads``)
    recent_level: bool = True
    recent_min_days: int = Field(default=90, ge=1)
    #: the level is read from the first bad outcomes of this latest stretch of days
    recent_window_days: int = Field(default=91, ge=1)
    recent_credibility_bads: float = Field(default=30.0, ge=0)


class MasterScaleParams(_Strict):
    """Upper PD bounds of grades 1..10 (the last must be 1.0); grade D is for defaults."""

    upper_bounds: list[float] = [0.0015, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 1.0]

    @field_validator("upper_bounds")
    @classmethod
    def _bands(cls, v: list[float]) -> list[float]:
        if len(v) != 10 or any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[-1] != 1.0:
            raise ValueError("upper_bounds: 10 strictly increasing PD bounds ending at 1.0")
        if v[0] <= 0:
            raise ValueError("upper_bounds: the first bound must be > 0")
        return v


class EvaluateParams(_Strict):
    ece_bins: int = Field(default=10, ge=2)
    psi_bins: int = Field(default=10, ge=2)
    asset_correlation: float = Field(default=0.12, ge=0, lt=1)
    #: the truth.parquet of a synthetic world (the true PD of each buyer and as-of date),
    #: for the oracle figures of evaluate and backtest; None: real data, no oracle figures
    truth: str | None = None


class PromoteParams(_Strict):
    min_auc: float = 0.7
    max_auc_drop: float = 0.005
    max_ece: float = 0.01
    max_score_psi: float = 0.25


class RegistryParams(_Strict):
    model_name: str = "buyer-risk"
    experiment: str = "buyer-risk"


class BacktestParams(_Strict):
    """The walk-forward backtest: how many of the last snapshot dates with an observed
    outcome window to cut at (one training each)."""

    cuts: int = Field(default=3, ge=1)


class ScoreParams(_Strict):
    """Batch scoring (``riskmodel score``)."""

    #: reasons per buyer in the output (``--explain`` overrides; 0: none)
    reasons: int = Field(default=3, ge=0, le=20)
    #: a live buyer with no invoice issued in this many days and nothing open at the as-of
    #: date is ``no_recent_history``: reported, not scored
    recent_days: int = Field(default=365, ge=1)
    #: the portfolio medians the reason sentences quote: over the first buckets that hold
    #: at least this many buyers (the whole book when it is smaller)
    typical_buyers: int = Field(default=200_000, ge=1)


def _per_grade(v: list[float], what: str, top: float | None = None) -> list[float]:
    """Ten values, grade 1 first, never larger for a worse grade (and at most ``top``)."""
    if len(v) != 10:
        raise ValueError(f"{what}: give 10 values, grade 1 first (got {len(v)})")
    if any(x < 0 for x in v):
        raise ValueError(f"{what}: values must be >= 0")
    if any(b > a for a, b in zip(v, v[1:], strict=False)):
        raise ValueError(f"{what}: a worse grade may not get more (values must not increase)")
    if top is not None and v[0] > top:
        raise ValueError(f"{what}: {v[0]:g} is above the most allowed, {top:g}")
    return v


class LimitsParams(_Strict):
    """Credit-limit recommendations (``riskmodel limits``; docs/decisions.md)."""

    #: the most a buyer's lines together may reach, as a share of its annual revenue, per
    #: grade 1..10 (grade 1 first; D gets 0)
    revenue_share: list[float] = [0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.025, 0.01, 0.005]
    #: loss given default: the share of an exposure lost when the buyer defaults
    lgd: float = Field(default=0.45, gt=0, le=1)
    #: the expected loss (PD x LGD x limit) allowed per buyer, in currency units
    el_budget: float = Field(default=5000.0, ge=0)
    #: refer a buyer with less payment history than this (days since its first invoice)
    min_history_days: int = Field(default=180, ge=0)
    #: refer a request of more than this many times the buyer's need
    refer_request_multiple: float = Field(default=3.0, gt=0)
    #: no increase above the current limit for a buyer with an invoice more than this many
    #: days past due
    overdue_days: int = Field(default=90, ge=0)
    #: a limit set by a cap is rounded down to a multiple of this, one set by the need
    #: rounded up (a request that fits is granted as asked); 0: no rounding
    round_to: float = Field(default=100.0, ge=0)

    @field_validator("revenue_share")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        return _per_grade(v, "revenue_share", top=1.0)


class TermsParams(_Strict):
    """Recommended maximum payment terms per grade (``riskmodel limits --views``)."""

    #: the longest terms any invoice can be insured on
    insurable_max_days: int = Field(default=90, ge=0)
    #: maximum terms in days per grade 1..10 (grade 1 first); grade D: 0, cash in advance
    max_days: list[int] = [90, 90, 90, 90, 75, 60, 60, 45, 30, 30]

    @model_validator(mode="after")
    def _bounded(self) -> TermsParams:
        _per_grade([float(x) for x in self.max_days], "max_days",
                   top=float(self.insurable_max_days))
        return self


class PortfolioParams(_Strict):
    """The portfolio and bank views of ``riskmodel limits --views``."""

    #: premium per year as a share of the insured exposure (the limits in force)
    premium_rate: float = Field(default=0.015, ge=0, le=1)
    #: the share of a covered loss the insurer pays (the policyholder keeps the rest)
    insured_share: float = Field(default=0.9, gt=0, le=1)
    #: buyers listed in concentration.csv
    top: int = Field(default=10, ge=1)


class WatchParams(_Strict):
    """The watch list between two scoring runs (``riskmodel watch``): what puts a buyer on
    it, and the PSI levels that flag a shift."""

    #: a grade at least this many notches worse (grade_rank, D counting as 11)
    downgrade_notches: int = Field(default=2, ge=1)
    #: a buyer scored in both runs whose PD is at least this many times its previous PD
    pd_ratio: float = Field(default=2.0, gt=1)
    #: an invoice at least this many days past due now and none at the previous date
    overdue_days: int = Field(default=30, ge=1)
    #: a PD of the 30-day payment-delay model (``--delay``) above this
    delay_threshold: float = Field(default=0.2, gt=0, lt=1)
    #: a PSI above these flags a shift ``watch`` and ``act``
    psi_watch: float = Field(default=0.10, gt=0)
    psi_act: float = Field(default=0.25, gt=0)
    #: reasons of the current scores copied to each row of the list (at most the run's)
    reasons: int = Field(default=3, ge=0, le=20)

    @model_validator(mode="after")
    def _ordered(self) -> WatchParams:
        if self.psi_act <= self.psi_watch:
            raise ValueError(f"psi_act ({self.psi_act:g}) must be above psi_watch "
                             f"({self.psi_watch:g})")
        return self


class Params(_Strict):
    data: DataParams = DataParams()
    book: BookParams = BookParams()
    snapshots: SnapshotParams = SnapshotParams(frequency="quarterly")
    label: LabelParams = LabelParams()
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    calibration: CalibrationParams = CalibrationParams()
    master_scale: MasterScaleParams = MasterScaleParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    registry: RegistryParams = RegistryParams()
    backtest: BacktestParams = BacktestParams()
    score: ScoreParams = ScoreParams()
    watch: WatchParams = WatchParams()
    limits: LimitsParams = LimitsParams()
    terms: TermsParams = TermsParams()
    portfolio: PortfolioParams = PortfolioParams()


class ParamsError(ValueError):
    """params.yaml breaks the schema; the message names the key."""


class _TextDatesLoader(yaml.SafeLoader):
    """YAML's safe loader without its timestamp type: ``2023-02-30`` stays the text it is
    (PyYAML would raise a bare ``ValueError`` building it), and pydantic checks the date."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_params(path: str | Path | None) -> Params:
    """Read ``params.yaml`` (or the defaults when ``path`` is None)."""
    if path is None:
        return Params()
    path = Path(path)
    try:
        raw: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_TextDatesLoader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read: {exc}") from exc
    return parse_params(raw, str(path))


def _problem(err: Any) -> str:
    text = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    value = err.get("input")
    if isinstance(value, str | int | float | bool | dt.date) and err["type"] != "missing":
        text += f" (got {value!r})"
    return text


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a parsed params mapping; every problem is named by its dotted key and, for a
    single value, the value given."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ParamsError(f"{source}: {problems}") from exc
