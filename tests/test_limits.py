"""Credit limits (``riskmodel limits``): every expected number below is worked out by hand from
the policy in docs/decisions.md and the rows of a small hand-built book, never by the code
under test.

The policy used here (``POLICY``): revenue shares 10, 8, 6, 5, 4, 3, 2, 1.5, 1, 0.5% for
grades 1-10, LGD 50%, an expected-loss budget of 1,000 per buyer, referral under 180 days of
history or for a request above 3x the need, no increase past 90 days overdue, limits rounded
to 100. The as-of date is A = 2024-06-30, so the 12 months are the invoices issued after
2023-07-01 (A - 365 days, 2024 being a leap year).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.data.book import Book
from riskmodel.decisions.limits import decide, fmt_amount, fmt_percent, output_table
from riskmodel.params import Params, parse_params

runner = CliRunner()
A = dt.date(2024, 6, 30)
TODAY = dt.date(2024, 9, 30)
POLICY: dict[str, Any] = {
    "limits": {"revenue_share": [0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.015, 0.01, 0.005],
               "lgd": 0.5, "el_budget": 1000, "min_history_days": 180,
               "refer_request_multiple": 3, "overdue_days": 90, "round_to": 100},
    "terms": {"insurable_max_days": 90, "max_days": [60, 60, 60, 45, 45, 30, 30, 30, 30, 30]},
    "portfolio": {"premium_rate": 0.02, "insured_share": 0.9, "top": 3},
}


def inv(iid: str, buyer: str, supplier: str | None, issue: str, due: str, amount: float,
        paid: str | None = None) -> dict[str, Any]:
    return dict(invoice_id=iid, buyer_id=buyer, supplier_id=supplier, issue_date=issue,
                due_date=due, amount=amount, paid_date=paid)


def buyer(bid: str, revenue: float | None, country: str = "DE", industry: str = "C"
          ) -> dict[str, Any]:
    return dict(buyer_id=bid, country=country, industry=industry, founded_year=2000,
                employees=10.0, annual_revenue=revenue)


# every buyer but BS has an invoice from before the 12 months, for its history
INVOICES = [
    # BA: 36,500 on 30 days paid 10 days late, 36,500 on 60 days paid on time
    inv("a0", "BA", "S1", "2022-01-01", "2022-01-31", 1000, "2022-01-31"),
    inv("a1", "BA", "S1", "2024-01-01", "2024-01-31", 36500, "2024-02-10"),
    inv("a2", "BA", "S1", "2024-03-01", "2024-04-30", 36500, "2024-04-30"),
    # BR: no annual revenue; 60,000 with S1 and 40,000 with S2 in the 12 months
    inv("r0", "BR", "S1", "2023-01-02", "2023-02-01", 500, "2023-02-01"),
    inv("r1", "BR", "S1", "2024-02-01", "2024-03-02", 60000, "2024-03-02"),
    inv("r2", "BR", "S2", "2024-03-01", "2024-03-31", 40000, "2024-03-31"),
    # BZ: S1 trades, S2 has an open invoice and one paid 20 days late, S3 never traded
    inv("z0", "BZ", "S1", "2022-06-01", "2022-07-01", 1000, "2022-07-01"),
    inv("z1", "BZ", "S2", "2024-05-01", "2024-06-30", 18250),
    inv("z2", "BZ", "S2", "2023-09-01", "2023-10-31", 18250, "2023-11-20"),
    inv("z3", "BZ", "S1", "2024-04-01", "2024-05-01", 5000, "2024-05-01"),
    # BD: in default
    inv("d0", "BD", "S1", "2023-01-01", "2023-01-31", 2000),
    # BO: an invoice 150 days past due at A (its scores say grade 4 all the same)
    inv("o0", "BO", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("o1", "BO", "S1", "2024-01-01", "2024-02-01", 120000),
    # BX: not in the scores
    inv("x0", "BX", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("x1", "BX", "S1", "2024-03-01", "2024-03-31", 3650, "2024-03-31"),
    # BN: nothing in the last year
    inv("n0", "BN", "S1", "2022-01-01", "2022-01-31", 1000, "2022-01-31"),
    # BS: first invoice 121 days before A
    inv("s1", "BS", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    # BQ, BU: need 3,000 each
    inv("q0", "BQ", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("q1", "BQ", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    inv("u0", "BU", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("u1", "BU", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    # BL: PD 20%: the expected-loss budget binds
    inv("l0", "BL", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("l1", "BL", "S1", "2024-01-01", "2024-01-31", 100000, "2024-01-31"),
    # BW: one line without supplier_id: the buyer's trading with every supplier
    inv("w0", "BW", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("w1", "BW", "S1", "2024-01-01", "2024-01-31", 36500, "2024-01-31"),
    inv("w2", "BW", "S2", "2024-02-01", "2024-03-02", 36500, "2024-03-02"),
]
BUYERS = [buyer("BA", 1e6), buyer("BR", None, "FR", "G"), buyer("BZ", 2e6), buyer("BD", 5e5),
          buyer("BO", 1e6), buyer("BX", 1e6), buyer("BN", 1e6), buyer("BS", 1e6, "FR", "G"),
          buyer("BQ", 1e6), buyer("BU", 1e6, "DE", "Q"), buyer("BL", 1e7), buyer("BW", 1e6)]
EVENTS = [dict(buyer_id="BD", event_date="2024-05-01", event_type="insolvency")]
# buyer, status, PD, grade (BX is not scored)
SCORES = [("BA", "scored", 0.01, "3"), ("BR", "scored", 0.02, "5"),
          ("BZ", "scored", 0.005, "2"), ("BD", "in_default", 1.0, "D"),
          ("BO", "scored", 0.01, "4"), ("BN", "no_recent_history", None, None),
          ("BS", "scored", 0.01, "3"), ("BQ", "scored", 0.01, "3"),
          ("BU", "scored", 0.01, "3"), ("BL", "scored", 0.2, "9"), ("BW", "scored", 0.01, "3")]
# buyer, supplier, current, requested
LINES = [("BA", "S1", 15000, 20000), ("BR", "S1", 3000, 5000), ("BR", "S2", 1000, 2000),
         ("BZ", "S1", 5000, 0), ("BZ", "S2", 10000, None), ("BZ", "S3", 3000, None),
         ("BD", "S1", 20000, 50000), ("BO", "S1", 10000, 30000), ("BX", "S1", 1000, 800),
         ("BN", "S1", 500, None), ("BS", "S1", 0, 3000), ("BQ", "S1", 2000, 9001),
         ("BL", "S1", 8000, 24000), ("BU", "S1", 2000, 2500), ("BW", None, 5000, None)]


# --------------------------------------------------------------------------- builders


def write_raw(root: Path, invoices: list[dict], buyers: list[dict], events: list[dict],
              exposures: pd.DataFrame | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(invoices).to_csv(root / "invoices.csv", index=False)
    pd.DataFrame(buyers).to_csv(root / "buyers.csv", index=False)
    pd.DataFrame(events, columns=["buyer_id", "event_date", "event_type"]).to_csv(
        root / "events.csv", index=False)
    if exposures is not None:
        exposures.to_csv(root / "exposures.csv", index=False)
    return root


def lines_frame(lines: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(lines, columns=["buyer_id", "supplier_id", "current_limit",
                                        "requested_limit"])


def make_book(root: Path, invoices: list[dict], buyers: list[dict], events: list[dict],
              exposures: pd.DataFrame | None = None, as_of: dt.date = A) -> Book:
    raw = write_raw(root / "raw", invoices, buyers, events, exposures)
    pipeline.validate(raw, root / "book", Params(), observed_until=as_of, today=TODAY)
    return Book(root / "book")


def write_scores(path: Path, rows: list[tuple], book: Book, as_of: dt.date = A,
                 model_uri: str = "") -> Path:
    """A scoring output as ``riskmodel score`` writes it (the columns the decisions read)."""
    path.mkdir(parents=True, exist_ok=True)
    order = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "D"]
    grade = pa.DictionaryArray.from_arrays(
        pa.array([order.index(g) if g else None for _, _, _, g in rows], pa.int8()),
        pa.array(order), ordered=True)
    table = pa.table({
        "buyer_id": [r[0] for r in rows],
        "as_of": pa.array([as_of] * len(rows), pa.date32()),
        "status": [r[1] for r in rows],
        "pd": pa.array([r[2] for r in rows], pa.float64()),
        "grade": grade,
        "grade_rank": pa.array([order.index(g) + 1 if g else None for *_, g in rows],
                               pa.int8()),
    })
    pq.write_table(table, path / "part-00000.parquet")
    manifest = {"kind": "riskmodel-scores", "as_of": as_of.isoformat(),
                "model_name": "buyer-risk", "model_version": "7", "model_run_id": "r",
                "data_fingerprint": book.manifest.raw_fingerprint, "model_uri": model_uri}
    (path / "_scoring.json").write_text(json.dumps(manifest))
    return path


def write_model(path: Path, industries: list[str], countries: list[str]) -> Path:
    """A model folder's feature spec: the categories it saw in training."""
    files = path / "artifacts" / "riskmodel"
    files.mkdir(parents=True)
    (files / "features.json").write_text(json.dumps({
        "names": ["industry", "country"],
        "categories": {"industry": industries, "country": countries}}))
    return path


def write_params(path: Path, **overrides: Any) -> Path:
    data = json.loads(json.dumps(POLICY))
    for key, value in overrides.items():
        section, name = key.split("__")
        data.setdefault(section, {})[name] = value
    path.write_text(yaml.safe_dump(data))
    return path


def read_out(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"grade": str, "supplier_id": str,
                                     "decision_reasons": str, "model_version": str})
    frame["decision_reasons"] = frame["decision_reasons"].fillna("")
    return frame


def cli(*args: Any) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("limits")
    book = make_book(root, INVOICES, BUYERS, EVENTS, exposures=lines_frame(LINES))
    model = write_model(root / "model", ["C", "G"], ["DE", "FR"])
    scores = write_scores(root / "scores", SCORES, book, model_uri=str(model))
    lines_file = root / "lines.csv"
    lines_frame(LINES).to_csv(lines_file, index=False)
    return {"root": root, "book": book.path, "scores": scores, "lines": lines_file,
            "params": write_params(root / "params.yaml"), "model": model}


@pytest.fixture(scope="module")
def result(world: dict[str, Path]) -> pd.DataFrame:
    out = world["root"] / "out" / "limits.csv"
    code, text = cli("limits", "--scores", world["scores"], "--exposures", world["lines"],
                     "--book", world["book"], "--out", out, "--views", world["root"] / "views",
                     "--params", world["params"])
    assert code == 0, text
    assert "limits for 15 lines of 12 buyers at 2024-06-30 (buyer-risk v7)" in text
    assert "approve 3, reduce 5, decline 2, refer 5" in text
    return read_out(out)


def line(result: pd.DataFrame, b: str, s: str | None) -> pd.Series:
    supplier = result["supplier_id"].isna() if s is None else result["supplier_id"] == s
    found = result[(result["buyer_id"] == b) & supplier]
    assert len(found) == 1
    return found.iloc[0]


# --------------------------------------------------------------------------- hand-worked lines


def test_a_request_within_every_cap_is_approved_as_asked(result: pd.DataFrame) -> None:
    row = line(result, "BA", "S1")
    # 73,000 invoiced; terms (30 x 36,500 + 60 x 36,500) / 73,000 = 45 days; the two
    # invoices paid in the year: 10 and 0 days late, 5 days weighted
    assert row["need"] == pytest.approx(73000 * (45 + 5) / 365)
    assert row["need"] == pytest.approx(10000.0)
    assert row["revenue"] == 1e6 and row["revenue_source"] == "annual_revenue"
    assert row["grade_cap"] == pytest.approx(0.06 * 1e6)
    assert row["el_cap"] == pytest.approx(1000 / (0.01 * 0.5))
    assert row["recommended_limit"] == 20000
    assert row["decision"] == "approve" and row["decision_reasons"] == ""
    assert row["sentence"] == "Approve 20,000 as requested (grade 3, PD 1.0%)."
    assert row["as_of"] == "2024-06-30" and row["model_name"] == "buyer-risk"
    assert row["model_version"] == "7"


def test_missing_revenue_falls_back_to_invoicing_and_the_cap_is_split_pro_rata(
        result: pd.DataFrame) -> None:
    s1, s2 = line(result, "BR", "S1"), line(result, "BR", "S2")
    # no annual revenue: the 12 months' invoicing over both suppliers, 60,000 + 40,000
    for row in (s1, s2):
        assert row["revenue"] == 100000 and row["revenue_source"] == "invoiced_12m"
        assert row["grade_cap"] == pytest.approx(0.04 * 100000)  # grade 5: 4,000
        assert row["el_cap"] == pytest.approx(1000 / (0.02 * 0.5))
        assert row["decision"] == "reduce" and row["decision_reasons"] == "L02;L04;L09"
    # the requests, 5,000 and 2,000, exceed 4,000 together: each gets its share, rounded down
    assert s1["recommended_limit"] == np.floor(5000 * 4000 / 7000 / 100) * 100 == 2800
    assert s2["recommended_limit"] == np.floor(2000 * 4000 / 7000 / 100) * 100 == 1100
    assert s1["need"] == pytest.approx(round(60000 * 30 / 365, 2))
    assert s2["need"] == pytest.approx(round(40000 * 30 / 365, 2))
    assert s1["sentence"] == (
        "Reduce to 2,800 (requested 5,000): grade 5 allows 4% of the buyer's invoicing over "
        "the last 12 months (annual revenue unknown) of 100,000, 4,000 for its 2 lines "
        "together, shared in proportion to what each line asks.")


def test_zero_request_closes_the_line(result: pd.DataFrame) -> None:
    row = line(result, "BZ", "S1")
    assert row["recommended_limit"] == 0
    assert row["decision"] == "approve" and row["decision_reasons"] == "L06"
    assert row["sentence"] == "Close the line as requested (limit 0)."


def test_no_request_follows_the_need_and_exposure_above_the_limit_is_flagged(
        result: pd.DataFrame) -> None:
    row = line(result, "BZ", "S2")
    # 36,500 invoiced on 60 days; the one invoice paid in the year was 20 days late
    assert row["need"] == pytest.approx(36500 * (60 + 20) / 365) == 8000
    assert row["open_receivables"] == 18250  # z1, issued 2024-05-01, open at A
    assert row["requested_limit"] != row["requested_limit"]  # no request (empty)
    assert row["recommended_limit"] == 8000
    assert row["decision"] == "reduce" and row["decision_reasons"] == "L05;L10"
    assert row["sentence"] == (
        "Reduce to 8,000 (current 10,000): the buyer's usual outstanding with you over the "
        "last 12 months is 8,000. Open receivables of 18,250 exceed the limit by 10,250; the "
        "excess is not insured.")


def test_no_request_and_no_trading_is_a_decline(result: pd.DataFrame) -> None:
    row = line(result, "BZ", "S3")
    assert row["need"] == 0 and row["recommended_limit"] == 0
    assert row["decision"] == "decline" and row["decision_reasons"] == "L05;L08"
    assert row["sentence"] == ("Decline (current 3,000): no invoices to this buyer in the "
                               "last 12 months, so there is no need for a limit.")


def test_grade_d_is_declined_with_zero(result: pd.DataFrame) -> None:
    row = line(result, "BD", "S1")
    assert row["grade"] == "D" and row["pd"] == 1.0
    assert row["grade_cap"] == 0 and row["recommended_limit"] == 0
    assert row["decision"] == "decline" and row["decision_reasons"] == "L01;L10"
    assert row["sentence"] == (
        "Decline (requested 50,000): the buyer is in default (grade D), so there is no cover. "
        "Open receivables of 2,000 exceed the limit by 2,000; the excess is not insured.")


def test_more_than_90_days_overdue_gets_no_increase(result: pd.DataFrame) -> None:
    row = line(result, "BO", "S1")
    # every cap allows the 30,000 asked (5% of 1,000,000; 1,000 / (1% x 50%)); the invoice due
    # 2024-02-01 and open at A is 150 days past due: held at the current 10,000
    assert row["grade_cap"] == pytest.approx(50000) and row["el_cap"] == pytest.approx(200000)
    assert row["recommended_limit"] == 10000
    assert row["decision"] == "reduce" and row["decision_reasons"] == "L07;L10"
    assert row["sentence"].startswith(
        "Reduce to 10,000 (requested 30,000): an invoice is 150 days past due, so the limit "
        "is not raised above the current 10,000.")


def test_a_buyer_absent_from_the_scores_is_referred_never_approved(
        result: pd.DataFrame) -> None:
    row = line(result, "BX", "S1")
    assert row["decision"] == "refer" and row["decision_reasons"] == "L12"
    assert np.isnan(row["recommended_limit"]) and np.isnan(row["pd"])
    assert row["sentence"] == ("Refer to a credit manager: the buyer is not in the scores. "
                               "No limit is computed without a PD.")


def test_no_recent_history_is_referred(result: pd.DataFrame) -> None:
    row = line(result, "BN", "S1")
    assert row["decision"] == "refer" and row["decision_reasons"] == "L11"
    assert np.isnan(row["recommended_limit"])


def test_short_history_is_referred_with_what_the_policy_would_give(
        result: pd.DataFrame) -> None:
    row = line(result, "BS", "S1")
    assert row["decision"] == "refer" and row["decision_reasons"] == "L13"
    assert row["recommended_limit"] == 3000
    assert row["sentence"] == (
        "Refer to a credit manager: only 121 days of payment history (fewer than 180). The "
        "policy alone gives 3,000 (requested 3,000).")


def test_a_request_above_three_times_the_need_is_referred(result: pd.DataFrame) -> None:
    row = line(result, "BQ", "S1")
    assert row["need"] == pytest.approx(36500 * 30 / 365) == 3000
    assert row["decision"] == "refer" and row["decision_reasons"] == "L16"
    assert row["recommended_limit"] == 9001  # 9,001 fits every cap


def test_an_industry_the_model_never_saw_is_referred(result: pd.DataFrame) -> None:
    row = line(result, "BU", "S1")
    assert row["decision"] == "refer" and row["decision_reasons"] == "L14"
    assert row["sentence"] == ("Refer to a credit manager: industry Q was never seen by the "
                               "model. The policy alone gives 2,500 (requested 2,500).")


def test_the_expected_loss_budget_binds(result: pd.DataFrame) -> None:
    row = line(result, "BL", "S1")
    assert row["grade_cap"] == pytest.approx(0.01 * 1e7)
    assert row["el_cap"] == pytest.approx(1000 / (0.2 * 0.5)) == 10000
    assert row["recommended_limit"] == 10000
    assert row["decision"] == "reduce" and row["decision_reasons"] == "L03"
    assert row["sentence"] == ("Reduce to 10,000 (requested 24,000): the expected-loss budget "
                               "of 1,000 at PD 20.0% and LGD 50% allows 10,000.")


def test_a_line_without_supplier_covers_the_buyers_trading_with_everyone(
        result: pd.DataFrame) -> None:
    row = line(result, "BW", None)
    assert row["need"] == pytest.approx(73000 * 30 / 365) == 6000
    assert row["recommended_limit"] == 6000
    assert row["decision"] == "approve" and row["decision_reasons"] == "L05"
    assert row["sentence"] == ("Increase to 6,000 (current 5,000): the buyer's usual "
                               "outstanding with you over the last 12 months is 6,000.")


# --------------------------------------------------------------------------- edges and boundaries

# A second book, validated with observed_until TODAY (2024-09-30, a quarter after A) while the
# scores are as of A: the book knows payments made after A, the decisions must not. Every buyer
# but KR, H180, H179, W365 and W364 has an invoice of 2023-01-01 for its history; "need" is
# 36,500 issued 2024-03-01 on 30 days and paid on time: 36,500 x 30 / 365 = 3,000.
HIST = "2023-01-01", "2023-01-31", 1000, "2023-01-31"
NEED = "2024-03-01", "2024-03-31", 36500, "2024-03-31"
EDGE_INVOICES = [
    # KR: 121 days of history (first invoice 2024-03-01); grade 5 on a revenue of 100,000
    inv("kr1", "KR", "S1", *NEED),
    # KP: 120,000 due 2024-02-01, paid 2024-08-15 (after A): open and 150 days past due at A;
    # an invoice issued after A counts for nothing
    inv("kp0", "KP", "S1", *HIST),
    inv("kp1", "KP", "S1", "2024-01-01", "2024-02-01", 120000, "2024-08-15"),
    inv("kp2", "KP", "S1", "2024-07-15", "2024-08-14", 50000),
    # K90, K91: 100 open and due 2024-04-01 (90 days past due at A) or 2024-03-31 (91)
    inv("k90a", "K90", "S1", *HIST), inv("k90b", "K90", "S1", *NEED),
    inv("k90c", "K90", "S1", "2024-03-02", "2024-04-01", 100),
    inv("k91a", "K91", "S1", *HIST), inv("k91b", "K91", "S1", *NEED),
    inv("k91c", "K91", "S1", "2024-03-01", "2024-03-31", 100),
    # H180, H179: first (and only) invoice 180 and 179 days before A
    inv("h180", "H180", "S1", "2024-01-02", "2024-02-01", 36500, "2024-02-01"),
    inv("h179", "H179", "S1", "2024-01-03", "2024-02-02", 36500, "2024-02-02"),
    # M9000, M9001: need 3,000; requests of exactly 3 x 3,000 and one more
    inv("m0a", "M9000", "S1", *HIST), inv("m0b", "M9000", "S1", *NEED),
    inv("m1a", "M9001", "S1", *HIST), inv("m1b", "M9001", "S1", *NEED),
    # W365, W364: one invoice issued on A - 365 (outside the 12 months (A - 365, A]) or A - 364
    inv("w365", "W365", "S1", "2023-07-01", "2023-07-31", 36500, "2023-07-31"),
    inv("w364", "W364", "S1", "2023-07-02", "2023-08-01", 36500, "2023-08-01"),
    # KT: grade 5 on a revenue of 100,000 (cap 4,000) at PD 50% (1,000 / (0.5 x 0.5) = 4,000)
    inv("kt0", "KT", "S1", *HIST), inv("kt1", "KT", "S1", *NEED),
    # KE: 36,500 on 60 days paid 10 days early
    inv("ke0", "KE", "S1", *HIST),
    inv("ke1", "KE", "S1", "2024-03-01", "2024-04-30", 36500, "2024-04-20"),
    # KC: a buyer in Italy, a country the model never saw
    inv("kc0", "KC", "S1", *HIST), inv("kc1", "KC", "S1", *NEED),
]
EDGE_BUYERS = [buyer("KR", 1e5), buyer("KP", 1e6), buyer("K90", 1e6), buyer("K91", 1e6),
               buyer("H180", 1e6), buyer("H179", 1e6), buyer("M9000", 1e6),
               buyer("M9001", 1e6), buyer("W365", 1e6), buyer("W364", 1e6),
               buyer("KT", 1e5), buyer("KE", 1e6), buyer("KC", 1e6, "IT")]
EDGE_SCORES = [("KR", "scored", 0.02, "5"), ("KP", "scored", 0.01, "4"),
               ("KT", "scored", 0.5, "5"),
               *[(b, "scored", 0.01, "3") for b in ("K90", "K91", "H180", "H179", "M9000",
                                                     "M9001", "W365", "W364", "KE", "KC")]]
EDGE_LINES = [("KR", "S1", 0, 6000), ("KP", "S1", 10000, 30000), ("K90", "S1", 1000, 2000),
              ("K91", "S1", 1000, 2000), ("H180", "S1", 1000, 2000),
              ("H179", "S1", 1000, 2000), ("M9000", "S1", 1000, 9000),
              ("M9001", "S1", 1000, 9001), ("W365", "S1", 1000, None),
              ("W364", "S1", 1000, None), ("KT", "S1", 1000, 5000), ("KE", "S1", 1000, None),
              ("KC", "S1", 1000, 2000)]


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("edges")
    book = make_book(root, EDGE_INVOICES, EDGE_BUYERS, [], as_of=TODAY)
    assert book.observed_until == TODAY
    model = write_model(root / "model", ["C", "G"], ["DE", "FR"])
    scores = write_scores(root / "scores", EDGE_SCORES, book, model_uri=str(model))
    lines = root / "lines.csv"
    lines_frame(EDGE_LINES).to_csv(lines, index=False)
    out = root / "limits.csv"
    code, text = cli("limits", "--scores", scores, "--exposures", lines, "--book", book.path,
                     "--out", out, "--params", write_params(root / "params.yaml"))
    assert code == 0, text
    assert "limits for 13 lines of 13 buyers at 2024-06-30 (buyer-risk v7)" in text
    assert "approve 5, reduce 3, decline 1, refer 4" in text
    return read_out(out)


def test_a_referral_ranks_over_a_reduction_and_shows_the_policys_limit(
        edges: pd.DataFrame) -> None:
    row = line(edges, "KR", "S1")
    # grade 5 allows 4% of 100,000 = 4,000 < the 6,000 asked (within 3 x the need of 3,000)
    assert row["grade_cap"] == 4000 and row["el_cap"] == pytest.approx(1000 / (0.02 * 0.5))
    assert row["recommended_limit"] == 4000
    assert row["decision"] == "refer" and row["decision_reasons"] == "L02;L13"
    assert row["sentence"] == (
        "Refer to a credit manager: only 121 days of payment history (fewer than 180). The "
        "policy alone gives 4,000 (requested 6,000).")


def test_a_payment_after_the_as_of_date_is_not_known(edges: pd.DataFrame) -> None:
    row = line(edges, "KP", "S1")
    # kp1 is open at A (paid 2024-08-15) and 150 days past due: no increase above 10,000;
    # kp2, issued after A, is neither open nor invoiced at A
    assert row["open_receivables"] == 120000
    assert row["need"] == pytest.approx(round(120000 * 31 / 365, 2))
    assert row["recommended_limit"] == 10000
    assert row["decision"] == "reduce" and row["decision_reasons"] == "L07;L10"
    assert row["sentence"] == (
        "Reduce to 10,000 (requested 30,000): an invoice is 150 days past due, so the limit "
        "is not raised above the current 10,000. Open receivables of 120,000 exceed the limit "
        "by 110,000; the excess is not insured.")


def test_overdue_means_more_than_90_days_past_due(edges: pd.DataFrame) -> None:
    k90, k91 = line(edges, "K90", "S1"), line(edges, "K91", "S1")
    for row in (k90, k91):
        assert row["open_receivables"] == 100
        assert row["need"] == pytest.approx(round(36600 * 30 / 365, 2))
    assert k90["recommended_limit"] == 2000
    assert k90["decision"] == "approve" and k90["decision_reasons"] == ""
    assert k91["recommended_limit"] == 1000
    assert k91["decision"] == "reduce" and k91["decision_reasons"] == "L07"
    assert k91["sentence"] == (
        "Reduce to 1,000 (requested 2,000): an invoice is 91 days past due, so the limit is "
        "not raised above the current 1,000.")


def test_history_of_exactly_min_history_days_is_enough(edges: pd.DataFrame) -> None:
    h180, h179 = line(edges, "H180", "S1"), line(edges, "H179", "S1")
    assert h180["decision"] == "approve" and h180["decision_reasons"] == ""
    assert h180["recommended_limit"] == 2000
    assert h179["decision"] == "refer" and h179["decision_reasons"] == "L13"
    assert h179["sentence"] == (
        "Refer to a credit manager: only 179 days of payment history (fewer than 180). The "
        "policy alone gives 2,000 (requested 2,000).")


def test_a_request_of_exactly_three_times_the_need_is_not_referred(
        edges: pd.DataFrame) -> None:
    m0, m1 = line(edges, "M9000", "S1"), line(edges, "M9001", "S1")
    assert m0["need"] == 3000 and m1["need"] == 3000
    assert m0["decision"] == "approve" and m0["decision_reasons"] == ""
    assert m0["recommended_limit"] == 9000
    assert m0["sentence"] == "Approve 9,000 as requested (grade 3, PD 1.0%)."
    assert m1["decision"] == "refer" and m1["decision_reasons"] == "L16"
    assert m1["recommended_limit"] == 9001
    assert m1["sentence"] == (
        "Refer to a credit manager: the request of 9,001 is more than 3 times the need of "
        "3,000. The policy alone gives 9,001 (requested 9,001).")


def test_the_twelve_months_start_the_day_after_a_minus_365(edges: pd.DataFrame) -> None:
    out, into = line(edges, "W365", "S1"), line(edges, "W364", "S1")
    assert out["need"] == 0 and out["recommended_limit"] == 0
    assert out["decision"] == "decline" and out["decision_reasons"] == "L05;L08"
    assert into["need"] == 3000 and into["recommended_limit"] == 3000
    assert into["decision"] == "approve" and into["decision_reasons"] == "L05"
    assert into["sentence"] == ("Increase to 3,000 (current 1,000): the buyer's usual "
                                "outstanding with you over the last 12 months is 3,000.")


def test_equal_caps_are_reported_as_the_grade_cap(edges: pd.DataFrame) -> None:
    row = line(edges, "KT", "S1")
    assert row["grade_cap"] == row["el_cap"] == 4000
    assert row["recommended_limit"] == 4000
    assert row["decision"] == "reduce" and row["decision_reasons"] == "L02"
    assert row["sentence"] == ("Reduce to 4,000 (requested 5,000): grade 5 allows 4% of the "
                               "buyer's annual revenue of 100,000, 4,000.")


def test_an_early_payer_needs_its_terms_only(edges: pd.DataFrame) -> None:
    row = line(edges, "KE", "S1")
    # paid 10 days early: days beyond terms -10 count as 0, 36,500 x 60 / 365
    assert row["need"] == 6000 and row["recommended_limit"] == 6000
    assert row["decision"] == "approve" and row["decision_reasons"] == "L05"


def test_a_country_the_model_never_saw_is_referred(edges: pd.DataFrame) -> None:
    row = line(edges, "KC", "S1")
    assert row["recommended_limit"] == 2000
    assert row["decision"] == "refer" and row["decision_reasons"] == "L15"
    assert row["sentence"] == ("Refer to a credit manager: country IT was never seen by the "
                               "model. The policy alone gives 2,000 (requested 2,000).")


def test_the_output_has_the_documented_columns_one_row_per_line(result: pd.DataFrame) -> None:
    # the table "The output" of docs/decisions.md, in its order
    assert list(result.columns) == [
        "buyer_id", "supplier_id", "as_of", "grade", "pd", "current_limit", "requested_limit",
        "need", "open_receivables", "revenue", "revenue_source", "grade_cap", "el_cap",
        "recommended_limit", "decision", "decision_reasons", "sentence", "model_name",
        "model_version"]
    assert len(result) == len(LINES)


def test_the_books_exposures_table_is_used_without_a_file(world: dict[str, Path],
                                                          result: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "limits.parquet"
    code, text = cli("limits", "--scores", world["scores"], "--book", world["book"],
                     "--out", out, "--params", world["params"])
    assert code == 0, text
    got = pd.read_parquet(out)
    assert len(got) == len(LINES)
    assert got["recommended_limit"].fillna(-1).tolist() == \
        result["recommended_limit"].fillna(-1).tolist()
    assert got["sentence"].tolist() == result["sentence"].tolist()


def test_without_exposures_anywhere_it_is_an_error(world: dict[str, Path],
                                                   tmp_path: Path) -> None:
    book = make_book(tmp_path, INVOICES, BUYERS, EVENTS)
    scores = write_scores(tmp_path / "scores", SCORES, book)
    code, text = cli("limits", "--scores", scores, "--book", book.path, "--out",
                     tmp_path / "o.csv", "--params", world["params"])
    assert code == 2 and "no exposures table" in text
    assert not (tmp_path / "o.csv").exists()


def test_scores_that_are_not_a_scoring_output_are_an_error(world: dict[str, Path],
                                                           tmp_path: Path) -> None:
    code, text = cli("limits", "--scores", tmp_path, "--book", world["book"], "--out",
                     tmp_path / "o.csv", "--params", world["params"])
    assert code == 2 and "not a scoring output" in text


def test_identical_inputs_give_identical_bytes(world: dict[str, Path], tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        code, text = cli("limits", "--scores", world["scores"], "--exposures", world["lines"],
                         "--book", world["book"], "--out", tmp_path / name / "limits.csv",
                         "--views", tmp_path / name / "views", "--params", world["params"])
        assert code == 0, text
        digests.append({p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                        for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
    assert len(digests[0]) == 9 and digests[0] == digests[1]


def test_the_industry_check_is_skipped_with_a_warning_when_the_model_is_unknown(
        world: dict[str, Path], tmp_path: Path) -> None:
    book = Book(world["book"])
    scores = write_scores(tmp_path / "scores", SCORES, book, model_uri=str(tmp_path / "none"))
    res = runner.invoke(app, ["limits", "--scores", str(scores), "--exposures",
                              str(world["lines"]), "--book", str(world["book"]), "--out",
                              str(tmp_path / "o.csv"), "--params", str(world["params"])])
    assert res.exit_code == 0, res.output
    assert "industries and countries were not checked" in res.output
    row = read_out(tmp_path / "o.csv").query("buyer_id == 'BU'").iloc[0]
    assert row["decision"] == "approve"  # 2,500 asked, need 3,000, every cap far above


# --------------------------------------------------------------------------- bad exposure rows


def test_bad_exposure_values_are_rejected_with_their_rule(world: dict[str, Path],
                                                          tmp_path: Path) -> None:
    text = ("buyer_id,supplier_id,current_limit,requested_limit\n"
            "BA,S1,15000,20000\n"
            "BA,S2,-5,\n"            # current_limit_negative
            "BA,S3,NaN,100\n"        # missing_current_limit (NaN is missing)
            "BA,S4,inf,\n"           # current_limit_not_finite
            "BA,S5,100,-1\n"         # requested_limit_negative
            "BA,S6,100,inf\n"        # requested_limit_not_finite
            "BA,S7,100,-inf\n"       # requested_limit_not_finite
            "NOBODY,S1,100,100\n"    # unknown_buyer_id
            "BA,S1,1,1\n"            # duplicate_exposure
            "BZ,S2,10000,NaN\n")     # accepted: a NaN request is no request
    path = tmp_path / "lines.csv"
    path.write_text(text)
    out, rejects = tmp_path / "o.csv", tmp_path / "rejects.csv"
    params = write_params(tmp_path / "p.yaml", data__max_reject_rate=1.0)
    code, output = cli("limits", "--scores", world["scores"], "--exposures", path, "--book",
                       world["book"], "--out", out, "--rejects", rejects, "--params", params)
    assert code == 0, output
    assert "exposure lines read 10, rejected 8" in output
    rej = pd.read_csv(rejects, dtype=str)
    assert sorted(zip(rej["buyer_id"], rej["supplier_id"], rej["reason"], strict=True)) == [
        ("BA", "S1", "duplicate_exposure"), ("BA", "S2", "current_limit_negative"),
        ("BA", "S3", "missing_current_limit"), ("BA", "S4", "current_limit_not_finite"),
        ("BA", "S5", "requested_limit_negative"), ("BA", "S6", "requested_limit_not_finite"),
        ("BA", "S7", "requested_limit_not_finite"), ("NOBODY", "S1", "unknown_buyer_id")]
    got = read_out(out)
    assert len(got) + len(rej) == 10  # rows read = accepted + rejected
    bz = got[got["buyer_id"] == "BZ"].iloc[0]
    assert np.isnan(bz["requested_limit"]) and bz["recommended_limit"] == 8000


def test_above_the_reject_limit_the_run_fails_and_writes_nothing(world: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text("buyer_id,supplier_id,current_limit\nBA,S1,100\nBA,S2,-1\n")
    out = tmp_path / "o.csv"
    code, output = cli("limits", "--scores", world["scores"], "--exposures", path, "--book",
                       world["book"], "--out", out, "--params", world["params"])
    assert code == 1
    assert "rejected share 50.00%" in output and "current_limit_negative 1" in output
    assert not out.exists()


def test_a_wrong_type_column_is_a_contract_error(world: dict[str, Path],
                                                 tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text("buyer_id,current_limit\nBA,x\nBZ,y\nBD,z\n")
    code, output = cli("limits", "--scores", world["scores"], "--exposures", path, "--book",
                       world["book"], "--out", tmp_path / "o.csv", "--params", world["params"])
    assert code == 2 and "current_limit" in output and "wrong type" in output


# --------------------------------------------------------------------------- formatting


def test_amounts_and_percentages_are_formatted_for_people() -> None:
    got = fmt_amount(np.array([0, 45000, 1234567.4, 999.5, 1e12, np.nan, -2500]))
    assert got.to_pylist() == ["0", "45,000", "1,234,567", "1,000", "1,000,000,000,000",
                               None, "-2,500"]
    assert fmt_percent(np.array([0.023, 0.0045, 0.2, 1.0, 0.0001])).to_pylist() == [
        "2.3%", "0.45%", "20.0%", "100.0%", "0.01%"]


# --------------------------------------------------------------------------- properties

PRM = parse_params(POLICY).limits


@st.composite
def books(draw: st.DrawFn) -> pd.DataFrame:
    """Lines of 1-3 buyers, 1-4 lines each, with anything the policy reads: a buyer scored
    (PD 0 included), in default, without recent history (no PD) or absent from the scores
    (no status, no PD)."""
    rows = []
    for b in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["scored", "in_default", "no_recent_history", "absent"]))
        rank = (draw(st.integers(1, 10)) if kind == "scored" else
                11 if kind == "in_default" else None)
        pdv = (draw(st.one_of(st.just(0.0), st.floats(0.0001, 0.6))) if kind == "scored" else
               1.0 if kind == "in_default" else None)
        status = None if kind == "absent" else kind
        revenue = draw(st.floats(0, 1e8))
        dpd = draw(st.one_of(st.none(), st.integers(-60, 400)))
        history = draw(st.one_of(st.none(), st.integers(0, 3000)))
        industry_seen, country_seen = draw(st.booleans()), draw(st.booleans())
        for s in range(draw(st.integers(1, 4))):
            rows.append(dict(
                buyer_id=f"B{b}", supplier_id=f"S{s}",
                current_limit=draw(st.sampled_from([0.0, 500.0, 10000.0, 123456.0])),
                requested_limit=draw(st.one_of(st.none(), st.just(0.0),
                                               st.floats(1, 5e6))),
                need=draw(st.floats(0, 2e6)), open_receivables=draw(st.floats(0, 1e6)),
                revenue=revenue,
                revenue_source=draw(st.sampled_from(["annual_revenue", "invoiced_12m"])),
                status=status, pd=pdv,
                grade=None if rank is None else ("D" if rank == 11 else str(rank)),
                grade_rank=rank, history_days=history, max_dpd=dpd, industry="C",
                country="DE", industry_seen=industry_seen, country_seen=country_seen))
    frame = pd.DataFrame(rows)
    frame["status"] = frame["status"].astype(object)
    frame["requested_limit"] = frame["requested_limit"].astype(float)
    frame["pd"] = frame["pd"].astype(float)
    frame["grade_rank"] = frame["grade_rank"].astype(float)
    frame["history_days"] = frame["history_days"].astype(float)
    frame["max_dpd"] = frame["max_dpd"].astype(float)
    return frame


FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(books())
def test_never_above_the_request_nor_the_caps(frame: pd.DataFrame) -> None:
    got = decide(frame, PRM)
    rec, req = got["recommended_limit"], got["requested_limit"]
    both = rec.notna() & req.notna()
    assert (rec[both] <= req[both]).all()
    # no PD, no limit; grade D, 0
    assert got.loc[got["pd"].isna(), "recommended_limit"].isna().all()
    assert (got.loc[got["grade_rank"] == 11, "recommended_limit"] == 0).all()
    # the buyer's lines together within both caps (a rounding hair aside)
    per_buyer = got.groupby("buyer_id").agg(total=("recommended_limit", "sum"),
                                            grade_cap=("grade_cap", "first"),
                                            el_cap=("el_cap", "first"),
                                            pd=("pd", "first"))
    scored = per_buyer[per_buyer["pd"].notna()]
    total = scored["total"].to_numpy()
    tol = 1e-6 * total + 0.01
    assert (total <= scored["grade_cap"].to_numpy() + tol).all()
    assert (total <= scored["el_cap"].fillna(np.inf).to_numpy() + tol).all()
    # decisions follow their definitions
    ref = got["requested_limit"].fillna(got["current_limit"])
    dec = got["decision"]
    assert ((dec == "decline") <= (got["recommended_limit"] == 0)).all()
    assert (got.loc[dec == "reduce", "recommended_limit"] < ref[dec == "reduce"]).all()
    assert (got.loc[dec == "approve", "recommended_limit"] >= ref[dec == "approve"]).all()
    assert (dec[got["pd"].isna()] == "refer").all()


@FAST
@given(books())
def test_decisions_follow_the_rules_on_any_lines(frame: pd.DataFrame) -> None:
    got = decide(frame, PRM)
    dec, rec = got["decision"], got["recommended_limit"]
    cur, req = got["current_limit"], got["requested_limit"]
    has_pd = got["pd"].notna()
    is_d = got["grade"] == "D"
    status = got["status"]
    # grade D: declined, never referred
    assert (dec[is_d] == "decline").all()
    # a limit of 0 where the request (else the current limit) is above 0: declined, never
    # referred, whatever the referral reasons
    ref = req.fillna(cur)
    assert (dec[has_pd & (rec == 0) & (ref > 0)] == "decline").all()
    # the referral reasons (L11-L16), from the inputs
    absent, no_recent = status.isna(), status == "no_recent_history"
    history = got["history_days"]
    short = ~absent & ~no_recent & (history.isna() | (history < PRM.min_history_days))
    big_ask = req.notna() & (req > PRM.refer_request_multiple * got["need"])
    reason = (absent | no_recent | short | ~got["industry_seen"] | ~got["country_seen"]
              | big_ask)
    # referred only for a reason or without a PD, and always then unless declined
    assert (reason | ~has_pd)[dec == "refer"].all()
    assert (dec[(reason | ~has_pd) & (dec != "decline")] == "refer").all()
    assert (got.loc[absent, "decision_reasons"].str.contains("L12")).all()
    # more than 90 days past due: never above the current limit
    overdue = has_pd & (got["max_dpd"] > PRM.overdue_days)
    assert (rec[overdue] <= np.maximum(cur[overdue], 0)).all()


@FAST
@given(books(), st.integers(1, 10), st.integers(0, 10), st.floats(0.0001, 0.3),
       st.floats(0, 0.3))
def test_a_worse_grade_never_gets_a_larger_cap(frame: pd.DataFrame, g: int, worse: int,
                                               pd_good: float, more: float) -> None:
    g_bad = min(g + worse, 11)
    pd_bad = 1.0 if g_bad == 11 else min(pd_good + more, 1.0)

    def at(rank: int, pdv: float) -> pd.DataFrame:
        f = frame.assign(grade_rank=float(rank), pd=pdv,
                         grade="D" if rank == 11 else str(rank),
                         status="in_default" if rank == 11 else "scored")
        return decide(f, PRM)

    good, bad = at(g, pd_good), at(g_bad, pd_bad)
    cap_good = np.fmin(good["grade_cap"], good["el_cap"].fillna(np.inf))
    cap_bad = np.fmin(bad["grade_cap"], bad["el_cap"].fillna(np.inf))
    assert (cap_bad <= cap_good + 1e-6).all()
    assert (bad["recommended_limit"] <= good["recommended_limit"] + 1e-6).all()


@FAST
@given(books(), st.randoms(use_true_random=False))
def test_identical_inputs_give_identical_bytes_in_any_row_order(frame: pd.DataFrame,
                                                                rnd: Any) -> None:
    def written(f: pd.DataFrame) -> bytes:
        got = output_table(decide(f, PRM), A, {"model_name": "m", "model_version": "1"})
        got = got.to_pandas()
        got = got.sort_values(["buyer_id", "supplier_id"], kind="stable")
        return got.to_csv(index=False).encode()

    order = list(range(len(frame)))
    rnd.shuffle(order)
    assert written(frame.iloc[order].reset_index(drop=True)) == written(frame)


# --------------------------------------------------------------------------- demo credit lines


def test_the_synthetic_world_writes_credit_lines_without_changing_anything_else(
        tmp_path: Path) -> None:
    import hashlib

    from riskmodel.data.synth import SynthConfig, write_world

    cfg = dict(n_buyers=400, start=dt.date(2021, 1, 1), end=dt.date(2022, 12, 31), seed=5,
               chunk_buyers=150)
    write_world(SynthConfig(**cfg), tmp_path / "with")  # type: ignore[arg-type]
    write_world(SynthConfig(**cfg, exposures=False), tmp_path / "without")  # type: ignore[arg-type]

    def digests(folder: Path) -> dict[str, str]:
        return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*.parquet"))}

    with_lines, without = digests(tmp_path / "with"), digests(tmp_path / "without")
    assert set(with_lines) - set(without) == {"exposures.parquet"}
    assert {k: v for k, v in with_lines.items() if k != "exposures.parquet"} == without

    lines = pd.read_parquet(tmp_path / "with" / "exposures.parquet")
    invoices = pd.read_parquet(tmp_path / "with" / "invoices")
    recent = invoices[pd.to_datetime(invoices["issue_date"]) > pd.Timestamp("2021-12-31")]
    # (the end, 2022-12-31, minus 365 days)
    pairs = set(zip(recent["buyer_id"], recent["supplier_id"], strict=True))
    assert set(zip(lines["buyer_id"], lines["supplier_id"], strict=True)) == pairs
    assert len(lines) == len(pairs)
    assert 0.02 < (lines["current_limit"] == 0).mean() < 0.2
    asked = lines["requested_limit"].notna()
    assert 0.25 < asked.mean() < 0.6
    assert (lines.loc[asked, "requested_limit"] > lines.loc[asked, "current_limit"]).any()
    assert (lines.loc[asked, "requested_limit"] > 3 * lines.loc[asked, "current_limit"]).any()

    book = tmp_path / "book"
    res = pipeline.validate(tmp_path / "with", book, Params(), today=TODAY.replace(year=2025))
    assert res.report["tables"]["exposures"] == {"read": len(lines), "accepted": len(lines),
                                                 "rejected": 0, "reasons": {}}
