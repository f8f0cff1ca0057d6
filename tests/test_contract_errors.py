"""Schema-level contract errors: nothing can be accepted, so a ContractError names the file
and (where there is one) the column."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_helpers import (
    BASE_OBSERVED_UNTIL,
    add_row,
    assert_accepted_meet_contract,
    assert_counts_add_up,
    base_tables,
    typed_for_parquet,
    write_csv,
    write_dataset,
    write_parquet,
)
from riskmodel.data.contract import TABLE_COLUMNS, TABLES, ContractError, load_dataset, read_tables
from riskmodel.data.contract.validation import WRONG_TYPE_MIN_VALUES

REQUIRED = [(t, c.name) for t in TABLES for c in TABLE_COLUMNS[t] if c.required]
OPTIONAL = [(t, c.name) for t in TABLES for c in TABLE_COLUMNS[t] if not c.required]


def where(path: Path, column: str | None = None) -> str:
    """The start of every ContractError message: ``FILE: column COL: ``."""
    return re.escape(f"{path}: column {column}: " if column else f"{path}: ")


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("table", TABLES)
def test_missing_table(tmp_path: Path, table: str) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    (raw / f"{table}.csv").unlink()
    with pytest.raises(ContractError, match=where(raw / f"{table}.*") + "missing table: "
                       + re.escape(f"table '{table}' not found")):
        load_dataset(str(raw))


def test_missing_raw_dir(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=where(tmp_path / "nope") + "missing folder"):
        load_dataset(str(tmp_path / "nope"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("table", TABLES)
def test_empty_file(tmp_path: Path, table: str, fmt: str) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), fmt)
    path = raw / f"{table}.{fmt}"
    path.write_bytes(b"")
    with pytest.raises(ContractError, match=where(path) + "empty file: the file has 0 bytes"):
        load_dataset(str(raw))


@pytest.mark.parametrize("table", ["invoices", "buyers"])
def test_header_without_rows(tmp_path: Path, table: str) -> None:
    tables = base_tables()
    tables[table] = tables[table].iloc[0:0]
    raw = write_dataset(tmp_path / "raw", tables)
    with pytest.raises(ContractError, match=where(raw / f"{table}.csv") + "empty table"):
        load_dataset(str(raw))


def test_empty_parquet_folder(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    (raw / "invoices.parquet").unlink()
    (raw / "invoices").mkdir()
    (raw / "invoices" / "_SUCCESS").write_text("")
    with pytest.raises(ContractError, match=where(raw / "invoices") + "empty folder"):
        load_dataset(str(raw))


def test_unreadable_parquet(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    path = raw / "buyers.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(ContractError, match=where(path) + "unreadable file"):
        load_dataset(str(raw))


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    path = raw / "buyers.csv"
    path.write_bytes(path.read_bytes() + "B9,ZA,K,1990,1,1,Zoë\n".encode("latin-1"))
    with pytest.raises(ContractError, match=where(path) + "unreadable file"):
        load_dataset(str(raw))


def test_parquet_file_is_preferred_to_csv(tmp_path: Path) -> None:
    """NAME.parquet, then NAME/, then NAME.csv: the first that exists is the table."""
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    write_dataset(raw, base_tables(), "csv")
    (raw / "buyers.csv").write_bytes(b"")  # would be an error if it were read
    tables = read_tables(raw)
    assert tables["buyers"].source == str(raw / "buyers.parquet")
    assert tables["invoices"].source == str(raw / "invoices.parquet")


# --------------------------------------------------------------------------- columns


@pytest.mark.parametrize("fmt", ["csv", "parquet", "parts"])
@pytest.mark.parametrize(("table", "column"), REQUIRED)
def test_missing_required_column(tmp_path: Path, table: str, column: str, fmt: str) -> None:
    tables = base_tables()
    tables[table] = tables[table].drop(columns=column)
    raw = write_dataset(tmp_path / "raw", tables, fmt)
    path = raw / {"csv": f"{table}.csv", "parquet": f"{table}.parquet", "parts": table}[fmt]
    with pytest.raises(ContractError, match=where(path, column) + "missing required column"):
        load_dataset(str(raw))


@pytest.mark.parametrize(("table", "column"), OPTIONAL)
def test_missing_optional_column_is_allowed(tmp_path: Path, table: str, column: str) -> None:
    tables = base_tables()
    tables[table] = tables[table].drop(columns=column)
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw))
    accepted = result.tables[table].accepted
    assert len(accepted) == len(tables[table])
    assert accepted[column].isna().all()  # the column exists, typed and empty
    assert_counts_add_up(result)
    assert_accepted_meet_contract(result)


def _parquet_with(tmp_path: Path, table: str, column: str, values: list[object]) -> Path:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    frame = typed_for_parquet(base_tables()[table], table)
    frame[column] = values
    write_parquet(raw / f"{table}.parquet", frame)
    return raw


WRONG_PARQUET_TYPES = [
    ("invoices", "amount", [True, False, True, True, False], "expected float, found bool"),
    ("invoices", "issue_date", [20240110, 20240201, 20240315, 20240501, 20240601],
     "expected date, found int64"),
    ("invoices", "due_date", [1.5, 2.5, 3.5, 4.5, 5.5], "expected date, found float64"),
    ("invoices", "paid_date", [True, None, False, True, None], "expected date, found object"),
    ("invoices", "invoice_id", [True, False, True, False, True], "expected string, found bool"),
    ("invoices", "disputed", pd.to_datetime(["2024-01-01"] * 5).tolist(),
     "expected bool, found datetime64"),
    ("buyers", "founded_year", pd.to_datetime(["1990-01-01"] * 3).tolist(),
     "expected int, found datetime64"),
    ("buyers", "employees", [False, True, False], "expected float, found bool"),
    ("buyers", "buyer_id", pd.to_datetime(["2024-01-01"] * 3).tolist(),
     "expected string, found datetime64"),
    ("events", "event_date", [1, 2], "expected date, found int64"),
]


@pytest.mark.parametrize(
    ("table", "column", "values", "detail"), WRONG_PARQUET_TYPES,
    ids=[f"{t}.{c}" for t, c, *_ in WRONG_PARQUET_TYPES],
)
def test_parquet_column_of_wrong_type(
    tmp_path: Path, table: str, column: str, values: list[object], detail: str
) -> None:
    raw = _parquet_with(tmp_path, table, column, values)
    with pytest.raises(ContractError,
                       match=where(raw / f"{table}.parquet", column) + "wrong type: "
                       + re.escape(detail)):
        load_dataset(str(raw))


WRONG_CSV_COLUMNS = [
    ("invoices", "issue_date", "yesterday", "expected date"),
    ("invoices", "amount", "a lot", "expected float"),
    ("invoices", "disputed", "perhaps", "expected bool"),
    ("buyers", "founded_year", "long ago", "expected int"),
    ("events", "event_date", "13/13/2024", "expected date"),
]


@pytest.mark.parametrize(("table", "column", "value", "detail"), WRONG_CSV_COLUMNS,
                         ids=[f"{t}.{c}" for t, c, *_ in WRONG_CSV_COLUMNS])
def test_csv_column_where_no_value_parses(
    tmp_path: Path, table: str, column: str, value: str, detail: str
) -> None:
    """One unparseable value is a rejected row; a column where none parses is the wrong type."""
    tables = base_tables()
    while len(tables[table]) < WRONG_TYPE_MIN_VALUES:
        add_row(tables, table)
    tables[table][column] = value
    raw = write_dataset(tmp_path / "raw", tables)
    with pytest.raises(ContractError,
                       match=where(raw / f"{table}.csv", column) + "wrong type: "
                       + re.escape(detail) + ".*no value parses, first: "
                       + re.escape(repr(value))):
        load_dataset(str(raw))


def test_too_few_values_to_call_a_column_the_wrong_type(tmp_path: Path) -> None:
    """Below WRONG_TYPE_MIN_VALUES present values, unparseable ones are rejected row by row."""
    tables = base_tables()
    tables["events"]["event_date"] = "someday"
    assert len(tables["events"]) < WRONG_TYPE_MIN_VALUES
    result = load_dataset(str(write_dataset(tmp_path / "raw", tables)))
    events = result.tables["events"]
    assert len(events.accepted) == 0
    assert events.reasons == {"unparseable_event_date": len(tables["events"])}


def test_parquet_dates_as_date32_and_with_time_zone_are_read(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    frame = typed_for_parquet(base_tables()["invoices"], "invoices")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for col, to in [("issue_date", pa.date32()), ("paid_date", pa.date32()),
                    ("due_date", pa.timestamp("ms", tz="Europe/Berlin"))]:
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, table.column(col).cast(to))
    pq.write_table(table, raw / "invoices.parquet")
    result = load_dataset(str(raw))
    assert result.tables["invoices"].rejected.empty
    assert result.invoices["issue_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-10", "2024-02-01", "2024-03-15", "2024-05-01", "2024-06-01"]
    assert result.invoices["due_date"].dt.strftime("%Y-%m-%d").tolist()[0] == "2024-02-09"
    assert_accepted_meet_contract(result)


def test_no_date_to_observe_names_the_file_and_column(tmp_path: Path) -> None:
    tables = base_tables()
    tables["invoices"]["issue_date"] = ""
    tables["invoices"]["paid_date"] = ""
    tables["events"] = tables["events"].iloc[0:0]
    raw = write_dataset(tmp_path / "raw", tables)
    with pytest.raises(ContractError,
                       match=where(raw / "invoices.csv", "issue_date") + "no dates: ") as caught:
        load_dataset(str(raw))
    assert "date_format" in str(caught.value)  # the likely cause when an export has dates
    # given the observation date, the rows are there to reject, one by one
    result = load_dataset(str(raw), observed_until=BASE_OBSERVED_UNTIL)
    assert result.tables["invoices"].reasons == {"missing_issue_date": 5}
    assert result.invoices.empty


# --------------------------------------------------------------------------- byte-order mark


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    """Spreadsheet exports start with a BOM; it must not stick to the first column name."""
    tables = base_tables()
    raw = write_dataset(tmp_path / "raw", tables)
    for name in TABLES:  # put a required contract column first, where the BOM lands
        frame = tables[name]
        first = TABLE_COLUMNS[name][0].name
        write_csv(raw / f"{name}.csv", frame[[first, *frame.columns.drop(first)]], bom=True)
    assert (raw / "invoices.csv").read_bytes().startswith(b"\xef\xbb\xbfinvoice_id,")

    read = read_tables(raw)
    assert list(read["invoices"].frame.columns)[0] == "invoice_id"
    assert list(read["buyers"].frame.columns)[0] == "buyer_id"
    result = load_dataset(str(raw))
    assert result.invoices["invoice_id"].tolist() == ["I1", "I2", "I3", "I4", "I5"]
    assert result.buyers["buyer_id"].tolist() == ["B1", "B2", "B3"]
    assert all(t.rejected.empty for t in result.tables.values())
    assert_accepted_meet_contract(result)


def test_csv_header_whitespace_is_stripped(tmp_path: Path) -> None:
    tables = base_tables()
    tables["events"] = tables["events"].rename(columns={"event_type": " event_type "})
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw))
    assert result.events["event_type"].tolist() == ["default", "claim"]


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["csv", "parquet", "parts"])
def test_valid_dataset_in_every_format(tmp_path: Path, fmt: str) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), fmt)
    result = load_dataset(str(raw))
    assert result.report() == {
        "contract_version": "1.1",
        "observed_until": "2024-06-30",
        "tables": {
            "invoices": {"read": 5, "accepted": 5, "rejected": 0, "reasons": {}},
            "buyers": {"read": 3, "accepted": 3, "rejected": 0, "reasons": {}},
            "events": {"read": 2, "accepted": 2, "rejected": 0, "reasons": {}},
        },
    }
    assert_accepted_meet_contract(result)


def test_parquet_parts_in_nested_folders_are_all_read(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parts")
    frame = typed_for_parquet(base_tables()["invoices"], "invoices")
    frame["invoice_id"] = ["J1", "J2", "J3", "J4", "J5"]
    frame["ref"] = ["j1", "j2", "j3", "j4", "j5"]
    (raw / "invoices" / "year=2024").mkdir()
    write_parquet(raw / "invoices" / "year=2024" / "part-2.parquet", frame)
    result = load_dataset(str(raw))
    assert result.tables["invoices"].read == 10
    assert sorted(result.invoices["invoice_id"]) == sorted(
        ["I1", "I2", "I3", "I4", "I5", "J1", "J2", "J3", "J4", "J5"])
