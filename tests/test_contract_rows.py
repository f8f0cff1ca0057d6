"""Row-level rules of the raw data contract: each broken row is set aside with its reason.

Every case starts from the valid base dataset of ``contract_helpers``, breaks it on purpose
and states exactly which rows (by their ``ref``) each table rejects and why. Everything else
must be accepted, ``read == accepted + rejected`` must hold, and the accepted frames must meet
the contract (``assert_accepted_meet_contract``, written independently of the validator).

Cases run with a fixed day of the run, ``TODAY``, so that ``future_date`` does not depend on
the calendar.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from contract_helpers import (
    BASE_OBSERVED_UNTIL,
    KEY_COLUMN,
    Tables,
    add_row,
    assert_accepted_meet_contract,
    assert_counts_add_up,
    base_exposures,
    base_tables,
    rejects_by_ref,
    set_cell,
    write_dataset,
)
from riskmodel.data.contract import RULES, load_dataset

Edit = Callable[[Tables], None]
OU = BASE_OBSERVED_UNTIL
TODAY = dt.date(2024, 9, 30)  # the day of the run in these cases
TEXT_ONLY = ("csv",)
ALL_FORMATS = ("csv", "parquet", "parts")


@dataclass(frozen=True)
class Case:
    """A deliberately broken (or deliberately borderline) dataset and its exact outcome."""

    id: str
    edit: Edit
    rejects: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {ref: reason}
    formats: tuple[str, ...] = TEXT_ONLY
    observed_until: dt.date | None = OU
    today: dt.date = TODAY


def add(table: str, **values: str) -> Edit:
    return lambda t: add_row(t, table, **values)


def put(table: str, ref: str, **values: str) -> Edit:
    def edit(t: Tables) -> None:
        for column, value in values.items():
            set_cell(t, table, ref, column, value)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(t: Tables) -> None:
        for e in edits:
            e(t)

    return edit


def inv(reason: str) -> dict[str, dict[str, str]]:
    """The usual outcome: the added invoice ``i6`` and nothing else is rejected."""
    return {"invoices": {"i6": reason}}


def buy(reason: str) -> dict[str, dict[str, str]]:
    return {"buyers": {"b4": reason}}


def evt(reason: str) -> dict[str, dict[str, str]]:
    return {"events": {"e3": reason}}


def new_invoice(**values: str) -> Edit:
    return add("invoices", **{"ref": "i6", "invoice_id": "I6", **values})


def new_buyer(**values: str) -> Edit:
    return add("buyers", **{"ref": "b4", "buyer_id": "B4", **values})


def new_event(**values: str) -> Edit:
    return add("events", **{"ref": "e3", **values})


def with_exposures(t: Tables) -> None:
    if "exposures" not in t:
        t["exposures"] = base_exposures()


def new_exposure(**values: str) -> Edit:
    """Add the exposures table (if not there yet) and a row ``x5`` (a copy of ``x1``, B1/S1,
    with ``values``)."""
    return both(with_exposures,
                add("exposures", **{"ref": "x5", "supplier_id": "S9", **values}))


def exp(reason: str) -> dict[str, dict[str, str]]:
    return {"exposures": {"x5": reason}}


# One case or more per rule of schema.RULES; ``test_every_rule_has_a_case`` keeps it so.
REJECT_CASES: list[Case] = [
    # ------------------------------------------------------------------ buyers
    Case("buyers-missing_buyer_id", add("buyers", ref="b4", buyer_id=""),
         buy("missing_buyer_id"), ALL_FORMATS),
    Case("buyers-missing_buyer_id-blank", add("buyers", ref="b4", buyer_id="   "),
         buy("missing_buyer_id")),
    Case("buyers-missing_country", new_buyer(country=""), buy("missing_country"), ALL_FORMATS),
    Case("buyers-missing_industry", new_buyer(industry=""), buy("missing_industry")),
    Case("buyers-missing_industry-blank", new_buyer(industry=" \t"), buy("missing_industry")),
    Case("buyers-unparseable_founded_year", new_buyer(founded_year="nineteen-ninety"),
         buy("unparseable_founded_year")),
    Case("buyers-unparseable_founded_year-fraction", new_buyer(founded_year="1990.5"),
         buy("unparseable_founded_year")),
    Case("buyers-unparseable_employees", new_buyer(employees="ten"),
         buy("unparseable_employees")),
    Case("buyers-unparseable_annual_revenue", new_buyer(annual_revenue="1.000.000"),
         buy("unparseable_annual_revenue")),
    Case("buyers-duplicate_buyer_id", new_buyer(buyer_id="B1", country="FR"),
         buy("duplicate_buyer_id"), ALL_FORMATS),
    Case("buyers-invalid_country-not-iso", new_buyer(country="UK"), buy("invalid_country"),
         ALL_FORMATS),
    Case("buyers-invalid_country-lower-case", new_buyer(country="de"), buy("invalid_country")),
    Case("buyers-invalid_country-alpha-3", new_buyer(country="DEU"), buy("invalid_country")),
    Case("buyers-founded_year_out_of_range-low", new_buyer(founded_year="1799"),
         buy("founded_year_out_of_range"), ALL_FORMATS),
    Case("buyers-founded_year_out_of_range-after-observation-year",
         new_buyer(founded_year="2025"), buy("founded_year_out_of_range")),
    Case("buyers-employees_negative", new_buyer(employees="-1"), buy("employees_negative"),
         ALL_FORMATS),
    Case("buyers-annual_revenue_negative", new_buyer(annual_revenue="-0.01"),
         buy("annual_revenue_negative"), ALL_FORMATS),
    # ------------------------------------------------------------------ invoices
    Case("invoices-missing_invoice_id", add("invoices", ref="i6", invoice_id=""),
         inv("missing_invoice_id"), ALL_FORMATS),
    Case("invoices-missing_buyer_id", new_invoice(buyer_id=""), inv("missing_buyer_id")),
    Case("invoices-missing_issue_date", new_invoice(issue_date=""), inv("missing_issue_date"),
         ALL_FORMATS),
    Case("invoices-missing_due_date", new_invoice(due_date=""), inv("missing_due_date")),
    Case("invoices-missing_amount", new_invoice(amount=""), inv("missing_amount"),
         ALL_FORMATS),
    # NaN is how Parquet/pandas store a null float, so a NaN amount is a missing amount ...
    Case("invoices-amount-NaN-parquet", new_invoice(amount="NaN"), inv("missing_amount"),
         ("parquet", "parts")),
    # ... and so is the text "NaN" in a CSV: NaN means missing, whatever the format
    Case("invoices-amount-NaN-csv", new_invoice(amount="NaN"), inv("missing_amount")),
    Case("invoices-unparseable_issue_date", new_invoice(issue_date="2024-13-01"),
         inv("unparseable_issue_date")),
    Case("invoices-unparseable_issue_date-not-iso", new_invoice(issue_date="01/10/2024"),
         inv("unparseable_issue_date")),
    Case("invoices-unparseable_due_date", new_invoice(due_date="soon"),
         inv("unparseable_due_date")),
    Case("invoices-unparseable_paid_date", new_invoice(paid_date="2024-02-30"),
         inv("unparseable_paid_date")),
    Case("invoices-unparseable_amount", new_invoice(amount="1,000.00"),
         inv("unparseable_amount")),
    Case("invoices-unparseable_disputed", new_invoice(disputed="maybe"),
         inv("unparseable_disputed")),
    Case("invoices-duplicate_invoice_id", new_invoice(invoice_id="I1", amount="99"),
         inv("duplicate_invoice_id"), ALL_FORMATS),
    Case("invoices-unknown_buyer_id", new_invoice(buyer_id="B9"), inv("unknown_buyer_id"),
         ALL_FORMATS),
    Case("invoices-amount_not_finite-inf", new_invoice(amount="inf"), inv("amount_not_finite"),
         ALL_FORMATS),
    Case("invoices-amount_not_finite-minus-inf", new_invoice(amount="-inf"),
         inv("amount_not_finite"), ALL_FORMATS),
    Case("invoices-amount_not_positive-zero", new_invoice(amount="0"),
         inv("amount_not_positive"), ALL_FORMATS),
    Case("invoices-amount_not_positive-negative", new_invoice(amount="-5.5"),
         inv("amount_not_positive"), ALL_FORMATS),
    Case("invoices-due_before_issue", new_invoice(due_date="2024-01-09"),
         inv("due_before_issue"), ALL_FORMATS),
    # 2024-01-10 + 367 days (2024 is a leap year)
    Case("invoices-due_too_far_after_issue", new_invoice(due_date="2025-01-11", paid_date=""),
         inv("due_too_far_after_issue"), ALL_FORMATS),
    Case("invoices-paid_before_issue", new_invoice(paid_date="2024-01-09"),
         inv("paid_before_issue"), ALL_FORMATS),
    Case("invoices-issue_after_observed_until",
         new_invoice(issue_date="2024-07-01", due_date="2024-07-31", paid_date=""),
         inv("issue_after_observed_until"), ALL_FORMATS),
    Case("invoices-paid_after_observed_until", new_invoice(paid_date="2024-07-01"),
         inv("paid_after_observed_until"), ALL_FORMATS),
    Case("invoices-unparseable_dispute_date", new_invoice(dispute_date="2024-02-30"),
         inv("unparseable_dispute_date")),
    Case("invoices-dispute_before_issue", new_invoice(dispute_date="2024-01-09"),
         inv("dispute_before_issue"), ALL_FORMATS),
    Case("invoices-dispute_after_observed_until", new_invoice(dispute_date="2024-07-01"),
         inv("dispute_after_observed_until"), ALL_FORMATS),
    # a date after the day of the run is always an error, whatever observed_until is
    Case("invoices-future_date-issue-2099",
         new_invoice(issue_date="2099-01-10", due_date="2099-02-09", paid_date=""),
         inv("future_date"), ALL_FORMATS),
    Case("invoices-future_date-issue-2099-inferred",
         new_invoice(issue_date="2099-01-10", due_date="2099-02-09", paid_date=""),
         inv("future_date"), ALL_FORMATS, observed_until=None),
    Case("invoices-future_date-paid", new_invoice(paid_date="2024-10-01"), inv("future_date"),
         ALL_FORMATS, observed_until=None),
    Case("invoices-future_date-dispute", new_invoice(dispute_date="2204-02-12"),
         inv("future_date"), observed_until=None),
    Case("invoices-future_date-before-observed-until-rules",
         new_invoice(issue_date="2024-10-01", due_date="2024-10-31", paid_date=""),
         inv("future_date")),
    Case("invoices-invalid_currency-lower-case", new_invoice(currency="eur"),
         inv("invalid_currency"), ALL_FORMATS),
    Case("invoices-invalid_currency-long", new_invoice(currency="EURO"),
         inv("invalid_currency")),
    Case("invoices-invalid_currency-digit", new_invoice(currency="E1R"),
         inv("invalid_currency")),
    # a rejected buyer takes its invoices and events with it
    Case("buyer_rejected", put("buyers", "b3", country="UK"),
         {"buyers": {"b3": "invalid_country"}, "invoices": {"i4": "buyer_rejected"},
          "events": {"e2": "buyer_rejected"}}, ALL_FORMATS),
    # ------------------------------------------------------------------ events
    Case("events-missing_buyer_id", new_event(buyer_id=""), evt("missing_buyer_id"),
         ALL_FORMATS),
    Case("events-missing_event_date", new_event(event_date=""), evt("missing_event_date"),
         ALL_FORMATS),
    Case("events-missing_event_type", new_event(event_type=""), evt("missing_event_type")),
    Case("events-unparseable_event_date", new_event(event_date="2024-06-31"),
         evt("unparseable_event_date")),
    Case("events-unknown_buyer_id", new_event(buyer_id="B9"), evt("unknown_buyer_id"),
         ALL_FORMATS),
    Case("events-unknown_event_type", new_event(event_type="bankruptcy"),
         evt("unknown_event_type"), ALL_FORMATS),
    Case("events-unknown_event_type-case", new_event(event_type="Default"),
         evt("unknown_event_type")),
    Case("events-event_after_observed_until", new_event(event_date="2024-07-01"),
         evt("event_after_observed_until"), ALL_FORMATS),
    Case("events-future_date", new_event(event_date="2024-10-01"), evt("future_date"),
         ALL_FORMATS, observed_until=None),
    Case("events-future_date-typo", new_event(event_date="2204-05-15"), evt("future_date")),
    # ------------------------------------------------------------------ exposures (optional)
    Case("exposures-missing_buyer_id", new_exposure(buyer_id=""), exp("missing_buyer_id"),
         ALL_FORMATS),
    Case("exposures-missing_current_limit", new_exposure(current_limit=""),
         exp("missing_current_limit"), ALL_FORMATS),
    Case("exposures-missing_current_limit-NaN", new_exposure(current_limit="NaN"),
         exp("missing_current_limit"), ALL_FORMATS),
    Case("exposures-unparseable_current_limit", new_exposure(current_limit="50k"),
         exp("unparseable_current_limit")),
    Case("exposures-unparseable_requested_limit", new_exposure(requested_limit="1,000"),
         exp("unparseable_requested_limit")),
    Case("exposures-duplicate_exposure", new_exposure(supplier_id="S1", current_limit="1"),
         exp("duplicate_exposure"), ALL_FORMATS),
    Case("exposures-duplicate_exposure-no-supplier",
         new_exposure(buyer_id="B2", supplier_id=""), exp("duplicate_exposure"), ALL_FORMATS),
    Case("exposures-unknown_buyer_id", new_exposure(buyer_id="B9"), exp("unknown_buyer_id"),
         ALL_FORMATS),
    Case("exposures-buyer_rejected", both(put("buyers", "b3", country="UK"), with_exposures),
         {"buyers": {"b3": "invalid_country"}, "invoices": {"i4": "buyer_rejected"},
          "events": {"e2": "buyer_rejected"}, "exposures": {"x4": "buyer_rejected"}},
         ALL_FORMATS),
    Case("exposures-current_limit_not_finite", new_exposure(current_limit="inf"),
         exp("current_limit_not_finite"), ALL_FORMATS),
    Case("exposures-current_limit_negative", new_exposure(current_limit="-0.01"),
         exp("current_limit_negative"), ALL_FORMATS),
    Case("exposures-requested_limit_not_finite", new_exposure(requested_limit="-inf"),
         exp("requested_limit_not_finite"), ALL_FORMATS),
    Case("exposures-requested_limit_negative", new_exposure(requested_limit="-5"),
         exp("requested_limit_negative"), ALL_FORMATS),
    Case("exposures-invalid_currency", new_exposure(currency="Eur"), exp("invalid_currency"),
         ALL_FORMATS),
    # ------------------------------------------------------------------ several at once
    Case("first-rule-wins-missing-before-due-before-issue",
         new_invoice(amount="", due_date="2024-01-01"), inv("missing_amount")),
    Case("first-rule-wins-duplicate-before-unknown-buyer",
         new_invoice(invoice_id="I2", buyer_id="B9"), inv("duplicate_invoice_id")),
    Case("first-rule-wins-not-finite-before-not-positive", new_invoice(amount="-inf"),
         inv("amount_not_finite")),
    Case("first-rule-wins-due-before-issue-before-paid-after-observed",
         new_invoice(due_date="2024-01-01", paid_date="2024-12-01"), inv("due_before_issue")),
    # contract 1.1: the observed_until rules come last, after invalid_currency and future_date
    Case("first-rule-wins-invalid-currency-before-issue-after-observed",
         new_invoice(issue_date="2024-07-01", due_date="2024-07-31", paid_date="",
                     currency="eur"), inv("invalid_currency")),
    Case("first-rule-wins-future-before-paid-after-observed",
         new_invoice(paid_date="2099-12-01"), inv("future_date")),
    Case("first-rule-wins-dispute-before-issue-before-future",
         new_invoice(dispute_date="2024-01-01", paid_date="2099-12-01"),
         inv("dispute_before_issue")),
    Case("first-rule-wins-unknown-buyer-before-future",
         new_invoice(buyer_id="B9", issue_date="2099-01-10", due_date="2099-02-09",
                     paid_date=""), inv("unknown_buyer_id"), observed_until=None),
    Case("first-rule-wins-duplicate-exposure-before-unknown-buyer",
         both(new_exposure(buyer_id="B9"), add("exposures", ref="x6", buyer_id="B9",
                                               supplier_id="S9")),
         {"exposures": {"x5": "unknown_buyer_id", "x6": "duplicate_exposure"}}),
    Case("several-tables-at-once",
         both(new_buyer(buyer_id="B1"), new_invoice(amount="-1"),
              add("invoices", ref="i7", invoice_id="I7", buyer_id="B4"),
              new_event(event_type="fraud")),
         {"buyers": {"b4": "duplicate_buyer_id"},
          "invoices": {"i6": "amount_not_positive", "i7": "unknown_buyer_id"},
          "events": {"e3": "unknown_event_type"}}, ALL_FORMATS),
    Case("duplicate-keeps-first-occurrence",
         both(add("invoices", ref="i6", invoice_id="I6"),
              add("invoices", ref="i7", invoice_id="I6"),
              add("invoices", ref="i8", invoice_id="I6")),
         {"invoices": {"i7": "duplicate_invoice_id", "i8": "duplicate_invoice_id"}}),
    # a duplicate of a rejected buyer is a duplicate; the id is known but not accepted
    Case("duplicate-of-rejected-buyer",
         both(put("buyers", "b3", country="UK"),
              add("buyers", ref="b4", buyer_id="B3", country="US")),
         {"buyers": {"b3": "invalid_country", "b4": "duplicate_buyer_id"},
          "invoices": {"i4": "buyer_rejected"}, "events": {"e2": "buyer_rejected"}}),
]

# Borderline data that the contract accepts: nothing may be rejected.
ACCEPT_CASES: list[Case] = [
    Case("due-exactly-issue-plus-366", new_invoice(due_date="2025-01-10", paid_date=""),
         formats=ALL_FORMATS),
    Case("due-equals-issue", new_invoice(due_date="2024-01-10"), formats=ALL_FORMATS),
    Case("paid-equals-issue", new_invoice(paid_date="2024-01-10"), formats=ALL_FORMATS),
    Case("issue-equals-observed_until",
         new_invoice(issue_date="2024-06-30", due_date="2024-07-30", paid_date=""),
         formats=ALL_FORMATS),
    Case("paid-equals-observed_until", new_invoice(paid_date="2024-06-30"),
         formats=ALL_FORMATS),
    Case("event-equals-observed_until", new_event(event_date="2024-06-30"),
         formats=ALL_FORMATS),
    Case("due-after-observed_until-is-scheduled-not-observed",
         new_invoice(issue_date="2024-06-30", due_date="2025-06-30", paid_date="")),
    Case("founded_year-1800", new_buyer(founded_year="1800"), formats=ALL_FORMATS),
    Case("founded_year-observation-year", new_buyer(founded_year="2024"),
         formats=ALL_FORMATS),
    Case("founded_year-integral-float-text", new_buyer(founded_year="1990.0")),
    Case("employees-and-revenue-zero", new_buyer(employees="0", annual_revenue="0.0"),
         formats=ALL_FORMATS),
    Case("country-user-assigned-code", new_buyer(country="XA"), formats=ALL_FORMATS),
    Case("optional-values-missing",
         new_invoice(supplier_id="", currency="", paid_date="", disputed="")),
    Case("tiny-positive-amount", new_invoice(amount="0.01"), formats=ALL_FORMATS),
    Case("amount-scientific-and-padded", both(new_invoice(amount="1e3"),
                                              add("invoices", ref="i7", invoice_id="I7",
                                                  amount=" 12.5 "))),
    Case("bool-spellings", both(new_invoice(disputed="YES"),
                                add("invoices", ref="i7", invoice_id="I7", disputed="N"),
                                add("invoices", ref="i8", invoice_id="I8", disputed="1"),
                                add("invoices", ref="i9", invoice_id="I9", disputed=" True "))),
    Case("every-event-type", both(*(add("events", ref=f"x{i}", event_type=kind)
                                    for i, kind in enumerate(
                                        ["insolvency", "default", "claim", "write_off",
                                         "restructuring"])))),
    Case("date-with-time-of-day", new_invoice(issue_date="2024-06-30T18:45:00",
                                              due_date="2024-07-30", paid_date="")),
    # a due date is scheduled, not observed: after the day of the run is fine
    Case("due-after-the-day-of-the-run", new_invoice(issue_date="2024-06-30",
                                                     due_date="2025-06-30", paid_date=""),
         formats=ALL_FORMATS, observed_until=None),
    Case("dates-equal-the-day-of-the-run",
         both(new_invoice(issue_date="2024-09-30", due_date="2024-10-30", paid_date="2024-09-30",
                          dispute_date="2024-09-30"),
              new_event(event_date="2024-09-30")),
         formats=ALL_FORMATS, observed_until=TODAY),
    Case("dispute-equals-issue", new_invoice(dispute_date="2024-01-10"), formats=ALL_FORMATS),
    Case("dispute-equals-observed_until", new_invoice(dispute_date="2024-06-30"),
         formats=ALL_FORMATS),
    Case("dispute-without-disputed-flag", new_invoice(disputed="", dispute_date="2024-03-01")),
    Case("exposures-table", with_exposures, formats=ALL_FORMATS),
    Case("exposures-same-buyer-other-supplier", new_exposure(supplier_id="S3"),
         formats=ALL_FORMATS),
    Case("exposures-zero-limits", new_exposure(current_limit="0", requested_limit="0.0"),
         formats=ALL_FORMATS),
    Case("exposures-optional-values-missing",
         new_exposure(supplier_id="S8", requested_limit="", currency="")),
    Case("exposures-empty", lambda t: t.update(exposures=base_exposures().iloc[0:0])),
]


def _load(tmp_path: Path, case: Case, fmt: str) -> tuple[Tables, object]:
    tables = base_tables()
    case.edit(tables)
    raw = write_dataset(tmp_path / "raw", tables, fmt)
    return tables, load_dataset(str(raw), observed_until=case.observed_until, today=case.today)


def _params(cases: list[Case]) -> list[object]:
    return [pytest.param(c, fmt, id=f"{c.id}-{fmt}") for c in cases for fmt in c.formats]


def _check_outcome(tables: Tables, result, expected: dict[str, dict[str, str]],
                   today: dt.date = TODAY) -> None:
    assert set(result.tables) == set(tables)  # the optional table is there when written
    for name in tables:
        want = expected.get(name, {})
        t = result.tables[name]
        assert rejects_by_ref(result, name) == want, name
        assert t.reasons == dict(Counter(want.values())), name
        assert t.read == len(tables[name])
        # everything not rejected is accepted, in the original order
        kept = tables[name].loc[~tables[name]["ref"].isin(list(want))]
        assert t.accepted[KEY_COLUMN[name]].tolist() == kept[KEY_COLUMN[name]].tolist(), name
    assert_counts_add_up(result)
    assert_accepted_meet_contract(result, today)


@pytest.mark.parametrize(("case", "fmt"), _params(REJECT_CASES))
def test_broken_rows_are_rejected_with_their_rule(tmp_path: Path, case: Case, fmt: str) -> None:
    tables, result = _load(tmp_path, case, fmt)
    assert any(case.rejects.values())
    _check_outcome(tables, result, case.rejects, case.today)


@pytest.mark.parametrize(("case", "fmt"), _params(ACCEPT_CASES))
def test_borderline_rows_are_accepted(tmp_path: Path, case: Case, fmt: str) -> None:
    tables, result = _load(tmp_path, case, fmt)
    _check_outcome(tables, result, {}, case.today)


def test_every_rule_has_a_case() -> None:
    covered = {
        (table, reason) for case in REJECT_CASES for table, rows in case.rejects.items()
        for reason in rows.values()
    }
    every = {(table, rule) for table, rules in RULES.items() for rule in rules}
    assert every - covered == set()
    assert covered - every == set()


def test_rejected_rows_keep_their_original_values_and_columns(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", amount="-5", due_date="2024-1-9x")
    add_row(tables, "invoices", ref="i7", invoice_id="I7", currency="usd", disputed="")
    raw = write_dataset(tmp_path / "raw", tables)
    rejected = load_dataset(str(raw), observed_until=OU).tables["invoices"].rejected
    # every source column (contract columns first, then the others) plus the reason
    assert sorted(rejected.columns[:-1]) == sorted(tables["invoices"].columns)
    assert rejected.columns[-1] == "reason"
    assert rejected["reason"].tolist() == ["unparseable_due_date", "invalid_currency"]
    assert rejected["amount"].tolist() == ["-5", "100.0"]
    assert rejected["due_date"].tolist() == ["2024-1-9x", "2024-02-09"]
    assert rejected["currency"].tolist() == ["EUR", "usd"]
    assert rejected["disputed"].isna().tolist() == [False, True]


def test_blank_text_is_a_missing_value(tmp_path: Path) -> None:
    """A cell of spaces is missing, like an empty one: fine in an optional column."""
    tables = base_tables()
    add_row(tables, "invoices", ref="i6", invoice_id="I6", supplier_id="  ", currency=" ")
    add_row(tables, "invoices", ref="i7", invoice_id="I7", supplier_id="", currency="")
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw))
    assert rejects_by_ref(result, "invoices") == {}
    added = result.invoices.iloc[-2:]
    assert added["supplier_id"].isna().all()
    assert added["currency"].isna().all()
    assert_accepted_meet_contract(result)


def test_accepted_values_are_typed(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    result = load_dataset(str(raw))
    inv = result.invoices
    assert inv["issue_date"].tolist() == list(pd.to_datetime(
        ["2024-01-10", "2024-02-01", "2024-03-15", "2024-05-01", "2024-06-01"]))
    assert inv["amount"].tolist() == pytest.approx([100.0, 250.5, 75.0, 1200.0, 10.0])
    assert inv["paid_date"].isna().tolist() == [False, True, False, False, True]
    assert inv["disputed"].tolist() == [False, True, pd.NA, False, pd.NA]
    assert inv["supplier_id"].isna().tolist() == [False, False, False, True, False]
    assert result.buyers["founded_year"].tolist() == [1990, 2005, pd.NA]
    assert result.buyers["employees"].tolist()[:2] == [10.0, 0.0]
    assert result.events["event_type"].tolist() == ["default", "claim"]


def test_observed_until_is_the_latest_issue_paid_or_event_date(tmp_path: Path) -> None:
    # i5 is due 2024-07-01, after every observed date: a scheduled date does not count
    tables = base_tables()
    raw = write_dataset(tmp_path / "a", tables)
    assert load_dataset(str(raw)).observed_until == dt.date(2024, 6, 30)

    add_row(tables, "events", ref="e3", event_date="2024-08-15")
    raw = write_dataset(tmp_path / "b", tables)
    result = load_dataset(str(raw))
    assert result.observed_until == dt.date(2024, 8, 15)
    assert all(t.rejected.empty for t in result.tables.values())


def test_explicit_observed_until_rejects_everything_after_it(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables())
    result = load_dataset(str(raw), observed_until=dt.date(2024, 3, 31))
    assert result.observed_until == dt.date(2024, 3, 31)
    assert rejects_by_ref(result, "invoices") == {
        "i3": "paid_after_observed_until",  # issued 03-15, paid 04-20
        "i4": "issue_after_observed_until",
        "i5": "issue_after_observed_until",
    }
    assert rejects_by_ref(result, "events") == {
        "e1": "event_after_observed_until", "e2": "event_after_observed_until",
    }
    assert result.tables["buyers"].rejected.empty
    assert_counts_add_up(result)
    assert_accepted_meet_contract(result)


def test_founded_year_bound_follows_observed_until(tmp_path: Path) -> None:
    tables = base_tables()
    add_row(tables, "buyers", ref="b4", buyer_id="B4", founded_year="2024")
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw), observed_until=dt.date(2023, 12, 31))
    assert rejects_by_ref(result, "buyers") == {"b4": "founded_year_out_of_range"}


def test_events_table_may_be_empty(tmp_path: Path) -> None:
    tables = base_tables()
    tables["events"] = tables["events"].iloc[0:0]
    raw = write_dataset(tmp_path / "raw", tables)
    result = load_dataset(str(raw))
    assert result.tables["events"].read == 0
    assert result.events.empty
    assert list(result.events.columns) == ["buyer_id", "event_date", "event_type"]
    assert_accepted_meet_contract(result)


def test_integer_ids_from_parquet_match_text_ids(tmp_path: Path) -> None:
    """Parquet ids stored as numbers (with nulls, hence floats) are read as '1', not '1.0'."""
    tables = base_tables()
    raw = write_dataset(tmp_path / "raw", tables, "parquet")
    buyers = pd.read_parquet(raw / "buyers.parquet")
    buyers["buyer_id"] = [1, 2, 3]
    buyers.to_parquet(raw / "buyers.parquet")
    invoices = pd.read_parquet(raw / "invoices.parquet")
    invoices["buyer_id"] = [1.0, 1.0, 2.0, 3.0, float("nan")]
    invoices.to_parquet(raw / "invoices.parquet")
    events = pd.read_parquet(raw / "events.parquet")
    events["buyer_id"] = ["2", "3"]
    events.to_parquet(raw / "events.parquet")

    result = load_dataset(str(raw))
    assert result.buyers["buyer_id"].tolist() == ["1", "2", "3"]
    assert result.invoices["buyer_id"].tolist() == ["1", "1", "2", "3"]
    assert rejects_by_ref(result, "invoices") == {"i5": "missing_buyer_id"}
    assert rejects_by_ref(result, "events") == {}
    assert_accepted_meet_contract(result)


def test_parquet_with_a_non_default_index_splits_rows_correctly(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path / "raw", base_tables(), "parquet")
    invoices = pd.read_parquet(raw / "invoices.parquet")
    invoices.index = [10, 3, 3, 1, 0]  # pandas stores this index; duplicates included
    invoices["amount"] = [1.0, -1.0, 3.0, 4.0, 5.0]
    invoices.to_parquet(raw / "invoices.parquet")
    result = load_dataset(str(raw))
    assert rejects_by_ref(result, "invoices") == {"i2": "amount_not_positive"}
    assert result.invoices["invoice_id"].tolist() == ["I1", "I3", "I4", "I5"]
    assert_counts_add_up(result)
