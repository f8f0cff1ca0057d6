"""Terminal output: rich tables for what the commands did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from riskmodel.contract import ValidationResult


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
