"""A synthetic world with its features, labels and fast training params, built once per test
session and shared by the training, reproducibility and MLflow-server tests."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from riskmodel.data.contract import ValidationResult, load_dataset
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.features import FeatureConfig, build_features
from riskmodel.features.labels import compute_labels
from riskmodel.params import Params, parse_params

WORLD = SynthConfig(n_buyers=3000, start=dt.date(2020, 1, 1), end=dt.date(2023, 12, 31), seed=5)


MONOTONE = {
    "dbt_mean_*": 1,
    "dbt_wmean_*": 1,
    "dbt_p90_*": 1,
    "dbt_max_*": 1,
    "late_share_*": 1,
    "paydex_*": -1,
    "overdue_1_30": 1,
    "overdue_31_60": 1,
    "overdue_61_90": 1,
    "overdue_90p": 1,
    "oldest_open_dpd": 1,
    "overdue_share_open": 1,
    "due_60_unpaid_share": 1,
}

#: params of these tests (not the repo's params.yaml, which is tuned for the demo): few trees
BASE: dict[str, Any] = {
    "snapshots": {"frequency": "quarterly", "history_days": 365},
    "label": {"horizon_days": 365, "dpd_threshold": 90},
    "features": {"windows": [90, 180, 365]},
    "train": {
        "num_leaves": 15,
        "max_depth": 5,
        "learning_rate": 0.05,
        "n_estimators": 150,
        "early_stopping_rounds": 50,
        "min_child_samples": 100,
        "seed": 42,
        "num_threads": 1,
        "test_dates": 2,
        "validation_dates": 2,
        "holdout_share": 0.2,
        "embargo": True,
        "monotone": MONOTONE,
        "exclude_features": [],
    },
    "calibration": {"method": "isotonic"},
    "promote": {"min_auc": 0.75, "max_auc_drop": 0.005, "max_ece": 0.01, "max_score_psi": 0.25},
    "registry": {"model_name": "buyer-risk", "experiment": "buyer-risk"},
}


def params_dict(**sections: dict[str, Any]) -> dict[str, Any]:
    """:data:`BASE` with each given section updated key by key."""
    raw = copy.deepcopy(BASE)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(copy.deepcopy(values))
    return raw


def fast_params(**sections: dict[str, Any]) -> Params:
    return parse_params(params_dict(**sections))


def write_params(path: Path, **sections: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params_dict(**sections), sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class World:
    raw: Path
    data: ValidationResult
    params: Params
    dates: list[dt.date]
    features: pd.DataFrame
    labels: pd.DataFrame


_CACHE: dict[str, World] = {}


def world(factory: pytest.TempPathFactory, cfg: SynthConfig = WORLD) -> World:
    """The world of ``cfg`` with features and labels at the params' quarterly snapshots; one
    per session (callers must not modify the frames)."""
    key = repr(cfg)  # SynthConfig holds a dict, so it is not hashable
    if key not in _CACHE:
        raw = factory.mktemp("train_world")
        write_world(cfg, raw)
        data = load_dataset(str(raw))
        prm = fast_params()
        first = data.invoices["issue_date"].min().date()
        dates = prm.snapshots.resolve(first, data.observed_until)
        feats = build_features(
            data.invoices,
            data.buyers,
            data.events,
            dates,
            FeatureConfig(
                windows=tuple(prm.features.windows), dpd_threshold=prm.label.dpd_threshold
            ),
        )
        labs = compute_labels(
            data.invoices,
            data.events,
            dates,
            data.observed_until,
            prm.label.horizon_days,
            prm.label.dpd_threshold,
        )
        _CACHE[key] = World(raw, data, prm, dates, feats, labs)
    return _CACHE[key]


# --------------------------------------------------------------------------- synthetic panels

BOOK_START = dt.date(2019, 1, 1)


def book_end(months: int, start: dt.date = BOOK_START) -> dt.date:
    """``observed_until`` of a book of ``months`` whole calendar months from ``start``."""
    return (pd.Timestamp(start) + pd.DateOffset(months=months) - pd.Timedelta(days=1)).date()


def book_panel(
    months: int,
    frequency: str = "quarterly",
    *,
    n_buyers: int = 400,
    seed: int = 0,
    start: dt.date = BOOK_START,
    history_days: int = 365,
    horizon_days: int = 365,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and labels of a book of ``months`` months, without invoices: the as-of dates
    are the snapshot dates a pipeline would take (``snapshots.resolve`` from the first
    invoice, ``start``, to ``observed_until``), labelled where the ``horizon_days`` window
    ends by ``observed_until``. The same ``n_buyers`` at every date; ``signal`` drives the
    bad rate, ``noise`` does not; about 2% of rows are in default."""
    import numpy as np

    from riskmodel.params import SnapshotParams

    end = book_end(months, start)
    snaps = SnapshotParams(frequency=frequency, history_days=history_days)  # type: ignore[arg-type]
    dates = snaps.resolve(start, end)
    last_labelled = end - dt.timedelta(days=horizon_days)
    rng = np.random.default_rng(seed)
    ids = [f"B{i:05d}" for i in range(n_buyers)]
    frames = []
    for d in dates:
        signal = rng.normal(size=n_buyers)
        bad = rng.random(n_buyers) < 1 / (1 + np.exp(-(-2.0 + 1.5 * signal)))
        in_default = rng.random(n_buyers) < 0.02
        labelled = d <= last_labelled
        frames.append(pd.DataFrame({
            "buyer_id": ids,
            "as_of": pd.Timestamp(d),
            "status": np.where(in_default, "in_default", "active"),
            "signal": signal,
            "noise": rng.normal(size=n_buyers),
            "in_default": in_default,
            "bad": pd.array(np.where(in_default | (not labelled), None, bad), dtype="boolean"),
        }))
    panel = pd.concat(frames, ignore_index=True)
    panel["as_of"] = panel["as_of"].astype("datetime64[s]")
    feats = panel[["buyer_id", "as_of", "status", "signal", "noise"]]
    labs = panel[["buyer_id", "as_of", "in_default", "bad"]]
    return feats, labs
