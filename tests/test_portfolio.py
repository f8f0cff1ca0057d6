"""Portfolio and bank views: expected loss by industry, country and grade, concentration,
economics and the bank coverage export, worked out by hand for six decided lines.

Policy: LGD 50%, insured share 90%, premium 2% of the insured exposure, top 3. The limit in
force is the recommended one, or the current one on a referred line:

====  ========  =====  =====  =====  ========  ========  =====  ==========  =======  =========
line  buyer     ind.   cty    grade  PD        decision  limit  open recv.  covered  EL
====  ========  =====  =====  =====  ========  ========  =====  ==========  =======  =========
1     P1 / S1   C      DE     3      1%        approve   20000  5000        5000     100
2     P1 / S2   C      DE     3      1%        reduce    10000  12000       10000    50
3     P2 / S1   G      FR     9      20%       reduce    4000   0           0        400
4     P3 / S1   G      DE     D      100%      decline   0      2500        0        0
5     P4 / S1   C      FR     -      -         refer     6000   1000        1000     - (no PD)
6     P5 / S1   C      DE     5      5%        refer     7000   8000        7000     175
====  ========  =====  =====  =====  ========  ========  =====  ==========  =======  =========
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.decisions.portfolio import BANK_COLUMNS, Portfolio
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
    write_params,
    write_scores,
)

A = dt.date(2024, 6, 30)
PARAMS = parse_params({"limits": {"lgd": 0.5},
                       "portfolio": {"premium_rate": 0.02, "insured_share": 0.9, "top": 3}})
NAN = float("nan")
ROWS = [
    # buyer, supplier, industry, country, grade, pd, current, recommended, decision, open
    ("P1", "S1", "C", "DE", "3", 0.01, 10000, 20000, "approve", 5000),
    ("P1", "S2", "C", "DE", "3", 0.01, 5000, 10000, "reduce", 12000),
    ("P2", "S1", "G", "FR", "9", 0.2, 8000, 4000, "reduce", 0),
    ("P3", "S1", "G", "DE", "D", 1.0, 3000, 0, "decline", 2500),
    ("P4", "S1", "C", "FR", None, NAN, 6000, NAN, "refer", 1000),
    ("P5", "S1", "C", "DE", "5", 0.05, 7000, 9000, "refer", 8000),
]


def decided(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["buyer_id", "supplier_id", "industry", "country",
                                        "grade", "pd", "current_limit", "recommended_limit",
                                        "decision", "open_receivables"])
    frame["requested_limit"] = np.nan
    frame["currency"] = "EUR"
    return frame


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
    assert table["grade"].tolist() == ["3", "5", "9", "D", "none"]
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
    assert top["buyer_id"].tolist() == ["P1", "P5", "P4"]
    assert top["rank"].tolist() == [1, 2, 3]
    assert top["limit"].tolist() == [30000, 7000, 6000]
    assert top["share"].tolist() == pytest.approx([30000 / total, 7000 / total, 6000 / total],
                                                  abs=1e-6)
    assert top["cumulative_share"].iloc[-1] == pytest.approx(43000 / total, abs=1e-6)
    hhi = (30000**2 + 4000**2 + 0**2 + 6000**2 + 7000**2) / total**2
    assert summary["herfindahl"] == pytest.approx(hhi, abs=1e-8)
    assert summary["effective_buyers"] == pytest.approx(1 / hhi, abs=0.01)


def test_the_policys_economics(finished) -> None:
    _, summary, _ = finished
    assert summary["insured_exposure"] == 47000
    assert summary["expected_loss"] == pytest.approx(725)
    assert summary["limit_without_pd"] == 6000
    assert summary["decisions"] == {"approve": 1, "reduce": 2, "decline": 1, "refer": 2}
    eco = summary["economics"]
    assert eco["premium"] == pytest.approx(0.02 * 47000)
    assert eco["expected_loss_covered"] == pytest.approx(725 * 0.9)
    assert eco["loss_ratio"] == pytest.approx(725 * 0.9 / (0.02 * 47000), abs=1e-6)


def test_bank_coverage_rows(finished) -> None:
    _, _, bank = finished
    assert list(bank.columns) == list(BANK_COLUMNS)
    assert bank["limit"].tolist() == [20000, 10000, 4000, 0, 6000, 7000]
    assert bank["exposure"].tolist() == [5000, 12000, 0, 2500, 1000, 8000]
    assert bank["insured_amount"].tolist() == pytest.approx(
        [0.9 * 5000, 0.9 * 10000, 0, 0, 0.9 * 1000, 0.9 * 7000])
    assert set(bank["insured_share"]) == {0.9}
    assert set(bank["as_of"]) == {"2024-06-30"} and set(bank["model_version"]) == {"3"}


def test_the_written_views_agree_with_the_lines(tmp_path: Path) -> None:
    book = make_book(tmp_path, INVOICES, BUYERS, EVENTS)
    scores = write_scores(tmp_path / "scores", SCORES, book)
    lines = tmp_path / "lines.csv"
    lines_frame(LINES).to_csv(lines, index=False)
    views = tmp_path / "views"
    code, text = cli("limits", "--scores", scores, "--exposures", lines, "--book", book.path,
                     "--out", tmp_path / "limits.csv", "--views", views, "--params",
                     write_params(tmp_path / "p.yaml"))
    assert code == 0, text
    out = pd.read_csv(tmp_path / "limits.csv")
    bank = pd.read_csv(views / "bank_coverage.csv", dtype={"grade": str})
    summary = json.loads((views / "portfolio.json").read_text())
    assert list(bank.columns) == list(BANK_COLUMNS) and len(bank) == len(out)
    in_force = np.where(out["decision"] == "refer", out["current_limit"],
                        out["recommended_limit"])
    assert bank["limit"].tolist() == pytest.approx(in_force.tolist())
    assert summary["insured_exposure"] == pytest.approx(in_force.sum())
    assert bank["exposure"].tolist() == pytest.approx(out["open_receivables"].tolist())
    for name in ("el_by_industry.csv", "el_by_country.csv", "el_by_grade.csv"):
        table = pd.read_csv(views / name)
        assert table["lines"].sum() == len(out)
        assert table["expected_loss"].sum() == pytest.approx(summary["expected_loss"])
    assert summary["exposures"] == {"read": 15, "accepted": 15, "rejected": 0, "reasons": {}}
