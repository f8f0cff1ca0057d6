"""Training: the snapshot panel, an out-of-time split, a LightGBM model of 12-month
deterioration, its calibration and master scale.

The split is out of time. The latest ``test_dates`` labelled as-of dates are the test set; the
``validation_dates`` before them (early stopping and calibration) and the training dates
before those are taken so that, with ``embargo`` on, no label window of a training or
validation row reaches past the first test as-of date: the model never learns from outcomes
that happen inside the period it is tested on. With a single as-of date the split is a holdout grouped by
buyer (a stable hash of ``buyer_id``), so no buyer is on both sides.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskmodel.features import CATEGORICAL, ID_COLUMNS
from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import FeatureSpec, RiskModel, design_matrix
from riskmodel.params import Params

TARGET = "bad"


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
    panel = features.merge(labels[[*keys, "in_default", "bad"]], on=keys, how="left",
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


@dataclass
class Split:
    kind: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    dates: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def part(f: pd.DataFrame) -> dict[str, Any]:
            y = f[TARGET].astype(float)
            return {"rows": len(f), "bads": int(y.sum()), "bad_rate": float(y.mean())}

        return {"kind": self.kind, "dates": self.dates, "train": part(self.train),
                "valid": part(self.valid), "test": part(self.test)}


def split_panel(panel: pd.DataFrame, params: Params) -> Split:
    tp = params.train
    rows = panel.loc[trainable(panel)]
    dates = sorted(rows["as_of"].unique())
    if not dates:
        raise TrainingError("no labelled rows: every as-of date's window passes observed_until")
    if len(dates) == 1:
        bucket = pd.util.hash_array(rows["buyer_id"].astype("str").to_numpy(dtype=object))
        u = (bucket % np.uint64(10_000)).astype(float) / 10_000
        test = u < tp.holdout_share
        valid = (u >= tp.holdout_share) & (u < 2 * tp.holdout_share)
        day = [pd.Timestamp(dates[0]).date().isoformat()]
        return Split("buyer_holdout", rows[~test & ~valid], rows[valid], rows[test],
                     {"train": day, "valid": day, "test": day})

    horizon = pd.Timedelta(days=params.label.horizon_days)
    ts = [pd.Timestamp(d) for d in dates]
    test_d = ts[-tp.test_dates:]
    fit_d = [d for d in ts if d < test_d[0] and (not tp.embargo or d + horizon <= test_d[0])]
    valid_d = fit_d[-tp.validation_dates:]
    train_d = fit_d[: -tp.validation_dates]
    if len(valid_d) < tp.validation_dates or not train_d:
        raise TrainingError(
            f"not enough labelled as-of dates for an out-of-time split: {len(dates)} dates "
            f"({ts[0].date()}..{ts[-1].date()}); need {tp.test_dates} test dates, and "
            f"{tp.validation_dates} validation dates with training dates before them"
            + (f" whose {params.label.horizon_days}-day label windows end by the first test "
               "date (embargo)" if tp.embargo else "")
            + ": add history, use more snapshot dates, or set train.embargo: false"
        )

    def pick(ds: list[pd.Timestamp]) -> pd.DataFrame:
        return rows[rows["as_of"].isin(ds)]

    iso = {k: [d.date().isoformat() for d in v]
           for k, v in (("train", train_d), ("valid", valid_d), ("test", test_d))}
    return Split("out_of_time", pick(train_d), pick(valid_d), pick(test_d), iso)


def feature_spec(panel: pd.DataFrame, params: Params) -> FeatureSpec:
    """Model features: every feature column except those excluded in params; categories of
    the categorical ones are learned from the training rows."""
    excluded = set(params.train.exclude_features)
    unknown = excluded - set(panel.columns)
    if unknown:
        raise TrainingError(f"train.exclude_features names unknown columns {sorted(unknown)}")
    names = [c for c in panel.columns
             if c not in (*ID_COLUMNS, "in_default", TARGET) and c not in excluded]
    cats = {c: sorted(panel[c].dropna().astype("str").unique().tolist())
            for c in CATEGORICAL if c in names}
    return FeatureSpec(names, cats)


def monotone_vector(spec: FeatureSpec, params: Params) -> list[int]:
    """Constraint per feature; params keys may be names or glob patterns (``dbt_mean_*``)."""
    out = [0] * len(spec.names)
    for pattern, direction in params.train.monotone.items():
        hits = [i for i, n in enumerate(spec.names) if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise TrainingError(f"train.monotone: {pattern!r} matches no feature")
        for i in hits:
            if spec.names[i] in spec.categories:
                raise TrainingError(f"train.monotone: {spec.names[i]!r} is categorical")
            out[i] = int(direction)
    return out


def lgb_params(params: Params, monotone: list[int], y_train: np.ndarray) -> dict[str, Any]:
    tp = params.train
    out: dict[str, Any] = {
        "objective": "binary",
        "metric": ["auc", "binary_logloss"],
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


@dataclass
class TrainResult:
    model: RiskModel
    split: Split
    best_iteration: int
    lgb_params: dict[str, Any]

    def metadata(self) -> dict[str, Any]:
        return {
            "split": self.split.summary(),
            "best_iteration": self.best_iteration,
            "n_features": len(self.model.spec.names),
            "n_leaves_total": int(sum(t["num_leaves"] for t in
                                      self.model.booster.dump_model()["tree_info"])),
            "trained_at_as_of": max(self.split.dates.get("train", ["?"])),
            "created": dt.date.today().isoformat(),
        }


def train_model(features: pd.DataFrame, labels: pd.DataFrame, params: Params) -> TrainResult:
    """Fit the calibrated, graded PD model on a features/labels panel."""
    panel = build_panel(features, labels)
    split = split_panel(panel, params)
    for name in ("train", "valid"):
        y = getattr(split, name)[TARGET].astype(float)
        if y.sum() == 0 or y.sum() == len(y):
            raise TrainingError(f"the {name} set has only one class ({int(y.sum())} bads in "
                                f"{len(y)} rows)")
    spec = feature_spec(split.train, params)
    mono = monotone_vector(spec, params)
    x_tr, y_tr = design_matrix(split.train, spec), split.train[TARGET].to_numpy(dtype=float)
    x_va, y_va = design_matrix(split.valid, spec), split.valid[TARGET].to_numpy(dtype=float)
    cat_idx = [spec.names.index(c) for c in spec.categories]
    prm = lgb_params(params, mono, y_tr)
    d_tr = lgb.Dataset(x_tr, y_tr, feature_name=spec.names, categorical_feature=cat_idx,
                       free_raw_data=False)
    d_va = lgb.Dataset(x_va, y_va, reference=d_tr)
    booster = lgb.train(
        prm, d_tr, num_boost_round=params.train.n_estimators, valid_sets=[d_va],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.train.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or params.train.n_estimators
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    margin_va = np.asarray(booster.predict(x_va, raw_score=True), dtype=np.float64)
    cal = Calibrator(params.calibration.method).fit(margin_va, y_va)
    scale = MasterScale(params.master_scale.upper_bounds)
    return TrainResult(RiskModel(booster, cal, scale, spec), split, best, prm)
