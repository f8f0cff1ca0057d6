"""Tiny deliberate raw datasets for the contract tests, written to disk as CSV or Parquet.

Every fixture table is text first (as a CSV export would hold it, ``""`` for an empty cell)
and carries a ``ref`` column that is not a contract column: the contract keeps unknown
source columns in the rejects tables, so ``ref`` names each rejected row even when its id is
missing or duplicated. :func:`typed_for_parquet` turns a text table into properly typed
columns for the Parquet variants. The optional ``exposures`` table is not in the base dataset;
:func:`base_exposures` gives one to add.

:func:`assert_accepted_meet_contract` states what accepted data must look like in plain
pandas, independently of the validator's own checks.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskmodel.data.contract import TABLE_COLUMNS, ValidationResult

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
                 "amount", "currency", "paid_date", "disputed", "dispute_date"]
_INVOICES = [
    ["i1", "I1", "B1", "S1", "2024-01-10", "2024-02-09", "100.0", "EUR", "2024-02-01", "false",
     ""],
    ["i2", "I2", "B1", "S1", "2024-02-01", "2024-03-02", "250.5", "EUR", "", "true",
     "2024-02-20"],
    ["i3", "I3", "B2", "S2", "2024-03-15", "2024-04-14", "75", "USD", "2024-04-20", "", ""],
    ["i4", "I4", "B3", "", "2024-05-01", "2024-05-31", "1200", "", "2024-06-30", "no", ""],
    ["i5", "I5", "B2", "S2", "2024-06-01", "2024-07-01", "10", "EUR", "", "", ""],
]
_EVENT_COLS = ["ref", "buyer_id", "event_date", "event_type"]
_EVENTS = [
    ["e1", "B2", "2024-05-15", "default"],
    ["e2", "B3", "2024-06-10", "claim"],
]

_EXPOSURE_COLS = ["ref", "buyer_id", "supplier_id", "current_limit", "requested_limit",
                  "currency"]
_EXPOSURES = [
    ["x1", "B1", "S1", "50000", "75000", "EUR"],
    ["x2", "B1", "S2", "0", "", "EUR"],  # 0: no line yet
    ["x3", "B2", "", "10000", "", "USD"],  # no supplier: one line of B2 without a holder
    ["x4", "B3", "S2", "2500.5", "2500.5", ""],
]

#: The column that identifies a row of each table in the accepted (typed) frame.
KEY_COLUMN = {"invoices": "invoice_id", "buyers": "buyer_id", "events": "buyer_id",
              "exposures": "buyer_id"}

Tables = dict[str, pd.DataFrame]


def base_tables() -> Tables:
    """A fresh copy of the valid base dataset, all values as text."""
    return {
        "buyers": pd.DataFrame(_BUYERS, columns=_BUYER_COLS, dtype=object),
        "invoices": pd.DataFrame(_INVOICES, columns=_INVOICE_COLS, dtype=object),
        "events": pd.DataFrame(_EVENTS, columns=_EVENT_COLS, dtype=object),
    }


def base_exposures() -> pd.DataFrame:
    """A valid optional ``exposures`` table for the base dataset, all values as text."""
    return pd.DataFrame(_EXPOSURES, columns=_EXPOSURE_COLS, dtype=object)


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
    """Write the tables into ``root`` as ``csv``, ``parquet`` or ``parts`` (a folder ``NAME/``
    of two Parquet files each); returns ``root``."""
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


_DTYPES = {"string": "str", "date": "datetime64[s]", "float": "float64", "int": "Int64",
           "bool": "boolean"}
_EVENT_TYPES = {"insolvency", "default", "claim", "write_off", "restructuring"}


def _is_code(value: object, length: int) -> bool:
    text = str(value)
    return len(text) == length and text.isascii() and text.isalpha() and text.isupper()


def _dates_ok(earlier: pd.Series, later: pd.Series) -> bool:
    """``earlier <= later`` wherever both are known."""
    both = earlier.notna() & later.notna()
    return bool((earlier[both] <= later[both]).all())


def assert_accepted_meet_contract(result: ValidationResult, today: dt.date | None = None) -> None:
    """What every accepted table must satisfy, written out here in plain pandas from the
    contract text (not with the validator's checks): columns and dtypes, required values
    present, ids unique, buyers known, amounts and limits in range, dates in order and none
    after ``observed_until`` (nor after ``today``, default the system date)."""
    ou = pd.Timestamp(result.observed_until)
    run_day = pd.Timestamp(today or dt.date.today())
    assert result.observed_until <= (today or dt.date.today())
    for name, table in result.tables.items():
        frame = table.accepted
        specs = TABLE_COLUMNS[name]
        assert list(frame.columns) == [c.name for c in specs], name
        for spec in specs:
            col = frame[spec.name]
            assert str(col.dtype) == _DTYPES[spec.kind], (name, spec.name, col.dtype)
            if spec.required:
                assert col.notna().all(), (name, spec.name)
            if spec.kind == "date":
                assert bool((col.dropna() <= run_day).all()) or spec.name == "due_date", (
                    name, spec.name)
    buyers = result.buyers
    buyer_ids = set(buyers["buyer_id"])
    assert buyers["buyer_id"].is_unique
    assert all(_is_code(c, 2) for c in buyers["country"])
    founded = buyers["founded_year"].dropna()
    assert ((founded >= 1800) & (founded <= ou.year)).all()
    for col in ("employees", "annual_revenue"):
        assert (buyers[col].dropna() >= 0).all(), col

    inv = result.invoices
    assert inv["invoice_id"].is_unique
    assert set(inv["buyer_id"]) <= buyer_ids
    assert np.isfinite(inv["amount"]).all() and (inv["amount"] > 0).all()
    assert _dates_ok(inv["issue_date"], inv["due_date"])
    assert _dates_ok(inv["due_date"], inv["issue_date"] + pd.Timedelta(days=366))
    for col in ("paid_date", "dispute_date"):
        assert _dates_ok(inv["issue_date"], inv[col]), col
    for col in ("issue_date", "paid_date", "dispute_date"):
        assert (inv[col].dropna() <= ou).all(), col
    assert all(_is_code(c, 3) for c in inv["currency"].dropna())

    ev = result.events
    assert set(ev["buyer_id"]) <= buyer_ids
    assert set(ev["event_type"]) <= _EVENT_TYPES
    assert (ev["event_date"] <= ou).all()

    exp = result.exposures
    if exp is not None:
        assert set(exp["buyer_id"]) <= buyer_ids
        pairs = list(zip(exp["buyer_id"], exp["supplier_id"].fillna("<none>"), strict=True))
        assert len(set(pairs)) == len(pairs)
        assert all(math.isfinite(v) and v >= 0 for v in exp["current_limit"])
        assert all(math.isfinite(v) and v >= 0 for v in exp["requested_limit"].dropna())
        assert all(_is_code(c, 3) for c in exp["currency"].dropna())


def assert_counts_add_up(result: ValidationResult) -> None:
    for name, t in result.tables.items():
        assert t.read == len(t.accepted) + len(t.rejected), name
        assert sum(t.reasons.values()) == len(t.rejected), name
