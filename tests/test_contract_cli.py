"""``riskmodel validate``: exit codes, the JSON report, the rejects files, --max-reject-rate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from contract_helpers import add_row, base_exposures, base_tables, write_dataset
from riskmodel.cli import app
from riskmodel.data.contract import TABLES

runner = CliRunner()


def validate(*args: str | Path):
    return runner.invoke(app, ["validate", *map(str, args)])


def broken_tables() -> dict[str, pd.DataFrame]:
    """1 of 4 buyers, 2 of 7 invoices and 1 of 3 events break a row rule."""
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B4", country="UK")
    add_row(tables, "invoices", ref="i6", invoice_id="I6", amount="-3")
    add_row(tables, "invoices", ref="i7", invoice_id="I1")
    add_row(tables, "events", ref="e3", event_type="fraud")
    return tables


BROKEN_REPORT = {
    "contract_version": "1.1",
    "observed_until": "2024-06-30",
    "tables": {
        "invoices": {"read": 7, "accepted": 5, "rejected": 2,
                     "reasons": {"duplicate_invoice_id": 1, "amount_not_positive": 1}},
        "buyers": {"read": 4, "accepted": 3, "rejected": 1, "reasons": {"invalid_country": 1}},
        "events": {"read": 3, "accepted": 2, "rejected": 1, "reasons": {"unknown_event_type": 1}},
    },
}


# --------------------------------------------------------------------------- exit 2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_schema_error_exits_2_names_file_and_column_and_writes_nothing(
    tmp_path: Path, fmt: str
) -> None:
    tables = base_tables()
    tables["invoices"] = tables["invoices"].drop(columns="due_date")
    raw = write_dataset(tmp_path / "raw", tables, fmt)
    out = tmp_path / "out"
    res = validate(raw, "--rejects", out / "rejects", "--report", out / "report.json")
    assert res.exit_code == 2, res.output
    assert f"{raw / f'invoices.{fmt}'}: column due_date: missing required column" in res.stderr
    assert not out.exists()


def test_wrong_type_exits_2(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    frame = pd.read_parquet(raw / "invoices.parquet")
    frame["amount"] = frame["amount"] > 100
    frame.to_parquet(raw / "invoices.parquet")
    res = validate(raw, "--rejects", tmp_path / "rejects", "--report", tmp_path / "r.json")
    assert res.exit_code == 2
    assert f"{raw / 'invoices.parquet'}: column amount: wrong type" in res.stderr
    assert not (tmp_path / "rejects").exists()
    assert not (tmp_path / "r.json").exists()


def test_missing_table_exits_2(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    (raw / "events.csv").unlink()
    res = validate(raw, "--report", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "missing table" in res.stderr and "events" in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_bad_mapping_exits_2(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    mapping = tmp_path / "m.yaml"
    mapping.write_text("tables:\n  invoices:\n    columns: {amount_eur: amount}\n")
    res = validate(raw, "--mapping", mapping, "--report", tmp_path / "r.json")
    assert res.exit_code == 2
    assert str(mapping) in res.stderr and "amount_eur" in res.stderr
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------- exit 0


def test_clean_dataset_exits_0_with_exact_report(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    report = tmp_path / "out" / "validation.json"
    rejects = tmp_path / "out" / "rejects"
    res = validate(raw, "--report", report, "--rejects", rejects)
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text(encoding="utf-8")) == {
        "contract_version": "1.1",
        "observed_until": "2024-06-30",
        "tables": {
            "invoices": {"read": 5, "accepted": 5, "rejected": 0, "reasons": {}},
            "buyers": {"read": 3, "accepted": 3, "rejected": 0, "reasons": {}},
            "events": {"read": 2, "accepted": 2, "rejected": 0, "reasons": {}},
        },
    }
    for name in TABLES:  # an empty rejects table is still written, with its columns
        rejected = pd.read_parquet(rejects / f"{name}.parquet")
        assert rejected.empty
        assert sorted(rejected.columns) == sorted([*base_tables()[name].columns, "reason"])


def test_report_counts_and_rejects_files(tmp_path: Path) -> None:
    tables = broken_tables()
    raw = write_dataset(tmp_path / "raw", tables)
    report, rejects = tmp_path / "report.json", tmp_path / "rejects"
    res = validate(raw, "--report", report, "--rejects", rejects, "--max-reject-rate", "0.5")
    assert res.exit_code == 0, res.output

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data == BROKEN_REPORT
    # the reasons are listed in rule order, the order of schema.RULES
    assert list(data["tables"]["invoices"]["reasons"]) == [
        "duplicate_invoice_id", "amount_not_positive"]
    for counts in data["tables"].values():
        assert counts["read"] == counts["accepted"] + counts["rejected"]

    assert sorted(p.name for p in rejects.iterdir()) == [
        "buyers.parquet", "events.parquet", "invoices.parquet"]
    expected = {
        "invoices": {"i6": "amount_not_positive", "i7": "duplicate_invoice_id"},
        "buyers": {"b4": "invalid_country"},
        "events": {"e3": "unknown_event_type"},
    }
    for name in TABLES:
        rejected = pd.read_parquet(rejects / f"{name}.parquet")
        assert sorted(rejected.columns) == sorted([*tables[name].columns, "reason"])
        assert rejected.columns[-1] == "reason"
        assert dict(zip(rejected["ref"], rejected["reason"], strict=True)) == expected[name]
        # original values, as read
        original = tables[name].set_index("ref").loc[rejected["ref"]]
        for col in tables[name].columns.drop("ref"):
            assert rejected[col].fillna("").tolist() == original[col].tolist(), (name, col)


def test_rejects_of_a_parquet_dataset_keep_column_types(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", broken_tables(), "parquet")
    rejects = tmp_path / "rejects"
    res = validate(raw, "--rejects", rejects, "--max-reject-rate", "1")
    assert res.exit_code == 0, res.output
    invoices = pd.read_parquet(rejects / "invoices.parquet")
    assert invoices["ref"].tolist() == ["i6", "i7"]
    assert invoices["amount"].tolist() == [-3.0, 100.0]
    assert pd.api.types.is_datetime64_any_dtype(invoices["issue_date"])
    assert invoices["reason"].tolist() == ["amount_not_positive", "duplicate_invoice_id"]


def test_observed_until_option(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    report = tmp_path / "r.json"
    res = validate(raw, "--observed-until", "2024-12-31", "--report", report)
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["observed_until"] == "2024-12-31"

    res = validate(raw, "--observed-until", "2024-05-31", "--report", report,
                   "--max-reject-rate", "1")
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["observed_until"] == "2024-05-31"
    assert data["tables"]["invoices"]["reasons"] == {
        "issue_after_observed_until": 1, "paid_after_observed_until": 1}
    assert data["tables"]["events"]["reasons"] == {"event_after_observed_until": 1}


def test_observed_until_after_the_day_of_the_run_exits_2(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    res = validate(raw, "--observed-until", "2099-01-01", "--report", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert "observed_until: future date: 2099-01-01 is after the day of the run" in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_params_observed_until_after_the_day_of_the_run_exits_2(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  observed_until: 2099-01-01\n", encoding="utf-8")
    res = validate(raw, "--params", params, "--report", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert "2099-01-01" in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_exposures_are_reported_and_rejected_rows_written(tmp_path: Path) -> None:
    tables = base_tables()
    tables["exposures"] = base_exposures()
    add_row(tables, "exposures", ref="x5", buyer_id="B9")
    raw = write_dataset(tmp_path / "raw", tables)
    report, rejects = tmp_path / "r.json", tmp_path / "rejects"
    res = validate(raw, "--report", report, "--rejects", rejects, "--max-reject-rate", "0.5")
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["contract_version"] == "1.1"
    assert data["tables"]["exposures"] == {
        "read": 5, "accepted": 4, "rejected": 1, "reasons": {"unknown_buyer_id": 1}}
    rejected = pd.read_parquet(rejects / "exposures.parquet")
    assert rejected[["ref", "reason"]].values.tolist() == [["x5", "unknown_buyer_id"]]


def test_observed_until_must_be_iso_date(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    res = validate(raw, "--observed-until", "31.12.2024")
    assert res.exit_code == 2
    assert "--observed-until" in res.output


# --------------------------------------------------------------------------- exit 1


@pytest.mark.parametrize(
    ("rate", "code"),
    [
        ("0.5", 0),      # the largest share is events 1/3
        ("0.3334", 0),
        ("0.3333", 1),   # events 33.33...% > 33.33%
        ("0.25", 1),     # buyers 1/4 = 25% is not above it, events is
        ("0", 1),
    ],
)
def test_max_reject_rate(tmp_path: Path, rate: str, code: int) -> None:
    raw = write_dataset(tmp_path / "raw", broken_tables())
    res = validate(raw, "--max-reject-rate", rate)
    assert res.exit_code == code, res.output
    if code:
        assert "rejected share above the limit" in res.stderr
        assert "events 33.33%" in res.stderr


def test_max_reject_rate_names_every_table_over_it(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", broken_tables())
    res = validate(raw, "--max-reject-rate", "0.2")
    assert res.exit_code == 1
    assert "invoices 28.57%" in res.stderr
    assert "buyers 25.00%" in res.stderr
    assert "events 33.33%" in res.stderr


def test_reject_share_equal_to_the_limit_passes(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B4", country="UK")  # 1 of 4 buyers
    raw = write_dataset(tmp_path / "raw", tables)
    assert validate(raw, "--max-reject-rate", "0.25").exit_code == 0
    assert validate(raw, "--max-reject-rate", "0.24").exit_code == 1


def test_default_max_reject_rate_is_one_percent(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", currency="usd")
    raw = write_dataset(tmp_path / "raw", tables)
    res = validate(raw)
    assert res.exit_code == 1
    assert "rejected share above the limit 1.00%: invoices 16.67%" in res.stderr


def test_reports_and_rejects_are_written_even_when_the_limit_fails(tmp_path: Path) -> None:
    """The counts and the rejected rows are what the user needs to see why it failed."""
    raw = write_dataset(tmp_path / "raw", broken_tables())
    report, rejects = tmp_path / "r.json", tmp_path / "rejects"
    res = validate(raw, "--report", report, "--rejects", rejects)
    assert res.exit_code == 1
    assert json.loads(report.read_text()) == BROKEN_REPORT
    assert len(pd.read_parquet(rejects / "invoices.parquet")) == 2


@pytest.mark.parametrize("rate", ["-0.1", "1.5"])
def test_max_reject_rate_outside_0_1_is_a_usage_error(tmp_path: Path, rate: str) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    res = validate(raw, "--max-reject-rate", rate, "--report", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "--max-reject-rate" in res.output
    assert not (tmp_path / "r.json").exists()
