"""Walk-forward backtest figures: a model trained on the data as they stood at a cut date,
scored on the live buyers at the cut, judged on their outcomes in the following horizon.

The figures of one cut: discrimination (AUC), calibration against outcomes (ECE, mean PD over
the observed bad rate) and, on a synthetic world, against the truth (the oracle AUC of
``pd_true``, and mean PD over mean ``pd_true``: one year's outcomes are luck that no model
escapes, the truth is not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.modeling.evaluation import discrimination, ece

#: columns of the backtest table, in order
COLUMNS = ("cut", "buyers", "bads", "bad_rate", "mean_pd", "pd_to_observed", "auc", "ece",
           "oracle_auc", "auc_to_oracle", "mean_pd_true", "pd_to_true", "oracle_ece",
           "ece_excess", "decile_worst_pd_to_true", "train_rows", "refit_rows", "trees",
           "num_leaves", "max_depth", "split_kind", "features_left_out", "level_shift")
#: deciles of the model's PD in the per-decile table
DECILES = 10


def cut_figures(y: np.ndarray, pd_: np.ndarray, pd_true: np.ndarray | None = None,
                bins: int = 10) -> dict[str, Any]:
    """The figures of one cut (see the module docstring)."""
    y = np.asarray(y, dtype=float)
    pd_ = np.asarray(pd_, dtype=float)
    out: dict[str, Any] = {"buyers": len(y), "bads": int(y.sum()),
                           "bad_rate": float(y.mean()) if len(y) else float("nan"),
                           "mean_pd": float(pd_.mean()) if len(y) else float("nan")}
    out["pd_to_observed"] = out["mean_pd"] / out["bad_rate"] if out["bad_rate"] else float("nan")
    both = 0 < y.sum() < len(y)
    out["auc"] = discrimination(y, pd_, bins)["auc"] if both else float("nan")
    out["ece"] = ece(y, pd_, bins) if len(y) else float("nan")
    for k in ("oracle_auc", "auc_to_oracle", "mean_pd_true", "pd_to_true", "oracle_ece",
              "ece_excess", "decile_worst_pd_to_true"):
        out[k] = float("nan")
    if pd_true is not None:
        t = np.asarray(pd_true, dtype=float)
        out["mean_pd_true"] = float(t.mean())
        out["pd_to_true"] = out["mean_pd"] / out["mean_pd_true"]
        out["oracle_ece"] = ece(y, t, bins)
        out["ece_excess"] = out["ece"] - out["oracle_ece"]
        dec = decile_table(y, pd_, t)
        worst = int(np.argmax(np.abs(dec["pd_to_true"].to_numpy() - 1.0)))
        out["decile_worst_pd_to_true"] = float(dec["pd_to_true"].iloc[worst])
        if both:
            out["oracle_auc"] = discrimination(y, t, bins)["auc"]
            out["auc_to_oracle"] = out["auc"] / out["oracle_auc"]
    return out


def decile_table(y: np.ndarray, pd_: np.ndarray, pd_true: np.ndarray | None = None,
                 n: int = DECILES) -> pd.DataFrame:
    """Buyers in ``n`` groups of equal size by the model's PD (ties broken by position, so
    the groups are equal however many PDs tie), lowest first: buyers, mean PD, observed bad
    rate and, with the truth, mean ``pd_true`` and mean PD over it."""
    y = np.asarray(y, dtype=float)
    pd_ = np.asarray(pd_, dtype=float)
    order = np.argsort(pd_, kind="stable")
    group = np.empty(len(pd_), dtype=int)
    group[order] = np.arange(len(pd_)) * n // max(len(pd_), 1)
    frame = pd.DataFrame({"decile": group + 1, "pd": pd_, "bad": y})
    if pd_true is not None:
        frame["pd_true"] = np.asarray(pd_true, dtype=float)
    out = frame.groupby("decile").agg(buyers=("pd", "size"), mean_pd=("pd", "mean"),
                                      bad_rate=("bad", "mean"),
                                      **({"mean_pd_true": ("pd_true", "mean")}
                                         if pd_true is not None else {}))
    if pd_true is not None:
        out["pd_to_true"] = out["mean_pd"] / out["mean_pd_true"]
    return out.reset_index()


def group_table(frame: pd.DataFrame, by: str, bins: int = 10) -> pd.DataFrame:
    """The figures of :func:`cut_figures` per value of ``by`` (a grade, an industry):
    ``frame`` has columns ``by``, ``bad``, ``pd`` and optionally ``pd_true``."""
    rows = []
    for value, g in frame.groupby(by, sort=True, dropna=False):
        t = g["pd_true"].to_numpy() if "pd_true" in g.columns else None
        fig = cut_figures(g["bad"].to_numpy(), g["pd"].to_numpy(), t, bins)
        rows.append({by: value, **{k: fig[k] for k in (
            "buyers", "bads", "bad_rate", "mean_pd", "pd_to_observed", "auc",
            "mean_pd_true", "pd_to_true")}})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over the cuts of the headline figures (for metrics files and MLflow)."""
    keys = ("auc", "auc_to_oracle", "ece", "pd_to_observed", "pd_to_true", "ece_excess")
    return {f"backtest_{k}_mean": float(table[k].mean()) for k in keys if table[k].notna().any()}
