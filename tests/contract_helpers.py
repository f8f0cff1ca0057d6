"""Tiny deliberate raw datasets for the contract tests, written to disk as CSV or Parquet.

Every fixture table is text first (as a CSV export would hold it, ``""`` for an empty cell)
and carries a ``ref`` column that is not a contract column: the contract keeps unknown
source columns in the rejects tables, so ``ref`` names each rejected row even when its id is
missing or duplicated. :func:`typed_for_parquet` turns a text table into properly typed
columns for the Parquet variants.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskmodel.data.contract import TABLE_COLUMNS, TABLES, RuleContext, ValidationResult
from riskmodel.data.contract.validation import contract_schema

#: The latest issue, paid or event date of the base dataset: its inferred observation date.
BASE_OBSERVED_UNTIL = dt.date(2024, 6, 30)

_BUYER_COLS = ["ref", "buyer_id", "country", "industry", "founded_year", "employees",
               "annual_revenue"]
_BUYERS = [
    ["b1", "B1", "DE", "C", "1990", "10", "1000000"],
    ["b2", "B2", "FR", "G", "2005", "0", "0"],
    ["b3", "B3", "US", "J", "", "", ""],
]
_INVOICE_COLS = ["ref", "invoice_id", "buyer_id", "supplier_id", "issue_date", "due_date",
                 "amount", "currency", "paid_date", "disputed"]
_INVOICES = [
    ["i1", "I1", "B1", "S1", "2024-01-10", "2024-02-09", "100.0", "EUR", "2024-02-01", "false"],
    ["i2", "I2", "B1", "S1", "2024-02-01", "2024-03-02", "250.5", "EUR", "", "true"],
    ["i3", "I3", "B2", "S2", "2024-03-15", "2024-04-14", "75", "USD", "2024-04-20", ""],
    ["i4", "I4", "B3", "", "2024-05-01", "2024-05-31", "1200", "", "2024-06-30", "no"],
    ["i5", "I5", "B2", "S2", "2024-06-01", "2024-07-01", "10", "EUR", "", ""],
]
_EVENT_COLS = ["ref", "buyer_id", "event_date", "event_type"]
_EVENTS = [
    ["e1", "B2", "2024-05-15", "default"],
    ["e2", "B3", "2024-06-10", "claim"],
]

#: The column that identifies a row of each table in the accepted (typed) frame.
KEY_COLUMN = {"invoices": "invoice_id", "buyers": "buyer_id", "events": "buyer_id"}

Tables = dict[str, pd.DataFrame]


def base_tables() -> Tables:
    """A fresh copy of the valid base dataset, all values as text."""
    return {
        "buyers": pd.DataFrame(_BUYERS, columns=_BUYER_COLS, dtype=object),
        "invoices": pd.DataFrame(_INVOICES, columns=_INVOICE_COLS, dtype=object),
        "events": pd.DataFrame(_EVENTS, columns=_EVENT_COLS, dtype=object),
    }


def set_cell(tables: Tables, table: str, ref: str, column: str, value: object) -> None:
    frame = tables[table]
    rows = frame.index[frame["ref"] == ref]
    assert len(rows) == 1, f"no single row {ref!r} in {table}"
    frame.loc[rows[0], column] = value


def add_row(tables: Tables, table: str, **values: str) -> None:
    """Append a row: a copy of the table's first row with ``values`` replacing cells."""
    frame = tables[table]
    row = frame.iloc[0].to_dict()
    unknown = set(values) - set(row)
    assert not unknown, f"{table} has no columns {unknown}"
    row.update(values)
    tables[table] = pd.concat([frame, pd.DataFrame([row], dtype=object)], ignore_index=True)


def write_csv(path: Path, frame: pd.DataFrame, bom: bool = False) -> Path:
    text = frame.to_csv(index=False, lineterminator="\n")
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return path


_FLAGS = {"true": True, "yes": True, "false": False, "no": False}


def typed_for_parquet(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Contract columns in their contract types (``""`` becomes null); other columns as text."""
    kinds = {c.name: c.kind for c in TABLE_COLUMNS[table]}
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        text = frame[col].map(lambda v: None if v == "" else v)
        kind = kinds.get(col, "string")
        if kind == "date":
            out[col] = pd.to_datetime(text, format="ISO8601").astype("datetime64[ms]")
        elif kind == "float":
            out[col] = text.astype("float64")
        elif kind == "int":
            out[col] = pd.to_numeric(text).astype("Int64")
        elif kind == "bool":
            out[col] = text.map(lambda v: None if pd.isna(v) else _FLAGS[str(v).lower()])
            out[col] = out[col].astype("boolean")
        else:
            out[col] = text.astype(object)
    return out


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def write_dataset(root: Path, tables: Tables, fmt: str = "csv") -> Path:
    """Write the three tables into ``root`` as ``csv``, ``parquet`` or ``parts`` (a folder
    ``NAME/`` of two Parquet files each); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            write_csv(root / f"{name}.csv", frame)
        elif fmt == "parquet":
            write_parquet(root / f"{name}.parquet", typed_for_parquet(frame, name))
        elif fmt == "parts":
            folder = root / name
            folder.mkdir()
            typed = typed_for_parquet(frame, name)
            half = (len(typed) + 1) // 2
            write_parquet(folder / "part-0.parquet", typed.iloc[:half])
            write_parquet(folder / "part-1.parquet", typed.iloc[half:])
        else:
            raise ValueError(f"unknown format {fmt!r}")
    return root


def rejects_by_ref(result: ValidationResult, table: str) -> dict[str, str]:
    rejected = result.tables[table].rejected
    return dict(zip(rejected["ref"].astype(str), rejected["reason"].astype(str), strict=True))


def assert_accepted_pass_schema(result: ValidationResult) -> None:
    """Every accepted table satisfies the pandera contract schema (types, nulls, rules)."""
    ou = pd.Timestamp(result.observed_until)
    accepted_buyers = pd.Index(result.buyers["buyer_id"].unique())
    for name in TABLES:
        ctx = RuleContext(ou, known_buyers=accepted_buyers, accepted_buyers=accepted_buyers)
        contract_schema(name, ctx).validate(result.tables[name].accepted)


def assert_counts_add_up(result: ValidationResult) -> None:
    for name in TABLES:
        t = result.tables[name]
        assert t.read == len(t.accepted) + len(t.rejected), name
        assert sum(t.reasons.values()) == len(t.rejected), name
