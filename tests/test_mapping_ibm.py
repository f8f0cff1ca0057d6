"""Mappings: the real IBM accounts-receivable sample mapped onto the contract, and the errors a
wrong mapping gives."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from contract_helpers import (
    assert_accepted_meet_contract,
    assert_counts_add_up,
    base_tables,
    rejects_by_ref,
    write_csv,
    write_dataset,
)
from riskmodel.cli import app
from riskmodel.data.contract import ContractError, load_dataset, load_mapping, read_tables

REPO = Path(__file__).resolve().parents[1]
IBM_MAPPING = REPO / "mappings" / "ibm_ar.yaml"
IBM_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ibm_ar"
IBM_FILE = IBM_DIR / "WA_Fn-UseC_-Accounts-Receivable.csv"
COUNTRIES = {"391": "XA", "406": "XB", "770": "XC", "818": "XD", "897": "XE"}


@pytest.fixture(scope="module")
def ibm_raw() -> pd.DataFrame:
    if not IBM_FILE.is_file():
        pytest.skip(f"IBM accounts-receivable sample not found at {IBM_FILE}")
    return pd.read_csv(IBM_FILE, dtype=str)


@pytest.fixture(scope="module")
def ibm(ibm_raw: pd.DataFrame):
    return load_dataset(str(IBM_DIR), load_mapping(IBM_MAPPING))


# --------------------------------------------------------------------------- the IBM sample


def test_ibm_counts_and_observation_date(ibm) -> None:
    assert ibm.report() == {
        "contract_version": "1.1",
        "observed_until": "2014-01-09",
        "tables": {
            "invoices": {"read": 2466, "accepted": 2466, "rejected": 0, "reasons": {}},
            "buyers": {"read": 100, "accepted": 100, "rejected": 0, "reasons": {}},
            "events": {"read": 0, "accepted": 0, "rejected": 0, "reasons": {}},
        },
    }
    assert ibm.observed_until == dt.date(2014, 1, 9)
    assert_counts_add_up(ibm)
    assert_accepted_meet_contract(ibm)


def test_ibm_invoices_are_mapped_value_for_value(ibm, ibm_raw: pd.DataFrame) -> None:
    inv = ibm.invoices
    assert inv["invoice_id"].tolist() == ibm_raw["invoiceNumber"].tolist()
    assert inv["buyer_id"].tolist() == ibm_raw["customerID"].tolist()
    assert inv["amount"].sum() == pytest.approx(147703.18)
    assert (inv["currency"] == "USD").all()
    assert inv["supplier_id"].isna().all()
    # US dates (date_format "%m/%d/%Y"): the first row is issued 1/2/2013, due 2/1/2013
    assert inv.loc[0, "issue_date"] == pd.Timestamp("2013-01-02")
    assert inv.loc[0, "due_date"] == pd.Timestamp("2013-02-01")
    assert inv.loc[0, "paid_date"] == pd.Timestamp("2013-01-15")
    assert inv["issue_date"].min() == pd.Timestamp("2012-01-03")
    assert inv["paid_date"].notna().all()


def test_ibm_disputed_is_parsed_as_bool(ibm, ibm_raw: pd.DataFrame) -> None:
    disputed = ibm.invoices["disputed"]
    assert disputed.dtype == "boolean"
    assert disputed.notna().all()
    assert disputed.tolist() == (ibm_raw["Disputed"] == "Yes").tolist()
    assert int(disputed.sum()) == 561


def test_ibm_countries_map_to_user_assigned_codes(ibm, ibm_raw: pd.DataFrame) -> None:
    buyers = ibm.buyers
    assert set(buyers["country"]) == {"XA", "XB", "XC", "XD", "XE"}
    assert buyers["buyer_id"].is_unique
    assert (buyers["industry"] == "UNKNOWN").all()
    expected = (
        ibm_raw.drop_duplicates("customerID").set_index("customerID")["countryCode"].map(COUNTRIES)
    )
    got = buyers.set_index("buyer_id")["country"]
    assert got.sort_index().tolist() == expected.sort_index().tolist()
    assert buyers["country"].value_counts().to_dict() == {
        "XA": 25, "XB": 23, "XC": 20, "XD": 16, "XE": 16}


def test_ibm_events_are_declared_empty(ibm) -> None:
    assert ibm.events.empty
    assert list(ibm.events.columns) == ["buyer_id", "event_date", "event_type"]


def test_ibm_through_the_cli(tmp_path: Path, ibm_raw: pd.DataFrame) -> None:
    report = tmp_path / "report.json"
    res = CliRunner().invoke(
        app, ["validate", str(IBM_DIR), "--mapping", str(IBM_MAPPING), "--report", str(report),
              "--max-reject-rate", "0"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["observed_until"] == "2014-01-09"
    assert data["tables"]["invoices"] == {
        "read": 2466, "accepted": 2466, "rejected": 0, "reasons": {}}
    assert data["tables"]["buyers"]["accepted"] == 100


# --------------------------------------------------------------------------- mapping errors


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tables:\n  invoices:\n    columns: {invoice_no: invoiceNumber}\n",
         "tables.invoices.columns: 'invoice_no' is not a contract column of invoices"),
        ("tables:\n  buyers:\n    constants: {sector: K}\n",
         "tables.buyers.constants: 'sector' is not a contract column of buyers"),
        ("tables:\n  invoices:\n    date_formats: {settled: '%d.%m.%Y'}\n",
         "tables.invoices.date_formats: 'settled' is not a contract column of invoices"),
        ("tables:\n  buyers:\n    values: {colour: {a: b}}\n",
         "tables.buyers.values: 'colour' is not a contract column of buyers"),
        ("tables:\n  invoices:\n    colums: {invoice_id: invoiceNumber}\n",
         "tables.invoices.colums"),
        ("date_fmt: '%m/%d/%Y'\n", "date_fmt"),
        ("tables:\n  payments:\n    file: p.csv\n", "unknown table 'payments'"),
        ("tables:\n  buyers:\n    derive_from: customers\n", "unknown table 'customers'"),
        ("tables:\n  events:\n    empty: true\n    file: events.csv\n",
         "'empty: true' cannot be combined"),
        ("tables:\n  buyers:\n    file: b.csv\n    derive_from: invoices\n",
         "either 'file' or 'derive_from'"),
    ],
    ids=["unknown-column", "unknown-constant", "unknown-date-format-column",
         "unknown-values-column", "unknown-table-key", "unknown-top-key", "unknown-table",
         "unknown-derive-table", "empty-with-file", "file-and-derive"],
)
def test_invalid_mapping_names_the_wrong_key(tmp_path: Path, text: str, named: str) -> None:
    path = _mapping(tmp_path, text)
    with pytest.raises(ContractError, match=re.escape(f"{path}: invalid mapping: ")
                       + ".*" + re.escape(named)) as caught:
        load_mapping(path)
    assert "pydantic" not in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_mapping(tmp_path: Path) -> None:
    path = _mapping(tmp_path, "tables: [invoices,\n")
    with pytest.raises(ContractError, match=re.escape(f"{path}: unreadable mapping")):
        load_mapping(path)
    with pytest.raises(ContractError, match=re.escape(f"{tmp_path / 'none.yaml'}: unreadable")):
        load_mapping(tmp_path / "none.yaml")


def test_mapping_source_column_the_file_lacks(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    mapping = load_mapping(_mapping(
        tmp_path, "tables:\n  invoices:\n    columns: {amount: InvoiceAmount}\n"))
    with pytest.raises(ContractError, match=re.escape(
            f"{raw / 'invoices.csv'}: column InvoiceAmount: missing source column: mapping for "
            "invoices names 'InvoiceAmount', which the file lacks")):
        load_dataset(str(raw), mapping)


def test_mapping_file_that_does_not_exist(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    mapping = load_mapping(_mapping(tmp_path, "tables:\n  invoices:\n    file: export.csv\n"))
    with pytest.raises(ContractError, match=re.escape(f"{raw / 'export.csv'}: missing table")):
        load_dataset(str(raw), mapping)


def test_derived_table_source_lacking_a_mapped_column(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    (raw / "buyers.csv").unlink()
    mapping = load_mapping(_mapping(tmp_path, (
        "tables:\n  buyers:\n    derive_from: invoices\n"
        "    columns: {country: countryCode}\n    constants: {industry: K}\n")))
    with pytest.raises(ContractError, match=re.escape(
            f"{raw / 'invoices.csv'}: column countryCode: missing source column")):
        load_dataset(str(raw), mapping)


# --------------------------------------------------------------------------- mapping features


EXPORT = pd.DataFrame(
    {
        "Inv": ["A1", "A2", "A3", "A4"],
        "Cust": ["C1", "C1", "C2", "C3"],
        "Ctry": ["1", "1", "2", "2"],
        "Issued": ["02.01.2024", "15.01.2024", "01.02.2024", "03.02.2024"],
        "Due": ["2024-02-01", "2024-02-14", "2024-03-02", "2024-03-04"],
        "Amt": ["10", "20", "30", "40"],
        "Paid": ["01/20/2024", "", "03/01/2024", ""],
        "Flag": ["J", "N", "N", "J"],
        "Note": ["a", "b", "c", "d"],
    }
)
EXPORT_MAPPING = """
date_format: "%m/%d/%Y"
tables:
  invoices:
    file: export.csv
    columns: {invoice_id: Inv, buyer_id: Cust, issue_date: Issued, due_date: Due,
              amount: Amt, paid_date: Paid, disputed: Flag}
    date_formats: {issue_date: "%d.%m.%Y", due_date: "%Y-%m-%d"}
    constants: {currency: EUR}
    values: {disputed: {J: true, N: false}}
  buyers:
    derive_from: invoices
    columns: {buyer_id: Cust, country: Ctry}
    values: {country: {1: DE, 2: AT}}
    constants: {industry: C}
  events:
    empty: true
"""


def test_mapping_renames_recodes_and_sets_formats(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "export.csv", EXPORT)
    result = load_dataset(str(raw), load_mapping(_mapping(tmp_path, EXPORT_MAPPING)))
    inv = result.invoices
    assert inv["invoice_id"].tolist() == ["A1", "A2", "A3", "A4"]
    assert inv["issue_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-02", "2024-01-15", "2024-02-01", "2024-02-03"]
    assert inv["paid_date"].dt.strftime("%Y-%m-%d").tolist()[::2] == [
        "2024-01-20", "2024-03-01"]
    assert inv["disputed"].tolist() == [True, False, False, True]
    assert (inv["currency"] == "EUR").all()
    assert result.buyers[["buyer_id", "country", "industry"]].values.tolist() == [
        ["C1", "DE", "C"], ["C2", "AT", "C"], ["C3", "AT", "C"]]
    assert result.observed_until == dt.date(2024, 3, 1)
    assert_counts_add_up(result)
    assert_accepted_meet_contract(result)


def test_derived_buyer_with_conflicting_attributes_is_a_duplicate(tmp_path: Path) -> None:
    """C1 appears with two countries: never resolved silently, the second is rejected."""
    raw = tmp_path / "raw"
    raw.mkdir()
    export = EXPORT.copy()
    export.loc[1, "Ctry"] = "2"
    write_csv(raw / "export.csv", export)
    result = load_dataset(str(raw), load_mapping(_mapping(tmp_path, EXPORT_MAPPING)))
    rejected = result.tables["buyers"].rejected
    assert rejected[["buyer_id", "country", "reason"]].values.tolist() == [
        ["C1", "AT", "duplicate_buyer_id"]]
    assert result.buyers["buyer_id"].tolist() == ["C1", "C2", "C3"]
    assert result.tables["invoices"].rejected.empty  # C1 itself is accepted (first row)


def test_unmapped_source_columns_travel_into_the_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    export = EXPORT.copy()
    export.loc[2, "Amt"] = "-30"
    write_csv(raw / "export.csv", export)
    result = load_dataset(str(raw), load_mapping(_mapping(tmp_path, EXPORT_MAPPING)))
    rejected = result.tables["invoices"].rejected
    assert rejected[["invoice_id", "Note", "Ctry", "reason"]].values.tolist() == [
        ["A3", "c", "2", "amount_not_positive"]]
    assert "Note" not in result.invoices.columns


def test_contract_named_columns_need_no_mapping(tmp_path: Path) -> None:
    """A mapping lists only what differs: unmapped contract columns keep their names."""
    tables = base_tables()
    tables["invoices"] = tables["invoices"].rename(columns={"amount": "Betrag"})
    raw = write_dataset(tmp_path / "raw", tables)
    mapping = load_mapping(_mapping(
        tmp_path, "tables:\n  invoices:\n    columns: {amount: Betrag}\n"))
    result = load_dataset(str(raw), mapping)
    assert result.invoices["amount"].tolist() == pytest.approx([100.0, 250.5, 75.0, 1200.0, 10.0])
    assert rejects_by_ref(result, "invoices") == {}
    read = read_tables(raw, mapping)
    assert "Betrag" not in read["invoices"].frame.columns


def test_recode_to_null_alone_marks_values_missing(tmp_path: Path) -> None:
    """A recode whose only target is null turns that code into a missing value."""
    import pandas as pd

    from riskmodel.data.contract.mapping import TableMapping, apply_mapping

    frame = pd.DataFrame({"invoice_id": ["a", "b"], "paid_date": ["NULL", "2024-01-01"]})
    out = apply_mapping(frame, "invoices", TableMapping(values={"paid_date": {"NULL": None}}),
                        "x.csv")
    assert out["paid_date"].isna().tolist() == [True, False]
    assert out["paid_date"].iloc[1] == "2024-01-01"
