"""Builders for small, deliberate datasets, typed exactly as the contract reader types them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from riskmodel.data.contract import RawTable, ValidationResult, validate_tables
from riskmodel.data.contract.schema import TABLE_COLUMNS


def _frame(table: str, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a raw table. An optional column that no row names is left out, as in an
    export without it (so ``dispute_date`` is in the input only when a row gives one)."""
    named = {key for row in rows for key in row}
    specs = [c for c in TABLE_COLUMNS[table] if c.required or c.name in named]
    frame = pd.DataFrame(list(rows), columns=[c.name for c in specs])
    for spec in specs:
        if spec.kind == "date":
            frame[spec.name] = pd.to_datetime(frame[spec.name])
        elif spec.kind == "string":
            frame[spec.name] = frame[spec.name].astype(object)
        elif spec.kind == "float":
            frame[spec.name] = frame[spec.name].astype(float)
        elif spec.kind == "int":
            frame[spec.name] = frame[spec.name].astype("Int64")
        elif spec.kind == "bool":
            frame[spec.name] = frame[spec.name].astype("boolean")
    return frame


def dataset(
    invoices: Sequence[dict[str, Any]],
    buyers: Sequence[dict[str, Any]],
    events: Sequence[dict[str, Any]] = (),
    observed_until: dt.date | None = None,
    *,
    exposures: Sequence[dict[str, Any]] | None = None,
    today: dt.date | None = None,
) -> ValidationResult:
    """Validate in-memory rows; tests use it so that data reach the engines as in production.

    ``exposures`` adds the optional table (``None``: the dataset has none); ``today`` is the
    day of the run (default: the system date). Every row must be accepted."""
    raw = {
        "invoices": RawTable("invoices", "invoices(test)", _frame("invoices", invoices)),
        "buyers": RawTable("buyers", "buyers(test)", _frame("buyers", buyers)),
        "events": RawTable("events", "events(test)", _frame("events", events)),
    }
    if exposures is not None:
        raw["exposures"] = RawTable("exposures", "exposures(test)",
                                    _frame("exposures", exposures))
    result = validate_tables(raw, observed_until, today=today)
    for name, table in result.tables.items():
        if len(table.rejected):
            raise AssertionError(f"test data rejected in {name}: {table.rejected.to_dict('records')}")
    return result


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
