"""Model validation as a validator at an insurer would do it: discrimination, calibration,
grade-level back-testing, stability; computed apart from drawing (``plots``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from riskmodel.modeling.masterscale import MasterScale


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of predicted PD (PDs of a credit book
    crowd near 0, where equal-width bins would put nearly everyone in one bin)."""
    table = calibration_table(y, p, bins)
    return float(np.sum(table["n"] / table["n"].sum()
                        * np.abs(table["mean_pd"] - table["observed_rate"])))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Rows sorted by PD and cut into ``bins`` equal-count bins (the first ``n % bins`` bins
    one row larger), except that rows with the same PD stay in one bin (the bin of the
    first of them), so the table does not depend on the row order; empty bins are left out."""
    y = np.asarray(y, dtype=float)  # positions, not the labels of a pandas index
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    ends = np.cumsum([len(g) for g in np.array_split(np.arange(len(p)), bins)])
    first_of_tie = np.searchsorted(sorted_p, sorted_p, side="left")
    bin_of = np.searchsorted(ends, first_of_tie, side="right")
    rows = []
    for i in range(bins):
        g = order[bin_of == i]
        if len(g):
            rows.append({"bin": i + 1, "n": len(g), "mean_pd": float(np.mean(p[g])),
                         "observed_rate": float(np.mean(y[g]))})
    return pd.DataFrame(rows)


def discrimination(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    auc = float(roc_auc_score(y, p))
    return {
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "ece": ece(y, p, bins),
        "mean_pd": float(p.mean()),
        "bad_rate": float(y.mean()),
        "n": float(len(y)),
    }


def vasicek_band(pd_: float, rho: float, q: float = 0.999) -> tuple[float, float]:
    """Two-sided ``q`` band of a grade's default rate in the one-factor (Vasicek/ASRF)
    model with asset correlation ``rho``: defaults of one year move together with the
    systematic factor, so a large grade's rate does not shrink to its PD."""
    if rho <= 0:
        return pd_, pd_
    tail = (1 - q) / 2
    z = stats.norm.ppf([1 - tail, tail])  # a bad year, then a good year
    k = stats.norm.ppf(np.clip(pd_, 1e-12, 1 - 1e-12))
    lo, hi = stats.norm.cdf((k - np.sqrt(rho) * z) / np.sqrt(1 - rho))
    return float(lo), float(hi)


def grade_table(y: np.ndarray, p: np.ndarray, grades: np.ndarray,
                scale: MasterScale, asset_correlation: float = 0.0) -> pd.DataFrame:
    """Back-test per grade: binomial and Jeffreys tests of the grade's mean PD against its
    observed bad rate (one-sided: is the PD too low?), a traffic light at 95% and 99.9%,
    the two-sided 99.9% binomial band of the observed rate (independent defaults), and,
    with ``asset_correlation`` > 0, the 99.9% band once default correlation is allowed for
    (the binomial band and the correlated band combined, since both sources of noise
    exist)."""
    frame = pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(p, float),
                          "grade": np.asarray(grades).astype(str)})
    bands = scale.bands()
    rows = []
    for band in bands.itertuples():
        g = frame[frame["grade"] == band.grade]
        n, k = len(g), int(g["y"].sum())
        row: dict[str, Any] = {"grade": band.grade, "pd_lower": band.pd_lower,
                               "pd_upper": band.pd_upper, "buyers": n, "bads": k}
        if n:
            mp = float(g["p"].mean())
            binom_p = float(stats.binom.sf(k - 1, n, mp))
            jeffreys_p = float(stats.beta.cdf(mp, k + 0.5, n - k + 0.5))
            lo, hi = stats.binom.ppf([0.0005, 0.9995], n, mp)
            row |= {
                "mean_pd": mp, "observed_rate": k / n, "binomial_p": binom_p,
                "jeffreys_p": jeffreys_p,
                "light": "green" if binom_p >= 0.05 else "yellow" if binom_p >= 0.001 else "red",
                "band_999_lower": lo / n, "band_999_upper": hi / n,
                "inside_999": bool(lo <= k <= hi),
            }
            if asset_correlation > 0:
                v_lo, v_hi = vasicek_band(mp, asset_correlation)
                c_lo = stats.binom.ppf(0.0005, n, v_lo) / n
                c_hi = stats.binom.ppf(0.9995, n, v_hi) / n
                row |= {"band_999_corr_lower": c_lo, "band_999_corr_upper": c_hi,
                        "inside_999_corr": bool(c_lo <= k / n <= c_hi)}
        rows.append(row)
    return pd.DataFrame(rows)


def psi(expected: pd.Series, actual: pd.Series, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``; quantile bins of the
    expected values (categories for text), missing values as a bin of their own."""
    eps = 1e-4
    if expected.dtype == object or pd.api.types.is_string_dtype(expected.dtype):
        e = expected.astype("str").where(expected.notna(), "<NA>")
        a = actual.astype("str").where(actual.notna(), "<NA>")
        cats = sorted(set(e) | set(a))
        pe = e.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
        pa_ = a.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    else:
        e = pd.to_numeric(expected, errors="coerce").to_numpy(dtype=float)
        a = pd.to_numeric(actual, errors="coerce").to_numpy(dtype=float)
        finite = e[~np.isnan(e)]
        if len(finite) == 0:
            edges = np.array([])
        else:
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))

        def shares(v: np.ndarray) -> np.ndarray:
            idx = np.where(np.isnan(v), len(edges) + 1, np.searchsorted(edges, v, side="right"))
            return np.bincount(idx.astype(int), minlength=len(edges) + 2) / max(len(v), 1)

        pe, pa_ = shares(e), shares(a)
    pe, pa_ = np.maximum(pe, eps), np.maximum(pa_, eps)
    return float(np.sum((pa_ - pe) * np.log(pa_ / pe)))


def grade_counts(grades: pd.DataFrame) -> dict[str, float]:
    """Counts of the grade back-test: ``grades_tested`` (grades with test buyers; a grade
    without any is not tested), ``grades_inside_999_count`` and ``grades_outside_999`` (of the
    tested grades, inside and outside the 99.9% binomial band; they add up to
    ``grades_tested``), and ``grades_all_inside_999``, 1.0 when no tested grade is outside."""
    tested = grades["buyers"] > 0
    inside = (grades.loc[tested, "inside_999"].astype(bool) if "inside_999" in grades
              else pd.Series([], dtype=bool))
    out = {
        "grades_tested": float(tested.sum()),
        "grades_inside_999_count": float(inside.sum()),
        "grades_outside_999": float((~inside).sum()),
        "grades_all_inside_999": float(inside.all()),
    }
    return out


@dataclass
class Evaluation:
    metrics: dict[str, float]
    grades: pd.DataFrame
    calibration: pd.DataFrame
    roc: pd.DataFrame
    feature_psi: pd.DataFrame
    grade_distribution: pd.DataFrame


def evaluate(
    test: pd.DataFrame,
    test_pred: pd.DataFrame,
    train: pd.DataFrame,
    train_pred: pd.DataFrame,
    feature_names: list[str],
    scale: MasterScale,
    bins: int = 10,
    psi_bins: int = 10,
    oracle_pd: np.ndarray | None = None,
    asset_correlation: float = 0.0,
) -> Evaluation:
    """Validation of predictions on the out-of-time test rows (live buyers with a label)."""
    y = test["bad"].astype(float).to_numpy()
    p = test_pred["pd"].to_numpy(dtype=float)
    metrics = {f"test_{k}": v for k, v in discrimination(y, p, bins).items()}
    ytr = train["bad"].astype(float).to_numpy()
    metrics |= {f"train_{k}": v for k, v in discrimination(
        ytr, train_pred["pd"].to_numpy(dtype=float), bins).items()}
    metrics["score_psi"] = psi(train_pred["margin"], test_pred["margin"], psi_bins)
    grades = grade_table(y, p, test_pred["grade"].to_numpy(), scale, asset_correlation)
    metrics |= grade_counts(grades)
    if "inside_999_corr" in grades:
        metrics["grades_outside_999_corr"] = float(
            (~grades["inside_999_corr"].fillna(True).astype(bool)).sum())
    metrics["grades_red"] = float((grades["light"] == "red").sum())
    if oracle_pd is not None:
        oracle_auc = float(roc_auc_score(y, oracle_pd))
        metrics["oracle_auc"] = oracle_auc
        metrics["auc_to_oracle"] = metrics["test_auc"] / oracle_auc
        # the same back-test for the true PDs, grouped by the model's grades: what the
        # binomial band says of a perfect model in this world
        oracle_grades = grade_table(y, oracle_pd, test_pred["grade"].to_numpy(), scale,
                                    asset_correlation)
        metrics["oracle_grades_outside_999"] = float(
            (~oracle_grades["inside_999"].fillna(True).astype(bool)).sum())
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    roc = pd.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]})
    feature_psi = pd.DataFrame(
        [{"feature": f, "psi": psi(train[f], test[f], psi_bins)} for f in feature_names]
    ).sort_values("psi", ascending=False, ignore_index=True)
    metrics["feature_psi_max"] = float(feature_psi["psi"].max()) if len(feature_psi) else 0.0
    dist = pd.DataFrame({
        "grade": scale.grades,
        "train_share": pd.Series(train_pred["grade"]).value_counts(normalize=True)
        .reindex(scale.grades, fill_value=0).to_numpy(),
        "test_share": pd.Series(test_pred["grade"]).value_counts(normalize=True)
        .reindex(scale.grades, fill_value=0).to_numpy(),
    })
    return Evaluation(metrics, grades, calibration_table(y, p, bins), roc, feature_psi, dist)
