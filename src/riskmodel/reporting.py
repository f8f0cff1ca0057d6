"""Terminal output: rich tables for what the commands did."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_validation(report: dict[str, Any], console: Console | None = None) -> None:
    """The counts of a validation report (``riskmodel validate --report``'s JSON)."""
    console = console or Console()
    table = Table(title=f"Validation (observed until {report['observed_until']})")
    for col in ("table", "read", "accepted", "rejected", "share", "reasons"):
        table.add_column(col, justify="right" if col not in ("table", "reasons") else "left")
    for name, t in report["tables"].items():
        reasons = ", ".join(f"{k}: {v:,}" for k, v in t["reasons"].items()) or "-"
        share = t["rejected"] / t["read"] if t["read"] else 0.0
        table.add_row(name, f"{t['read']:,}", f"{t['accepted']:,}", f"{t['rejected']:,}",
                      f"{share:.2%}", reasons)
    console.print(table)


def print_evaluation(ev: Any, console: Console | None = None) -> None:
    console = console or Console()
    m = ev.metrics
    keys = ["test_auc", "test_gini", "test_ks", "test_brier", "test_log_loss", "test_ece",
            "test_mean_pd", "test_bad_rate", "score_psi", "oracle_auc", "auc_to_oracle"]
    table = Table(title="Out-of-time test")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in keys:
        if k in m:
            table.add_row(k, f"{m[k]:.4f}")
    console.print(table)
    grades = Table(title="Grades (test)")
    for col in ("grade", "buyers", "bads", "mean PD", "observed", "binom p", "light",
                "in 99.9% band", "in corr. band"):
        grades.add_column(col, justify="right")
    for r in ev.grades.itertuples():
        if r.buyers:
            grades.add_row(r.grade, f"{r.buyers:,}", f"{r.bads:,}", f"{r.mean_pd:.4f}",
                           f"{r.observed_rate:.4f}", f"{r.binomial_p:.3f}", r.light,
                           "yes" if r.inside_999 else "NO",
                           "yes" if getattr(r, "inside_999_corr", True) else "NO")
    console.print(grades)
