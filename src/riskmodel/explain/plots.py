"""Drawing explanations (matplotlib, no display needed): a beeswarm-style summary of the top
features, dependence plots and a waterfall per buyer. The numbers come from
:mod:`riskmodel.explain.contributions` and :mod:`riskmodel.explain.reasons`; nothing is
computed here but the layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from riskmodel.explain.reasons import feature_columns

#: at most this many points per feature in the summary and dependence plots (a fixed-seed
#: sample of the rows), so that a million buyers draw in seconds
MAX_POINTS = 5000


def _sample(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False))


def _numeric(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _colour(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the finite values, in [0, 1] (0.5 where missing): the colour
    of a point, low blue to high red, robust to skewed features."""
    out = np.full(len(values), 0.5)
    ok = np.isfinite(values)
    if ok.sum() > 1:
        ranks = pd.Series(values[ok]).rank(method="average").to_numpy()
        out[ok] = (ranks - 1) / (ok.sum() - 1)
    return out


def summary(contributions: pd.DataFrame, features: pd.DataFrame, top: Sequence[str],
            path: Path) -> Path:
    """Beeswarm-style summary: one row per feature of ``top`` (most important first), each
    buyer a point at its contribution, coloured by its feature value (rank within the
    feature; grey where missing or categorical), jittered by the density of points."""
    rows = _sample(len(contributions))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(top) + 1.5))
    rng = np.random.default_rng(1)
    cmap = plt.get_cmap("coolwarm")
    for i, name in enumerate(top):
        y0 = len(top) - 1 - i
        phi = contributions[name].to_numpy(dtype=np.float64)[rows]
        vals = _numeric(features[name]).take(rows) if name in features else np.full(len(rows),
                                                                                   np.nan)
        hist, edges = np.histogram(phi, bins=50)
        dens = hist[np.clip(np.searchsorted(edges, phi, side="right") - 1, 0, len(hist) - 1)]
        spread = 0.4 * dens / max(dens.max(), 1)
        jitter = (rng.random(len(phi)) * 2 - 1) * spread
        colours = np.where(np.isfinite(vals)[:, None], cmap(_colour(vals)),
                           np.array([[0.6, 0.6, 0.6, 1.0]]))
        ax.scatter(phi, y0 + jitter, c=colours, s=4, linewidths=0, rasterized=True)
    ax.axvline(0, c="grey", lw=0.8)
    ax.set_yticks(range(len(top)), list(reversed(list(top))))
    ax.set(xlabel="contribution to the margin (log-odds; > 0 raises the risk)",
           title="Contributions of the most important features")
    sm = plt.cm.ScalarMappable(cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, ticks=[0, 1], pad=0.01)
    bar.ax.set_yticklabels(["low", "high"])
    bar.set_label("feature value")
    return _save(fig, path)


def dependence(contributions: pd.DataFrame, features: pd.DataFrame, names: Sequence[str],
               path: Path) -> Path:
    """One panel per feature: its contribution against its value (missing values at the
    left edge, marked), the same sample of rows as the summary."""
    rows = _sample(len(contributions))
    k = max(len(names), 1)
    cols = 2 if k > 1 else 1
    nrows = (k + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        phi = contributions[name].to_numpy(dtype=np.float64)[rows]
        raw = features[name].to_numpy()[rows]
        vals = _numeric(pd.Series(raw))
        if np.isfinite(vals).any():
            ok = np.isfinite(vals)
            ax.scatter(vals[ok], phi[ok], s=4, alpha=0.5, linewidths=0, rasterized=True)
            if (~ok).any():
                left = np.nanmin(vals) - 0.05 * (np.nanmax(vals) - np.nanmin(vals) + 1)
                ax.scatter(np.full((~ok).sum(), left), phi[~ok], s=6, c="grey", marker="x",
                           label="missing")
                ax.legend(loc="best", fontsize=8)
        else:  # a category: one column of points per value
            cats = pd.Series(raw).astype("str")
            labels = sorted(cats.unique())
            pos = cats.map({c: i for i, c in enumerate(labels)}).to_numpy(dtype=float)
            jit = np.random.default_rng(2).uniform(-0.3, 0.3, len(pos))
            ax.scatter(pos + jit, phi, s=4, alpha=0.5, linewidths=0, rasterized=True)
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.axhline(0, c="grey", lw=0.8)
        ax.set(xlabel=name, ylabel="contribution (log-odds)")
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle("Dependence of the contribution on the feature value")
    return _save(fig, path)


def waterfall(row: pd.Series, title: str, path: Path, max_bars: int = 12) -> Path:
    """One buyer: from the base value, each feature's contribution as a step (the largest
    ``max_bars`` by size; the rest as one step), to the margin. ``row`` is one row of the
    contributions frame."""
    names = feature_columns(row.to_frame().T)
    phi = row[names].to_numpy(dtype=np.float64)
    order = np.argsort(-np.abs(phi), kind="stable")
    shown = order[:max_bars]
    labels = [names[j] for j in shown]
    steps = list(phi[shown])
    rest = phi[order[max_bars:]].sum()
    if len(order) > max_bars:
        labels.append(f"{len(order) - max_bars} other features")
        steps.append(rest)
    base = float(row["base_value"])
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(steps) + 2))
    start = base
    for i, step in enumerate(steps):
        y = len(steps) - i
        ax.barh(y, step, left=start, color="tab:red" if step > 0 else "tab:blue")
        ax.text(start + step, y, f" {step:+.3f}", va="center",
                ha="left" if step >= 0 else "right", fontsize=8)
        start += step
    ends = np.concatenate([[base], base + np.cumsum(steps)])
    pad = 0.15 * max(float(ends.max() - ends.min()), 0.1)
    ax.set_xlim(float(ends.min()) - pad, float(ends.max()) + pad)
    ax.axvline(base, c="grey", lw=0.8, ls="--")
    ax.axvline(float(row["margin"]), c="black", lw=0.8)
    ax.set_yticks(range(len(steps), 0, -1), labels)
    ax.set(xlabel=f"margin (log-odds): base value {base:.3f} -> {float(row['margin']):.3f}",
           title=title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["MAX_POINTS", "dependence", "summary", "waterfall"]
