"""Exact per-feature contributions of the PD model (path-dependent TreeSHAP) in the raw
log-odds of the uncalibrated LightGBM booster.

``contributions(booster, x)`` returns LightGBM's ``pred_contrib`` layout: one column per
feature in booster order, the last column the base value; each row sums to the raw margin.
First version: a thin wrapper of ``booster.predict(x, pred_contrib=True)``.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskmodel.modeling.model import RiskModel, check_columns, design_matrix


def contributions(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Path-dependent TreeSHAP values, shape ``(n, n_features + 1)`` float64; the last
    column is the base value (expected value of the raw score)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-dimensional, got shape {x.shape}")
    out = booster.predict(x, pred_contrib=True)
    return np.asarray(out, dtype=np.float64)


def contributions_frame(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Columns ``base_value``, one per model feature (in the model's order) and ``margin``
    (their sum, the raw booster score), indexed like ``frame``."""
    check_columns(frame, model.spec)
    phi = contributions(model.booster, design_matrix(frame, model.spec))
    names = list(model.spec.names)
    out = pd.DataFrame(phi[:, :-1], columns=names, index=frame.index)
    out.insert(0, "base_value", phi[:, -1])
    out["margin"] = phi.sum(axis=1)
    return out


__all__ = ["contributions", "contributions_frame"]
