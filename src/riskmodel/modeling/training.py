"""Training: the snapshot panel, an out-of-time split, a LightGBM model of 12-month
deterioration, its calibration and master scale.

The split (:func:`split_panel`) is out of time whenever the panel has two labelled as-of
dates, and adapts to short histories in a fixed order, recording each choice in
:attr:`Split.notes`:

1. **Test set**: the latest ``test_dates`` labelled as-of dates. With ``embargo`` on, only
   as-of dates whose label window ends by the first test date may be fitted on; when no such
   date is left, fewer test dates (down to 1) are taken; when even one test date leaves none,
   the embargo is dropped (said in the notes) and the test set is the latest
   ``min(test_dates, dates - 1)`` dates.
2. **Validation by date** (``kind == "out_of_time"``), when two or more dates are left to fit
   on: the latest ``v`` of them, ``v`` from ``validation_dates`` down to 1 and never more than
   half of them. With ``embargo`` on, training takes only dates whose label window ends by
   the first validation date (a gap, so that the same buyer's outcome is never in both), and
   needs at least ``v`` of them; when no ``v`` allows a gap, training takes every earlier date
   and the notes say the windows overlap.
3. **Validation by buyer** (``kind == "out_of_time_buyer_valid"``), when one date is left to
   fit on: a holdout of ``holdout_share`` of the buyers (a stable hash of ``buyer_id``) on the
   fitting dates, no buyer on both sides.
4. **Buyer holdout** (``kind == "buyer_holdout"``), with a single labelled as-of date: test
   and validation are holdouts of buyers on that date; not out of time (said in the notes).

The minimum history for an out-of-time split is therefore two labelled as-of dates. With
snapshots every quarter (month), ``history_days`` of history before the first as-of date and
a ``horizon_days`` label window, a book whose ``observed_until`` is at least
:func:`min_book_days` days after its first invoice always has them: 365 + 365 + 183 = 913 days
for the defaults (every book of 30 calendar months; 791 days, 26 months, monthly).

Before fitting, each feature is checked for stability across the panel's dates
(:func:`feature_stability`): a feature with no information on the training rows (missing on
every training date, or a single value), or whose PSI between the earliest training dates and
the test dates exceeds ``train.max_feature_psi``, is left out of learning (blank in the
training matrix, so no tree uses it; it stays a model input, so a features file scores
unchanged). A feature under a monotone constraint (the feature catalogue's default, or
``train.monotone``) is never left out for drift: it is kept and reported.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskmodel.features import CATEGORICAL, ID_COLUMNS
from riskmodel.features.catalogue import monotone_defaults
from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.domain import fit_profile
from riskmodel.modeling.evaluation import psi
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import FeatureSpec, RiskModel, design_matrix, model_files
from riskmodel.params import CapacityCandidate, Params

TARGET = "bad"
#: label columns of the partly observed windows (see :func:`recent_level`)
RECENT_COLUMNS = ("observed_days", "days_to_bad")
#: the folder, beside the shipped model's files, of the holdout model (the split's fit,
#: which never saw the test dates)
HOLDOUT_FOLDER = "holdout"


class TrainingError(ValueError):
    """The panel cannot be trained on as configured; the message says what to change."""


def build_panel(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Features joined to labels, one row per (buyer, as-of). Rows of buyers in default, and
    rows whose label window is not yet observed, are kept but carry no target."""
    keys = ["buyer_id", "as_of"]
    for name, frame in (("features", features), ("labels", labels)):
        missing = [c for c in [*keys, *(["bad", "in_default"] if name == "labels" else [])]
                   if c not in frame.columns]
        if missing:
            raise TrainingError(f"{name}: missing columns {missing}")
    extra = [c for c in RECENT_COLUMNS if c in labels.columns]
    panel = features.merge(labels[[*keys, "in_default", "bad", *extra]], on=keys, how="left",
                           validate="one_to_one", indicator=True)
    unmatched = int((panel.pop("_merge") != "both").sum())
    if unmatched:
        raise TrainingError(
            f"{unmatched} feature rows have no label row: features and labels must be built "
            "from the same data and as-of dates"
        )
    # a stable row order, so that row sampling (bagging) does not depend on input order
    panel = panel.sort_values(keys, ignore_index=True)
    if "status" in panel.columns:
        disagree = (panel["status"].eq("in_default") != panel["in_default"]).sum()
        if disagree:
            raise TrainingError(f"{disagree} rows where status and in_default disagree")
    return panel


def trainable(panel: pd.DataFrame) -> pd.Series:
    return (~panel["in_default"].astype(bool)) & panel[TARGET].notna()


KINDS = ("out_of_time", "out_of_time_buyer_valid", "buyer_holdout")

#: the longest span of two consecutive snapshot periods, less a day: a closed window of this
#: many days always holds two period ends (Jun 30 -> Sep 30 -> Dec 31 is 184 days; Jun 30 ->
#: Jul 31 -> Aug 31 and Nov 30 -> Dec 31 -> Jan 31 are 62)
TWO_PERIODS_DAYS = {"quarterly": 183, "monthly": 61}
DAYS_PER_MONTH = 365.25 / 12
#: quantile bins of the PSI in the feature stability check
STABILITY_PSI_BINS = 10


@dataclass
class Split:
    kind: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    dates: dict[str, list[str]] = field(default_factory=dict)
    #: what the split chose where the configured one was impossible, and what that costs
    notes: list[str] = field(default_factory=list)
    #: no label window of a training or validation row ends after the first test date
    test_embargo: bool = False
    #: "dates" (later as-of dates) or "buyers" (a buyer-grouped holdout)
    validation: str = "dates"
    #: validation by dates: no training label window ends after the first validation date
    validation_gap: bool | None = None

    def summary(self) -> dict[str, Any]:
        def part(f: pd.DataFrame) -> dict[str, Any]:
            y = f[TARGET].astype(float)
            return {"rows": len(f), "bads": int(y.sum()), "bad_rate": float(y.mean())}

        return {"kind": self.kind, "dates": self.dates, "train": part(self.train),
                "valid": part(self.valid), "test": part(self.test),
                "test_embargo": self.test_embargo, "validation": self.validation,
                "validation_gap": self.validation_gap, "notes": list(self.notes)}


def min_book_days(params: Params, frequency: str | None = None) -> int | None:
    """Days from the first invoice to ``observed_until`` that always give two labelled as-of
    dates (the least for an out-of-time split) with the snapshot frequency (the params' one
    unless given), ``snapshots.history_days`` and ``label.horizon_days``; None for listed
    snapshot dates."""
    freq = frequency or params.snapshots.frequency
    if freq is None:
        return None
    return params.snapshots.history_days + params.label.horizon_days + TWO_PERIODS_DAYS[freq]


def _months(days: float) -> int:
    return int(np.ceil(days / DAYS_PER_MONTH - 1e-9))


def _minimum_text(params: Params) -> str:
    days = min_book_days(params)
    if days is None:
        return "add snapshot dates whose label windows end by observed_until, or history"
    sp = params.snapshots
    text = (f"with snapshots.frequency {sp.frequency}, snapshots.history_days "
            f"{sp.history_days} and label.horizon_days {params.label.horizon_days}, a book of "
            f"at least {days} days (about {_months(days)} months) from first invoice to "
            "observed_until always has them: add history")
    if sp.frequency == "quarterly":
        text += (" or use snapshots.frequency: monthly (at least "
                 f"{min_book_days(params, 'monthly')} days)")
    return text


def _iso(ds: list[pd.Timestamp]) -> list[str]:
    return [d.date().isoformat() for d in ds]


def _buyer_unit(rows: pd.DataFrame) -> np.ndarray:
    """A number in [0, 1) per row from a stable hash of its buyer_id."""
    bucket = pd.util.hash_array(rows["buyer_id"].astype("str").to_numpy(dtype=object))
    return np.asarray((bucket % np.uint64(10_000)).astype(float) / 10_000)


def _no_labels_message(panel: pd.DataFrame, params: Params) -> str:
    h = params.label.horizon_days
    all_dates = sorted(pd.Timestamp(d) for d in panel["as_of"].unique())
    if not all_dates:
        return "no rows: the panel is empty"
    msg = (f"no labelled rows: the {h}-day label window of every as-of date "
           f"({len(all_dates)} dates, {all_dates[0].date()}..{all_dates[-1].date()}) passes "
           "observed_until (or every buyer is in default). An out-of-time split needs two "
           "labelled as-of dates")
    if len(all_dates) >= 2:
        need = (all_dates[1] + pd.Timedelta(days=h)).date()
        msg += f": here data observed to at least {need} (the second as-of date + {h} days)"
    return msg + "; " + _minimum_text(params)


def _test_dates(ts: list[pd.Timestamp], params: Params, notes: list[str]
                ) -> tuple[list[pd.Timestamp], list[pd.Timestamp], bool]:
    """Test dates, the dates that may be fitted on, and whether the test is embargoed."""
    tp = params.train
    horizon = pd.Timedelta(days=params.label.horizon_days)
    h = params.label.horizon_days
    most = min(tp.test_dates, len(ts) - 1)
    if tp.embargo:
        for k in range(most, 0, -1):
            test = ts[-k:]
            fit = [d for d in ts[:-k] if d + horizon <= test[0]]
            if fit:
                if k < tp.test_dates:
                    notes.append(
                        f"{k} test date(s) instead of train.test_dates={tp.test_dates}: with "
                        f"more, no earlier as-of date's {h}-day label window ends by the first "
                        "test date (embargo)")
                return test, fit, True
        test = ts[-most:]
        span = (ts[-1] - ts[0]).days
        notes.append(
            f"no embargo: the labelled as-of dates span {span} days "
            f"({ts[0].date()}..{ts[-1].date()}), and no as-of date before the test set has a "
            f"{h}-day label window that ends by the first test date {test[0].date()}: training "
            "labels overlap the test period, so the test is optimistic. An embargoed test "
            f"(one test date) needs labelled as-of dates spanning at least {h} days: about "
            f"{_months(h - span)} more months of history")
    else:
        test = ts[-most:]
        notes.append("no embargo and no gap (train.embargo: false): training label "
                     "windows may reach into the validation and test periods")
    if most < tp.test_dates:
        notes.append(f"{most} test date(s) instead of train.test_dates={tp.test_dates}: only "
                     f"{len(ts)} labelled as-of dates")
    return test, ts[:-most], False


def split_panel(panel: pd.DataFrame, params: Params) -> Split:
    """The split of the labelled, live rows of the panel (see the module docstring for the
    order in which it adapts to short histories)."""
    tp = params.train
    rows = panel.loc[trainable(panel)]
    ts = sorted(pd.Timestamp(d) for d in rows["as_of"].unique())
    if not ts:
        raise TrainingError(_no_labels_message(panel, params))
    notes: list[str] = []
    share = tp.holdout_share
    if len(ts) == 1:
        u = _buyer_unit(rows)
        test = u < share
        valid = (u >= share) & (u < 2 * share)
        day = _iso(ts)
        later = sorted(pd.Timestamp(d) for d in panel["as_of"].unique() if d > ts[0])
        need = (f"data observed to at least "
                f"{(later[0] + pd.Timedelta(days=params.label.horizon_days)).date()}, when "
                f"the as-of date {later[0].date()} is labelled" if later else "more history")
        notes.append(
            f"one labelled as-of date ({ts[0].date()}): the test set is a holdout of "
            f"{share:.0%} of the buyers on that date, not out of time; an out-of-time test "
            f"needs a second labelled as-of date: {need}; {_minimum_text(params)}")
        return Split("buyer_holdout", rows[~test & ~valid], rows[valid], rows[test],
                     {"train": day, "valid": day, "test": day}, notes, False, "buyers", None)

    horizon = pd.Timedelta(days=params.label.horizon_days)
    test_d, fit_d, embargoed = _test_dates(ts, params, notes)

    def pick(ds: list[pd.Timestamp]) -> pd.DataFrame:
        return rows[rows["as_of"].isin(ds)]

    if len(fit_d) >= 2:
        most = min(tp.validation_dates, len(fit_d) // 2)
        chosen: tuple[list[pd.Timestamp], list[pd.Timestamp]] | None = None
        gap: bool | None = None
        if tp.embargo:
            for v in range(most, 0, -1):
                valid_d = fit_d[-v:]
                train_d = [d for d in fit_d[:-v] if d + horizon <= valid_d[0]]
                if len(train_d) >= v:
                    chosen, gap = (train_d, valid_d), True
                    break
        if chosen is None:
            chosen, gap = (fit_d[:-most], fit_d[-most:]), False
            if tp.embargo:
                notes.append(
                    f"no gap between training and validation: the {len(fit_d)} as-of dates "
                    f"before the test set ({fit_d[0].date()}..{fit_d[-1].date()}) are too few "
                    f"for training dates whose {params.label.horizon_days}-day label windows "
                    "end by the first validation date; the same buyers' outcomes can be in "
                    "both, so early stopping and calibration see some training outcomes")
        train_d, valid_d = chosen
        if len(valid_d) < tp.validation_dates:
            notes.append(
                f"{len(valid_d)} validation date(s) instead of train.validation_dates="
                f"{tp.validation_dates}: at most half of the {len(fit_d)} as-of dates before "
                "the test set"
                + (f", with {len(train_d)} training date(s) whose label windows end by the "
                   "first validation date (gap)" if gap else ""))
        iso = {"train": _iso(train_d), "valid": _iso(valid_d), "test": _iso(test_d)}
        return Split("out_of_time", pick(train_d), pick(valid_d), pick(test_d), iso, notes,
                     embargoed, "dates", gap)

    fit = pick(fit_d)
    in_valid = _buyer_unit(fit) < share
    notes.append(
        f"validation by buyer: one as-of date before the test set ({fit_d[0].date()}), so "
        f"early stopping and calibration use a holdout of {share:.0%} of its buyers (stable "
        "hash of buyer_id), not later dates; no buyer is in both")
    iso = {"train": _iso(fit_d), "valid": _iso(fit_d), "test": _iso(test_d)}
    return Split("out_of_time_buyer_valid", fit[~in_valid], fit[in_valid], pick(test_d), iso,
                 notes, embargoed, "buyers", None)


def feature_spec(panel: pd.DataFrame, params: Params) -> FeatureSpec:
    """Model features: every feature column except those excluded in params; categories of
    the categorical ones are learned from the training rows."""
    excluded = set(params.train.exclude_features)
    unknown = excluded - set(panel.columns)
    if unknown:
        raise TrainingError(f"train.exclude_features names unknown columns {sorted(unknown)}")
    names = [c for c in panel.columns
             if c not in (*ID_COLUMNS, "in_default", TARGET, *RECENT_COLUMNS)
             and c not in excluded]
    cats = {c: sorted(panel[c].dropna().astype("str").unique().tolist())
            for c in CATEGORICAL if c in names}
    return FeatureSpec(names, cats)


def monotone_vector(spec: FeatureSpec, params: Params) -> list[int]:
    """Constraint per feature: the feature catalogue's default
    (:func:`riskmodel.features.catalogue.monotone_defaults`; 0 for a feature it does not
    know), then ``train.monotone`` in order, whose keys may be names or glob patterns
    (``dbt_mean_*``) and whose value (1, -1, or 0 for none) replaces the default."""
    defaults = monotone_defaults(spec.names)
    out = [0 if n in spec.categories else defaults[n] for n in spec.names]
    for pattern, direction in params.train.monotone.items():
        hits = [i for i, n in enumerate(spec.names) if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise TrainingError(f"train.monotone: {pattern!r} matches no feature")
        for i in hits:
            if direction and spec.names[i] in spec.categories:
                raise TrainingError(f"train.monotone: {spec.names[i]!r} is categorical")
            out[i] = int(direction)
    return out


def lgb_params(params: Params, monotone: list[int], y_train: np.ndarray) -> dict[str, Any]:
    tp = params.train
    out: dict[str, Any] = {
        "objective": "binary",
        "metric": "binary_logloss",
        "first_metric_only": True,
        "num_leaves": tp.num_leaves,
        "max_depth": tp.max_depth,
        "learning_rate": tp.learning_rate,
        "min_data_in_leaf": tp.min_child_samples,
        "bagging_fraction": tp.subsample,
        "bagging_freq": tp.subsample_freq,
        "feature_fraction": tp.colsample_bytree,
        "lambda_l2": tp.reg_lambda,
        "seed": tp.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": tp.num_threads,
        "verbose": -1,
        "monotone_constraints": monotone,
        "monotone_constraints_method": "intermediate",
    }
    if tp.class_weight == "balanced":
        pos = float(y_train.sum())
        out["scale_pos_weight"] = (len(y_train) - pos) / max(pos, 1.0)
    return out


def _monotone_names(spec: FeatureSpec, params: Params) -> set[str]:
    """The features under a monotone constraint (:func:`monotone_vector`)."""
    return {n for n, d in zip(spec.names, monotone_vector(spec, params), strict=True) if d}


def _psi_ready(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.astype(object)
    return col


def feature_stability(split: Split, spec: FeatureSpec, params: Params) -> pd.DataFrame:
    """One row per model feature: its missing share on the training as-of date where it is
    most present (``missing_share_train``: 1.0 is missing on every training date), on the
    test rows, the number of distinct values on the training rows, the PSI between the
    earliest training dates (as many as there are test dates) and the test dates, and
    ``reason``, why it is left out of learning (None when kept):

    * ``missing_in_training`` / ``constant_in_training``: no information on the training
      rows (the trees could not use it; its values at scoring would be unknown ground);
    * ``psi``: PSI above ``train.max_feature_psi`` (not for ``train.monotone`` features,
      which are kept and flagged ``drift_kept``).
    """
    tp = params.train
    train, test = split.train, split.test
    names = spec.names
    train_dates = sorted(train["as_of"].unique())
    n_ref = max(len(split.dates.get("test", [])), 1)
    ref = train[train["as_of"].isin(train_dates[:n_ref])]
    missing_by_date = train[names].isna().groupby(train["as_of"]).mean()
    mono = _monotone_names(spec, params)
    rows = []
    for name in names:
        miss_train = float(missing_by_date[name].min()) if len(missing_by_date) else 1.0
        miss_test = float(test[name].isna().mean()) if len(test) else float("nan")
        distinct = int(train[name].nunique(dropna=False))
        value = psi(_psi_ready(ref[name]), _psi_ready(test[name]), STABILITY_PSI_BINS)
        reason: str | None = None
        drift_kept = False
        if miss_train == 1.0:
            reason = "missing_in_training"
        elif distinct <= 1:
            reason = "constant_in_training"
        elif tp.max_feature_psi is not None and value > tp.max_feature_psi:
            if name in mono:
                drift_kept = True
            else:
                reason = "psi"
        rows.append({"feature": name, "missing_share_train": round(miss_train, 6),
                     "missing_share_test": round(miss_test, 6),
                     "distinct_train": distinct, "psi": round(value, 6),
                     "monotone": name in mono, "reason": reason, "drift_kept": drift_kept})
    return pd.DataFrame(rows, columns=["feature", "missing_share_train", "missing_share_test",
                                       "distinct_train", "psi", "monotone", "reason",
                                       "drift_kept"])


def _stability_notes(checks: pd.DataFrame, params: Params, ref: list[str]) -> list[str]:
    notes = []
    limit = params.train.max_feature_psi
    for r in checks.itertuples():
        mono = " (a train.monotone feature)" if r.monotone else ""
        if r.reason == "missing_in_training":
            notes.append(f"left out {r.feature}{mono}: missing on every training date, "
                         f"missing in {r.missing_share_test:.0%} of test rows")
        elif r.reason == "constant_in_training":
            notes.append(f"left out {r.feature}{mono}: a single value on the training rows")
        elif r.reason == "psi":
            notes.append(f"left out {r.feature}: PSI {r.psi:.2f} between the training dates "
                         f"{', '.join(ref)} and the test dates (train.max_feature_psi {limit})")
    kept = [f"{r.feature} ({r.psi:.2f})" for r in checks.itertuples() if r.drift_kept]
    if kept:
        notes.append(f"kept {len(kept)} train.monotone feature(s) although their PSI exceeds "
                     f"train.max_feature_psi {limit} (list one in train.exclude_features to "
                     f"leave it out): {', '.join(kept)}")
    return notes


@dataclass
class TrainResult:
    model: RiskModel
    split: Split
    best_iteration: int
    lgb_params: dict[str, Any]
    #: trees grown before early stopping (before truncation to ``best_iteration``)
    trees_grown: int = 0
    #: early stopping did not trigger before ``train.n_estimators``
    hit_tree_cap: bool = False
    #: the feature checks of :func:`feature_stability`
    stability: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: features listed in ``train.exclude_features`` (not model inputs at all)
    params_excluded: list[str] = field(default_factory=list)
    #: the PSI reference: the earliest training dates
    psi_reference_dates: list[str] = field(default_factory=list)
    max_feature_psi: float | None = None
    notes: list[str] = field(default_factory=list)
    #: the model fitted on the split's training rows and calibrated on its validation rows:
    #: the test set's figures are its figures (``model`` itself, without ``train.refit``)
    holdout: RiskModel | None = None
    #: the capacity search, a row per candidate (:func:`capacity_search`)
    search: list[dict[str, Any]] = field(default_factory=list)
    #: the refit on every labelled date: rows, dates, trees, calibration; None without refit
    refit: dict[str, Any] | None = None
    #: the rows the shipped model was fitted on
    fit_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: the level adjustment of the holdout model, as of the first test date
    holdout_level: dict[str, Any] = field(default_factory=dict)

    def excluded_features(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"feature": f, "reason": "train.exclude_features", "model_input": False}
            for f in self.params_excluded]
        if len(self.stability):
            for r in self.stability[self.stability["reason"].notna()].to_dict("records"):
                out.append({"feature": r["feature"], "reason": r["reason"],
                            "missing_share_train": r["missing_share_train"],
                            "missing_share_test": r["missing_share_test"],
                            "distinct_train": r["distinct_train"], "psi": r["psi"],
                            "monotone": bool(r["monotone"]), "model_input": True})
        return out

    def metadata(self) -> dict[str, Any]:
        kept = []
        if len(self.stability):
            kept = [{"feature": r["feature"], "psi": r["psi"]}
                    for r in self.stability[self.stability["drift_kept"]].to_dict("records")]
        return {
            "split": self.split.summary(),
            "best_iteration": self.best_iteration,
            "trees_grown": self.trees_grown,
            "hit_tree_cap": self.hit_tree_cap,
            "n_features": len(self.model.spec.names),
            "excluded_features": self.excluded_features(),
            "drifting_features_kept": kept,
            "feature_stability": {
                "max_feature_psi": self.max_feature_psi,
                "psi_reference_dates": self.psi_reference_dates,
                "psi_test_dates": self.split.dates.get("test", []),
            },
            "n_leaves_total": int(sum(t["num_leaves"] for t in
                                      self.model.booster.dump_model()["tree_info"])),
            "capacity_search": self.search,
            "refit": self.refit,
            "holdout_level": self.holdout_level,
            "trained_at_as_of": (max(self.refit["dates"]) if self.refit else
                                 max(self.split.dates.get("train", ["?"]))),
            "notes": list(self.notes),
            "created": dt.date.today().isoformat(),
        }


class _TreeCount:
    """LightGBM callback: the number of boosting rounds run (the booster that ``lgb.train``
    returns keeps only the trees up to the best iteration)."""

    order = 10  # before early stopping (30), which ends training by raising

    def __init__(self) -> None:
        self.trees = 0

    def __call__(self, env: Any) -> None:
        self.trees = env.iteration + 1


#: a fit that reaches the tree cap is redone with the learning rate doubled, at most this
#: many times, so that early stopping (not the cap) sets the number of trees
MAX_RATE_DOUBLINGS = 3


@dataclass
class _Matrices:
    """The design matrices of one panel slice, with the left-out features blanked."""

    x: np.ndarray
    y: np.ndarray
    rows: pd.DataFrame


@dataclass
class _Fit:
    booster: lgb.Booster
    best: int
    grown: int
    capped: bool
    learning_rate: float
    auc: float


def _matrices(rows: pd.DataFrame, spec: FeatureSpec, left_out: list[int]) -> _Matrices:
    x = design_matrix(rows, spec)
    x[:, left_out] = np.nan  # no information: no tree can split on these
    return _Matrices(x, rows[TARGET].to_numpy(dtype=float), rows)


def _with_capacity(params: Params, cand: CapacityCandidate) -> Params:
    update = {k: v for k, v in cand.model_dump().items() if v is not None}
    return params.model_copy(update={"train": params.train.model_copy(update=update)})


def _dataset(m: _Matrices, spec: FeatureSpec, reference: lgb.Dataset | None = None,
             params: dict[str, Any] | None = None) -> lgb.Dataset:
    cat_idx = [spec.names.index(c) for c in spec.categories]
    if reference is not None:
        return lgb.Dataset(m.x, m.y, reference=reference)
    return lgb.Dataset(m.x, m.y, feature_name=spec.names, categorical_feature=cat_idx,
                       params=params, free_raw_data=False)


def _fit_early(prm: dict[str, Any], tr: _Matrices, va: _Matrices, spec: FeatureSpec,
               params: Params) -> _Fit:
    """Fit with early stopping on ``va``; a fit that reaches ``train.n_estimators`` is redone
    with the learning rate doubled (at most :data:`MAX_RATE_DOUBLINGS` times)."""
    tp = params.train
    prm = dict(prm)
    for attempt in range(MAX_RATE_DOUBLINGS + 1):
        d_tr = _dataset(tr, spec)
        d_va = _dataset(va, spec, reference=d_tr)
        grown = _TreeCount()
        booster = lgb.train(
            prm, d_tr, num_boost_round=tp.n_estimators, valid_sets=[d_va],
            valid_names=["valid"],
            callbacks=[grown, lgb.early_stopping(tp.early_stopping_rounds, verbose=False)],
        )
        best = booster.best_iteration or tp.n_estimators
        # early stopping fires ``early_stopping_rounds`` after the best iteration: it did
        # not when that point lies beyond the cap
        capped = (grown.trees >= tp.n_estimators
                  and best + tp.early_stopping_rounds > tp.n_estimators)
        if not capped or attempt == MAX_RATE_DOUBLINGS:
            break
        prm["learning_rate"] = prm["learning_rate"] * 2
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    margin = np.asarray(booster.predict(va.x, raw_score=True), dtype=np.float64)
    return _Fit(booster, best, grown.trees, capped, float(prm["learning_rate"]),
                float(roc_auc_score(va.y, margin)))


def _fit_fixed(prm: dict[str, Any], tr: _Matrices | lgb.Dataset, spec: FeatureSpec,
               trees: int) -> lgb.Booster:
    """``trees`` rounds on ``tr`` (matrices, or a constructed Dataset or subset of one)."""
    data = tr if isinstance(tr, lgb.Dataset) else _dataset(tr, spec)
    booster = lgb.train(prm, data, num_boost_round=trees)
    return lgb.Booster(model_str=booster.model_to_string())


def _binned(rows: _Matrices, spec: FeatureSpec, prm: dict[str, Any]) -> lgb.Dataset:
    """``rows`` binned once by LightGBM, so that the refit and the cross-fitting folds
    train on it and on subsets of it (no copy of the feature matrix per fold)."""
    return _dataset(rows, spec, params=prm).construct()


def search_folds(split: Split, panel: pd.DataFrame, params: Params
                 ) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Walk-forward folds of the capacity search, latest first: fold 0 is the split's own
    training and validation rows; with validation by dates, each further fold moves the
    validation block back by its length and trains on the labelled dates before it (whose
    label windows end by its first date when ``train.embargo`` is on), as long as a fold
    keeps a training date and both outcomes on each side. No fold sees a test date."""
    folds = [(split.train, split.valid)]
    if split.validation != "dates" or params.train.search_folds < 2:
        return folds
    horizon = pd.Timedelta(days=params.label.horizon_days)
    first_test = min(pd.Timestamp(d) for d in split.dates["test"])
    rows = panel.loc[trainable(panel)]
    fit = rows[rows["as_of"] < first_test]
    valid_d = sorted(pd.Timestamp(d) for d in split.valid["as_of"].unique())
    fit_d = sorted(pd.Timestamp(d) for d in fit["as_of"].unique())
    v = len(valid_d)
    end = fit_d.index(valid_d[0])
    while len(folds) < params.train.search_folds and end - v >= 1:
        block = fit_d[end - v:end]
        before = [d for d in fit_d[:end - v]
                  if not params.train.embargo or d + horizon <= block[0]]
        tr = fit[fit["as_of"].isin(before)]
        va = fit[fit["as_of"].isin(block)]
        ys = [tr[TARGET].sum(), va[TARGET].sum()]
        if not before or min(ys) == 0 or ys[0] == len(tr) or ys[1] == len(va):
            break
        folds.append((tr, va))
        end -= v
    return folds


def _cost(trees: int, prm: dict[str, Any]) -> int:
    """The explanation cost of a model: trees x leaves x depth^2 (the work of exact TreeSHAP
    per row grows so)."""
    depth = prm["max_depth"] if prm["max_depth"] > 0 else prm["num_leaves"] - 1
    return int(trees * prm["num_leaves"] * depth ** 2)


def capacity_search(folds: list[tuple[_Matrices, _Matrices]], spec: FeatureSpec,
                    mono: list[int], params: Params) -> tuple[int, list[dict[str, Any]],
                                                             list[_Fit]]:
    """Every candidate of ``train.search`` (the section's own capacity when empty) fitted
    on every fold with early stopping. The winner: the cheapest to explain (:func:`_cost`
    of its fold-0 fit) among those whose mean fold AUC is within ``train.search_tolerance``
    of the best. Returns its index, one report row per candidate, and the winner's fits."""
    tp = params.train
    cands = list(tp.search) or [CapacityCandidate()]
    table: list[dict[str, Any]] = []
    fits: list[list[_Fit]] = []
    for i, cand in enumerate(cands):
        cp = _with_capacity(params, cand)
        prm = lgb_params(cp, mono, folds[0][0].y)
        got = [_fit_early(prm, tr, va, spec, cp) for tr, va in folds]
        fits.append(got)
        table.append({
            "candidate": i, "num_leaves": cp.train.num_leaves,
            "max_depth": cp.train.max_depth, "min_child_samples": cp.train.min_child_samples,
            "learning_rate": cp.train.learning_rate,
            "learning_rate_used": got[0].learning_rate,
            "fold_auc": [round(f.auc, 6) for f in got],
            "mean_auc": round(float(np.mean([f.auc for f in got])), 6),
            "trees": got[0].best, "hit_tree_cap": any(f.capped for f in got),
            "explain_cost": _cost(got[0].best, {**prm, "learning_rate": got[0].learning_rate}),
        })
    best_auc = max(r["mean_auc"] for r in table)
    eligible = [r for r in table if r["mean_auc"] >= best_auc - tp.search_tolerance]
    win = min(eligible, key=lambda r: (r["explain_cost"], r["candidate"]))["candidate"]
    for r in table:
        r["chosen"] = r["candidate"] == win
    return win, table, fits[win]


def crossfit_calibration(rows: _Matrices, prm: dict[str, Any], spec: FeatureSpec,
                         trees: int, params: Params, binned: lgb.Dataset | None = None
                         ) -> tuple[Calibrator, dict[str, Any]]:
    """A calibrator for a model fitted on all of ``rows``: out-of-fold margins of the rows on
    the latest ``calibration.dates`` as-of dates, each from a model fitted (same parameters
    and trees) on every row of the other buyers (``calibration.crossfit_folds`` folds by a
    stable hash of buyer_id, so no buyer's outcome is scored by a model that saw it)."""
    cp = params.calibration
    dates = sorted(pd.Timestamp(d) for d in rows.rows["as_of"].unique())[-cp.dates:]
    fold = np.floor(_buyer_unit(rows.rows) * cp.crossfit_folds).astype(int)
    on_dates = rows.rows["as_of"].isin(dates).to_numpy()
    full = binned if binned is not None else _binned(rows, spec, prm)
    margins, ys = [], []
    for k in range(cp.crossfit_folds):
        keep = fold != k
        target = (fold == k) & on_dates
        if not target.any():
            continue
        booster = _fit_fixed(prm, full.subset(np.flatnonzero(keep).tolist()), spec, trees)
        margins.append(np.asarray(booster.predict(rows.x[target], raw_score=True),
                                  dtype=np.float64))
        ys.append(rows.y[target])
    margin, y = np.concatenate(margins), np.concatenate(ys)
    cal = Calibrator(params.calibration.method).fit(margin, y)
    info = {"dates": _iso(dates), "folds": cp.crossfit_folds, "rows": int(len(y)),
            "bads": int(y.sum()), "method": params.calibration.method}
    return cal, info


def recent_level(model: RiskModel, panel: pd.DataFrame, params: Params,
                 now: pd.Timestamp | None = None) -> tuple[float, dict[str, Any]]:
    """The log-odds shift that brings the model to the default level of the latest, partly
    observed windows, and what it was read from.

    The labelled windows end a horizon or more before the data's observation date, so a
    model calibrated on them misses any move of the default level since. The as-of dates
    whose window is partly observed (at least ``calibration.recent_min_days`` days) carry
    that news: for each live buyer, whether its first bad outcome came in the latest
    ``calibration.recent_window_days`` of its observed ``t`` days, ``(s, t]`` (the latest
    stretch, so that the level read is today's rather than that of the whole stretch since
    the as-of date). If ``F(t)`` is the share of a full window's bad outcomes that come
    within ``t`` days (measured on the latest ``calibration.dates`` labelled dates), a buyer
    of PD ``p`` has its first bad outcome in ``(s, t]`` with probability ``(F(t) - F(s)) p``.
    The shift ``d`` solves ``sum (F(t_i) - F(s_i)) sigmoid(logit(p_i) + d) = observed`` and
    is shrunk by
    ``bads / (bads + calibration.recent_credibility_bads)``. Only outcomes observed by the
    observation date count: point in time.

    With ``now`` (the holdout model: the first test date), the same is read as it stood on
    that day: windows are observed up to ``now`` only, and only outcomes by ``now`` count."""
    cp = params.calibration
    info: dict[str, Any] = {"applied": False}
    if not cp.recent_level:
        info["reason"] = "calibration.recent_level is off"
        return 0.0, info
    if any(c not in panel.columns for c in RECENT_COLUMNS):
        info["reason"] = "the labels have no observed_days/days_to_bad (built before them)"
        return 0.0, info
    h = params.label.horizon_days
    live = panel[~panel["in_default"].astype(bool)]
    if now is None:
        observed = live["observed_days"].astype("Float64").fillna(0).to_numpy(dtype=float)
    else:  # as it stood at ``now``: a window is observed up to ``now`` only
        observed = np.clip((now - live["as_of"]).dt.days.to_numpy(dtype=float), 0, h)
    labelled = live[(observed >= h) & live[TARGET].notna().to_numpy()]
    dates = sorted(labelled["as_of"].unique())[-cp.dates:]
    bads = labelled[labelled["as_of"].isin(dates) & labelled[TARGET].astype(bool)]
    timing = bads["days_to_bad"].dropna().to_numpy(dtype=float)
    partly = (observed >= cp.recent_min_days) & (observed < h)
    recent = live[partly]
    if len(timing) < 20 or recent.empty:
        info["reason"] = (f"{len(timing)} bad outcomes to time the window by (20 needed), "
                          f"{len(recent)} rows with a partly observed window")
        return 0.0, info
    t = observed[partly]
    start = np.maximum(t - cp.recent_window_days, 0.0)
    ordered = np.sort(timing)

    def cdf(days: np.ndarray) -> np.ndarray:  # F: share of a window's bads by that day
        return np.searchsorted(ordered, days, side="right") / len(ordered)

    share = cdf(t) - cdf(start)  # of a window's bads, the share in its latest stretch
    first = recent["days_to_bad"].to_numpy(dtype=float, na_value=np.nan)
    seen = float(np.sum((first > start) & (first <= t)))
    p = model.predict(recent[["status", *model.spec.names]])["pd"]
    logit = np.log(p.to_numpy() / (1 - p.to_numpy()))

    def expected(d: float) -> float:
        return float(np.sum(share / (1.0 + np.exp(-(logit + d)))))

    lo, hi = -5.0, 5.0
    if seen <= expected(lo) or seen >= expected(hi):
        d = lo if seen <= expected(lo) else hi
    else:
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected(mid) < seen else (lo, mid)
        d = (lo + hi) / 2
    weight = seen / (seen + cp.recent_credibility_bads) if seen else 0.0
    shift = d * weight
    info = {"applied": True, "dates": _iso(sorted(pd.Timestamp(x) for x in
                                                  recent["as_of"].unique())),
            "rows": len(recent), "bads_seen": int(seen),
            "bads_expected": round(expected(0.0), 2), "shift_full": round(d, 6),
            "weight": round(weight, 6), "shift": round(shift, 6),
            "timing_bads": len(timing)}
    return float(shift), info


def train_model(features: pd.DataFrame, labels: pd.DataFrame, params: Params) -> TrainResult:
    """Fit the calibrated, graded PD model on a features/labels panel.

    1. Split (:func:`split_panel`) and check feature stability (:func:`feature_stability`).
    2. Choose the capacity walk-forward (:func:`capacity_search`); the winner's fit on the
       split's training rows, calibrated on its validation rows, is the *holdout model*:
       the test figures are its figures (it never saw the test dates).
    3. With ``train.refit`` (the default), the shipped model is the same capacity and number
       of trees refit on every labelled as-of date, test dates included, so the model that
       scores today has seen the freshest outcomes; it is calibrated by cross-fitting
       (:func:`crossfit_calibration`). The walk-forward backtest judges this recipe.
    """
    panel = build_panel(features, labels)
    split = split_panel(panel, params)
    for name in ("train", "valid"):
        y = getattr(split, name)[TARGET].astype(float)
        if y.sum() == 0 or y.sum() == len(y):
            raise TrainingError(f"the {name} set has only one class ({int(y.sum())} bads in "
                                f"{len(y)} rows)")
    spec = feature_spec(split.train, params)
    mono = monotone_vector(spec, params)
    checks = feature_stability(split, spec, params)
    left_out = [spec.names.index(f) for f in checks.loc[checks["reason"].notna(), "feature"]]
    if len(left_out) == len(spec.names):
        raise TrainingError("every feature is left out by the stability checks: "
                            + "; ".join(_stability_notes(checks, params, [])))
    folds = [(_matrices(tr, spec, left_out), _matrices(va, spec, left_out))
             for tr, va in search_folds(split, panel, params)]
    win, search, fits = capacity_search(folds, spec, mono, params)
    chosen = _with_capacity(params, (list(params.train.search) or [CapacityCandidate()])[win])
    fit0 = fits[0]
    prm = {**lgb_params(chosen, mono, folds[0][0].y), "learning_rate": fit0.learning_rate}
    va = folds[0][1]
    margin_va = np.asarray(fit0.booster.predict(va.x, raw_score=True), dtype=np.float64)
    scale = MasterScale(params.master_scale.upper_bounds)
    holdout = RiskModel(fit0.booster, Calibrator(params.calibration.method).fit(margin_va, va.y),
                        scale, spec, fit_profile(split.train, spec))
    first_test = min(pd.Timestamp(d) for d in split.dates["test"])
    hold_shift, hold_level = recent_level(holdout, panel, params, now=first_test)
    if hold_shift:
        holdout = RiskModel(fit0.booster, holdout.calibrator.shifted(hold_shift), scale, spec,
                            holdout.profile)
    train_dates = split.dates.get("train", [])
    ref = sorted(set(train_dates))[:max(len(split.dates.get("test", [])), 1)]
    notes = [*split.notes, *_stability_notes(checks, params, ref)]
    tp = params.train
    ct = chosen.train
    win_row = search[win]
    notes.append(
        f"capacity: {ct.num_leaves} leaves, depth {ct.max_depth}, min_child_samples "
        f"{ct.min_child_samples}, learning rate {fit0.learning_rate:g} (candidate {win + 1} of "
        f"{len(search)} in train.search; mean walk-forward AUC {win_row['mean_auc']:.4f} over "
        f"{len(folds)} fold(s), best {max(r['mean_auc'] for r in search):.4f}; the cheapest to "
        f"explain within train.search_tolerance {tp.search_tolerance}; capacity_search in "
        "training.json)")
    if fit0.learning_rate != chosen.train.learning_rate:
        notes.append(
            f"learning rate {fit0.learning_rate:g} instead of {chosen.train.learning_rate:g}: "
            f"at the lower rate early stopping did not trigger within train.n_estimators="
            f"{tp.n_estimators} trees")
    if fit0.capped:
        notes.append(
            f"early stopping did not trigger within train.n_estimators={tp.n_estimators} trees "
            f"even at learning rate {fit0.learning_rate:g} (best validation iteration "
            f"{fit0.best}): raise train.n_estimators")
    refit_info: dict[str, Any] | None = None
    model, fit_rows = holdout, split.train
    if tp.refit:
        everything = panel.loc[trainable(panel)].reset_index(drop=True)
        allm = _matrices(everything, spec, left_out)
        prm_all = {**lgb_params(chosen, mono, allm.y), "learning_rate": fit0.learning_rate}
        binned = _binned(allm, spec, prm_all)
        cal, cal_info = crossfit_calibration(allm, prm_all, spec, fit0.best, params, binned)
        booster = _fit_fixed(prm_all, binned, spec, fit0.best)
        model = RiskModel(booster, cal, scale, spec, fit_profile(everything, spec))
        shift, level_info = recent_level(model, panel, params)
        cal_info["recent_level"] = level_info
        if shift:
            model = RiskModel(booster, cal.shifted(shift), scale, spec, model.profile)
            notes.append(
                f"default level read from {level_info['rows']:,} rows of the partly observed "
                f"windows ({', '.join(level_info['dates'])}): {level_info['bads_seen']} bad "
                f"outcomes against {level_info['bads_expected']:.0f} expected; log-odds "
                f"shifted by {shift:+.3f} (weight {level_info['weight']:.2f})")
        fit_rows = everything
        refit_info = {"rows": len(everything), "bads": int(allm.y.sum()),
                      "dates": _iso(sorted(pd.Timestamp(d) for d in everything["as_of"]
                                           .unique())),
                      "trees": fit0.best, "calibration": cal_info}
        notes.append(
            f"shipped model refit on all {len(refit_info['dates'])} labelled as-of dates "
            f"({refit_info['dates'][0]}..{refit_info['dates'][-1]}, {len(everything):,} rows) "
            f"with {fit0.best} trees; calibrated on out-of-fold margins of the latest "
            f"{len(cal_info['dates'])} dates ({cal_info['folds']} buyer folds); test figures "
            "are those of the model fitted without the test dates")
    notes.append(
        "holdout model (the test figures): "
        + (f"default level as of {first_test.date()} read from {hold_level['bads_seen']} bad "
           f"outcomes against {hold_level['bads_expected']:.0f} expected, log-odds shifted by "
           f"{hold_shift:+.3f}" if hold_level.get("applied") else
           f"no level adjustment ({hold_level.get('reason', '')})"))
    return TrainResult(model, split, fit0.best, prm, fit0.grown, fit0.capped, checks,
                       sorted(tp.exclude_features), ref, tp.max_feature_psi, notes,
                       holdout=holdout, search=search, refit=refit_info,
                       holdout_level=hold_level,
                       fit_rows=fit_rows)


def load_holdout(model_dir: str | Path) -> RiskModel:
    """The holdout model of a ``riskmodel train`` output (the model the test figures are
    of); the shipped model itself when it has none (trained with ``train.refit: false``)."""
    files = model_files(model_dir)
    held = files / HOLDOUT_FOLDER
    return RiskModel.load(held if held.is_dir() else files)
