"""Drawing the validation report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from riskmodel.modeling.evaluation import Evaluation


def draw(ev: Evaluation, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(ev.roc["fpr"], ev.roc["tpr"], label=f"AUC {ev.metrics['test_auc']:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    cal = ev.calibration
    top = max(cal["mean_pd"].max(), cal["observed_rate"].max()) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey")
    ax.plot(cal["mean_pd"], cal["observed_rate"], marker="o")
    ax.set(xlabel="mean predicted PD", ylabel="observed bad rate",
           title=f"Calibration (test, ECE {ev.metrics['test_ece']:.4f})")
    paths.append(_save(fig, out_dir / "calibration.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    d = ev.grade_distribution
    x = range(len(d))
    ax.bar([i - 0.2 for i in x], d["train_share"], width=0.4, label="train")
    ax.bar([i + 0.2 for i in x], d["test_share"], width=0.4, label="test")
    ax.set_xticks(list(x), d["grade"])
    ax.set(xlabel="grade", ylabel="share of buyers", title="Grade distribution")
    ax.legend()
    paths.append(_save(fig, out_dir / "grades.png"))
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
