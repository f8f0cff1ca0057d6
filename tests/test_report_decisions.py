"""The decision sections of the analyst report (``riskmodel report --limits --views --watch``):
a small hand-built book (the buyers of test_limits.py, one with an id that is markup, one
with an industry that is markup), two scoring outputs written by hand, then ``riskmodel
limits`` and ``riskmodel watch`` through the command line, and the report with their outputs.
Every expected figure is read from those outputs here with pandas, never from the report's
code: the decision counts and sums, the order of the watch list, the migration matrix, the
PSI, the expected-loss tables, the concentration, the Herfindahl index and the economics.
Markup in the data shows as text; the report without these options has no such section and
is otherwise the same page.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.data.book import Book
from riskmodel.explain.report import _DECISIONS_CSS
from riskmodel.params import parse_params
from test_report import explain_dir

runner = CliRunner()
A = dt.date(2024, 6, 30)        # the current scores, the limits and the explanations
PREV = dt.date(2024, 3, 31)     # the previous scores of the watch list
TODAY = dt.date(2024, 9, 30)
XSS_BUYER = '"><script>alert("buyer")</script>'
XSS_INDUSTRY = '<script>alert("industry")</script>'
XSS_REASON = '<script>alert("reason")</script> & the grade fell'
POLICY: dict[str, Any] = {
    "limits": {"revenue_share": [0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.015, 0.01, 0.005],
               "lgd": 0.5, "el_budget": 1000, "min_history_days": 180,
               "refer_request_multiple": 3, "overdue_days": 90, "round_to": 100},
    "terms": {"insurable_max_days": 90, "max_days": [60, 60, 60, 45, 45, 30, 30, 30, 30, 30]},
    "portfolio": {"premium_rate": 0.02, "insured_share": 0.9, "top": 10},
}


def inv(iid: str, buyer: str, supplier: str | None, issue: str, due: str, amount: float,
        paid: str | None = None) -> dict[str, Any]:
    return dict(invoice_id=iid, buyer_id=buyer, supplier_id=supplier, issue_date=issue,
                due_date=due, amount=amount, paid_date=paid)


INVOICES = [
    inv("a0", "BA", "S1", "2022-01-01", "2022-01-31", 1000, "2022-01-31"),
    inv("a1", "BA", "S1", "2024-01-01", "2024-01-31", 36500, "2024-02-10"),
    inv("a2", "BA", "S1", "2024-03-01", "2024-04-30", 36500, "2024-04-30"),
    inv("r0", "BR", "S1", "2023-01-02", "2023-02-01", 500, "2023-02-01"),
    inv("r1", "BR", "S1", "2024-02-01", "2024-03-02", 60000, "2024-03-02"),
    inv("r2", "BR", "S2", "2024-03-01", "2024-03-31", 40000, "2024-03-31"),
    inv("z0", "BZ", "S1", "2022-06-01", "2022-07-01", 1000, "2022-07-01"),
    inv("z1", "BZ", "S2", "2024-05-01", "2024-06-30", 18250),
    inv("z2", "BZ", "S2", "2023-09-01", "2023-10-31", 18250, "2023-11-20"),
    inv("z3", "BZ", "S1", "2024-04-01", "2024-05-01", 5000, "2024-05-01"),
    inv("d0", "BD", "S1", "2023-01-01", "2023-01-31", 2000),
    inv("o0", "BO", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("o1", "BO", "S1", "2024-01-01", "2024-02-01", 120000),
    inv("x0", "BX", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("x1", "BX", "S1", "2024-03-01", "2024-03-31", 3650, "2024-03-31"),
    inv("n0", "BN", "S1", "2022-01-01", "2022-01-31", 1000, "2022-01-31"),
    inv("s1", "BS", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    inv("q0", "BQ", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("q1", "BQ", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    inv("u0", "BU", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("u1", "BU", "S1", "2024-03-01", "2024-03-31", 36500, "2024-03-31"),
    inv("l0", XSS_BUYER, "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("l1", XSS_BUYER, "S1", "2024-01-01", "2024-01-31", 100000, "2024-01-31"),
    inv("w0", "BW", "S1", "2023-01-01", "2023-01-31", 1000, "2023-01-31"),
    inv("w1", "BW", "S1", "2024-01-01", "2024-01-31", 36500, "2024-01-31"),
    inv("w2", "BW", "S2", "2024-02-01", "2024-03-02", 36500, "2024-03-02"),
]
BUYERS = [(b, c, i, r) for b, c, i, r in (
    ("BA", "DE", "C", 1e6), ("BR", "FR", "G", None), ("BZ", "DE", "C", 2e6),
    ("BD", "DE", "C", 5e5), ("BO", "DE", "C", 1e6), ("BX", "DE", "C", 1e6),
    ("BN", "DE", "C", 1e6), ("BS", "FR", "G", 1e6), ("BQ", "DE", "C", 1e6),
    ("BU", "DE", XSS_INDUSTRY, 1e6), (XSS_BUYER, "DE", "C", 1e7), ("BW", "DE", "C", 1e6))]
# buyer: (status, grade, pd) at PREV and at A; None: not in that run (BX is not scored at A)
RUNS: dict[str, tuple[Any, Any]] = {
    "BA": (("scored", "3", 0.01), ("scored", "3", 0.01)),
    "BR": (("scored", "3", 0.008), ("scored", "5", 0.02)),      # 2 notches, PD x 2.5
    "BZ": (("scored", "2", 0.005), ("scored", "2", 0.005)),
    "BD": (("scored", "8", 0.12), ("in_default", "D", 1.0)),    # 8 -> D: 3 notches
    "BO": (("scored", "4", 0.01), ("scored", "4", 0.01)),
    "BN": (("scored", "5", 0.02), ("no_recent_history", None, None)),
    "BS": (None, ("scored", "3", 0.01)),                        # new
    "BQ": (("scored", "3", 0.004), ("scored", "3", 0.01)),      # PD x 2.5
    "BU": (("scored", "3", 0.01), ("scored", "3", 0.01)),
    XSS_BUYER: (("scored", "6", 0.05), ("scored", "9", 0.2)),   # 3 notches, PD x 4
    "BW": (("scored", "3", 0.01), ("scored", "3", 0.01)),
    "BX": (("scored", "4", 0.01), None),                        # has left the scores
}
# buyer, supplier, current, requested
LINES = [("BA", "S1", 15000, 20000), ("BR", "S1", 3000, 5000), ("BR", "S2", 1000, 2000),
         ("BZ", "S1", 5000, 0), ("BZ", "S2", 10000, None), ("BZ", "S3", 3000, None),
         ("BD", "S1", 20000, 50000), ("BO", "S1", 10000, 30000), ("BX", "S1", 1000, 800),
         ("BN", "S1", 500, None), ("BS", "S1", 0, 3000), ("BQ", "S1", 2000, 9001),
         (XSS_BUYER, "S1", 8000, 24000), ("BU", "S1", 2000, 2500), ("BW", None, 5000, None)]


# --------------------------------------------------------------------------- builders


def scoring_output(path: Path, as_of: dt.date, fingerprint: str, model: Path,
                   run: int, profile: dict[str, list[int]]) -> Path:
    """A folder as `riskmodel score` writes it: a part, _scoring.json, _profile.parquet."""
    path.mkdir(parents=True)
    rows = {b: r[run] for b, r in RUNS.items() if r[run] is not None}
    ids = sorted(rows)
    rank = {**{str(g): g for g in range(1, 11)}, "D": 11}
    grade = [rows[b][1] for b in ids]
    frame = pd.DataFrame({
        "buyer_id": ids, "as_of": as_of, "status": [rows[b][0] for b in ids],
        "pd": [rows[b][2] for b in ids], "grade": grade,
        "grade_rank": pd.array([rank.get(g) if g else None for g in grade], dtype="Int8"),
        "reason_1": "R01", "reason_2": "R02",
        "reason_1_text": [XSS_REASON if b == XSS_BUYER else f"first reason of {b}"
                          for b in ids],
        "reason_2_text": [f"second reason of {b}" for b in ids],
        "model_name": "buyer-risk", "model_version": "4", "model_run_id": "run4",
        "data_fingerprint": fingerprint,
    })
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                   path / "part-00000.parquet")
    manifest = {"kind": "riskmodel-scores", "as_of": as_of.isoformat(),
                "model_name": "buyer-risk", "model_version": "4", "model_run_id": "run4",
                "data_fingerprint": fingerprint, "reasons": 2, "model_uri": str(model),
                "parts": ["part-00000.parquet"]}
    (path / "_scoring.json").write_text(json.dumps(manifest), encoding="utf-8")
    pd.DataFrame([(f, str(i), n) for f, counts in profile.items() for i, n in enumerate(counts)],
                 columns=["feature", "bin", "rows"]).to_parquet(path / "_profile.parquet")
    return path


def cli(*args: Any) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def build(root: Path) -> dict[str, Any]:
    raw = root / "raw"
    raw.mkdir(parents=True)
    lines = pd.DataFrame(LINES, columns=["buyer_id", "supplier_id", "current_limit",
                                         "requested_limit"])
    pd.DataFrame(INVOICES).to_csv(raw / "invoices.csv", index=False)
    pd.DataFrame(BUYERS, columns=["buyer_id", "country", "industry", "annual_revenue"]).assign(
        founded_year=2000, employees=10.0).to_csv(raw / "buyers.csv", index=False)
    pd.DataFrame([("BD", "2024-05-01", "insolvency")],
                 columns=["buyer_id", "event_date", "event_type"]).to_csv(raw / "events.csv",
                                                                          index=False)
    lines.to_csv(raw / "exposures.csv", index=False)
    lines.to_csv(root / "lines.csv", index=False)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    book = pipeline.validate(raw, root / "book", parse_params(POLICY), observed_until=A,
                             today=TODAY).book
    fp = Book(book).manifest.raw_fingerprint
    model = root / "model"
    (model / "artifacts" / "riskmodel").mkdir(parents=True)
    (model / "artifacts" / "riskmodel" / "features.json").write_text(json.dumps({
        "names": ["industry", "country"],
        "categories": {"industry": ["C", "G"], "country": ["DE", "FR"]}}))
    prev = scoring_output(root / "scores-prev", PREV, fp, model, 0,
                          {"x": [50, 50], "y": [80, 20], "w": [70, 30]})
    cur = scoring_output(root / "scores", A, fp, model, 1,
                         {"x": [50, 50], "y": [50, 50], "w": [50, 50]})
    out = root / "out"
    code, text = cli("limits", "--scores", cur, "--book", book, "--out", out / "limits.parquet",
                     "--views", out / "views", "--model", model, "--params", params)
    assert code == 0, text
    code, text = cli("watch", "--previous", prev, "--current", cur, "--book", book, "--out",
                     out / "watch.parquet", "--exposures", root / "lines.csv",
                     "--params", params)
    assert code == 0, text
    ids = [b for b, *_ in BUYERS]
    explained = explain_dir(root / "explain", sorted(ids), seed=3, as_of=A)
    return {"root": root, "book": book, "params": params, "explain": explained,
            "scores": cur, "model": model, "limits": out / "limits.parquet",
            "views": out / "views", "watch": out / "watch.parquet"}


def report(w: dict[str, Any], out: Path, *extra: Any) -> tuple[int, str]:
    return cli("report", "--explain-dir", w["explain"], "--book", w["book"], "--out", out,
               "--detail-buyers", 3, "--params", w["params"], *extra)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    w = build(tmp_path_factory.mktemp("decisions"))
    out = w["root"] / "report.html"
    code, text = report(w, out, "--limits", w["limits"], "--views", w["views"],
                        "--watch", w["watch"])
    assert code == 0, text
    assert "; with credit limits, watch list, portfolio)" in text
    plain = w["root"] / "plain.html"
    code, text = report(w, plain)
    assert code == 0, text
    assert "with" not in text.split(" to ")[0]
    w["page"] = out.read_text(encoding="utf-8")
    w["plain"] = plain.read_text(encoding="utf-8")
    w["html"] = out
    return w


class Tables(HTMLParser):
    """The tables of a page by their aria-label: rows of cell texts (entities decoded)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("aria-label") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def section(page: str, ident: str) -> str:
    m = re.search(rf'<section class="box decisions" id="{ident}">(.*?)</section>', page, re.S)
    assert m is not None, ident
    return m.group(1)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def amount(x: float) -> str:
    """A whole amount as the report writes it (a negative zero is 0)."""
    text = f"{0.0 if pd.isna(x) else x:,.0f}"
    return "0" if text == "-0" else text


def body(table: list[list[str]]) -> list[list[str]]:
    return table[1:]


# --------------------------------------------------------------------------- credit limits


def test_credit_limits_by_decision(world) -> None:
    lim = pd.read_parquet(world["limits"])
    got = Tables(section(world["page"], "credit-limits")).tables
    table = got["credit lines by decision"]
    assert table[0] == ["decision", "lines", "buyers", "current limits", "requests",
                        "requested limits", "recommended limits"]
    counts = lim["decision"].value_counts()
    assert set(counts.index) == {"approve", "reduce", "decline", "refer"}  # all four occur
    want = []
    for d in ("approve", "reduce", "decline", "refer"):
        g = lim[lim["decision"] == d]
        want.append([d, f"{len(g):,}", f"{g['buyer_id'].nunique():,}",
                     amount(g["current_limit"].sum()), f"{g['requested_limit'].notna().sum():,}",
                     amount(g["requested_limit"].sum()), amount(g["recommended_limit"].sum())])
    want.append(["total", f"{len(lim):,}", f"{lim['buyer_id'].nunique():,}",
                  amount(lim["current_limit"].sum()), f"{lim['requested_limit'].notna().sum():,}",
                  amount(lim["requested_limit"].sum()), amount(lim["recommended_limit"].sum())])
    assert body(table) == want
    assert [int(r[1]) for r in body(table)[:4]] == [int(counts[d]) for d in
                                                    ("approve", "reduce", "decline", "refer")]


#: the lines reduced, declined or referred, by the amount asked (the request, else the current
#: limit), largest first, then by buyer and supplier: BD 50,000, BO 30,000, XSS 24,000, BZ/S2
#: 10,000 (current), BQ 9,001, BR/S1 5,000, BS and BZ/S3 3,000, BU 2,500, BR/S2 2,000,
#: BX 800, BN 500 (current)
LARGEST = [("BD", "S1", "decline"), ("BO", "S1", "reduce"), (XSS_BUYER, "S1", "reduce"),
           ("BZ", "S2", "reduce"), ("BQ", "S1", "refer"), ("BR", "S1", "reduce"),
           ("BS", "S1", "refer"), ("BZ", "S3", "decline"), ("BU", "S1", "refer"),
           ("BR", "S2", "reduce"), ("BX", "S1", "refer"), ("BN", "S1", "refer")]
#: the watch list by exposure at risk, PD x the buyer's credit limits: BD 1.0 x 20,000,
#: XSS 0.2 x 8,000, BR 0.02 x 4,000, BQ 0.01 x 2,000
WATCHED = ["BD", XSS_BUYER, "BR", "BQ"]
#: expected loss by industry and country, largest first (grades in the master scale's order)
EL_ORDER = {"grade": ["2", "3", "4", "5", "9", "D", "none"],
            "industry": ["C", "G", XSS_INDUSTRY], "country": ["DE", "FR"]}
#: the limits in force by buyer, largest first, then by buyer id
CONCENTRATION = ["BA", XSS_BUYER, "BO", "BZ", "BW", "BR", "BQ", "BU", "BX", "BN"]


def test_the_largest_reductions_declines_and_referrals(world) -> None:
    lim = pd.read_parquet(world["limits"])
    lim["sup"] = lim["supplier_id"].fillna("")
    hit = lim.set_index(["buyer_id", "sup"]).loc[[(b, s) for b, s, _ in LARGEST]].reset_index()
    table = Tables(section(world["page"], "credit-limits")).tables[
        "largest reductions, declines and referrals"]
    assert table[0][:3] == ["buyer", "supplier", "decision"] and table[0][-1] == "sentence"
    rows = body(table)
    assert [(r[0], r[1], r[2]) for r in rows] == LARGEST
    assert [r[-1] for r in rows] == list(hit["sentence"])
    for col, name in ((5, "current_limit"), (6, "requested_limit"), (7, "recommended_limit")):
        assert [r[col] for r in rows] == [amount(x) if pd.notna(x) else "" for x in hit[name]]
    # the buyer with the markup id and the sentence that names the markup industry
    assert XSS_BUYER in [r[0] for r in rows]
    sentence = lim.loc[lim["buyer_id"] == "BU", "sentence"].iloc[0]
    assert XSS_INDUSTRY in sentence and sentence in [r[-1] for r in rows]


# --------------------------------------------------------------------------- watch list


def test_the_watch_list_by_exposure_at_risk(world) -> None:
    wl = pd.read_parquet(world["watch"])
    got = Tables(section(world["page"], "watch-list")).tables
    rows = body(got["watch list by exposure at risk"])
    assert len(rows) == min(len(wl), 50) == 4
    first = wl.loc[wl["exposure_at_risk"].idxmax()]
    assert rows[0][0] == first["buyer_id"] == "BD"
    assert rows[0][2] == "8 \u2192 D" and rows[0][5] == amount(first["exposure_at_risk"])
    assert [r[0] for r in rows] == WATCHED
    assert [r[5] for r in rows] == ["20,000", "1,600", "80", "20"]
    mine = next(r for r in rows if r[0] == XSS_BUYER)
    assert mine[1] == "downgrade, PD doubled"
    assert mine[2] == "6 \u2192 9" and mine[3] == "5.00% \u2192 20.0%"
    assert mine[4] == "8,000" and mine[5] == "1,600"   # PD 0.2 x the limit of 8,000
    assert mine[6] == XSS_REASON
    summary = json.loads(world["watch"].with_name("watch.summary.json").read_text())
    text = text_of(section(world["page"], "watch-list"))
    assert f"{summary['watch_list']['buyers']:,} buyers on the watch list" in text
    assert f"Exposure at risk (PD x credit limits): " \
           f"{amount(summary['watch_list']['exposure_at_risk'])}." in text


def test_the_migration_matrix_and_the_psi(world) -> None:
    got = Tables(section(world["page"], "watch-list")).tables
    matrix = pd.read_csv(world["watch"].with_name("watch.migration.csv"), dtype=str,
                         keep_default_na=False)
    table = got["grade migration matrix"]
    labels = [c for c in matrix.columns if c != "previous_grade"]
    assert table[0] == ["previous \\ current", *labels, "total"]
    assert len(matrix) == 12 and len(body(table)) == len(matrix) + 1  # and the total
    for row, (_, want) in zip(body(table)[:-1], matrix.iterrows(), strict=True):
        assert row[0] == want["previous_grade"]
        assert row[1:-1] == [f"{int(want[c]):,}" for c in labels]
    counts = matrix[labels].astype(int)
    assert body(table)[-1] == ["total", *[f"{v:,}" for v in counts.sum()],
                               f"{counts.to_numpy().sum():,}"]
    assert body(table)[7][0] == "8" and body(table)[7][11] == "1"  # BD: 8 -> D
    psi = pd.read_csv(world["watch"].with_name("watch.psi.csv"))
    score = psi[psi["kind"] == "score"].iloc[0]
    text = text_of(section(world["page"], "watch-list"))
    shown = f"{score['psi']:.4f}".rstrip("0").rstrip(".")
    assert f"Score PSI {shown} ({score['flag']})" in text
    flagged = psi[(psi["kind"] == "feature") & psi["flag"].isin(["watch", "act"])]
    assert sorted(flagged["name"]) == ["w", "y"]  # y moved 80/20 -> 50/50, w 70/30 -> 50/50
    assert [r[0] for r in body(got["features flagged"])] == list(flagged["name"])
    assert [r[2] for r in body(got["features flagged"])] == list(flagged["flag"])


# --------------------------------------------------------------------------- portfolio


def test_expected_loss_by_grade_industry_and_country(world) -> None:
    got = Tables(section(world["page"], "portfolio-risk")).tables
    for key in ("grade", "industry", "country"):
        view = pd.read_csv(world["views"] / f"el_by_{key}.csv", dtype={key: str},
                           keep_default_na=False, na_values={"el_rate": [""]})
        rows = body(got[f"expected loss by {key}"])
        assert [r[0] for r in rows] == EL_ORDER[key]
        view = view.set_index(key).loc[EL_ORDER[key]].reset_index()
        assert [r[4] for r in rows] == [amount(v) for v in view["expected_loss"]]
        assert [r[3] for r in rows] == [amount(v) for v in view["limit"]]
        assert [r[1] for r in rows] == [f"{v:,}" for v in view["lines"]]
    industries = [r[0] for r in body(got["expected loss by industry"])]
    assert XSS_INDUSTRY in industries  # shown as text
    charts = section(world["page"], "portfolio-risk")
    assert charts.count("<svg") == 3 and "Expected loss by grade" in charts


def test_concentration_herfindahl_and_economics(world) -> None:
    pf = json.loads((world["views"] / "portfolio.json").read_text())
    conc = pd.read_csv(world["views"] / "concentration.csv", dtype={"buyer_id": str})
    part = section(world["page"], "portfolio-risk")
    rows = body(Tables(part).tables["largest exposures"])
    assert [r[1] for r in rows] == CONCENTRATION == list(conc["buyer_id"])
    assert [r[5] for r in rows] == [amount(v) for v in conc["limit"].head(10)]
    text = text_of(part)
    m = re.search(r"Herfindahl index ([0-9.]+)", text)
    assert m is not None and float(m.group(1)) == pf["herfindahl"]
    held = conc["cumulative_share"].head(10).iloc[-1]
    assert f"The {min(len(conc), 10)} largest exposures" in text and f"{held:.1%}" in text
    eco = pf["economics"]
    cards = dict((html.unescape(v), html.unescape(k)) for v, k in re.findall(
        r'<div class="card"><b>([^<]*)</b><span>([^<]*)</span></div>', part))
    by_label = {k: v for v, k in cards.items()}
    assert by_label["premium (2.0% of the insured exposure)"] == amount(eco["premium"])
    assert by_label["expected loss covered (90.0% insured)"] == \
        amount(eco["expected_loss_covered"])
    assert by_label["loss ratio (expected loss covered / premium)"] == \
        f"{eco['loss_ratio']:.1%}"
    assert by_label["insured exposure (limits in force)"] == amount(pf["insured_exposure"])
    assert str(world["views"] / "bank_coverage.csv") in text


def test_the_row_limits_and_the_others_row(world, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for 3 reductions, 2 watched buyers, 3 exposures and 1 category a chart, the
    lists stop there and the categories beyond the first are summed into one row."""
    from riskmodel.explain import report as rep

    monkeypatch.setattr(rep, "LIMIT_ROWS", 3)
    monkeypatch.setattr(rep, "WATCH_ROWS", 2)
    monkeypatch.setattr(rep, "CONCENTRATION_ROWS", 3)
    monkeypatch.setattr(rep, "CHART_CATEGORIES", 1)
    out = tmp_path / "r.html"
    code, text = report(world, out, "--limits", world["limits"], "--views", world["views"],
                        "--watch", world["watch"])
    assert code == 0, text
    page = out.read_text(encoding="utf-8")
    limits = Tables(section(page, "credit-limits")).tables
    assert [tuple(r[:3]) for r in body(limits["largest reductions, declines and referrals"])] \
        == LARGEST[:3]
    assert "The 3 largest reductions, declines and referrals" in text_of(
        section(page, "credit-limits"))
    # the counts by decision still cover every line
    assert body(limits["credit lines by decision"])[-1][1] == "15"
    watched = Tables(section(page, "watch-list")).tables["watch list by exposure at risk"]
    assert [r[0] for r in body(watched)] == WATCHED[:2]
    assert "4 buyers on the watch list" in text_of(section(page, "watch-list"))
    risk = Tables(section(page, "portfolio-risk")).tables
    assert [r[1] for r in body(risk["largest exposures"])] == CONCENTRATION[:3]
    # industries: C 1,210, then G (3 lines, 39) and the markup one (1 line, 10) summed
    industry = body(risk["expected loss by industry"])
    assert [r[0] for r in industry] == ["C", "2 others"]
    assert [r[1] for r in industry] == ["11", "4"] and [r[4] for r in industry] == \
        ["1,210", "49"]
    assert [r[0] for r in body(risk["expected loss by country"])] == ["DE", "1 others"]
    # the grades are never cut
    assert [r[0] for r in body(risk["expected loss by grade"])] == EL_ORDER["grade"]


# --------------------------------------------------------------------------- the page


def test_markup_is_text_and_nothing_else_changes(world) -> None:
    page, plain = world["page"], world["plain"]
    for s in (XSS_BUYER, XSS_INDUSTRY, XSS_REASON, "<script>alert("):
        assert s not in page, s
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert html.escape(XSS_BUYER, quote=True) in section(page, "credit-limits")
    assert html.escape(XSS_REASON, quote=True) in section(page, "watch-list")
    # nothing loaded from anywhere; the policy still forbids everything but its own hashes
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<[a-z][^>]*\s(src|href|srcset|data)\s*=", page, re.I)
    assert " style=" not in page  # no inline style attribute (the policy would refuse it)
    # the report without the options: no decision section, the page as it always was
    assert 'class="box decisions"' not in plain and _DECISIONS_CSS not in plain
    for ident in ("credit-limits", "watch-list", "portfolio-risk"):
        assert f'id="{ident}"' not in plain
    stripped = re.sub(r'<section class="box decisions" id="[^"]*">.*?</section>\n', "", page,
                      flags=re.S).replace(_DECISIONS_CSS, "")
    csp = r'<meta http-equiv="Content-Security-Policy" content="[^"]*">'
    assert re.sub(csp, "", stripped) == re.sub(csp, "", plain)
    assert re.search(csp, stripped).group(0) != re.search(csp, plain).group(0)  # style hash


def test_csv_limits_render_as_the_parquet_ones(world, tmp_path: Path) -> None:
    """The limits as CSV (as `riskmodel limits --out x.csv` writes them) give the same
    section as the Parquet file."""
    out = tmp_path / "limits.csv"
    code, text = cli("limits", "--scores", world["scores"], "--book", world["book"], "--out",
                     out, "--model", world["model"], "--params", world["params"])
    assert code == 0, text
    res = pipeline.report(Book(world["book"]), world["explain"], tmp_path / "r.html",
                          detail_buyers=0, limits=out)
    assert res.sections == ("credit limits",)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    mine = Tables(section(page, "credit-limits")).tables
    theirs = Tables(section(world["page"], "credit-limits")).tables
    assert mine == theirs


def test_missing_files_are_named(world, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, text = report(world, out, "--limits", tmp_path / "nolimits.parquet")
    assert code == 2 and "nolimits.parquet: no such file" in text
    # the watch list without the files beside it
    lonely = tmp_path / "w" / "watch.parquet"
    lonely.parent.mkdir()
    lonely.write_bytes(world["watch"].read_bytes())
    code, text = report(world, out, "--watch", lonely)
    assert code == 2 and "watch.migration.csv: no such file" in text
    for name in ("migration.csv", "psi.csv"):
        (lonely.parent / f"watch.{name}").write_bytes(
            world["watch"].with_name(f"watch.{name}").read_bytes())
    code, text = report(world, out, "--watch", lonely)
    assert code == 2 and "watch.summary.json: no such file" in text
    # views without portfolio.json
    views = tmp_path / "views"
    views.mkdir()
    for f in world["views"].iterdir():
        if f.name != "portfolio.json":
            (views / f.name).write_bytes(f.read_bytes())
    code, text = report(world, out, "--views", views)
    assert code == 2 and "portfolio.json: no such file" in text
    code, text = report(world, out, "--views", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in text
    # views of another run than the limits
    pf = json.loads((world["views"] / "portfolio.json").read_text())
    (views / "portfolio.json").write_text(json.dumps({**pf, "as_of": "2024-05-31"}))
    code, text = report(world, out, "--limits", world["limits"], "--views", views)
    assert code == 2 and "as of 2024-05-31" in text
    # a limits file without the decision column
    bad = tmp_path / "bad.parquet"
    pd.read_parquet(world["limits"]).drop(columns="decision").to_parquet(bad)
    code, text = report(world, out, "--limits", bad)
    assert code == 2 and "missing column(s) decision" in text
    assert not out.exists()


# --------------------------------------------------------------------------- in a browser


def test_the_page_with_decisions_draws_under_its_policy(world) -> None:
    from selenium.webdriver.common.by import By

    from test_report_browser import load, new_driver, no_errors

    d = new_driver()
    try:
        load(d, world["html"])
        for ident in ("credit-limits", "watch-list", "portfolio-risk"):
            assert d.find_element(By.ID, ident).is_displayed()
        cells = d.find_elements(By.CSS_SELECTOR, "#watch-list td")
        assert XSS_BUYER in [c.text for c in cells]
        assert d.execute_script("return window.getComputedStyle("
                                "document.querySelector('.mig')).width") != "100%"
        assert len(d.find_elements(By.CSS_SELECTOR, "#portfolio-risk svg")) == 3
        assert d.execute_script("return document.scripts.length") == 2
        assert d.execute_script("return document.querySelectorAll('img').length") == 0
        no_errors(d)
    finally:
        d.quit()
