"""Payment terms and DSO (``riskmodel limits --views``): a hand-built book of two suppliers
whose DSO before and after the recommended terms is worked out by hand below.

As-of date A = 2024-06-30, window (2023-07-01, 2024-06-30]. Maximum terms (params): grade 1
60 days, grade 6 30 days, grade D 0 (cash in advance). Buyers: T1 grade 1, T2 grade 6, T3
grade D.

Supplier S1 (invoiced in the window: 1,000 + 2,000 = 3,000):

* i1  T1  1,000  issued 2024-01-01 on 90 days, paid 2024-04-10 (10 days late): outstanding
  100 days; terms 90 > 60, so due 30 days earlier and paid 2024-03-11: 70 days;
* i2  T2  2,000  issued 2024-05-01 on 30 days, paid 2024-06-10: 40 days (30 <= 30: kept);
* i3  T1    500  issued 2023-06-01 (before the window), paid 2023-07-21: 20 days inside the
  window (from 2023-07-01), not in the window's invoicing; 30 <= 60: kept.

  DSO before (1,000 x 100 + 2,000 x 40 + 500 x 20) / 3,000 = 63.33,
  after (1,000 x 70 + 2,000 x 40 + 500 x 20) / 3,000 = 53.33.

Supplier S2 (invoiced: 4,000 + 1,000 + 3,000 + 1,000 = 9,000):

* j1  T2  4,000  issued 2024-03-01 on 60 days, paid 2024-05-05 (5 late): 65 days; 60 > 30:
  paid 30 days earlier, 35 days;
* j2  T3  1,000  issued 2024-06-01 on 30 days, open at A: 29 days in both (an open invoice's
  payment date is unknown, so it is not moved);
* j3  T1  3,000  issued 2024-04-01 on 15 days, paid 2024-04-11 (5 days early): 10 days;
* j4  T3  1,000  issued 2023-12-01 on 30 days, paid 2023-12-21 (10 early): 20 days; grade D
  allows 0 days, so payment 30 days earlier, before the issue date: 0 days.

  DSO before (4,000 x 65 + 1,000 x 29 + 3,000 x 10 + 1,000 x 20) / 9,000 = 37.67,
  after (4,000 x 35 + 1,000 x 29 + 3,000 x 10 + 1,000 x 0) / 9,000 = 22.11.

Supplier S3 (invoiced 2,000 + 1,000 = 3,000), with T4 (grade 1) and T5 (not in the scores):

* k1  T4  2,000  issued 2024-02-01 on 30 days, paid on time: 30 days (30 <= 60: kept);
* m1  T5  1,000  issued 2024-01-01 on 90 days, paid 2024-04-10 (10 late): 100 days; T5 has
  no grade, so no maximum: kept.

  DSO before and after (2,000 x 30 + 1,000 x 100) / 3,000 = 53.33.

Supplier S4 invoiced nothing in the window: k2 (T4, 500, issued 2023-06-01 on 30 days, paid
2023-07-11, 10 days late) was outstanding 10 days inside it, but S4 has no DSO and no row.

Invoices without supplier_id: m2 (T5, 3,000, issued 2024-05-01 on 30 days, paid 2024-06-06,
6 days late): 36 days before and after, in one group with an empty supplier_id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.decisions.terms import max_terms
from riskmodel.params import ParamsError, TermsParams, parse_params
from test_limits import buyer, cli, inv, make_book, write_params, write_scores

INVOICES = [
    inv("i1", "T1", "S1", "2024-01-01", "2024-03-31", 1000, "2024-04-10"),
    inv("i2", "T2", "S1", "2024-05-01", "2024-05-31", 2000, "2024-06-10"),
    inv("i3", "T1", "S1", "2023-06-01", "2023-07-01", 500, "2023-07-21"),
    inv("j1", "T2", "S2", "2024-03-01", "2024-04-30", 4000, "2024-05-05"),
    inv("j2", "T3", "S2", "2024-06-01", "2024-07-01", 1000),
    inv("j3", "T1", "S2", "2024-04-01", "2024-04-16", 3000, "2024-04-11"),
    inv("j4", "T3", "S2", "2023-12-01", "2023-12-31", 1000, "2023-12-21"),
    inv("k1", "T4", "S3", "2024-02-01", "2024-03-02", 2000, "2024-03-02"),
    inv("k2", "T4", "S4", "2023-06-01", "2023-07-01", 500, "2023-07-11"),
    inv("m1", "T5", "S3", "2024-01-01", "2024-03-31", 1000, "2024-04-10"),
    inv("m2", "T5", None, "2024-05-01", "2024-05-31", 3000, "2024-06-06"),
]
BUYERS = [buyer("T1", 1e6), buyer("T2", 1e6), buyer("T3", 1e6), buyer("T4", 1e6),
          buyer("T5", 1e6)]
EVENTS = [dict(buyer_id="T3", event_date="2024-06-15", event_type="default")]
SCORES = [("T1", "scored", 0.001, "1"), ("T2", "scored", 0.04, "6"),
          ("T3", "in_default", 1.0, "D"), ("T4", "scored", 0.001, "1")]  # T5: not scored


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("terms")
    book = make_book(root, INVOICES, BUYERS, EVENTS)
    scores = write_scores(root / "scores", SCORES, book)
    lines = root / "lines.csv"
    lines.write_text("buyer_id,supplier_id,current_limit\nT1,S1,1000\n")
    code, text = cli("limits", "--scores", scores, "--exposures", lines, "--book", book.path,
                     "--out", root / "limits.csv", "--views", root / "views",
                     "--params", write_params(root / "params.yaml"))
    assert code == 0, text
    return root / "views"


def test_dso_before_and_after_the_recommended_terms(views: Path) -> None:
    dso = pd.read_csv(views / "dso.csv", dtype={"supplier_id": str},
                      keep_default_na=False).set_index("supplier_id")
    # S4 invoiced nothing in the window: no row; invoices without supplier_id: ""
    assert list(dso.index) == ["", "S1", "S2", "S3"]
    assert dso.loc["S1", "invoiced_12m"] == 3000 and dso.loc["S2", "invoiced_12m"] == 9000
    assert dso.loc["S1", "invoices_12m"] == 2 and dso.loc["S2", "invoices_12m"] == 4
    assert dso.loc["S1", "buyers"] == 2 and dso.loc["S2", "buyers"] == 3
    assert dso.loc["S1", "dso_before"] == pytest.approx((1000 * 100 + 2000 * 40 + 500 * 20)
                                                        / 3000, abs=0.005)
    assert dso.loc["S1", "dso_after"] == pytest.approx((1000 * 70 + 2000 * 40 + 500 * 20)
                                                       / 3000, abs=0.005)
    assert dso.loc["S2", "dso_before"] == pytest.approx(
        (4000 * 65 + 1000 * 29 + 3000 * 10 + 1000 * 20) / 9000, abs=0.005)
    assert dso.loc["S2", "dso_after"] == pytest.approx(
        (4000 * 35 + 1000 * 29 + 3000 * 10 + 1000 * 0) / 9000, abs=0.005)
    assert dso.loc["S2", "dso_change"] == pytest.approx(
        (140000 + 29000 + 30000) / 9000 - (260000 + 29000 + 30000 + 20000) / 9000, abs=0.01)


def test_buyers_without_a_grade_keep_their_terms(views: Path) -> None:
    dso = pd.read_csv(views / "dso.csv", dtype={"supplier_id": str},
                      keep_default_na=False).set_index("supplier_id")
    s3 = dso.loc["S3"]
    assert (s3["buyers"], s3["invoices_12m"], s3["invoiced_12m"]) == (2, 2, 3000)
    # m1 (T5, no grade) stays on its 90 days
    assert s3["dso_before"] == s3["dso_after"] == round((2000 * 30 + 1000 * 100) / 3000, 2)
    assert s3["dso_change"] == 0
    none = dso.loc[""]
    assert (none["buyers"], none["invoices_12m"], none["invoiced_12m"]) == (1, 1, 3000)
    assert none["dso_before"] == none["dso_after"] == 36 and none["dso_change"] == 0
    assert set(dso["as_of"]) == {"2024-06-30"}


def test_terms_per_buyer(views: Path) -> None:
    terms = pd.read_csv(views / "terms.csv", dtype={"grade": str}).set_index("buyer_id")
    t1, t2, t3 = terms.loc["T1"], terms.loc["T2"], terms.loc["T3"]
    # T1: i1 (1,000 on 90 days) and j3 (3,000 on 15) issued in the window
    assert t1["current_terms_days"] == pytest.approx(round((1000 * 90 + 3000 * 15) / 4000, 1))
    assert t1["max_terms_days"] == 60 and t1["terms_action"] == "shorten"
    assert t1["invoiced_over_max_share"] == pytest.approx(1000 / 4000)
    # paid in the window: i1 10 days late, j3 5 early, i3 20 late
    assert t1["days_beyond_terms"] == pytest.approx(
        round((1000 * 10 - 3000 * 5 + 500 * 20) / 4500, 1))
    assert t2["current_terms_days"] == pytest.approx((2000 * 30 + 4000 * 60) / 6000)
    assert t2["max_terms_days"] == 30
    assert t2["invoiced_over_max_share"] == pytest.approx(round(4000 / 6000, 4))
    assert t3["grade"] == "D" and t3["max_terms_days"] == 0
    assert t3["terms_action"] == "cash_in_advance"
    assert t3["invoiced_12m"] == 2000


def test_terms_to_keep_and_buyers_without_a_grade(views: Path) -> None:
    terms = pd.read_csv(views / "terms.csv", dtype=str, keep_default_na=False)
    assert terms["buyer_id"].tolist() == ["T1", "T2", "T3", "T4", "T5"]
    t4, t5 = (terms.set_index("buyer_id").loc[b] for b in ("T4", "T5"))
    # T4, grade 1 (60 days) on 30 days: keep; k2 (paid in the window, 10 days late) and k1
    # (on time): (500 x 10 + 2,000 x 0) / 2,500 = 2 days beyond terms
    assert (t4["status"], t4["grade"], t4["max_terms_days"]) == ("scored", "1", "60")
    assert t4["terms_action"] == "keep"
    assert float(t4["invoiced_12m"]) == 2000 and float(t4["current_terms_days"]) == 30
    assert float(t4["days_beyond_terms"]) == 2 and float(t4["invoiced_over_max_share"]) == 0
    # T5 is not in the scores: no status, no grade, no maximum, no recommendation
    assert (t5["status"], t5["grade"], t5["max_terms_days"]) == ("", "", "")
    assert t5["terms_action"] == "none"
    assert float(t5["invoiced_over_max_share"]) == 0  # no maximum, nothing above it
    assert float(t5["invoiced_12m"]) == 4000
    assert float(t5["current_terms_days"]) == (1000 * 90 + 3000 * 30) / 4000
    assert float(t5["days_beyond_terms"]) == (1000 * 10 + 3000 * 6) / 4000
    assert set(terms["as_of"]) == {"2024-06-30"} and set(terms["model_version"]) == {"7"}


def test_max_terms_by_grade_never_above_the_insurable_maximum() -> None:
    prm = TermsParams(insurable_max_days=90, max_days=[90, 90, 75, 60, 60, 45, 30, 30, 15, 0])
    got = max_terms(np.array([1, 3, 9, 10, 11, np.nan]), prm)
    assert got[:5].tolist() == [90, 75, 15, 0, 0] and np.isnan(got[5])
    with pytest.raises(ParamsError, match="max_days"):
        parse_params({"terms": {"insurable_max_days": 60,
                                "max_days": [90, 90, 75, 60, 60, 45, 30, 30, 15, 0]}})
    with pytest.raises(ParamsError, match="worse grade"):
        parse_params({"terms": {"max_days": [30, 60, 60, 60, 60, 45, 30, 30, 15, 0]}})
    with pytest.raises(ParamsError, match="revenue_share"):
        parse_params({"limits": {"revenue_share": [0.1, 0.2, 0.08, 0.07, 0.06, 0.05, 0.04,
                                                   0.025, 0.01, 0.005]}})
