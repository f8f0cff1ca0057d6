"""Contract 1.1: the day of the run (``future_date``), ``observed_until`` inferred from accepted
rows only, ``dispute_date``, the optional ``exposures`` table, and the public steps a batch
validation is built from (``type_table(strict=False)`` with ``check_wrong_types``,
``split_table`` with ``RuleContext.duplicate_rows``, ``latest_observation``)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract_helpers import (
    BASE_OBSERVED_UNTIL,
    add_row,
    assert_accepted_meet_contract,
    assert_counts_add_up,
    base_exposures,
    base_tables,
    rejects_by_ref,
    set_cell,
    typed_for_parquet,
    write_csv,
    write_dataset,
    write_parquet,
)
from riskmodel.data.contract import (
    CONTRACT_VERSION,
    TABLE_COLUMNS,
    ContractError,
    RawTable,
    RuleContext,
    TypeStats,
    check_wrong_types,
    infer_observed_until,
    latest_observation,
    load_dataset,
    load_mapping,
    read_tables,
    split_table,
    type_table,
    validate_tables,
)
from riskmodel.data.contract.validation import WRONG_TYPE_MIN_VALUES

TODAY = dt.date(2024, 9, 30)
OU = BASE_OBSERVED_UNTIL
FORMATS = ("csv", "parquet", "parts")


def _load(tmp_path: Path, tables, fmt: str = "csv", **kwargs):
    raw = write_dataset(tmp_path / f"raw-{fmt}", tables, fmt)
    return load_dataset(str(raw), **kwargs)


def _same_split(a, b) -> None:
    assert set(a.tables) == set(b.tables)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name].accepted, b.tables[name].accepted)
        pd.testing.assert_frame_equal(a.tables[name].rejected, b.tables[name].rejected)
        assert a.tables[name].reasons == b.tables[name].reasons


# --------------------------------------------------------------------------- the day of the run


@pytest.mark.parametrize("fmt", FORMATS)
def test_typo_issue_date_2099_is_rejected_and_does_not_move_observed_until(
    tmp_path: Path, fmt: str
) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", issue_date="2099-01-10",
            due_date="2099-02-09", paid_date="")
    result = _load(tmp_path, tables, fmt, today=TODAY)
    assert rejects_by_ref(result, "invoices") == {"i6": "future_date"}
    assert result.observed_until == OU
    assert result.observed_until_inferred
    assert_counts_add_up(result)
    assert_accepted_meet_contract(result, TODAY)


def test_future_date_uses_the_system_date_by_default(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", paid_date="2099-03-01")
    add_row(tables, "events", ref="e3", event_date="2099-03-01")
    result = _load(tmp_path, tables)
    assert result.run_day == dt.date.today()
    assert rejects_by_ref(result, "invoices") == {"i6": "future_date"}
    assert rejects_by_ref(result, "events") == {"e3": "future_date"}
    assert result.observed_until == OU


def test_future_date_is_after_the_day_not_on_it(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "events", ref="e3", event_date="2024-09-30")
    add_row(tables, "events", ref="e4", event_date="2024-10-01")
    result = _load(tmp_path, tables, today=TODAY)
    assert rejects_by_ref(result, "events") == {"e4": "future_date"}
    assert result.observed_until == TODAY


@pytest.mark.parametrize("fmt", FORMATS)
def test_due_date_after_the_day_of_the_run_is_accepted(tmp_path: Path, fmt: str) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", issue_date="2024-09-01",
            due_date="2025-08-31", paid_date="")
    result = _load(tmp_path, tables, fmt, today=TODAY)
    assert rejects_by_ref(result, "invoices") == {}
    assert result.observed_until == dt.date(2024, 9, 1)  # the issue date, not the due date


def test_explicit_observed_until_after_the_day_of_the_run_is_an_error(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    message = re.escape("observed_until: future date: 2024-10-01 is after the day of the run, "
                        "2024-09-30")
    with pytest.raises(ContractError, match=message):
        load_dataset(str(raw), observed_until=dt.date(2024, 10, 1), today=TODAY)
    with pytest.raises(ContractError, match=message):
        validate_tables(read_tables(raw), dt.date(2024, 10, 1), today=TODAY)
    # checked before anything is read
    with pytest.raises(ContractError, match="future date: 2099-01-01"):
        load_dataset(str(tmp_path / "nope"), observed_until=dt.date(2099, 1, 1))
    # the day of the run itself is fine
    assert load_dataset(str(raw), observed_until=TODAY, today=TODAY).observed_until == TODAY


# --------------------------------------------------------------------------- inference


def test_a_rejected_row_with_the_latest_date_does_not_set_observed_until(tmp_path: Path) -> None:
    tables = base_tables()
    # the latest dates of the file, each on a row rejected for another reason
    add_row(tables, "invoices", ref="i6", invoice_id="I6", buyer_id="B9", paid_date="2024-08-20")
    add_row(tables, "invoices", ref="i7", invoice_id="I1", paid_date="2024-08-21")
    add_row(tables, "invoices", ref="i8", invoice_id="I8", currency="eur",
            dispute_date="2024-08-22")
    add_row(tables, "events", ref="e3", event_date="2024-08-23", event_type="bankruptcy")
    result = _load(tmp_path, tables, today=TODAY)
    assert rejects_by_ref(result, "invoices") == {
        "i6": "unknown_buyer_id", "i7": "duplicate_invoice_id", "i8": "invalid_currency"}
    assert rejects_by_ref(result, "events") == {"e3": "unknown_event_type"}
    assert result.observed_until == OU
    # the observed_until rules, last in every table, never fire on inferred data
    for table in result.tables.values():
        assert not any(r.endswith("_after_observed_until") for r in table.reasons)


def test_dispute_date_counts_for_the_inferred_observed_until(tmp_path: Path) -> None:
    tables = base_tables()
    set_cell(tables, "invoices", "i2", "dispute_date", "2024-07-15")
    result = _load(tmp_path, tables, today=TODAY)
    assert rejects_by_ref(result, "invoices") == {}
    assert result.observed_until == dt.date(2024, 7, 15)


def test_inferred_observed_until_gives_the_same_split_as_given_explicitly(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", buyer_id="B9", paid_date="2024-08-20")
    add_row(tables, "invoices", ref="i7", invoice_id="I7", issue_date="2099-01-01",
            due_date="2099-01-31", paid_date="")
    add_row(tables, "invoices", ref="i8", invoice_id="I8", amount="-1")
    add_row(tables, "buyers", ref="b4", buyer_id="B4", founded_year="2024")
    raw = write_dataset(tmp_path / "raw", tables)
    inferred = load_dataset(str(raw), today=TODAY)
    explicit = load_dataset(str(raw), observed_until=inferred.observed_until, today=TODAY)
    assert inferred.observed_until == OU
    assert not explicit.observed_until_inferred
    _same_split(inferred, explicit)


def test_a_buyer_founded_after_the_inferred_year_is_rejected_with_its_rows(tmp_path: Path) -> None:
    """The run is in 2025, so at first the buyer founded in 2025 is accepted and its invoice
    of 2024-12-31 is the latest date. The inferred year, 2024, rejects the buyer, its invoice
    goes with it, and the date is inferred again from what remains."""
    today = dt.date(2025, 3, 31)
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B4", founded_year="2025")
    add_row(tables, "invoices", ref="i6", invoice_id="I6", buyer_id="B4", issue_date="2024-12-01",
            due_date="2024-12-31", paid_date="2024-12-31")
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw), today=today)
    assert result.observed_until == OU
    assert rejects_by_ref(result, "buyers") == {"b4": "founded_year_out_of_range"}
    assert rejects_by_ref(result, "invoices") == {"i6": "buyer_rejected"}
    assert_accepted_meet_contract(result, today)
    _same_split(result, load_dataset(str(raw), observed_until=OU, today=today))


def test_founded_in_the_run_year_is_judged_by_the_inferred_year(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B4", founded_year="2024", employees="-1")
    add_row(tables, "buyers", ref="b5", buyer_id="B5", founded_year="2025", employees="-1")
    result = _load(tmp_path, tables, today=dt.date(2025, 1, 31))
    # b5 breaks two rules; the first, with the inferred year 2024, is founded_year
    assert rejects_by_ref(result, "buyers") == {"b4": "employees_negative",
                                                "b5": "founded_year_out_of_range"}


def test_no_accepted_date_at_all_is_an_error(tmp_path: Path) -> None:
    tables = base_tables()
    tables["invoices"]["buyer_id"] = "B9"  # every invoice rejected: unknown buyer
    tables["events"] = tables["events"].iloc[0:0]
    raw = write_dataset(tmp_path / "raw", tables)
    with pytest.raises(ContractError, match=re.escape(f"{raw / 'invoices.csv'}: column "
                                                      "issue_date: no dates: ")):
        load_dataset(str(raw), today=TODAY)


def test_infer_observed_until_from_split_results_and_batches(tmp_path: Path) -> None:
    raw = read_tables(write_dataset(tmp_path / "raw", base_tables()))
    typed = {n: type_table(raw[n]) for n in ("buyers", "invoices", "events")}
    buyers = split_table(typed["buyers"], RuleContext(None, today=pd.Timestamp(TODAY)))
    known = pd.Index(buyers.accepted["buyer_id"])
    ctx = RuleContext(None, known, known, today=pd.Timestamp(TODAY))
    results = {n: split_table(typed[n], ctx) for n in ("invoices", "events")}
    assert infer_observed_until(results) == OU
    assert infer_observed_until({n: r.accepted for n, r in results.items()}) == OU
    # per batch, then the max over batches
    inv = results["invoices"].accepted
    maxima = [latest_observation("invoices", inv.iloc[:2]),
              latest_observation("invoices", inv.iloc[2:]),
              latest_observation("events", results["events"].accepted)]
    assert max(m for m in maxima if m is not None).date() == OU
    assert latest_observation("invoices", inv.iloc[0:0]) is None
    assert latest_observation("buyers", buyers.accepted) is None


# --------------------------------------------------------------------------- dispute_date


@pytest.mark.parametrize("fmt", FORMATS)
def test_dispute_date_is_typed_and_kept(tmp_path: Path, fmt: str) -> None:
    result = _load(tmp_path, base_tables(), fmt, today=TODAY)
    inv = result.invoices
    assert str(inv["dispute_date"].dtype) == "datetime64[s]"
    assert inv["dispute_date"].tolist()[1] == pd.Timestamp("2024-02-20")
    assert inv["dispute_date"].isna().tolist() == [True, False, True, True, True]
    assert result.has_dispute_date


def test_without_dispute_date_the_column_is_null_and_the_input_said_so(tmp_path: Path) -> None:
    tables = base_tables()
    tables["invoices"] = tables["invoices"].drop(columns="dispute_date")
    result = _load(tmp_path, tables, today=TODAY)
    assert not result.has_dispute_date
    assert result.tables["invoices"].provided_columns == frozenset(
        c.name for c in TABLE_COLUMNS["invoices"]) - {"dispute_date"}
    assert str(result.invoices["dispute_date"].dtype) == "datetime64[s]"
    assert result.invoices["dispute_date"].isna().all()
    # an empty column is still a column the input had
    tables["invoices"]["dispute_date"] = ""
    assert _load(tmp_path / "b", tables, today=TODAY).has_dispute_date


@pytest.mark.parametrize("fmt", FORMATS)
def test_dispute_before_issue_and_after_observed_until(tmp_path: Path, fmt: str) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", dispute_date="2024-01-09")
    add_row(tables, "invoices", ref="i7", invoice_id="I7", dispute_date="2024-04-01")
    add_row(tables, "invoices", ref="i8", invoice_id="I8", dispute_date="2024-03-31")
    result = _load(tmp_path, tables, fmt, observed_until=dt.date(2024, 3, 31), today=TODAY)
    assert rejects_by_ref(result, "invoices") == {
        "i3": "paid_after_observed_until", "i4": "issue_after_observed_until",
        "i5": "issue_after_observed_until", "i6": "dispute_before_issue",
        "i7": "dispute_after_observed_until"}
    assert_accepted_meet_contract(result, TODAY)


# --------------------------------------------------------------------------- exposures


def test_exposures_absent_is_no_table(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    assert set(read_tables(raw)) == {"buyers", "invoices", "events"}
    result = load_dataset(str(raw), today=TODAY)
    assert result.exposures is None
    assert "exposures" not in result.tables
    assert list(result.report()["tables"]) == ["invoices", "buyers", "events"]
    assert result.report()["contract_version"] == CONTRACT_VERSION == "1.1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exposures_are_typed_and_reported(tmp_path: Path, fmt: str) -> None:
    tables = base_tables()
    tables["exposures"] = base_exposures()
    result = _load(tmp_path, tables, fmt, today=TODAY)
    exp = result.exposures
    assert exp is not None
    assert exp["buyer_id"].tolist() == ["B1", "B1", "B2", "B3"]
    assert exp["supplier_id"].isna().tolist() == [False, False, True, False]
    assert exp["current_limit"].tolist() == [50000.0, 0.0, 10000.0, 2500.5]
    assert exp["requested_limit"].isna().tolist() == [False, True, True, False]
    assert result.report()["tables"]["exposures"] == {
        "read": 4, "accepted": 4, "rejected": 0, "reasons": {}}
    assert list(result.report()["tables"]) == ["invoices", "buyers", "events", "exposures"]
    assert_accepted_meet_contract(result, TODAY)


def test_exposures_duplicates_are_by_buyer_and_supplier(tmp_path: Path) -> None:
    tables = base_tables()
    tables["exposures"] = base_exposures()
    add_row(tables, "exposures", ref="x5", supplier_id="S2")  # B1/S2 again: duplicate
    add_row(tables, "exposures", ref="x6", buyer_id="B2", supplier_id="S1")  # new pair
    add_row(tables, "exposures", ref="x7", buyer_id="B2", supplier_id="")  # B2/none again
    add_row(tables, "exposures", ref="x8", buyer_id="B3", supplier_id="")  # B3/none: new
    add_row(tables, "exposures", ref="x9", buyer_id="", supplier_id="")  # missing, not dup
    add_row(tables, "exposures", ref="x10", buyer_id="", supplier_id="")
    result = _load(tmp_path, tables, today=TODAY)
    assert rejects_by_ref(result, "exposures") == {
        "x5": "duplicate_exposure", "x7": "duplicate_exposure",
        "x9": "missing_buyer_id", "x10": "missing_buyer_id"}
    assert_accepted_meet_contract(result, TODAY)


def test_exposures_key_does_not_confuse_pairs(tmp_path: Path) -> None:
    """("B1", "1S") and ("B11", "S") join to the same text; they are different lines."""
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B11")
    tables["exposures"] = pd.DataFrame(
        [["x1", "B1", "1S", "1"], ["x2", "B11", "S", "1"]],
        columns=["ref", "buyer_id", "supplier_id", "current_limit"], dtype=object)
    result = _load(tmp_path, tables, today=TODAY)
    assert rejects_by_ref(result, "exposures") == {}


def test_exposures_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    tables = base_tables()
    tables["exposures"] = base_exposures().drop(columns="current_limit")
    raw = write_dataset(tmp_path / "raw", tables)
    with pytest.raises(ContractError, match=re.escape(
            f"{raw / 'exposures.csv'}: column current_limit: missing required column")):
        load_dataset(str(raw), today=TODAY)


def test_exposures_column_of_wrong_type(tmp_path: Path) -> None:
    tables = base_tables()
    tables["exposures"] = base_exposures()
    raw = write_dataset(tmp_path / "raw", tables, "parquet")
    frame = typed_for_parquet(base_exposures(), "exposures")
    frame["current_limit"] = [True, False, True, True]
    write_parquet(raw / "exposures.parquet", frame)
    with pytest.raises(ContractError, match=re.escape(
            f"{raw / 'exposures.parquet'}: column current_limit: wrong type: expected float, "
            "found bool")):
        load_dataset(str(raw), today=TODAY)


def test_exposures_through_a_mapping(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    limits = base_exposures().rename(columns={"current_limit": "Limit", "buyer_id": "Debtor"})
    write_csv(raw / "limits.csv", limits)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("tables:\n  exposures:\n    file: limits.csv\n"
                       "    columns: {buyer_id: Debtor, current_limit: Limit}\n"
                       "    constants: {currency: EUR}\n", encoding="utf-8")
    result = load_dataset(str(raw), load_mapping(mapping), today=TODAY)
    assert result.exposures is not None
    assert result.exposures["current_limit"].tolist() == [50000.0, 0.0, 10000.0, 2500.5]
    assert (result.exposures["currency"] == "EUR").all()
    # a mapped file that is not there is an error, not an absent table
    mapping.write_text("tables:\n  exposures:\n    file: nope.csv\n", encoding="utf-8")
    with pytest.raises(ContractError, match=re.escape(f"{raw / 'nope.csv'}: missing table")):
        load_dataset(str(raw), load_mapping(mapping), today=TODAY)
    # declared empty: a table of 0 rows
    mapping.write_text("tables:\n  exposures:\n    empty: true\n", encoding="utf-8")
    result = load_dataset(str(raw), load_mapping(mapping), today=TODAY)
    assert result.exposures is not None and result.exposures.empty
    assert result.tables["exposures"].read == 0


def test_a_mapping_may_name_dispute_date(tmp_path: Path) -> None:
    tables = base_tables()
    tables["invoices"] = tables["invoices"].rename(columns={"dispute_date": "DisputeDay"})
    tables["invoices"]["DisputeDay"] = tables["invoices"]["DisputeDay"].replace(
        "2024-02-20", "20.02.2024")
    raw = write_dataset(tmp_path / "raw", tables)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("tables:\n  invoices:\n    columns: {dispute_date: DisputeDay}\n"
                       "    date_formats: {dispute_date: '%d.%m.%Y'}\n", encoding="utf-8")
    result = load_dataset(str(raw), load_mapping(mapping), today=TODAY)
    assert result.has_dispute_date
    assert result.invoices["dispute_date"].tolist()[1] == pd.Timestamp("2024-02-20")


# --------------------------------------------------------------------------- batch typing


def _raw_invoices(amounts: list[str]) -> RawTable:
    frame = base_tables()["invoices"].iloc[: len(amounts)].copy()
    frame["amount"] = amounts
    return RawTable("invoices", "inv.csv", frame.reset_index(drop=True))


def test_strict_false_records_counts_instead_of_raising() -> None:
    raw = _raw_invoices(["n/a", "n/a", "none", "", "n/a"])
    with pytest.raises(ContractError) as strict:
        type_table(raw)
    tt = type_table(raw, strict=False)
    assert tt.present_counts["amount"] == 4
    assert tt.bad_counts["amount"] == 4
    assert tt.stats.bad_examples["amount"] == "n/a"
    assert tt.bad_counts["invoice_id"] == 0 and "amount" in tt.stats.source_dtypes
    assert tt.unparseable["amount"].tolist() == [True, True, True, False, True]
    with pytest.raises(ContractError) as loose:
        check_wrong_types(raw.source, "invoices", tt.stats)
    assert str(loose.value) == str(strict.value)
    assert str(strict.value).startswith("inv.csv: column amount: wrong type: expected float")


def test_check_wrong_types_decides_on_the_totals_of_batches() -> None:
    # each batch alone has too few values to call the column the wrong type ...
    batches = [_raw_invoices(["x", "y"]), _raw_invoices(["z", ""])]
    total = TypeStats()
    for batch in batches:
        tt = type_table(batch, strict=False)
        check_wrong_types(batch.source, "invoices", tt.stats)  # does not raise
        total.add(tt.stats)
    assert total.present_counts["amount"] == 3 and total.bad_counts["amount"] == 3
    assert total.bad_examples["amount"] == "x"  # the first, from the first batch
    # ... together they have enough, and none parses
    with pytest.raises(ContractError, match=re.escape(
            "inv.csv: column amount: wrong type: expected float, found ") + ".*first: 'x'"):
        check_wrong_types("inv.csv", "invoices", total)
    # one parseable value anywhere: rows, not a column, are bad
    total.add(type_table(_raw_invoices(["1.5"]), strict=False).stats)
    check_wrong_types("inv.csv", "invoices", total)


def test_wrong_type_threshold_is_the_same_in_both_modes() -> None:
    raw = _raw_invoices(["bad"] * (WRONG_TYPE_MIN_VALUES - 1))
    type_table(raw)  # too few to tell
    check_wrong_types(raw.source, "invoices", type_table(raw, strict=False).stats)


def test_storage_type_mismatch_raises_even_when_not_strict() -> None:
    frame = typed_for_parquet(base_tables()["invoices"], "invoices")
    frame["amount"] = frame["amount"] > 100
    with pytest.raises(ContractError, match="column amount: wrong type: expected float, found bool"):
        type_table(RawTable("invoices", "inv.parquet", frame), strict=False)


# --------------------------------------------------------------------------- duplicate_rows


def _typed_invoices(ids: list[str]):
    frame = pd.concat([base_tables()["invoices"]] * 2, ignore_index=True).iloc[: len(ids)]
    frame["invoice_id"] = ids
    tt = type_table(RawTable("invoices", "inv.csv", frame.reset_index(drop=True)))
    buyers = pd.Index(["B1", "B2", "B3"])
    return tt, buyers


def test_duplicate_rows_override_the_frame_duplicates() -> None:
    tt, buyers = _typed_invoices(["A", "B", "A", "C"])
    ctx = RuleContext(pd.Timestamp(OU), buyers, buyers, today=pd.Timestamp(TODAY))
    assert split_table(tt, ctx).rejected["reason"].tolist() == ["duplicate_invoice_id"]
    # the caller knows better: "C" occurred in an earlier batch, the second "A" did not
    flags = np.array([False, False, False, True])
    ctx = RuleContext(pd.Timestamp(OU), buyers, buyers, today=pd.Timestamp(TODAY),
                      duplicate_rows=flags)
    res = split_table(tt, ctx)
    assert res.accepted["invoice_id"].tolist() == ["A", "B", "A"]
    assert res.rejected["invoice_id"].tolist() == ["C"]
    assert res.reasons == {"duplicate_invoice_id": 1}
    # earlier rules still come first
    tt.typed.loc[3, "invoice_id"] = None
    tt.missing["invoice_id"].iloc[3] = True
    assert split_table(tt, ctx).reasons == {"missing_invoice_id": 1}


def test_duplicate_rows_must_have_one_flag_per_row() -> None:
    tt, buyers = _typed_invoices(["A", "B"])
    ctx = RuleContext(pd.Timestamp(OU), buyers, buyers, duplicate_rows=np.array([False]))
    with pytest.raises(ValueError, match="duplicate_rows has 1 flags for 2 rows of invoices"):
        split_table(tt, ctx)


def test_split_table_without_observed_until_leaves_those_rules_out() -> None:
    tt, buyers = _typed_invoices(["A", "B", "C"])
    tt.typed.loc[2, "issue_date"] = pd.Timestamp("2024-09-01")
    tt.typed.loc[2, "due_date"] = pd.Timestamp("2024-09-30")
    tt.typed.loc[2, "paid_date"] = pd.NaT
    dated = RuleContext(pd.Timestamp("2024-08-31"), buyers, buyers, today=pd.Timestamp(TODAY))
    assert split_table(tt, dated).reasons == {"issue_after_observed_until": 1}
    open_ = RuleContext(None, buyers, buyers, today=pd.Timestamp(TODAY))
    assert split_table(tt, open_).reasons == {}


def test_rules_that_need_the_buyers_say_so() -> None:
    tt, _ = _typed_invoices(["A"])
    with pytest.raises(ValueError, match="known_buyers is needed to check the rows of invoices"):
        split_table(tt, RuleContext(None))


# --------------------------------------------------------------------------- synthetic world


def test_synthetic_world_has_dispute_dates_that_meet_the_contract(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from riskmodel.data.synth import SynthConfig, write_world

    kw = dict(n_buyers=400, start=dt.date(2021, 1, 1), end=dt.date(2022, 12, 31), seed=5,
              chunk_buyers=200)
    write_world(SynthConfig(**kw), tmp_path / "v11")
    write_world(SynthConfig(**kw, dispute_dates=False), tmp_path / "v10")
    result = load_dataset(str(tmp_path / "v11"))
    assert all(not t.reasons for t in result.tables.values())
    assert result.has_dispute_date
    assert result.observed_until <= dt.date(2022, 12, 31)
    inv = result.invoices
    assert (inv["dispute_date"].notna() == inv["disputed"].astype(bool)).all()
    assert inv["disputed"].sum() > 0
    paid = inv["paid_date"].notna() & inv["dispute_date"].notna()
    assert (inv.loc[paid, "dispute_date"] <= inv.loc[paid, "paid_date"]).all()
    assert_accepted_meet_contract(result)
    # the rest of the world is the same as without dispute dates
    with_dates = pq.read_table(tmp_path / "v11" / "invoices")
    without = pq.read_table(tmp_path / "v10" / "invoices")
    assert "dispute_date" not in without.column_names
    assert with_dates.drop(["dispute_date"]).equals(without)
    for name in ("buyers.parquet", "events.parquet", "truth.parquet"):
        assert (tmp_path / "v11" / name).read_bytes() == (tmp_path / "v10" / name).read_bytes()
    assert not load_dataset(str(tmp_path / "v10")).has_dispute_date
