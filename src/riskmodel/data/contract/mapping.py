"""Mapping files: bring a real accounts-receivable export onto the contract without code.

A mapping is a small YAML file::

    date_format: "%m/%d/%Y"          # for every date column read from text (default ISO)
    tables:
      invoices:
        file: export.csv             # relative to RAW_DIR; default NAME.parquet, NAME/, NAME.csv
        columns: {invoice_id: invoiceNumber, buyer_id: customerID, ...}   # contract: source
        date_formats: {paid_date: "%d.%m.%Y"}   # per-column override
        constants: {currency: USD}   # a contract column set to one value on every row
        values: {disputed: {"Yes": true, "No": false}}   # recode source values
      buyers:
        derive_from: invoices        # one row per distinct mapped buyer, from that table's file
        columns: {buyer_id: customerID, country: countryCode}
        constants: {industry: UNKNOWN}
      events:
        empty: true                  # the export has no credit events (said, never assumed)
      exposures:                     # optional table: mapped like the others when there is one
        file: limits.csv
        columns: {current_limit: CreditLimit}

Unmapped contract columns keep their own names, so a mapping only lists what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.schema import ALL_TABLES, TABLE_COLUMNS, column_names


class TableMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    columns: dict[str, str] = {}
    date_formats: dict[str, str] = {}
    constants: dict[str, Any] = {}
    values: dict[str, dict[Any, Any]] = {}
    derive_from: str | None = None
    empty: bool = False

    @model_validator(mode="after")
    def _exclusive(self) -> TableMapping:
        if self.empty and (self.file or self.derive_from or self.columns):
            raise ValueError("'empty: true' cannot be combined with file, derive_from or columns")
        if self.derive_from and self.file:
            raise ValueError("give either 'file' or 'derive_from', not both")
        return self


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_format: str | None = None
    tables: dict[str, TableMapping] = {}

    @model_validator(mode="after")
    def _known_names(self) -> Mapping:
        for table, tm in self.tables.items():
            if table not in ALL_TABLES:
                raise ValueError(f"unknown table {table!r}; the contract has {list(ALL_TABLES)}")
            known = set(column_names(table))
            for section in ("columns", "date_formats", "constants", "values"):
                for col in getattr(tm, section):
                    if col not in known:
                        raise ValueError(
                            f"tables.{table}.{section}: {col!r} is not a contract column of "
                            f"{table} (known: {sorted(known)})"
                        )
            if tm.derive_from is not None and tm.derive_from not in ALL_TABLES:
                raise ValueError(f"tables.{table}.derive_from: unknown table {tm.derive_from!r}")
        return self

    def for_table(self, table: str) -> TableMapping:
        return self.tables.get(table, TableMapping())

    def date_format_for(self, table: str, column: str) -> str | None:
        return self.for_table(table).date_formats.get(column, self.date_format)


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file; a wrong key is an error that names it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(str(path), "unreadable mapping", str(exc)) from exc
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float)
               and e["type"] != "missing" else "")
            for e in exc.errors())
        raise ContractError(str(path), "invalid mapping", problems) from exc


def apply_mapping(frame: pd.DataFrame, table: str, tm: TableMapping, source: str) -> pd.DataFrame:
    """Rename, recode and add constant columns; returns a new frame with contract names.

    Source columns that the mapping does not use are kept (they travel into the rejects
    tables), unless their name clashes with a contract column produced by the mapping.
    """
    missing = [src for src in tm.columns.values() if src not in frame.columns]
    if missing:
        raise ContractError(
            source,
            "missing source column",
            f"mapping for {table} names {missing[0]!r}, which the file lacks",
            column=missing[0],
            fix=f"the file has {list(frame.columns)}",
        )
    out = pd.DataFrame(index=frame.index)
    for target in column_names(table):
        src = tm.columns.get(target, target if target not in tm.constants else None)
        if src is not None and src in frame.columns:
            out[target] = frame[src]
    for col, value in tm.constants.items():
        out[col] = value
    for col, recode in tm.values.items():
        if col in out.columns:
            as_text = {str(k): v for k, v in recode.items()}
            text = out[col].astype(object).where(out[col].isna(), out[col].astype("str"))
            hit = text.isin(list(as_text)).to_numpy(dtype=bool)
            values = out[col].astype(object).to_numpy(copy=True)
            values[hit] = text[hit].map(as_text).to_numpy(dtype=object)
            out[col] = pd.Series(values, index=out.index, dtype=object)
    used = set(tm.columns.values())
    contract = set(column_names(table))
    for col in frame.columns:
        if col not in used and col not in out.columns and col not in contract:
            out[col] = frame[col]
    return out


def derive_table(source_frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """One row per distinct combination of the mapped contract columns of ``table``.

    A key with conflicting attributes appears twice and so is rejected as a duplicate
    downstream, never resolved silently.
    """
    cols = [c.name for c in TABLE_COLUMNS[table] if c.name in source_frame.columns]
    return source_frame[cols].drop_duplicates(ignore_index=True)
