"""Find and read the raw tables of a dataset folder: Parquet file, folder of parts, or CSV.

The three required tables must be there; an optional table (``exposures``) is read when it is
there (or mapped) and is simply absent otherwise.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping, apply_mapping, derive_table
from riskmodel.data.contract.schema import OPTIONAL_TABLES, TABLE_COLUMNS, TABLES


@dataclass(frozen=True)
class RawTable:
    """A table as read, with contract column names but values not yet typed or checked."""

    name: str
    source: str
    frame: pd.DataFrame


def locate(raw_dir: Path, name: str) -> Path | None:
    """``NAME.parquet``, then a folder ``NAME/`` of Parquet parts, then ``NAME.csv``."""
    for candidate in (raw_dir / f"{name}.parquet", raw_dir / name, raw_dir / f"{name}.csv"):
        if candidate.exists():
            return candidate
    return None


def parquet_parts(path: Path) -> list[Path]:
    """The Parquet parts of a table folder, in name order (an empty folder is an error)."""
    parts = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not parts:
        raise ContractError(str(path), "empty folder", "no *.parquet parts inside")
    return parts


def check_not_empty(path: Path) -> None:
    if path.is_file() and path.stat().st_size == 0:
        raise ContractError(str(path), "empty file", "the file has 0 bytes")


def read_file(path: Path) -> pd.DataFrame:
    """Read one Parquet file, Parquet folder or CSV file; CSV columns are read as text."""
    check_not_empty(path)
    try:
        if path.is_dir():
            table = pads.dataset(parquet_parts(path), format="parquet").to_table()
        elif path.suffix.lower() == ".csv":
            return _read_csv(path)
        else:
            table = pq.read_table(path)
    except ContractError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ContractError(str(path), "unreadable file", str(exc).splitlines()[0]) from exc
    return table.to_pandas(date_as_object=False)


def check_csv_header(path: Path) -> None:
    """A column named twice in a CSV header is an error: pandas would rename the second
    copy (``due_date.1``) and one of the two would silently be lost."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ContractError(str(path), "unreadable file", str(exc).splitlines()[0]) from exc
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise ContractError(str(path), "duplicate column",
                                f"column {name!r} appears more than once in the header",
                                column=name, fix="rename or remove one of them")
        seen.add(name)


def _read_csv(path: Path) -> pd.DataFrame:
    check_csv_header(path)
    # utf-8-sig strips a byte-order mark, which spreadsheet exports often write; every column
    # is read as text and typed by the contract, so that a bad value becomes a rejected row.
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            encoding="utf-8-sig",
            keep_default_na=False,
            na_values=[""],
        )
    except pd.errors.EmptyDataError as exc:
        raise ContractError(str(path), "empty file", "no header row") from exc
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ContractError(str(path), "unreadable file", str(exc).splitlines()[0]) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_tables(raw_dir: str | Path, mapping: Mapping | None = None) -> dict[str, RawTable]:
    """Read the contract tables of ``raw_dir``, applying ``mapping`` where given.

    The result always holds the three required tables and holds an optional table
    (``exposures``) only when the folder has it or the mapping names it (``file``,
    ``derive_from`` or ``empty``). Raises :class:`ContractError` for a missing required table,
    a file the mapping names that does not exist, an unreadable or empty file, or a missing
    required column.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ContractError(str(raw_dir), "missing folder", "RAW_DIR does not exist")
    mapping = mapping or Mapping()
    sources: dict[str, tuple[str, pd.DataFrame]] = {}

    def source_of(name: str) -> tuple[str, pd.DataFrame]:
        if name not in sources:
            tm = mapping.for_table(name)
            path = raw_dir / tm.file if tm.file else locate(raw_dir, name)
            if path is None or not path.exists():
                expected = tm.file or f"{name}.parquet, {name}/ or {name}.csv"
                raise ContractError(
                    str(raw_dir / (tm.file or f"{name}.*")),
                    "missing table",
                    f"table {name!r} not found (expected {expected})",
                )
            sources[name] = (str(path), read_file(path))
        return sources[name]

    tables: dict[str, RawTable] = {}
    for name in TABLES + OPTIONAL_TABLES:
        tm = mapping.for_table(name)
        if (name in OPTIONAL_TABLES and name not in mapping.tables
                and locate(raw_dir, name) is None):
            continue  # an optional table that is not there is no table
        if tm.empty:
            cols = [c.name for c in TABLE_COLUMNS[name]]
            tables[name] = RawTable(name, f"mapping: {name} is empty", pd.DataFrame(columns=cols))
            continue
        if tm.derive_from:
            source, src_frame = source_of(tm.derive_from)
            mapped = derive_table(apply_mapping(src_frame, name, tm, source), name)
            source = f"{source} (derived {name})"
        else:
            source, src_frame = source_of(name)
            mapped = apply_mapping(src_frame, name, tm, source)
        _check_columns(mapped, name, source,
                       allow_no_rows=(name == "events" or name in OPTIONAL_TABLES))
        tables[name] = RawTable(name, source, mapped)
    return tables


def check_required_columns(columns: list[str], name: str, source: str) -> None:
    """Every required column of table ``name`` must be among ``columns`` (after mapping)."""
    for spec in TABLE_COLUMNS[name]:
        if spec.required and spec.name not in columns:
            raise ContractError(
                source,
                "missing required column",
                f"table {name} needs column {spec.name!r}; found {list(columns)}",
                column=spec.name,
                fix="rename it in the export or map it with --mapping",
            )


def _check_columns(frame: pd.DataFrame, name: str, source: str, allow_no_rows: bool) -> None:
    check_required_columns(list(frame.columns), name, source)
    if len(frame) == 0 and not allow_no_rows:
        raise ContractError(source, "empty table", f"table {name} has a header but no rows")
