"""Terminal output: rich tables for what the commands did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from riskmodel.data.contract import ValidationResult


def print_validation(result: ValidationResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"Validation (observed until {result.observed_until.isoformat()})")
    for col in ("table", "read", "accepted", "rejected", "share", "reasons"):
        table.add_column(col, justify="right" if col not in ("table", "reasons") else "left")
    for name in ("invoices", "buyers", "events"):
        t = result.tables[name]
        reasons = ", ".join(f"{k}: {v:,}" for k, v in t.reasons.items()) or "-"
        table.add_row(
            name, f"{t.read:,}", f"{len(t.accepted):,}", f"{len(t.rejected):,}",
            f"{t.reject_rate:.2%}", reasons,
        )
    console.print(table)


def print_evaluation(ev, console: Console | None = None) -> None:
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
