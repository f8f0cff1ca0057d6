"""Builders for small, deliberate datasets, typed exactly as the contract reader types them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from riskmodel.data.contract import RawTable, ValidationResult, validate_tables
from riskmodel.data.contract.schema import TABLE_COLUMNS


def _frame(table: str, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    cols = [c.name for c in TABLE_COLUMNS[table]]
    frame = pd.DataFrame(list(rows), columns=cols)
    for spec in TABLE_COLUMNS[table]:
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
) -> ValidationResult:
    """Validate in-memory rows; tests use it so that data reach the engines as in production."""
    raw = {
        "invoices": RawTable("invoices", "invoices(test)", _frame("invoices", invoices)),
        "buyers": RawTable("buyers", "buyers(test)", _frame("buyers", buyers)),
        "events": RawTable("events", "events(test)", _frame("events", events)),
    }
    result = validate_tables(raw, observed_until)
    for name, table in result.tables.items():
        if len(table.rejected):
            raise AssertionError(f"test data rejected in {name}: {table.rejected.to_dict('records')}")
    return result


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
