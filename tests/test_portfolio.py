"""Portfolio and bank views: expected loss by industry, country and grade, concentration,
economics and the bank coverage export, worked out by hand for six decided lines.

Policy: LGD 50%, insured share 90%, premium 2% of the insured exposure, top 2. The limit in
force is the recommended one, or the current one on a referred line:

====  ========  =====  =====  =====  ====  ========  =======  =========  =====  =====  =====
line  buyer     ind.   cty    grade  PD    decision  current  requested  limit  open   EL
====  ========  =====  =====  =====  ====  ========  =======  =========  =====  =====  =====
1     P1 / S1   C      DE     3      1%    approve   10000    20000      20000  5000   100
2     P1 / S2   C      DE     3      1%    reduce    5000     15000      10000  12000  50
3     P2 / S1   G      FR     10     20%   reduce    8000     -          4000   0      400
4     P3 / S1   G      DE     D      100%  decline   3000     50000      0      2500   0
5     P4 / S1   C      FR     -      -     refer     6000     -          6000   1000   -
6     P5 / -    C      DE     5      5%    refer     7000     9000       7000   8000   175
====  ========  =====  =====  =====  ====  ========  =======  =========  =====  =====  =====

Covered receivables min(open, limit): 5000, 10000, 0, 0, 1000, 7000 (23,000 of 28,500);
expected loss on them PD x 50% x covered: 25 + 50 + 0 + 0 + (no PD) + 175 = 250. Requests
20,000 + 15,000 + 50,000 + 9,000 = 94,000; current limits 39,000; limits in force 47,000.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from riskmodel.decisions.portfolio import Portfolio
from riskmodel.params import parse_params
from test_limits import (
    BUYERS,
    EVENTS,
    INVOICES,
    LINES,
    SCORES,
    cli,
    lines_frame,
    make_book,
    write_model,
    write_params,
    write_scores,
)

A = dt.date(2024, 6, 30)
PARAMS = parse_params({"limits": {"lgd": 0.5},
                       "portfolio": {"premium_rate": 0.02, "insured_share": 0.9, "top": 2}})
NAN = float("nan")
#: the columns of bank_coverage.csv, as docs/decisions.md lists them
BANK = ["buyer_id", "supplier_id", "limit", "exposure", "insured_share", "insured_amount",
        "grade", "model_name", "model_version", "as_of", "currency"]
ROWS = [
    # buyer, supplier, industry, country, grade, pd, current, requested, recommended,
    # decision, open, currency
    ("P1", "S1", "C", "DE", "3", 0.01, 10000, 20000, 20000, "approve", 5000, "EUR"),
    ("P1", "S2", "C", "DE", "3", 0.01, 5000, 15000, 10000, "reduce", 12000, "EUR"),
    ("P2", "S1", "G", "FR", "10", 0.2, 8000, NAN, 4000, "reduce", 0, "USD"),
    ("P3", "S1", "G", "DE", "D", 1.0, 3000, 50000, 0, "decline", 2500, None),
    ("P4", "S1", "C", "FR", None, NAN, 6000, NAN, NAN, "refer", 1000, "EUR"),
    ("P5", None, "C", "DE", "5", 0.05, 7000, 9000, 9000, "refer", 8000, "EUR"),
]


def decided(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["buyer_id", "supplier_id", "industry", "country",
                                       "grade", "pd", "current_limit", "requested_limit",
                                       "recommended_limit", "decision", "open_receivables",
                                       "currency"])


@pytest.fixture(scope="module")
def finished() -> tuple[dict[str, pd.DataFrame], dict, pd.DataFrame]:
    pf = Portfolio(PARAMS, A, {"model_name": "m", "model_version": "3"})
    bank = pd.concat([pf.add(decided(ROWS[:3])).to_pandas(),
                      pf.add(decided(ROWS[3:])).to_pandas()],
                     ignore_index=True)  # two buckets: the sums add up
    views, summary = pf.finish()
    return views, summary, bank


def test_expected_loss_by_industry(finished) -> None:
    views, _, _ = finished
    table = views["el_by_industry.csv"].set_index("industry")
    c, g = table.loc["C"], table.loc["G"]
    assert (c["lines"], c["buyers"], g["lines"], g["buyers"]) == (4, 3, 2, 2)
    assert c["limit"] == 20000 + 10000 + 6000 + 7000 and g["limit"] == 4000 + 0
    assert c["open_receivables"] == 5000 + 12000 + 1000 + 8000
    assert c["covered_receivables"] == 5000 + 10000 + 1000 + 7000
    assert c["expected_loss"] == pytest.approx(0.01 * 0.5 * 30000 + 0.05 * 0.5 * 7000)
    assert g["expected_loss"] == pytest.approx(0.2 * 0.5 * 4000)
    assert c["expected_loss_open"] == pytest.approx(0.01 * 0.5 * 15000 + 0.05 * 0.5 * 7000)
    assert c["limit_without_pd"] == 6000 and g["limit_without_pd"] == 0
    assert c["el_share"] == pytest.approx(325 / 725, abs=1e-6)
    assert c["el_rate"] == pytest.approx(325 / 43000, abs=1e-6)


def test_expected_loss_by_grade_in_grade_order(finished) -> None:
    views, _, _ = finished
    table = views["el_by_grade.csv"]
    # by the master scale, not as text ("10" after "5")
    assert table["grade"].tolist() == ["3", "5", "10", "D", "none"]
    assert table["limit"].tolist() == [30000, 7000, 4000, 0, 6000]
    assert table["expected_loss"].tolist() == pytest.approx([150, 175, 400, 0, 0])
    assert table["limit_without_pd"].tolist() == [0, 0, 0, 0, 6000]
    by_country = views["el_by_country.csv"].set_index("country")
    assert by_country.loc["FR", "expected_loss"] == pytest.approx(400)
    assert by_country.loc["DE", "expected_loss"] == pytest.approx(150 + 0 + 175)


def test_concentration_and_herfindahl(finished) -> None:
    views, summary, _ = finished
    top = views["concentration.csv"]
    total = 47000
    # top 2: the first bucket keeps P1 and P2, the second P5 and P4 (P3 is cut there); of
    # those four, P1 and P5
    assert top["buyer_id"].tolist() == ["P1", "P5"]
    assert top["rank"].tolist() == [1, 2]
    assert top["limit"].tolist() == [30000, 7000]
    assert top["grade"].tolist() == ["3", "5"] and top["industry"].tolist() == ["C", "C"]
    assert top["expected_loss"].tolist() == pytest.approx([150, 175])
    assert top["share"].tolist() == pytest.approx([30000 / total, 7000 / total], abs=1e-6)
    assert top["cumulative_share"].tolist() == pytest.approx([30000 / total, 37000 / total],
                                                             abs=1e-6)
    assert summary["top_share"] == pytest.approx(37000 / total, abs=1e-6)
    hhi = (30000**2 + 4000**2 + 0**2 + 6000**2 + 7000**2) / total**2
    assert summary["herfindahl"] == pytest.approx(hhi, abs=1e-8)
    assert summary["effective_buyers"] == pytest.approx(1 / hhi, abs=0.01)


def test_the_policys_economics(finished) -> None:
    _, summary, _ = finished
    assert (summary["as_of"], summary["model_name"], summary["model_version"]) == \
        ("2024-06-30", "m", "3")
    assert (summary["lines"], summary["buyers"]) == (6, 5)
    assert summary["requested_limits"] == 94000
    assert summary["current_limits"] == 39000
    assert summary["insured_exposure"] == 47000
    assert summary["limit_without_pd"] == 6000
    assert summary["open_receivables"] == 28500
    assert summary["covered_receivables"] == 23000
    assert summary["expected_loss"] == pytest.approx(725)
    assert summary["expected_loss_open"] == pytest.approx(250)
    assert summary["decisions"] == {"approve": 1, "reduce": 2, "decline": 1, "refer": 2}
    eco = summary["economics"]
    assert eco["premium"] == pytest.approx(0.02 * 47000)
    assert eco["expected_loss_covered"] == pytest.approx(725 * 0.9)
    assert eco["loss_ratio"] == pytest.approx(725 * 0.9 / (0.02 * 47000), abs=1e-6)


def test_bank_coverage_rows(finished) -> None:
    _, _, bank = finished
    assert list(bank.columns) == BANK
    assert bank["buyer_id"].tolist() == ["P1", "P1", "P2", "P3", "P4", "P5"]
    assert bank["supplier_id"].fillna("-").tolist() == ["S1", "S2", "S1", "S1", "S1", "-"]
    assert bank["limit"].tolist() == [20000, 10000, 4000, 0, 6000, 7000]
    assert bank["exposure"].tolist() == [5000, 12000, 0, 2500, 1000, 8000]
    assert bank["insured_amount"].tolist() == pytest.approx(
        [0.9 * 5000, 0.9 * 10000, 0, 0, 0.9 * 1000, 0.9 * 7000])
    assert set(bank["insured_share"]) == {0.9}
    assert bank["grade"].fillna("-").tolist() == ["3", "3", "10", "D", "-", "5"]
    assert set(bank["model_name"]) == {"m"} and set(bank["model_version"]) == {"3"}
    assert set(bank["as_of"]) == {"2024-06-30"}
    assert bank["currency"].fillna("-").tolist() == ["EUR", "EUR", "USD", "-", "EUR", "EUR"]


# --------------------------------------------------------------------------- a written run

# The lines of test_limits.py (with the model, so that BU is referred for industry Q), every
# figure by hand from the decisions worked out there. Limits in force: BA 20,000, BR 2,800 +
# 1,100, BZ 0 + 8,000 + 0, BD 0, BO 10,000, BX 1,000 (referred, no PD), BN 500 (referred, no
# PD), BS 0, BQ 2,000 (referred), BL 10,000, BU 2,000 (referred), BW 6,000: 63,400.
IN_FORCE = {("BA", "S1"): 20000, ("BR", "S1"): 2800, ("BR", "S2"): 1100, ("BZ", "S1"): 0,
            ("BZ", "S2"): 8000, ("BZ", "S3"): 0, ("BD", "S1"): 0, ("BO", "S1"): 10000,
            ("BX", "S1"): 1000, ("BN", "S1"): 500, ("BS", "S1"): 0, ("BQ", "S1"): 2000,
            ("BL", "S1"): 10000, ("BU", "S1"): 2000, ("BW", ""): 6000}
# open at A: z1 18,250 (BZ/S2), d0 2,000 (BD), o1 120,000 (BO)
OPEN = {("BZ", "S2"): 18250, ("BD", "S1"): 2000, ("BO", "S1"): 120000}
# PD x 50% x limit in force
EL = {"BA": 0.01 * 20000, "BR": 0.02 * 3900, "BZ": 0.005 * 8000, "BO": 0.01 * 10000,
      "BQ": 0.01 * 2000, "BL": 0.2 * 10000, "BU": 0.01 * 2000, "BW": 0.01 * 6000}
EL = {b: v * 0.5 for b, v in EL.items()}  # 100, 39, 20, 50, 10, 1,000, 10, 30: 1,259
SCORES_GRADES = [(b, g or "") for b, _, _, g in SCORES]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portfolio")
    book = make_book(root, INVOICES, BUYERS, EVENTS)
    model = write_model(root / "model", ["C", "G"], ["DE", "FR"])
    scores = write_scores(root / "scores", SCORES, book, model_uri=str(model))
    lines = lines_frame(LINES)
    lines["currency"] = ["USD" if b == "BR" and s == "S2" else None if b in ("BA", "BW")
                         else "EUR" for b, s, *_ in LINES]
    lines.to_csv(root / "lines.csv", index=False)
    code, text = cli("limits", "--scores", scores, "--exposures", root / "lines.csv", "--book",
                     book.path, "--out", root / "limits.csv", "--views", root / "views",
                     "--params", write_params(root / "p.yaml"))
    assert code == 0, text
    return root


def test_the_written_portfolio(written: Path) -> None:
    summary = json.loads((written / "views" / "portfolio.json").read_text())
    assert summary["decisions"] == {"approve": 3, "reduce": 5, "decline": 2, "refer": 5}
    assert (summary["lines"], summary["buyers"]) == (15, 12)
    assert summary["requested_limits"] == (20000 + 5000 + 2000 + 0 + 50000 + 30000 + 800
                                           + 3000 + 9001 + 24000 + 2500) == 146301
    assert summary["current_limits"] == 85500
    assert summary["insured_exposure"] == 63400
    assert summary["limit_without_pd"] == 1500  # BX and BN
    assert summary["open_receivables"] == 18250 + 2000 + 120000
    # covered: BZ/S2 8,000 of 18,250, BD 0 of 2,000, BO 10,000 of 120,000
    assert summary["covered_receivables"] == 18000
    assert summary["expected_loss"] == pytest.approx(sum(EL.values())) == 1259
    assert summary["expected_loss_open"] == pytest.approx(0.005 * 0.5 * 8000
                                                          + 0.01 * 0.5 * 10000) == 70
    # top 3: BA 20,000, then BL and BO at 10,000 (by buyer id)
    assert summary["top_share"] == pytest.approx(40000 / 63400, abs=1e-6)
    squares = (20000**2 + 3900**2 + 8000**2 + 10000**2 + 1000**2 + 500**2 + 2000**2
               + 10000**2 + 2000**2 + 6000**2)
    assert summary["herfindahl"] == pytest.approx(squares / 63400**2, abs=1e-8)
    eco = summary["economics"]
    assert eco["premium"] == pytest.approx(0.02 * 63400)
    assert eco["expected_loss_covered"] == pytest.approx(1259 * 0.9)
    assert summary["exposures"] == {"read": 15, "accepted": 15, "rejected": 0, "reasons": {}}
    conc = pd.read_csv(written / "views" / "concentration.csv")
    assert conc["buyer_id"].tolist() == ["BA", "BL", "BO"]
    assert conc["limit"].tolist() == [20000, 10000, 10000]
    assert conc["expected_loss"].tolist() == pytest.approx([EL["BA"], EL["BL"], EL["BO"]])


def test_the_written_expected_loss_tables(written: Path) -> None:
    views = written / "views"
    grade = pd.read_csv(views / "el_by_grade.csv", dtype={"grade": str})
    assert grade["grade"].tolist() == ["2", "3", "4", "5", "9", "D", "none"]
    assert grade["lines"].tolist() == [3, 5, 1, 2, 1, 1, 2]
    assert grade["limit"].tolist() == [8000, 30000, 10000, 3900, 10000, 0, 1500]
    assert grade["expected_loss"].tolist() == pytest.approx([20, 150, 50, 39, 1000, 0, 0])
    assert grade["limit_without_pd"].tolist() == [0, 0, 0, 0, 0, 0, 1500]
    industry = pd.read_csv(views / "el_by_industry.csv").set_index("industry")
    assert industry["lines"].to_dict() == {"C": 11, "G": 3, "Q": 1}
    assert industry["expected_loss"].to_dict() == pytest.approx(
        {"C": 1259 - 39 - 10, "G": 39, "Q": 10})
    country = pd.read_csv(views / "el_by_country.csv").set_index("country")
    assert country["expected_loss"].to_dict() == pytest.approx({"DE": 1259 - 39, "FR": 39})


def test_the_written_bank_export(written: Path) -> None:
    views = written / "views"
    out = pd.read_csv(written / "limits.csv", dtype={"supplier_id": str})
    bank = pd.read_csv(views / "bank_coverage.csv", dtype={"grade": str, "supplier_id": str,
                                                           "model_version": str})
    assert list(bank.columns) == BANK and len(bank) == 15
    # one row per line, in the order of the limits output
    assert bank["buyer_id"].tolist() == out["buyer_id"].tolist()
    assert bank["supplier_id"].fillna("").tolist() == out["supplier_id"].fillna("").tolist()
    key = list(zip(bank["buyer_id"], bank["supplier_id"].fillna(""), strict=True))
    assert sorted(key) == sorted(IN_FORCE)
    assert bank["limit"].tolist() == [IN_FORCE[k] for k in key]
    assert bank["exposure"].tolist() == [OPEN.get(k, 0) for k in key]
    # min(exposure, limit) x 90%: BZ/S2 8,000 x 0.9, BO 10,000 x 0.9, every other 0
    want = {("BZ", "S2"): 7200, ("BO", "S1"): 9000}
    assert bank["insured_amount"].tolist() == [want.get(k, 0) for k in key]
    grades = dict(SCORES_GRADES)
    assert bank["grade"].fillna("").tolist() == [grades.get(b, "") for b, _ in key]
    assert set(bank["model_name"]) == {"buyer-risk"} and set(bank["model_version"]) == {"7"}
    currency = {("BR", "S2"): "USD", ("BA", "S1"): "", ("BW", ""): ""}
    assert bank["currency"].fillna("").tolist() == [currency.get(k, "EUR") for k in key]


def test_the_bank_export_is_written_as_documented(written: Path) -> None:
    """docs/decisions.md: a header row, text in double quotes, amounts as plain decimal
    numbers (a dot, no thousands separators), empty for none; as_of is text, YYYY-MM-DD."""
    text = (written / "views" / "bank_coverage.csv").read_text(encoding="utf-8")
    rows = text.split("\n")
    assert rows[0] == ('"buyer_id","supplier_id","limit","exposure","insured_share",'
                       '"insured_amount","grade","model_name","model_version","as_of",'
                       '"currency"')
    assert rows[1] == '"BA","S1",20000,0,0.9,0,"3","buyer-risk","7","2024-06-30",'
    by_buyer = {r.split(",")[0]: r for r in rows[1:] if r}
    assert by_buyer['"BO"'] == '"BO","S1",10000,120000,0.9,9000,"4","buyer-risk","7",' \
        '"2024-06-30","EUR"'
    assert by_buyer['"BW"'] == '"BW",,6000,0,0.9,0,"3","buyer-risk","7","2024-06-30",'
    assert by_buyer['"BX"'] == '"BX","S1",1000,0,0.9,0,,"buyer-risk","7","2024-06-30","EUR"'
    assert text.endswith("\n") and len(rows) == 17
