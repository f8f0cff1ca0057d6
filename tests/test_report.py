"""The analyst report (riskmodel report): what the HTML file holds, that it is self-contained
and escaped, the point-in-time payment history worked out by hand, the command line and the
MLflow artifact. The browser checks are in test_report_browser.py.

:func:`report_world` builds a small book (a synthetic world plus buyers whose ids and
categories are markup) and explain folders with exactly the columns of ``riskmodel explain``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.data.book import Book
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.explain.report import (
    payment_history,
    read_explained,
    safe_json,
)
from riskmodel.params import parse_params

runner = CliRunner()
AS_OF = dt.date(2022, 12, 31)
#: buyer ids that are markup or carry quotes: shown as text, never run
XSS_IDS = ("<img src=x onerror=alert(1)>", '"><script>alert(1)</script>', "'quote'",
           "</script><img src=x onerror=window.__xss=1>")
#: reason texts and an industry that set window.__xss if they ever ran
XSS_TEXTS = ('<img src=x onerror="window.__xss=1">', "</script><script>window.__xss=1</script>",
             "<svg onload=window.__xss=1>", "\u2028line\u2029separators & <b>bold</b>")
XSS_INDUSTRY = '<img src=x onerror="window.__xss=1">'
FEATURES = ("dbt_wmean_365", "overdue_share_open", "open_amount", "late_share_30_365",
            "oldest_open_dpd", "history_days", "employees", "annual_revenue", "dbt_trend",
            "suppliers_12m", "cycle_overdue30_share", "dbt_vs_industry")
CUTS = (0.002, 0.004, 0.007, 0.012, 0.02, 0.035, 0.06, 0.1, 0.18)  # grades 1..10


def grade_of(pd_: float) -> str:
    return str(1 + int(np.searchsorted(CUTS, pd_, side="right")))


def _raw_world(root: Path, buyers: int, seed: int, markup: bool = True) -> Path:
    raw = root / "raw"
    write_world(SynthConfig(n_buyers=buyers, start=dt.date(2021, 1, 1), end=AS_OF, seed=seed,
                            chunk_buyers=buyers), raw)
    if not markup:
        return raw
    # buyers whose ids and industry are markup, with a few invoices each
    extra_b = pd.DataFrame({
        "buyer_id": list(XSS_IDS), "country": ["DE", "FR", "NL", "DE"],
        "industry": [XSS_INDUSTRY, "C", "G", "C"],
        "founded_year": pd.array([2001, 1999, None, 2010], dtype="Int64"),
        "employees": [10.0, 20.0, None, 3.0], "annual_revenue": [1e6, 2e6, None, 1e5]})
    b = pq.read_table(raw / "buyers.parquet")
    pq.write_table(pa.concat_tables([b, pa.Table.from_pandas(extra_b, schema=b.schema,
                                                             preserve_index=False)]),
                   raw / "buyers.parquet")
    inv_schema = pq.read_schema(next((raw / "invoices").glob("*.parquet")))
    rows = []
    for n, bid in enumerate(XSS_IDS):
        for k in range(6):
            issue = dt.date(2022, 1 + 2 * k, 5)
            rows.append({"invoice_id": f"X{n}-{k}", "buyer_id": bid, "supplier_id": "S1",
                         "issue_date": issue, "due_date": issue + dt.timedelta(days=30),
                         "amount": 1000.0 + k, "currency": "EUR",
                         "paid_date": (issue + dt.timedelta(days=40 + 5 * n)) if k < 5 else None,
                         "disputed": False, "dispute_date": None})
    pq.write_table(pa.Table.from_pylist(rows, schema=inv_schema),
                   raw / "invoices" / "part-99999.parquet")
    return raw


def explain_dir(out: Path, buyer_ids: list[str], seed: int, as_of: dt.date = AS_OF) -> Path:
    """An explain folder with the columns ``riskmodel explain`` writes: scores,
    contributions (one column per feature; base + sum = margin) and up to three reasons."""
    rng = np.random.default_rng(seed)
    n = len(buyer_ids)
    contrib = rng.normal(0.0, 0.45, size=(n, len(FEATURES)))
    base = -3.6
    margin = base + contrib.sum(axis=1)
    pd_ = 1.0 / (1.0 + np.exp(-margin))
    in_default = rng.random(n) < 0.02
    ids = list(buyer_ids)
    for i, b in enumerate(ids):  # the markup buyers: one risky, one in default
        if b == XSS_IDS[0]:
            in_default[i] = False
            contrib[i, :3] = [1.5, 1.0, 0.8]
            margin[i] = base + contrib[i].sum()
            pd_[i] = 1.0 / (1.0 + np.exp(-margin[i]))
        if b == XSS_IDS[1]:
            in_default[i] = True
    grades = ["D" if d else grade_of(p) for d, p in zip(in_default, pd_, strict=True)]
    pd_ = np.where(in_default, 1.0, pd_)
    when = pd.Timestamp(as_of)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"buyer_id": ids, "as_of": when,
                  "status": np.where(in_default, "in_default", "active"),
                  "pd": pd_, "grade": grades, "margin": margin}
                 ).to_parquet(out / "scores.parquet", index=False)
    frame = pd.DataFrame(contrib, columns=list(FEATURES))
    frame.insert(0, "buyer_id", ids)
    frame.insert(1, "as_of", when)
    frame.insert(2, "base_value", base)
    frame.insert(3, "margin", margin)
    frame.to_parquet(out / "contributions.parquet", index=False)
    reasons = []
    for i, b in enumerate(ids):
        top = np.argsort(-contrib[i])[:3]
        for rank, j in enumerate(top, start=1):
            if contrib[i, j] <= 0:
                break
            value, typical = float(rng.gamma(2.0, 10.0)), float(rng.gamma(2.0, 5.0))
            text = f"{FEATURES[j].replace('_', ' ')} is {value:.1f}, typical {typical:.1f}"
            if b in XSS_IDS:
                text = XSS_TEXTS[(rank - 1 + XSS_IDS.index(b)) % len(XSS_TEXTS)]
            reasons.append({"buyer_id": b, "as_of": when, "rank": rank, "code": f"R{j:02d}",
                            "feature": FEATURES[j], "value": value, "typical": typical,
                            "text": text})
    pd.DataFrame(reasons).to_parquet(out / "reasons.parquet", index=False)
    return out


def report_world(root: Path, buyers: int = 400, seed: int = 5,
                 markup: bool = True) -> tuple[Book, Path, Path]:
    """A book, an explain folder of all its buyers at 2022-12-31, and a previous one (at
    2022-09-30) that lacks a tenth of them (the new buyers); ``markup`` adds the buyers of
    :data:`XSS_IDS`."""
    raw = _raw_world(root, buyers, seed, markup)
    pipeline.validate(raw, root / "book", parse_params({"book": {"buckets": 4}}))
    book = Book(root / "book")
    ids = sorted(s for k in range(book.n_buckets)
                 for s in book.read("buyers", k, ["buyer_id"])["buyer_id"].to_pylist())
    current = explain_dir(root / "explain", ids, seed)
    older = [b for i, b in enumerate(ids) if i % 10 != 3 or b in XSS_IDS]
    previous = explain_dir(root / "explain-prev", older, seed + 1, dt.date(2022, 9, 30))
    return book, current, previous


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Book, Path, Path]:
    return report_world(tmp_path_factory.mktemp("report"))


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                  re.S)
    assert m is not None
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def built(world, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    book, current, previous = world
    out = tmp_path_factory.mktemp("html") / "report.html"
    res = pipeline.report(book, current, out, previous=previous, detail_buyers=20,
                          buyers=["'quote'"])
    page = out.read_text(encoding="utf-8")
    assert res.buyers == len(embedded(page)["buyers"])
    return page, embedded(page)


# --------------------------------------------------------------------------- escaping


def test_safe_json_cannot_close_the_script_element() -> None:
    data = {"a": "</script><script>alert(1)</script>", "b": "<!-- & -->",
            "c": "x\u2028y\u2029z", "<key>": ["é", "\U0001F600"]}
    text = safe_json(data)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert text.isascii()
    assert json.loads(text) == data
    with pytest.raises(ValueError):
        safe_json({"x": float("nan")})


def test_markup_in_the_data_appears_only_escaped(built) -> None:
    page, data = built
    markup = [s for s in (*XSS_IDS, *XSS_TEXTS, XSS_INDUSTRY) if "<" in s]
    for s in markup:
        assert s not in page, s  # neither in the HTML nor raw in the JSON
    # one <script> with code and one data block: nothing else that could run
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    ids = {r["id"] for r in data["buyers"]}
    assert set(XSS_IDS) <= ids  # the data still hold the ids exactly
    ind = {r["ind"] for r in data["buyers"]}
    assert XSS_INDUSTRY in ind
    # the industry chart (drawn in Python) shows the markup industry as escaped text
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in page
    # the script inserts data as text only
    script = page.split("<script>")[1]
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script


def test_no_external_resources(built) -> None:
    page, _ = built
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", page))
    # the SVG namespace is a name, not something fetched
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    # no element loads anything (markup in the data is escaped, so it is no element)
    assert not re.search(r"<[a-z][^>]*\s(src|href|srcset|data)\s*=", page, re.I)
    assert "@import" not in page and "url(" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "default-src &#x27;none&#x27;" in csp.group(1)


# --------------------------------------------------------------------------- contents


def test_the_report_holds_every_buyer_with_its_changes(world, built) -> None:
    book, current, previous = world
    _, data = built
    scores = pd.read_parquet(current / "scores.parquet").set_index("buyer_id")
    prev = pd.read_parquet(previous / "scores.parquet").set_index("buyer_id")
    rows = {r["id"]: r for r in data["buyers"]}
    assert set(rows) == set(scores.index)
    order = [str(g) for g in range(1, 11)] + ["D"]
    for bid, r in rows.items():
        assert r["pd"] == pytest.approx(scores.loc[bid, "pd"], abs=1e-6)
        assert r["g"] == scores.loc[bid, "grade"]
        if bid in prev.index:
            assert not r["new"]
            assert r["dpd"] == pytest.approx(scores.loc[bid, "pd"] - prev.loc[bid, "pd"],
                                             abs=2e-6)
            assert r["dg"] == order.index(r["g"]) - order.index(prev.loc[bid, "grade"])
        else:
            assert r["new"] and r["dg"] is None and r["dpd"] is None
    assert sum(r["new"] for r in rows.values()) == len(set(scores.index) - set(prev.index)) > 0
    # industry and country come from the book
    b = pd.concat([book.read("buyers", k).to_pandas() for k in range(book.n_buckets)])
    b = b.set_index("buyer_id")
    for bid in list(rows)[:50]:
        assert rows[bid]["ind"] == b.loc[bid, "industry"]
        assert rows[bid]["cty"] == b.loc[bid, "country"]


def test_histories_for_the_riskiest_and_those_asked_for(built, world) -> None:
    _, data = built
    scores = pd.read_parquet(world[1] / "scores.parquet")
    live = scores[scores["status"] != "in_default"]  # a defaulted buyer is no warning
    assert len(live) < len(scores)  # the fixture has defaulted buyers, with PD 1
    top = live.sort_values(["pd", "buyer_id"], ascending=[False, True]).head(20)
    with_h = {r["id"] for r in data["buyers"] if "h" in r}
    assert with_h == set(top["buyer_id"]) | {"'quote'"}
    assert data["meta"]["histories"] == len(with_h)
    h = next(r["h"] for r in data["buyers"] if r["id"] == "'quote'")
    assert len(h["m"]) == 24 and h["m"][-1] == "2022-12"


def test_waterfall_adds_up_to_the_margin(built, world) -> None:
    _, data = built
    ex = read_explained(world[1])
    feats = data["meta"]["features"]
    assert feats == list(ex.features)
    for r in data["buyers"][:100]:
        base, margin, shown, rest, n_rest = r["w"]
        assert len(shown) <= 8
        total = base + sum(v for _, v in shown) + rest
        assert total == pytest.approx(margin, abs=1e-4)
        sizes = [abs(v) for _, v in shown]
        assert sizes == sorted(sizes, reverse=True)
        assert n_rest == len(feats) - len(shown)


def test_reasons_in_rank_order(built, world) -> None:
    _, data = built
    reasons = pd.read_parquet(world[1] / "reasons.parquet")
    for r in data["buyers"][:60]:
        mine = reasons[reasons["buyer_id"] == r["id"]].sort_values("rank")
        assert [x[5] for x in r["rs"]] == list(mine["text"])
        assert [x[2] for x in r["rs"]] == list(mine["feature"])
        assert [x[0] for x in r["rs"]] == list(mine["rank"])
        assert [x[1] for x in r["rs"]] == list(mine["code"])
        for x, (value, typical) in zip(r["rs"], zip(mine["value"], mine["typical"],
                                                    strict=True), strict=True):
            for shown, given in ((x[3], value), (x[4], typical)):
                if given is None or (isinstance(given, float) and np.isnan(given)):
                    assert shown is None
                else:
                    assert shown == pytest.approx(float(given), abs=1e-4)


def test_each_waterfall_is_the_buyers_own(built, world) -> None:
    """Every shown step is that buyer's contribution of that feature, and the base value
    and margin are the buyer's."""
    _, data = built
    contrib = pd.read_parquet(world[1] / "contributions.parquet").set_index("buyer_id")
    feats = data["meta"]["features"]
    for r in data["buyers"][:100]:
        base, margin, shown, _, _ = r["w"]
        row = contrib.loc[r["id"]]
        assert base == pytest.approx(float(row["base_value"]), abs=1e-6)
        assert margin == pytest.approx(float(row["margin"]), abs=1e-6)
        for j, value in shown:
            assert value == pytest.approx(float(row[feats[j]]), abs=1e-6)


# --------------------------------------------------------------------------- payment history


def _hand_book(root: Path) -> Book:
    """Buyer X at as-of 2024-03-15: every figure of its history is worked out below."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    d = dt.date
    inv = [  # (id, buyer, issue, due, paid, amount)
        ("a", "X", d(2024, 1, 5), d(2024, 2, 4), d(2024, 2, 14), 100.0),  # 10 days late
        ("b", "X", d(2024, 1, 20), d(2024, 2, 19), d(2024, 2, 19), 300.0),  # on time
        ("c", "X", d(2024, 2, 1), d(2024, 3, 2), d(2024, 3, 20), 50.0),  # paid after as-of
        ("e", "X", d(2023, 12, 1), d(2023, 12, 31), d(2024, 1, 10), 200.0),  # paid in Jan
        ("f", "X", d(2024, 3, 20), d(2024, 4, 19), None, 999.0),  # issued after as-of
        ("g", "Y", d(2024, 1, 5), d(2024, 2, 4), None, 70.0),  # another buyer
    ]
    pq.write_table(pa.table({
        "invoice_id": [r[0] for r in inv], "buyer_id": [r[1] for r in inv],
        "issue_date": pa.array([r[2] for r in inv], pa.date32()),
        "due_date": pa.array([r[3] for r in inv], pa.date32()),
        "paid_date": pa.array([r[4] for r in inv], pa.date32()),
        "amount": [r[5] for r in inv]}), raw / "invoices.parquet")
    pq.write_table(pa.table({"buyer_id": ["X", "Y"], "country": ["DE", "FR"],
                             "industry": ["C", "G"]}), raw / "buyers.parquet")
    pq.write_table(pa.table({"buyer_id": pa.array([], pa.string()),
                             "event_date": pa.array([], pa.date32()),
                             "event_type": pa.array([], pa.string())}), raw / "events.parquet")
    pipeline.validate(raw, root / "book", parse_params({"book": {"buckets": 4}}),
                      observed_until=dt.date(2024, 4, 30), today=dt.date(2024, 5, 1))
    return Book(root / "book")


def test_payment_history_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = _hand_book(tmp_path)
    read: list[tuple[str, int]] = []
    original = book.read

    def spy(table, bucket, columns=None):
        read.append((table, bucket))
        return original(table, bucket, columns)

    monkeypatch.setattr(book, "read", spy)
    h = payment_history(book, {"X": dt.date(2024, 3, 15)}, months=3)
    # only X's bucket is read
    assert {b for _, b in read} == set(book.buckets_for(["X"]))
    assert list(h["buyer_id"]) == ["X"] * 3
    assert list(h["month"]) == ["2024-01", "2024-02", "2024-03"]
    assert list(h["paid_invoices"]) == [1, 2, 0]  # e in Jan; a, b in Feb; c not by 03-15
    assert h["dbt_mean"].iloc[0] == pytest.approx(10.0)  # e: 2024-01-10 - 2023-12-31
    assert h["dbt_mean"].iloc[1] == pytest.approx((100 * 10 + 300 * 0) / 400)
    assert pd.isna(h["dbt_mean"].iloc[2])
    assert list(h["dbt_max"].iloc[:2]) == [10, 10]
    # month ends: Jan 31 a, b open (due in Feb); Feb 29 c open, not yet due; at 03-15 c is
    # open (its payment of 03-20 is not known yet) and past due; f does not exist yet
    assert list(h["open_amount"]) == [400.0, 50.0, 50.0]
    assert list(h["overdue_amount"]) == [0.0, 0.0, 50.0]


# --------------------------------------------------------------------------- command line


def test_cli_report_with_previous_and_buyers(world, tmp_path: Path) -> None:
    book, current, previous = world
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{XSS_IDS[0]}\n'quote'\n", encoding="utf-8")
    out = tmp_path / "r" / "report.html"
    res = runner.invoke(app, ["report", "--explain-dir", str(current), "--book", str(book.path),
                              "--out", str(out), "--previous", str(previous),
                              "--detail-buyers", "5", "--buyers", str(ids)])
    assert res.exit_code == 0, res.output
    assert "payment histories of" in res.output
    data = embedded(out.read_text(encoding="utf-8"))
    with_h = {r["id"] for r in data["buyers"] if "h" in r}
    assert {XSS_IDS[0], "'quote'"} <= with_h and len(with_h) <= 7
    assert data["meta"]["previous"] is True


def test_cli_report_refuses_what_it_cannot_use(world, tmp_path: Path) -> None:
    book, current, _ = world
    ids = tmp_path / "ids.txt"
    ids.write_text("nobody\n", encoding="utf-8")
    base = ["report", "--explain-dir", str(current), "--book", str(book.path)]
    out = tmp_path / "report.html"
    res = runner.invoke(app, [*base, "--out", str(out), "--buyers", str(ids)])
    assert res.exit_code == 2 and "not in the scores" in res.output
    res = runner.invoke(app, [*base, "--out", str(out), "--previous", str(tmp_path / "no")])
    assert res.exit_code == 2 and "no such folder" in res.output
    res = runner.invoke(app, ["report", "--explain-dir", str(tmp_path), "--book",
                              str(book.path), "--out", str(out)])
    assert res.exit_code == 2 and "scores.parquet" in res.output
    assert not out.exists()


def test_an_explain_folder_of_another_book_is_refused(world, tmp_path: Path) -> None:
    book, _, _ = world
    other = explain_dir(tmp_path / "x", ["B0000001", "stranger"], 1)
    with pytest.raises(pipeline.PipelineError, match="not in the book"):
        pipeline.report(book, other, tmp_path / "r.html")


# --------------------------------------------------------------------------- MLflow


def test_report_logged_to_the_model_run(world, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from riskmodel.registry import Registered, Store, ensure_experiment, write_registration

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    book, current, _ = world
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("book:\n  buckets: 4\n")
    client = Store.at(project).client()
    run = client.create_run(ensure_experiment("report-test", project_dir=project))
    run_id = run.info.run_id
    model_dir = project / "model"
    model_dir.mkdir()
    write_registration(model_dir, Registered(run_id, "buyer-risk", "1"))
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", "--explain-dir", str(current), "--book",
                              str(book.path), "--out", str(out), "--detail-buyers", "3",
                              "--log-run", str(model_dir),
                              "--params", str(project / "params.yaml")])
    assert res.exit_code == 0, res.output
    assert f"logged it to MLflow run {run_id}" in res.output
    assert [f.path for f in client.list_artifacts(run_id, "report")] == ["report/report.html"]
    # an unknown run is refused before anything is written
    out2 = tmp_path / "report2.html"
    with pytest.raises(pipeline.PipelineError, match="not found"):
        pipeline.report(book, current, out2, log_run_id="0" * 32, project_dir=project)
    assert not out2.exists()


def test_the_grade_chart_has_every_grade_of_the_scale(world, tmp_path: Path) -> None:
    """Grades without buyers still have their (empty) column, in master-scale order."""
    book, current, _ = world
    thin = tmp_path / "thin"
    thin.mkdir()
    scores = pd.read_parquet(current / "scores.parquet")
    keep = scores[~scores["grade"].isin(["1", "2"])]
    assert len(keep) < len(scores)  # the fixture has buyers of grades 1 and 2 to drop
    keep.to_parquet(thin / "scores.parquet")
    for name in ("contributions", "reasons"):
        frame = pd.read_parquet(current / f"{name}.parquet")
        frame[frame["buyer_id"].isin(set(keep["buyer_id"]))].to_parquet(
            thin / f"{name}.parquet")
    out = tmp_path / "r.html"
    pipeline.report(book, thin, out, detail_buyers=0)
    page = out.read_text(encoding="utf-8")
    chart = re.search(r'aria-label="Buyers by grade">(.*?)</svg>', page, re.S)
    assert chart is not None
    labels = re.findall(r'class="cl">([^<]*)</text>', chart.group(1))
    assert labels == [str(g) for g in range(1, 11)] + ["D"]
    counts = [int(v.replace(",", "")) for v in re.findall(r'class="cv">([^<]*)</text>',
                                                          chart.group(1))]
    assert counts[:2] == [0, 0]
    assert counts == [int((keep["grade"] == g).sum()) for g in labels]
