"""The analyst report: one self-contained HTML file over the output of ``riskmodel explain``.

:func:`build_report` reads an explain folder (``scores.parquet``, ``contributions.parquet``,
``reasons.parquet``), joins each buyer's industry and country from the book, computes the
payment history of the riskiest buyers (and of those asked for) point-in-time from the book,
and writes one HTML file that works offline:

* a portfolio summary (grade distribution, PD by industry and by country) drawn as inline
  SVG here;
* a buyer table rendered by a small inline script from data embedded as JSON in a
  ``<script type="application/json">`` block, a page at a time, sortable and searchable;
* per buyer a detail panel: the waterfall of its contributions, its reasons and its payment
  history (days beyond terms, open and overdue amounts by month);
* when given, the decision outputs as tables rendered here (:func:`decision_sections`): the
  credit limits of ``riskmodel limits`` by decision with the largest reductions, declines and
  referrals; the watch list of ``riskmodel watch`` with its grade migration and PSI; and the
  portfolio views of ``riskmodel limits --views`` (expected loss, concentration, economics).

Everything in the file that comes from the data is escaped: text in the HTML and SVG written
here goes through :func:`html.escape`; the embedded JSON escapes ``<``, ``>``, ``&`` and
every non-ASCII character (U+2028 and U+2029 included) as ``\\uXXXX``, so no value can close
the ``<script>`` block; and the script inserts data only with ``textContent`` and
``setAttribute`` of numeric attributes, never as markup. A Content-Security-Policy in the
page allows only its own inline script and style (by hash) and no network access at all.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from riskmodel.data.book import Book

#: payment histories are computed for this many of the riskiest buyers by default
DETAIL_BUYERS = 500
#: months of payment history per buyer (the month of the as-of date and the ones before)
HISTORY_MONTHS = 24
#: contributions shown one by one in a waterfall (the rest are summed into one step)
WATERFALL_TOP = 8
#: reason texts shown in the buyer table
TABLE_REASONS = 3
#: categories drawn one by one in the PD-by-industry and PD-by-country charts
CHART_CATEGORIES = 20

SCORE_COLUMNS = ("buyer_id", "as_of", "status", "pd", "grade", "margin")
CONTRIBUTION_KEYS = ("buyer_id", "as_of", "base_value", "margin")
REASON_COLUMNS = ("buyer_id", "as_of", "rank", "code", "feature", "value", "typical", "text")
GRADES = tuple(str(i) for i in range(1, 11)) + ("D",)


class ReportError(ValueError):
    """The report cannot be built from these inputs; the message says which and why."""


# --------------------------------------------------------------------------- inputs


@dataclass
class Explained:
    """The output of ``riskmodel explain`` at each buyer's latest as-of date."""

    scores: pd.DataFrame
    contributions: pd.DataFrame
    reasons: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return [c for c in self.contributions.columns if c not in CONTRIBUTION_KEYS]


def _read(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path}: no such file (the folder written by `riskmodel explain` "
                          f"holds {what})")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ReportError(f"{path}: cannot read it: {exc}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    frame["buyer_id"] = frame["buyer_id"].astype("str")
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[s]")
    return frame


def read_scores(explain_dir: str | Path) -> pd.DataFrame:
    """``scores.parquet`` of an explain folder, one row per buyer: its latest as-of date."""
    frame = _read(Path(explain_dir) / "scores.parquet", SCORE_COLUMNS, "scores.parquet")
    frame = frame[list(SCORE_COLUMNS)].copy()
    frame["grade"] = frame["grade"].astype("str")
    frame["pd"] = frame["pd"].astype(float)
    frame = frame.sort_values(["buyer_id", "as_of"]).drop_duplicates("buyer_id", keep="last")
    return frame.reset_index(drop=True)


def read_explained(explain_dir: str | Path) -> Explained:
    """The three tables of an explain folder, each at the buyers' latest as-of dates."""
    root = Path(explain_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder (give the --out folder of `riskmodel explain`)")
    scores = read_scores(root)
    keys = scores[["buyer_id", "as_of"]]
    contrib = _read(root / "contributions.parquet", CONTRIBUTION_KEYS, "contributions.parquet")
    contrib = keys.merge(contrib, on=["buyer_id", "as_of"], how="inner")
    reasons = _read(root / "reasons.parquet", REASON_COLUMNS, "reasons.parquet")
    reasons = keys.merge(reasons[list(REASON_COLUMNS)], on=["buyer_id", "as_of"], how="inner")
    reasons = reasons.sort_values(["buyer_id", "rank"], kind="stable").reset_index(drop=True)
    return Explained(scores, contrib, reasons)


def grade_rank(grades: Iterable[str]) -> dict[str, int]:
    """Grades in master-scale order ('1' best ... '10', 'D'), unknown ones after, by name."""
    seen = set(grades)
    order = [g for g in GRADES if g in seen] + sorted(seen - set(GRADES))
    return {g: i for i, g in enumerate(order)}


def firmographics(book: Book, buyer_ids: Sequence[str]) -> pd.DataFrame:
    """``buyer_id, industry, country`` of ``buyer_ids``, read from their buckets only. Every
    id must be in the book (an explain folder of another book is refused)."""
    parts = []
    for k, ids in sorted(book.buckets_for(buyer_ids).items()):
        rows = book.read("buyers", k, ["buyer_id", "industry", "country"])
        rows = rows.filter(pc.is_in(rows["buyer_id"], value_set=pa.array(ids, pa.string())))
        parts.append(rows.to_pandas())
    found = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=["buyer_id", "industry", "country"]))
    missing = sorted(set(buyer_ids) - set(found["buyer_id"]))
    if missing:
        raise ReportError(f"{len(missing)} scored buyer(s) not in the book {book.path} (first: "
                          f"{missing[0]!r}); give the book the explanations were made from")
    return found


# --------------------------------------------------------------------------- payment history


_HISTORY_SQL = """
WITH
me AS (
    SELECT buyer_id, as_of,
           unnest(generate_series(date_trunc('month', as_of) - INTERVAL {back} MONTH,
                                  date_trunc('month', as_of), INTERVAL 1 MONTH))::DATE AS month
    FROM who
),
ends AS (SELECT buyer_id, month, least(last_day(month), as_of) AS month_end FROM me),
pit AS (  -- the invoices as known at the buyer's as-of date
    SELECT i.buyer_id, i.issue_date, i.due_date, i.amount,
           CASE WHEN i.paid_date <= w.as_of THEN i.paid_date END AS paid_date
    FROM inv i JOIN who w ON i.buyer_id = w.buyer_id
    WHERE i.issue_date <= w.as_of
),
bal AS (
    SELECT e.buyer_id, e.month,
           coalesce(sum(p.amount), 0) AS open_amount,
           coalesce(sum(p.amount) FILTER (WHERE p.due_date < e.month_end), 0) AS overdue_amount
    FROM ends e LEFT JOIN pit p
      ON p.buyer_id = e.buyer_id AND p.issue_date <= e.month_end
     AND (p.paid_date IS NULL OR p.paid_date > e.month_end)
    GROUP BY e.buyer_id, e.month
),
paid AS (
    SELECT buyer_id, date_trunc('month', paid_date)::DATE AS month,
           count(*) AS paid_invoices,
           sum(amount * (paid_date - due_date)) / nullif(sum(amount), 0) AS dbt_mean,
           max(paid_date - due_date) AS dbt_max
    FROM pit WHERE paid_date IS NOT NULL
    GROUP BY ALL
)
SELECT b.buyer_id, b.month, coalesce(p.paid_invoices, 0) AS paid_invoices,
       p.dbt_mean, p.dbt_max, b.open_amount, b.overdue_amount
FROM bal b LEFT JOIN paid p ON p.buyer_id = b.buyer_id AND p.month = b.month
ORDER BY b.buyer_id, b.month
"""


def payment_history(book: Book, as_of: Mapping[str, dt.date],
                    months: int = HISTORY_MONTHS) -> pd.DataFrame:
    """Monthly payment history of the buyers in ``as_of`` (buyer id -> as-of date), each
    point-in-time at its as-of date: a payment dated after it is unknown (the invoice is
    open), an invoice issued after it does not exist. One row per buyer and month of the
    ``months`` months up to the as-of month: ``paid_invoices`` and the amount-weighted mean
    ``dbt_mean`` and largest ``dbt_max`` days beyond terms (paid date minus due date) of the
    invoices paid that month; ``open_amount`` and ``overdue_amount`` (open and past due) at
    the month end (the as-of date in its own month). Reads only the buckets of these buyers,
    in one DuckDB query per bucket."""
    if months < 1:
        raise ReportError(f"months must be at least 1, got {months}")
    cols = ["buyer_id", "month", "paid_invoices", "dbt_mean", "dbt_max", "open_amount",
            "overdue_amount"]
    if not as_of:
        return pd.DataFrame(columns=cols)
    sql = _HISTORY_SQL.format(back=int(months) - 1)
    parts = []
    con = duckdb.connect(config={"threads": 1})
    try:
        for k, ids in sorted(book.buckets_for(as_of).items()):
            inv = book.read("invoices", k,
                            ["buyer_id", "issue_date", "due_date", "paid_date", "amount"])
            inv = inv.filter(pc.is_in(inv["buyer_id"], value_set=pa.array(ids, pa.string())))
            who = pa.table({"buyer_id": pa.array(ids, pa.string()),
                            "as_of": pa.array([as_of[i] for i in ids], pa.date32())})
            con.register("inv", inv)
            con.register("who", who)
            parts.append(con.sql(sql).df())
            con.unregister("inv")
            con.unregister("who")
    finally:
        con.close()
    out = pd.concat(parts, ignore_index=True)[cols]
    out["month"] = pd.to_datetime(out["month"]).dt.strftime("%Y-%m")
    return out


def detail_buyers(scores: pd.DataFrame, n: int, asked: Sequence[str] = ()) -> list[str]:
    """The ``n`` riskiest live buyers (highest PD, ties by id; a buyer already in default is
    not a warning) and those ``asked`` for."""
    if n < 0:
        raise ReportError(f"--detail-buyers must be at least 0, got {n}")
    unknown = sorted(set(asked) - set(scores["buyer_id"]))
    if unknown:
        raise ReportError(f"{len(unknown)} buyer id(s) asked for are not in the scores "
                          f"(first: {unknown[0]!r})")
    live = scores[scores["status"].astype("str") != "in_default"] if "status" in scores else scores
    top = live.sort_values(["pd", "buyer_id"], ascending=[False, True]).head(n)
    return sorted(set(top["buyer_id"]) | set(asked))


# --------------------------------------------------------------------------- the data


def _num(x: Any, digits: int = 6) -> float | None:
    """A JSON number (rounded), or None for a missing or non-finite value."""
    if x is None or x is pd.NA:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, digits) if math.isfinite(f) else None


def _text(x: Any) -> str | None:
    return None if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) \
        else str(x)


def _waterfalls(ex: Explained, top: int) -> dict[str, list[Any]]:
    """Per buyer ``[base, margin, [[feature index, value], ...], rest, n_rest]``: the ``top``
    contributions by size, then the sum of the others."""
    feats = ex.features
    c = ex.contributions
    out: dict[str, list[Any]] = {}
    if c.empty:
        return out
    values = c[feats].to_numpy(dtype=float, na_value=np.nan) if feats else np.zeros((len(c), 0))
    values = np.nan_to_num(values, nan=0.0)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
    for i, (bid, base, margin) in enumerate(zip(c["buyer_id"], c["base_value"], c["margin"],
                                                strict=True)):
        idx = [int(j) for j in order[i] if values[i, j] != 0.0]
        shown = [[j, _num(values[i, j])] for j in idx]
        rest_cols = np.ones(values.shape[1], dtype=bool)
        rest_cols[idx] = False
        rest = values[i, rest_cols]
        n_rest = int(np.count_nonzero(rest))
        out[bid] = [_num(base), _num(margin), shown, _num(rest.sum()), n_rest]
    return out


def _reasons(ex: Explained) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    r = ex.reasons
    for bid, rank, code, feat, value, typical, text in zip(
            r["buyer_id"], r["rank"], r["code"], r["feature"], r["value"], r["typical"],
            r["text"], strict=True):
        out.setdefault(bid, []).append([_num(rank, 0), _text(code), _text(feat),
                                        _num(value, 4) if not isinstance(value, str) else value,
                                        _num(typical, 4) if not isinstance(typical, str)
                                        else typical, _text(text)])
    return out


def _histories(hist: pd.DataFrame) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for bid, g in hist.groupby("buyer_id", sort=False):
        out[str(bid)] = {
            "m": g["month"].tolist(),
            "n": [int(v) for v in g["paid_invoices"]],
            "dbt": [_num(v, 1) for v in g["dbt_mean"]],
            "max": [_num(v, 0) for v in g["dbt_max"]],
            "open": [_num(v, 2) for v in g["open_amount"]],
            "over": [_num(v, 2) for v in g["overdue_amount"]],
        }
    return out


def _rows(scores: pd.DataFrame, firms: pd.DataFrame, previous: pd.DataFrame | None,
          ex: Explained, hist: pd.DataFrame) -> list[dict[str, Any]]:
    df = scores.merge(firms, on="buyer_id", how="left")
    ranks = grade_rank(list(df["grade"]) + ([] if previous is None else
                                            list(previous["grade"])))
    if previous is not None:
        prev = previous[["buyer_id", "pd", "grade"]].rename(
            columns={"pd": "prev_pd", "grade": "prev_grade"})
        df = df.merge(prev, on="buyer_id", how="left")
    waterfalls = _waterfalls(ex, WATERFALL_TOP)
    reasons = _reasons(ex)
    histories = _histories(hist)
    rows = []
    for r in df.to_dict("records"):
        bid = r["buyer_id"]
        row: dict[str, Any] = {
            "id": bid, "asof": r["as_of"].date().isoformat(), "st": _text(r["status"]),
            "g": r["grade"], "gr": ranks[r["grade"]], "pd": _num(r["pd"]),
            "m": _num(r["margin"]), "ind": _text(r.get("industry")),
            "cty": _text(r.get("country")),
            "rs": reasons.get(bid, []), "w": waterfalls.get(bid),
        }
        if previous is not None:
            prev_grade = _text(r.get("prev_grade"))
            row["new"] = prev_grade is None
            row["pg"] = prev_grade
            row["ppd"] = _num(r.get("prev_pd"))
            row["dg"] = None if prev_grade is None else ranks[r["grade"]] - ranks[prev_grade]
            row["dpd"] = (None if row["ppd"] is None or row["pd"] is None
                          else _num(row["pd"] - row["ppd"]))
        if bid in histories:
            row["h"] = histories[bid]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- charts (SVG)


def _e(x: Any) -> str:
    """Text for HTML or SVG: every markup character escaped (quotes too)."""
    return html.escape(str(x), quote=True)


def _pct(x: float) -> str:
    return f"{x:.2%}" if x < 0.1 else f"{x:.1%}"


def bar_chart_svg(labels: Sequence[str], values: Sequence[float], notes: Sequence[str],
                  title: str, fmt: Any = _pct, width: int = 520) -> str:
    """Horizontal bars, one per label, with a value and a note (e.g. a count) beside each;
    all text escaped."""
    row_h, left, right, top = 20, 130, 150, 26
    height = top + row_h * max(len(labels), 1) + 6
    vmax = max([v for v in values if math.isfinite(v)] + [1e-12])
    bar_w = width - left - right
    parts = [f'<svg class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(title)}">',
             f'<text x="0" y="16" class="ct">{_e(title)}</text>']
    for i, (lab, v, note) in enumerate(zip(labels, values, notes, strict=True)):
        y = top + i * row_h
        w = 0.0 if not math.isfinite(v) else max(v / vmax * bar_w, 0.0)
        short = lab if len(lab) <= 18 else lab[:17] + "\u2026"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="cl">'
                     f'<title>{_e(lab)}</title>{_e(short)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                     'class="bar"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" class="cv">{_e(fmt(v))}'
                     f'<tspan class="cn"> {_e(note)}</tspan></text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart_svg(labels: Sequence[str], values: Sequence[float], title: str,
                     width: int = 520, height: int = 200) -> str:
    """Vertical bars (e.g. buyers per grade) with the value above each; text escaped."""
    top, bottom, left = 26, 22, 8
    n = max(len(labels), 1)
    slot = (width - 2 * left) / n
    vmax = max(list(values) + [1])
    inner = height - top - bottom - 14
    parts = [f'<svg class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(title)}">',
             f'<text x="0" y="16" class="ct">{_e(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        h = v / vmax * inner
        x = left + i * slot
        y = height - bottom - h
        cls = "bar bad" if lab == "D" else "bar"
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{h:.1f}" class="{cls}"/>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                     f'class="cv">{_e(f"{v:,}")}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                     f'class="cl">{_e(lab)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _by_category(df: pd.DataFrame, column: str, title: str) -> str:
    g = (df.assign(_c=df[column].fillna("(none)").astype("str"))
         .groupby("_c", sort=False)["pd"].agg(["mean", "size"]).reset_index())
    g = g.sort_values(["size", "_c"], ascending=[False, True])
    head, tail = g.head(CHART_CATEGORIES), g.iloc[CHART_CATEGORIES:]
    head = head.sort_values(["mean", "_c"], ascending=[False, True])
    labels, values, notes = list(head["_c"]), list(head["mean"]), [
        f"({n:,} buyers)" for n in head["size"]]
    if len(tail):
        sub = df[df[column].fillna("(none)").astype("str").isin(set(tail["_c"]))]
        labels.append(f"{len(tail)} others")
        values.append(float(sub["pd"].mean()))
        notes.append(f"({len(sub):,} buyers)")
    return bar_chart_svg(labels, values, notes, title)


# --------------------------------------------------------------------------- decision outputs

#: reductions, declines and referrals listed in the credit-limits section
LIMIT_ROWS = 20
#: buyers of the watch list listed, largest exposure at risk first
WATCH_ROWS = 50
#: exposures listed in the concentration table
CONCENTRATION_ROWS = 10
DECISIONS = ("approve", "reduce", "decline", "refer")
LIMIT_TEXT = ("buyer_id", "supplier_id", "as_of", "grade", "decision", "decision_reasons",
              "sentence", "model_name", "model_version")
LIMIT_NUMBERS = ("pd", "current_limit", "requested_limit", "recommended_limit")
WATCH_TEXT = ("buyer_id", "triggers", "previous_status", "current_status", "previous_grade",
              "current_grade")
WATCH_NUMBERS = ("previous_pd", "current_pd", "exposure", "exposure_at_risk")
#: the files of a ``riskmodel limits --views`` folder the report reads
VIEW_FILES = ("el_by_grade.csv", "el_by_industry.csv", "el_by_country.csv",
              "concentration.csv", "portfolio.json", "bank_coverage.csv")
TRIGGER_WORDS = {"downgrade": "downgrade", "pd_doubled": "PD doubled",
                 "newly_overdue": "newly overdue", "delay_model": "payment-delay warning"}
BASIS_WORDS = {"open_receivables": "open receivables", "current_limit": "credit limits"}

#: a table cell: its text and its class ("num" right-aligns a number; "row" makes it the
#: row's header)
Cell = tuple[str, str]


def _t(x: Any) -> Cell:
    return ("" if _text(x) is None else str(x), "")


def _n(text: str) -> Cell:
    return (text, "num")


def _amount(x: Any) -> str:
    """A whole amount with thousands separators (never ``-0``); empty when missing."""
    v = _num(x, 2)
    return "" if v is None else f"{round(v):,}"


def _sum_amount(x: Any) -> str:
    """A sum: 0 where there was nothing to add up."""
    return _amount(x) or "0"


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def _share(x: Any) -> str:
    v = _num(x)
    return "" if v is None else f"{v:.1%}"


def _pd_text(x: Any) -> str:
    v = _num(x)
    return "" if v is None else _pct(v)


def _decimal(x: Any, digits: int = 8) -> str:
    """A number with up to ``digits`` decimals, trailing zeros dropped (``0.1234``)."""
    v = _num(x, digits)
    if v is None:
        return "-"
    return f"{v:.{digits}f}".rstrip("0").rstrip(".")


def _count(x: Any) -> str:
    v = _num(x, 0)
    return "0" if v is None else f"{int(v):,}"


def _html_table(head: Sequence[Cell], rows: Sequence[Sequence[Cell]], label: str, *,
                cls: str = "dtab", total: bool = False) -> str:
    """A table rendered here, every text escaped; ``total``: the last row is a total."""
    def attr(c: str) -> str:
        return f' class="{_e(c)}"' if c else ""

    th = "".join(f'<th scope="col"{attr(c)}>{_e(t)}</th>' for t, c in head)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<th scope="row">{_e(t)}</th>' if c == "row"
                        else f"<td{attr(c)}>{_e(t)}</td>" for t, c in row)
        last = ' class="total"' if total and i == len(rows) - 1 else ""
        body.append(f"<tr{last}>{cells}</tr>")
    return (f'<table class="{_e(cls)}" aria-label="{_e(label)}"><thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _section(ident: str, title: str, body: str) -> str:
    return (f'<section class="box decisions" id="{_e(ident)}"><h2>{_e(title)}</h2>\n'
            f"{body}\n</section>\n")


def _p(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _duck_source(path: Path, option: str, what: str) -> str:
    """The DuckDB table function that reads ``path``: a CSV (every column as text, typed
    below) or a Parquet file."""
    if not path.is_file():
        raise ReportError(f"{option} {path}: no such file ({what})")
    literal = "'" + str(path).replace("'", "''") + "'"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return f"read_csv({literal}, header = true, all_varchar = true)"
    if suffix == ".parquet":
        return f"read_parquet({literal})"
    raise ReportError(f"{option} {path}: name a .csv or .parquet file ({what})")


def _typed(con: duckdb.DuckDBPyConnection, source: str, path: Path, option: str,
           text: Sequence[str], numbers: Sequence[str], optional: Sequence[str] = ()) -> str:
    """A SELECT over ``source`` with ``text`` columns as VARCHAR and ``numbers`` as DOUBLE
    (a value that is no number is NULL); the ``optional`` text columns are NULL when the
    file lacks them. Missing columns are refused."""
    try:
        columns = [str(r[0]) for r in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    except duckdb.Error as exc:
        raise ReportError(f"{option} {path}: cannot read it: {exc}") from exc
    missing = [c for c in (*text, *numbers) if c not in columns]
    if missing:
        raise ReportError(f"{option} {path}: missing column(s) {', '.join(missing)}")

    def q(c: str) -> str:
        return '"' + c.replace('"', '""') + '"'

    parts = [f"CAST({q(c)} AS VARCHAR) AS {q(c)}" for c in text]
    parts += [f"TRY_CAST({q(c)} AS DOUBLE) AS {q(c)}" for c in numbers]
    parts += [f"CAST({q(c)} AS VARCHAR) AS {q(c)}" if c in columns
              else f"CAST(NULL AS VARCHAR) AS {q(c)}" for c in optional]
    return f"SELECT {', '.join(parts)} FROM {source}"


def _sql(con: duckdb.DuckDBPyConnection, sql: str, path: Path, option: str) -> pd.DataFrame:
    try:
        return con.sql(sql).df()
    except duckdb.Error as exc:
        raise ReportError(f"{option} {path}: cannot read it: {exc}") from exc


@dataclass
class LimitsView:
    """What the credit-limits section shows, read from the output of ``riskmodel limits``."""

    path: Path
    #: per decision (and a last ``total`` row): lines, buyers and the sums of the limits
    by_decision: pd.DataFrame
    #: the largest reductions, declines and referrals by the amount asked
    largest: pd.DataFrame
    as_of: list[str]
    models: list[str]


def read_limits(path: str | Path) -> LimitsView:
    """The output of ``riskmodel limits --out`` (``.csv`` or ``.parquet``), summed by
    decision in one DuckDB pass, and its :data:`LIMIT_ROWS` largest reductions, declines
    and referrals by the amount asked (the request, else the current limit)."""
    path = Path(path)
    source = _duck_source(path, "--limits", "the output of `riskmodel limits --out`")
    con = duckdb.connect(config={"threads": 2})
    try:
        typed = _typed(con, source, path, "--limits", LIMIT_TEXT, LIMIT_NUMBERS)
        by = _sql(con, f"""
            WITH l AS ({typed})
            SELECT coalesce(decision, '') AS decision, grouping(decision) AS is_total,
                   count(*) AS lines, count(DISTINCT buyer_id) AS buyers,
                   sum(current_limit) AS current_limit,
                   count(requested_limit) AS requests, sum(requested_limit) AS requested_limit,
                   count(recommended_limit) AS recommended,
                   sum(recommended_limit) AS recommended_limit
            FROM l GROUP BY GROUPING SETS ((decision), ())""", path, "--limits")
        largest = _sql(con, f"""
            WITH l AS ({typed})
            SELECT *, coalesce(requested_limit, current_limit) AS asked FROM l
            WHERE decision IN ('reduce', 'decline', 'refer')
            ORDER BY asked DESC NULLS LAST, buyer_id, supplier_id NULLS FIRST
            LIMIT {LIMIT_ROWS}""", path, "--limits")
        runs = _sql(con, f"""
            WITH l AS ({typed})
            SELECT DISTINCT coalesce(as_of, '') AS as_of, coalesce(model_name, '') AS name,
                   coalesce(model_version, '') AS version
            FROM l ORDER BY ALL""", path, "--limits")
    finally:
        con.close()
    order = {d: i for i, d in enumerate(DECISIONS)}
    by = by.assign(_o=[(int(t), order.get(d, len(order)), d)
                       for t, d in zip(by["is_total"], by["decision"], strict=True)])
    by = by.sort_values("_o").drop(columns="_o").reset_index(drop=True)
    models = sorted({f"{n} v{v}" if v else (n or "an unregistered model")
                     for n, v in zip(runs["name"], runs["version"], strict=True)})
    return LimitsView(path, by, largest, sorted(set(runs["as_of"]) - {""}), models)


def limits_html(view: LimitsView) -> str:
    """The credit-limits section: lines and buyers by decision, and the largest reductions,
    declines and referrals with their sentences."""
    by = view.by_decision
    total = by[by["is_total"] == 1]
    lines = int(total["lines"].iloc[0]) if len(total) else 0
    buyers = int(total["buyers"].iloc[0]) if len(total) else 0
    head = [("decision", ""), ("lines", "num"), ("buyers", "num"), ("current limits", "num"),
            ("requests", "num"), ("requested limits", "num"), ("recommended limits", "num")]
    rows = [[(str(r["decision"]) if not r["is_total"] else "total", "row"),
             _n(_count(r["lines"])), _n(_count(r["buyers"])),
             _n(_sum_amount(r["current_limit"])), _n(_count(r["requests"])),
             _n(_sum_amount(r["requested_limit"])), _n(_sum_amount(r["recommended_limit"]))]
            for r in by.to_dict("records")]
    as_of = ", ".join(view.as_of) or "-"
    intro = (f"{lines:,} credit lines of {buyers:,} buyers as of {as_of}, from "
             f"{view.path} (scores of {', '.join(view.models) or '-'}).")
    note = ("Requested limits: the sum over the lines with a request (the requests column "
            "counts them). Recommended limits: the limits the policy gives; a line referred "
            "without a PD has none. A buyer whose lines got different decisions counts under "
            "each of them, once in the total.")
    big = view.largest
    n = len(big)
    list_head = [("buyer", ""), ("supplier", ""), ("decision", ""), ("grade", ""),
                 ("PD", "num"), ("current", "num"), ("requested", "num"),
                 ("recommended", "num"), ("codes", ""), ("sentence", "")]
    list_rows = [[_t(r["buyer_id"]), _t(r["supplier_id"]), _t(r["decision"]), _t(r["grade"]),
                  _n(_pd_text(r["pd"])), _n(_amount(r["current_limit"])),
                  _n(_amount(r["requested_limit"])), _n(_amount(r["recommended_limit"])),
                  _t(r["decision_reasons"]), (_t(r["sentence"])[0], "sentence")]
                 for r in big.to_dict("records")]
    body = [_p(intro),
            _html_table(head, rows, "credit lines by decision", cls="dtab narrow",
                        total=True),
            _p(note),
            f"<h3>The {n:,} largest reductions, declines and referrals</h3>",
            _p("By the amount asked: the requested limit, or the current limit where the line "
               "has no request. The sentence is the one for the policyholder."),
            _html_table(list_head, list_rows, "largest reductions, declines and referrals")
            if n else _p("No line is reduced, declined or referred.")]
    return _section("credit-limits", "Credit limits", "\n".join(body))


@dataclass
class WatchView:
    """What the watch-list section shows, read from ``riskmodel watch --out`` and the files
    beside it."""

    path: Path
    rows: int
    top: pd.DataFrame
    migration: pd.DataFrame
    psi: pd.DataFrame
    summary: dict[str, Any]


def _csv(path: Path, option: str, **kwargs: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{option} {path}: cannot read it: {exc}") from exc


def _json(path: Path, option: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{option} {path}: cannot read it: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{option} {path}: not a JSON object")
    return data


def read_watch(path: str | Path) -> WatchView:
    """The watch list of ``riskmodel watch --out`` (``.parquet`` or ``.csv``), its
    :data:`WATCH_ROWS` buyers of largest exposure at risk, and the migration matrix, PSI
    table and summary written beside it."""
    from riskmodel.decisions.watch import output_paths

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ReportError(f"--watch {path}: name the .parquet or .csv file written by "
                          "`riskmodel watch --out`")
    files = output_paths(path)
    source = _duck_source(path, "--watch", "the watch list written by `riskmodel watch --out`")
    for key in ("migration", "psi", "summary"):
        if not files[key].is_file():
            raise ReportError(f"--watch: {files[key]}: no such file (`riskmodel watch --out "
                              f"{path}` writes it beside the watch list)")
    con = duckdb.connect(config={"threads": 2})
    try:
        typed = _typed(con, source, path, "--watch", WATCH_TEXT, WATCH_NUMBERS,
                       optional=("reason_1_text",))
        counted = _sql(con, f"SELECT count(*) AS n FROM ({typed})", path, "--watch")
        top = _sql(con, f"""
            SELECT * FROM ({typed})
            ORDER BY exposure_at_risk DESC NULLS LAST, buyer_id
            LIMIT {WATCH_ROWS}""", path, "--watch")
    finally:
        con.close()
    migration = _csv(files["migration"], "--watch", dtype=str, keep_default_na=False)
    if "previous_grade" not in migration.columns:
        raise ReportError(f"--watch {files['migration']}: missing column previous_grade")
    psi = _csv(files["psi"], "--watch", dtype={"kind": str, "name": str, "flag": str},
               keep_default_na=False, na_values={"psi": [""]})
    missing = [c for c in ("kind", "name", "psi", "flag") if c not in psi.columns]
    if missing:
        raise ReportError(f"--watch {files['psi']}: missing column(s) {', '.join(missing)}")
    return WatchView(path, int(counted["n"].iloc[0]), top, migration, psi,
                     _json(files["summary"], "--watch"))


def _grade_move(status: Any, grade: Any) -> str:
    if _text(grade) is not None and str(grade) != "":
        return str(grade)
    return "new" if _text(status) is None or str(status) == "" else "none"


def _triggers(text: Any) -> str:
    names = [t.strip() for t in str(_text(text) or "").split(",") if t.strip()]
    return ", ".join(TRIGGER_WORDS.get(t, t) for t in names)


def watch_html(view: WatchView) -> str:
    """The watch-list section: the buyers of largest exposure at risk, the grade migration
    matrix, the score PSI and the features flagged."""
    s = view.summary
    prev, cur = s.get("previous") or {}, s.get("current") or {}
    wl = s.get("watch_list") or {}
    fired = ", ".join(f"{TRIGGER_WORDS.get(k, k)} {_count(v)}"
                      for k, v in (wl.get("by_trigger") or {}).items())
    basis = BASIS_WORDS.get(str(s.get("exposure_basis")), str(s.get("exposure_basis", "-")))
    intro = (f"{view.rows:,} buyers on the watch list between the scoring runs of "
             f"{prev.get('as_of', '-')} ({prev.get('model', '-')}) and {cur.get('as_of', '-')} "
             f"({cur.get('model', '-')}), from {view.path}. Triggers fired: {fired or '-'}. "
             f"Exposure at risk (PD x {basis}): {_sum_amount(wl.get('exposure_at_risk'))}.")
    head = [("buyer", ""), ("triggers", ""), ("grade", ""), ("PD", "num"),
            ("exposure", "num"), ("exposure at risk", "num"), ("first reason", "")]
    rows = [[_t(r["buyer_id"]), _t(_triggers(r["triggers"])),
             _t(f"{_grade_move(r['previous_status'], r['previous_grade'])} \u2192 "
                f"{_grade_move(r['current_status'], r['current_grade'])}"),
             _n(f"{_pd_text(r['previous_pd']) or '-'} \u2192 {_pd_text(r['current_pd']) or '-'}"),
             _n(_amount(r["exposure"])), _n(_amount(r["exposure_at_risk"])),
             _t(r["reason_1_text"])]
            for r in view.top.to_dict("records")]
    n = len(view.top)
    body = [_p(intro), f"<h3>The {n:,} buyers of largest exposure at risk</h3>",
            _html_table(head, rows, "watch list by exposure at risk") if n
            else _p("No buyer is on the watch list.")]
    for note in s.get("notes") or []:
        body.append(_p(f"Note: {note}"))
    body += ["<h3>Grade migration</h3>",
             _p("Buyers by grade in the previous run (rows) and the current one (columns); "
                "none: no grade in that run (no recent history, or not in the run)."),
             _migration_html(view.migration)]
    body += ["<h3>Stability</h3>", _psi_html(view.psi, s)]
    return _section("watch-list", "Watch list", "\n".join(body))


def _migration_html(matrix: pd.DataFrame) -> str:
    labels = [c for c in matrix.columns if c != "previous_grade"]
    rank = {g: i for i, g in enumerate(GRADES)}
    counts = matrix[labels].apply(pd.to_numeric, errors="coerce").fillna(0).astype(np.int64)
    head: list[Cell] = [("previous \\ current", "")]
    head += [(c, "num") for c in labels] + [("total", "num")]
    rows: list[list[Cell]] = []
    for i, prev in enumerate(matrix["previous_grade"]):
        row: list[Cell] = [(str(prev), "row")]
        for c in labels:
            v = int(counts[c].iloc[i])
            cls = "num"
            if v == 0:
                cls += " zero"
            elif c == prev:
                cls += " diag"
            elif prev in rank and c in rank:
                cls += " worse" if rank[c] > rank[prev] else " better"
            row.append((f"{v:,}", cls))
        row.append(_n(f"{int(counts.iloc[i].sum()):,}"))
        rows.append(row)
    rows.append([("total", "row"), *[_n(f"{int(counts[c].sum()):,}") for c in labels],
                 _n(f"{int(counts.to_numpy().sum()):,}")])
    return _html_table(head, rows, "grade migration matrix", cls="dtab narrow mig", total=True)


def _psi_html(psi: pd.DataFrame, summary: dict[str, Any]) -> str:
    score = psi[psi["kind"] == "score"]
    parts = []
    if len(score):
        r = score.iloc[0]
        parts.append(_p(f"Score PSI {_decimal(r['psi'], 4)} ({r['flag']}): the PDs of the "
                        "buyers scored in each run, in deciles of the previous run's PDs. "
                        "Above 0.10: watch; above 0.25: act."))
    feats = psi[psi["kind"] == "feature"]
    flagged = feats[feats["flag"].isin(["watch", "act"])]
    if not len(feats):
        parts.append(_p("No feature PSI (the runs were made by different models, or "
                        "scored without a domain profile)."))
    elif not len(flagged):
        parts.append(_p(f"No feature flagged: all {len(feats):,} are stable."))
    else:
        head = [("feature", ""), ("PSI", "num"), ("flag", "")]
        rows = [[_t(r["name"]), _n(_decimal(r["psi"], 4)), (str(r["flag"]), f"flag-{r['flag']}")]
                for r in flagged.to_dict("records")]
        parts.append(_p(f"{len(flagged):,} of {len(feats):,} features flagged (act "
                        f"{int((flagged['flag'] == 'act').sum()):,}, watch "
                        f"{int((flagged['flag'] == 'watch').sum()):,}). The cycle_* features "
                        "describe the credit cycle at the as-of date and move between any two "
                        "dates by design."))
        parts.append(_html_table(head, rows, "features flagged", cls="dtab narrow"))
    return "\n".join(parts)


@dataclass
class PortfolioView:
    """What the portfolio section shows, read from a ``riskmodel limits --views`` folder."""

    views: Path
    groups: dict[str, pd.DataFrame]
    concentration: pd.DataFrame
    portfolio: dict[str, Any]
    bank: Path


EL_COLUMNS = ("lines", "buyers", "limit", "expected_loss", "expected_loss_open", "el_share",
              "el_rate")


def read_portfolio(views: str | Path, limits_as_of: Sequence[str] | None = None
                   ) -> PortfolioView:
    """The expected-loss views, ``concentration.csv`` and ``portfolio.json`` of a
    ``riskmodel limits --views`` folder; ``limits_as_of`` (the as-of dates of the limits
    file shown beside) must be the views' own date."""
    root = Path(views)
    if not root.is_dir():
        raise ReportError(f"--views {root}: no such folder (give the --views folder of "
                          "`riskmodel limits`)")
    for name in VIEW_FILES:
        if not (root / name).is_file():
            raise ReportError(f"--views: {root / name}: no such file (`riskmodel limits "
                              "--views` writes it)")
    groups = {}
    for key in ("grade", "industry", "country"):
        path = root / f"el_by_{key}.csv"
        frame = _csv(path, "--views", dtype={key: str}, keep_default_na=False,
                     na_values={c: [""] for c in EL_COLUMNS})
        missing = [c for c in (key, *EL_COLUMNS) if c not in frame.columns]
        if missing:
            raise ReportError(f"--views {path}: missing column(s) {', '.join(missing)}")
        groups[key] = frame
    path = root / "concentration.csv"
    text_cols = ("buyer_id", "industry", "country", "grade")
    conc = _csv(path, "--views", dtype=dict.fromkeys(text_cols, str), keep_default_na=False,
                na_values={c: [""] for c in ("rank", "limit", "expected_loss", "share",
                                             "cumulative_share")})
    missing = [c for c in (*text_cols, "limit", "share", "cumulative_share")
               if c not in conc.columns]
    if missing:
        raise ReportError(f"--views {path}: missing column(s) {', '.join(missing)}")
    portfolio = _json(root / "portfolio.json", "--views")
    as_of = portfolio.get("as_of")
    if limits_as_of and as_of is not None and [str(as_of)] != list(limits_as_of):
        raise ReportError(f"--views {root}: portfolio.json is as of {as_of}, the --limits "
                          f"file of {', '.join(limits_as_of)}: give the views of the same "
                          "`riskmodel limits` run")
    return PortfolioView(root, groups, conc.head(CONCENTRATION_ROWS), portfolio,
                         root / "bank_coverage.csv")


def _el_rows(frame: pd.DataFrame, key: str, top: int | None) -> pd.DataFrame:
    """The groups by expected loss (largest first, ``top`` of them and the rest summed), or
    in file order (grades) when ``top`` is None."""
    frame = frame.copy()
    frame[key] = frame[key].astype(str)
    if top is None or len(frame) <= top:
        if top is not None:
            frame = frame.sort_values(["expected_loss", key], ascending=[False, True],
                                      kind="stable")
        return frame.reset_index(drop=True)
    frame = frame.sort_values(["expected_loss", key], ascending=[False, True], kind="stable")
    head, tail = frame.head(top), frame.iloc[top:]
    sums = {c: tail[c].sum() for c in ("lines", "buyers", "limit", "expected_loss",
                                       "expected_loss_open", "el_share")}
    limit = float(sums["limit"])
    rest = {key: f"{len(tail):,} others", **sums,
            "el_rate": float(sums["expected_loss"]) / limit if limit > 0 else np.nan}
    return pd.concat([head, pd.DataFrame([rest])], ignore_index=True)


def portfolio_html(view: PortfolioView) -> str:
    """The portfolio section: expected loss by grade, industry and country (charts and
    tables), concentration, the policy's economics and where the bank export is."""
    pf = view.portfolio
    eco = pf.get("economics") or {}
    charts, tables = [], []
    for key, title in (("grade", "grade"), ("industry", "industry"), ("country", "country")):
        rows = _el_rows(view.groups[key], key, None if key == "grade" else CHART_CATEGORIES)
        values = [float(v) if _num(v) is not None else 0.0 for v in rows["expected_loss"]]
        charts.append(bar_chart_svg(
            list(rows[key]), values, [f"({_share(s) or '-'} of EL)" for s in rows["el_share"]],
            f"Expected loss by {title}", fmt=_amount))
        head = [(title, ""), ("lines", "num"), ("buyers", "num"), ("limits in force", "num"),
                ("expected loss", "num"), ("share of EL", "num"), ("EL / limit", "num"),
                ("EL on open receivables", "num")]
        cells = [[(str(r[key]), "row"), _n(_count(r["lines"])), _n(_count(r["buyers"])),
                 _n(_sum_amount(r["limit"])), _n(_sum_amount(r["expected_loss"])),
                 _n(_share(r["el_share"])), _n(_pd_text(r["el_rate"])),
                 _n(_sum_amount(r["expected_loss_open"]))]
                for r in rows.to_dict("records")]
        tables.append(f'<div><h3>Expected loss by {_e(title)}</h3>'
                      f'{_html_table(head, cells, f"expected loss by {title}", cls="dtab narrow")}'
                      "</div>")
    conc = view.concentration
    n = len(conc)
    held = _share(conc["cumulative_share"].iloc[-1]) if n else "-"
    conc_head = [("rank", "num"), ("buyer", ""), ("industry", ""), ("country", ""),
                 ("grade", ""), ("limits in force", "num"), ("expected loss", "num"),
                 ("share", "num"), ("cumulative share", "num")]
    conc_rows = [[_n(_count(r.get("rank", i + 1))), _t(r["buyer_id"]), _t(r["industry"]),
                  _t(r["country"]), _t(r["grade"]), _n(_amount(r["limit"])),
                  _n(_amount(r.get("expected_loss"))), _n(_share(r["share"])),
                  _n(_share(r["cumulative_share"]))]
                 for i, r in enumerate(conc.to_dict("records"))]
    hhi = pf.get("herfindahl")
    effective = pf.get("effective_buyers")
    cards = [("insured exposure (limits in force)", _sum_amount(pf.get("insured_exposure"))),
             ("expected loss (PD x LGD x limit)", _sum_amount(pf.get("expected_loss"))),
             (f"premium ({_share(eco.get('premium_rate')) or '-'} of the insured exposure)",
              _sum_amount(eco.get("premium"))),
             (f"expected loss covered ({_share(eco.get('insured_share')) or '-'} insured)",
              _sum_amount(eco.get("expected_loss_covered"))),
             ("loss ratio (expected loss covered / premium)",
              _share(eco.get("loss_ratio")) or "-")]
    card_html = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
                        for k, v in cards)
    size = view.bank.stat().st_size
    body = [
        _p(f"From {view.views}, as of {pf.get('as_of', '-')}: {_count(pf.get('lines'))} credit "
           f"lines of {_count(pf.get('buyers'))} buyers. The exposure on a line is the limit in "
           "force after the review (the recommended limit; the current one while the line is "
           "referred); its expected loss is PD x LGD x that limit."),
        f'<div class="cards">{card_html}</div>',
        _p(f"Premium: premium rate x insured exposure. Expected loss covered: expected loss x "
           f"the insured share. LGD {_share(eco.get('lgd')) or '-'}. Expected loss on the open "
           f"receivables the limits cover: {_sum_amount(pf.get('expected_loss_open'))}; limits "
           f"on lines without a PD (no expected loss): "
           f"{_sum_amount(pf.get('limit_without_pd'))}."),
        f'<div class="charts">{"".join(charts)}</div>',
        f'<div class="tables">{"".join(tables)}</div>',
        "<h3>Concentration</h3>",
        _p(f"The {n:,} largest exposures (buyers' limits in force together) hold {held} of the "
           f"limits in force. Herfindahl index {_decimal(hhi)} (the sum of the squared shares "
           f"of the buyers; effective number of buyers {_decimal(effective, 2)})."),
        _html_table(conc_head, conc_rows, "largest exposures", cls="dtab narrow") if n
        else _p("No exposure."),
        "<h3>Bank coverage export</h3>",
        _p(f"The bank coverage export, what the policy insures line by line for the bank that "
           f"finances the policyholders' receivables, is {view.bank} ({_size(size)})."),
    ]
    return _section("portfolio-risk", "Portfolio: expected loss, concentration and economics",
                    "\n".join(body))


def decision_sections(*, limits: str | Path | None = None, views: str | Path | None = None,
                      watch: str | Path | None = None) -> tuple[str, list[str]]:
    """The HTML of the sections of the decision outputs given (credit limits, watch list,
    portfolio) and their names; every file is read and checked first."""
    lim = read_limits(limits) if limits is not None else None
    wat = read_watch(watch) if watch is not None else None
    pfo = read_portfolio(views, lim.as_of if lim is not None else None) \
        if views is not None else None
    html_parts, names = [], []
    if lim is not None:
        html_parts.append(limits_html(lim))
        names.append("credit limits")
    if wat is not None:
        html_parts.append(watch_html(wat))
        names.append("watch list")
    if pfo is not None:
        html_parts.append(portfolio_html(pfo))
        names.append("portfolio")
    return "".join(html_parts), names


# --------------------------------------------------------------------------- the page


def safe_json(data: Any) -> str:
    """JSON that can stand inside a ``<script>`` element: ``<``, ``>`` and ``&`` are written
    as ``\\u003c``, ``\\u003e``, ``\\u0026`` and every non-ASCII character (U+2028 and U+2029
    included) as ``\\uXXXX``, so no string in the data can end the element or start markup.
    NaN and infinity are refused (they are not JSON)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    path: Path
    buyers: int
    histories: int
    as_of: list[dt.date]
    previous: bool
    size: int
    #: the MLflow run the report was logged to (None: not logged)
    logged_run: str | None = None
    #: the sections of decision outputs in the report ("credit limits", "watch list",
    #: "portfolio")
    sections: tuple[str, ...] = ()


def build_report(
    explain_dir: str | Path,
    book: Book,
    out: str | Path,
    *,
    previous: str | Path | None = None,
    detail_buyers_n: int = DETAIL_BUYERS,
    buyers: Sequence[str] = (),
    history_months: int = HISTORY_MONTHS,
    title: str = "Buyer risk report",
    limits: str | Path | None = None,
    views: str | Path | None = None,
    watch: str | Path | None = None,
) -> Report:
    """Write the analyst report of ``explain_dir`` (the folder of ``riskmodel explain``) to
    ``out``: one HTML file with everything inline. ``previous`` (an earlier explain folder)
    adds each buyer's change of grade and PD and marks new buyers. Payment histories are
    computed from ``book`` for the ``detail_buyers_n`` riskiest buyers and for ``buyers``.
    ``limits`` (the output of ``riskmodel limits``), ``views`` (its ``--views`` folder) and
    ``watch`` (the watch list of ``riskmodel watch``) add the sections of
    :func:`decision_sections`."""
    ex = read_explained(explain_dir)
    scores = ex.scores
    if scores.empty:
        raise ReportError(f"{explain_dir}: scores.parquet holds no buyers")
    late = scores[scores["as_of"].dt.date > book.observed_until]
    if len(late):
        raise ReportError(f"as-of date {late['as_of'].iloc[0].date()} of the scores is after "
                          f"the book's observed_until {book.observed_until}: give the book "
                          "the explanations were made from")
    prev = read_scores(previous) if previous is not None else None
    extra, sections = decision_sections(limits=limits, views=views, watch=watch)
    firms = firmographics(book, list(scores["buyer_id"]))
    chosen = detail_buyers(scores, detail_buyers_n, buyers)
    when = dict(zip(scores["buyer_id"], scores["as_of"].dt.date, strict=True))
    hist = payment_history(book, {b: when[b] for b in chosen}, history_months)
    rows = _rows(scores, firms, prev, ex, hist)

    joined = scores.merge(firms, on="buyer_id", how="left")
    ranks = grade_rank([*GRADES, *joined["grade"]])  # every grade of the scale, even empty
    counts = joined["grade"].value_counts()
    grade_svg = column_chart_svg(list(ranks), [int(counts.get(g, 0)) for g in ranks],
                                 "Buyers by grade")
    live = joined[joined["grade"] != "D"]  # buyers in default have PD 1 by definition
    industry_svg = _by_category(live, "industry", "Mean PD by industry (live buyers)")
    country_svg = _by_category(live, "country", "Mean PD by country (live buyers)")
    dates = sorted(set(scores["as_of"].dt.date))
    meta: dict[str, Any] = {
        "asof": [d.isoformat() for d in dates],
        "histories": len(chosen), "detail_n": int(detail_buyers_n), "asked": len(buyers),
        "months": int(history_months), "previous": prev is not None,
        "features": ex.features,
    }
    cards = [("buyers scored", f"{len(scores):,}"),
             ("as of", ", ".join(d.isoformat() for d in dates)),
             ("mean PD of live buyers", _pct(float(live["pd"].mean())) if len(live) else "-"),
             ("expected new defaults (sum of live PDs)", f"{float(live['pd'].sum()):,.1f}"),
             ("in default (grade D)", f"{int((scores['grade'] == 'D').sum()):,}")]
    if prev is not None:
        changed = [r for r in rows if not r["new"]]
        cards += [("new since previous", f"{sum(r['new'] for r in rows):,}"),
                  ("grade worse / better",
                   f"{sum(r['dg'] > 0 for r in changed):,} / "
                   f"{sum(r['dg'] < 0 for r in changed):,}"),
                  ("no longer scored",
                   f"{len(set(prev['buyer_id']) - set(scores['buyer_id'])):,}")]
    asked = f" and the {len(buyers):,} buyers asked for" if buyers else ""
    history_note = (f"Payment histories ({history_months} months up to each buyer's as-of "
                    f"date) are included for the {detail_buyers_n:,} riskiest live buyers by PD"
                    f"{asked}: {len(chosen):,} buyers. The other buyers show their "
                    "contributions and reasons only.")
    page = _page(title=title, cards=cards, charts=[grade_svg, industry_svg, country_svg],
                 note=history_note, data={"meta": meta, "buyers": rows}, extra=extra,
                 css=_CSS + _DECISIONS_CSS if extra else _CSS)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return Report(path, len(rows), len(chosen), dates, prev is not None,
                  path.stat().st_size, sections=tuple(sections))


def log_report(path: str | Path, run_id: str, *,
               project_dir: str | Path | None = None) -> None:
    """Log the report file as artifact ``report/<name>`` of MLflow run ``run_id`` (in the
    store of ``project_dir``; see :class:`riskmodel.registry.Store`)."""
    check_run(run_id, project_dir=project_dir).log_artifact(run_id, str(path),
                                                           artifact_path="report")


def check_run(run_id: str, *, project_dir: str | Path | None = None) -> Any:
    """The MLflow client of the store of ``project_dir``, once run ``run_id`` is found there
    (:class:`ReportError` when it is not)."""
    from riskmodel.registry import Store

    store = Store.at(project_dir)
    client = store.client()
    try:
        client.get_run(run_id)
    except Exception as exc:  # MLflow's own error type lives in mlflow (not imported here)
        raise ReportError(f"MLflow run {run_id!r}: not found in {store.tracking_uri} "
                          f"({type(exc).__name__})") from exc
    return client


_CSS = """
:root{--ink:#1d2430;--mute:#5b6676;--line:#d9dee6;--bg:#f6f7f9;--bar:#4a78b5;--bad:#c0392b;
--good:#2e8b57;--hi:#fff7d6}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1f3350;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;color:#c9d4e3;font-size:13px}
main{padding:16px 24px;max-width:1500px}
section.box{background:#fff;border:1px solid var(--line);border-radius:6px;padding:14px 16px;
margin-bottom:16px}
h2{font-size:16px;margin:0 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:18px}
.card span{color:var(--mute);font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:18px}
.chart .ct{font-weight:600;font-size:13px;fill:var(--ink)}
.chart .cl,.chart .cv{font-size:11px;fill:var(--ink)}
.chart .cn{fill:var(--mute)}
.chart .bar{fill:var(--bar)}
.chart .bar.bad{fill:var(--bad)}
.note{color:var(--mute);font-size:12px;margin:6px 0}
.tools{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
#search{width:320px;padding:6px 8px;border:1px solid var(--line);border-radius:4px;font:inherit}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f5;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
#buyers tbody tr{cursor:pointer}
#buyers tbody tr:hover,#buyers tbody tr:focus{background:var(--hi);outline:none}
.up{color:var(--bad)}.down{color:var(--good)}
.tag{display:inline-block;font-size:11px;padding:0 5px;border-radius:3px;background:#e3ecf7;
color:#1f3350}
.g{display:inline-block;min-width:26px;text-align:center;border-radius:3px;padding:0 4px;
background:#e8edf3;font-weight:600}
.g.D{background:var(--bad);color:#fff}
.reasons-cell{color:var(--mute);font-size:12px}
.pager{display:flex;gap:8px;align-items:center;margin-top:8px}
button{font:inherit;padding:4px 10px;border:1px solid var(--line);border-radius:4px;
background:#fff;cursor:pointer}
button:disabled{opacity:.45;cursor:default}
#detail{position:fixed;top:0;right:0;bottom:0;width:min(720px,100%);background:#fff;
border-left:1px solid var(--line);box-shadow:-4px 0 16px rgba(0,0,0,.12);overflow:auto;
padding:16px 20px}
#detail[hidden]{display:none}
#detail h2{font-size:18px;word-break:break-all}
#detail dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 12px}
#detail dt{color:var(--mute)}
#detail dd{margin:0}
#detail h3{font-size:14px;margin:14px 0 6px}
#detail ol{margin:0;padding-left:20px}
#detail ol li{margin-bottom:4px}
#detail .code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;color:var(--mute)}
.wf text{font-size:11px;fill:var(--ink)}
.wf .pos{fill:var(--bad)}.wf .neg{fill:var(--good)}.wf .tot{fill:#1f3350}
.wf line{stroke:#9aa5b4;stroke-width:1}
.hist text{font-size:10px;fill:var(--mute)}
.hist .dbt{fill:#d68910}.hist .open{fill:#9fb6d6}.hist .over{fill:var(--bad)}
.hist line{stroke:#9aa5b4}
details table td,details table th{font-size:12px;padding:2px 6px}
"""

#: the styles of the decision sections, added to the page only when it has them
_DECISIONS_CSS = """
section.box h3{font-size:14px;margin:14px 0 6px}
.dtab{font-size:13px;margin:4px 0 10px}
.dtab.narrow{width:auto}
.dtab th{cursor:default;white-space:normal}
.dtab th[scope=row]{background:none;font-weight:600;white-space:nowrap}
.dtab tr.total td,.dtab tr.total th{font-weight:600;border-top:2px solid #9aa5b4}
.dtab td.sentence{min-width:320px}
.mig td.diag{background:#eef1f5;font-weight:600}
.mig td.worse{color:var(--bad)}.mig td.better{color:var(--good)}.mig td.zero{color:#b8c0cc}
.flag-act{color:var(--bad);font-weight:600}.flag-watch{color:#d68910;font-weight:600}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
"""

_JS = r"""
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('report-data').textContent);
  var META = DATA.meta, ROWS = DATA.buyers, FEATS = META.features;
  var SVGNS = 'http://www.w3.org/2000/svg';
  var PER = 100;
  var state = {q: '', key: 'pd', dir: -1, page: 0, shown: ROWS.slice()};
  ROWS.forEach(function (r) {
    r._s = (r.id + '\n' + r.rs.map(function (x) { return x[5] || ''; }).join('\n')).toLowerCase();
  });

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function pct(x) {
    if (x === null || x === undefined) { return ''; }
    return (x < 0.1 ? (x * 100).toFixed(2) : (x * 100).toFixed(1)) + '%';
  }
  function signedPct(x) {
    if (x === null || x === undefined) { return ''; }
    var s = (Math.abs(x) * 100).toFixed(2) + ' pp';
    return (x > 0 ? '+' : x < 0 ? '\u2212' : '\u00b1') + s;
  }
  function num(x, d) {
    if (x === null || x === undefined) { return ''; }
    return Number(x).toLocaleString('en-US', {maximumFractionDigits: d, minimumFractionDigits: d});
  }

  var KEYS = {
    id: function (r) { return r.id; }, g: function (r) { return r.gr; },
    pd: function (r) { return r.pd; }, dg: function (r) { return r.dg; },
    dpd: function (r) { return r.dpd; }, ind: function (r) { return r.ind; },
    cty: function (r) { return r.cty; }
  };
  function compare(a, b) {
    var f = KEYS[state.key], x = f(a), y = f(b);
    var xn = (x === null || x === undefined), yn = (y === null || y === undefined);
    if (xn || yn) { return xn && yn ? 0 : (xn ? 1 : -1); }  // missing values last
    var c = (typeof x === 'string') ? (x < y ? -1 : x > y ? 1 : 0) : x - y;
    if (c === 0) { c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0; return c; }
    return c * state.dir;
  }
  function refresh() {
    var q = state.q.toLowerCase();
    state.shown = q ? ROWS.filter(function (r) { return r._s.indexOf(q) >= 0; }) : ROWS.slice();
    state.shown.sort(compare);
    var pages = Math.max(1, Math.ceil(state.shown.length / PER));
    if (state.page >= pages) { state.page = pages - 1; }
    render(pages);
  }
  function render(pages) {
    var body = document.querySelector('#buyers tbody');
    body.replaceChildren();
    var start = state.page * PER;
    state.shown.slice(start, start + PER).forEach(function (r) {
      var tr = el('tr');
      tr.tabIndex = 0;
      tr.dataset.buyer = r.id;
      tr.appendChild(el('td', r.id, 'id'));
      var g = el('td'); g.appendChild(el('span', r.g, r.g === 'D' ? 'g D' : 'g')); tr.appendChild(g);
      tr.appendChild(el('td', pct(r.pd), 'num pd'));
      if (META.previous) {
        var dg = el('td', null, 'num dg');
        if (r.new) { dg.appendChild(el('span', 'new', 'tag')); }
        else if (r.dg !== 0) {
          dg.textContent = (r.dg > 0 ? '\u25bc ' : '\u25b2 ') + r.pg + ' \u2192 ' + r.g;
          dg.className = 'num dg ' + (r.dg > 0 ? 'up' : 'down');
        }
        tr.appendChild(dg);
        tr.appendChild(el('td', signedPct(r.dpd),
          'num dpd' + (r.dpd > 0 ? ' up' : r.dpd < 0 ? ' down' : '')));
      }
      tr.appendChild(el('td', r.ind));
      tr.appendChild(el('td', r.cty));
      var rc = el('td', null, 'reasons-cell');
      r.rs.slice(0, __TABLE_REASONS__).forEach(function (x, i) {
        if (i) { rc.appendChild(document.createElement('br')); }
        rc.appendChild(document.createTextNode(x[5] || ''));
      });
      tr.appendChild(rc);
      tr.addEventListener('click', function () { openDetail(r); });
      tr.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') { openDetail(r); } });
      body.appendChild(tr);
    });
    document.getElementById('count').textContent = state.shown.length.toLocaleString('en-US') +
      ' of ' + ROWS.length.toLocaleString('en-US') + ' buyers';
    document.getElementById('page').textContent = 'page ' + (state.page + 1) + ' of ' + pages;
    document.getElementById('prev').disabled = state.page === 0;
    document.getElementById('next').disabled = state.page >= pages - 1;
    document.querySelectorAll('#buyers th[data-key]').forEach(function (th) {
      if (th.dataset.key === state.key) {
        th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending');
      } else { th.removeAttribute('aria-sort'); }
    });
  }

  function waterfall(w) {
    // steps: base value -> the largest contributions -> the rest -> margin
    var steps = [{label: 'base value (average buyer)', total: true, v: w[0]}];
    var cum = w[0];
    w[2].forEach(function (c) {
      steps.push({label: FEATS[c[0]], from: cum, v: c[1]}); cum += c[1];
    });
    if (w[4] > 0) {
      steps.push({label: w[4] + ' other features', from: cum, v: w[3]}); cum += w[3];
    }
    steps.push({label: 'margin (log-odds)', total: true, v: w[1]});
    // the axis spans the path from the base value to the margin (not zero: log-odds)
    var lo = Infinity, hi = -Infinity;
    steps.forEach(function (s) {
      var a = s.total ? s.v : s.from, b = s.total ? s.v : s.from + s.v;
      lo = Math.min(lo, a, b); hi = Math.max(hi, a, b);
    });
    if (hi - lo < 1e-9) { hi = lo + 1; }
    var pad = (hi - lo) * 0.04; lo -= pad; hi += pad;
    var W = 660, left = 220, right = 70, rowH = 22, top = 8;
    var H = top + rowH * steps.length + 22;
    var sx = function (x) { return left + (x - lo) / (hi - lo) * (W - left - right); };
    var root = svg('svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'class': 'wf',
                           role: 'img', 'aria-label': 'waterfall of contributions'});
    [w[0], w[1]].forEach(function (v) {  // the base value and the margin as guides
      root.appendChild(svg('line', {x1: sx(v), x2: sx(v), y1: top, y2: H - 20}));
    });
    steps.forEach(function (s, i) {
      var y = top + i * rowH;
      var x0, x1;
      if (s.total) { x0 = sx(s.v) - 2; x1 = sx(s.v) + 2; }  // a marker at the value
      else {
        x0 = sx(Math.min(s.from, s.from + s.v)); x1 = sx(Math.max(s.from, s.from + s.v));
      }
      var label = s.label.length > 34 ? s.label.slice(0, 33) + '\u2026' : s.label;
      var t = svg('text', {x: left - 6, y: y + 15, 'text-anchor': 'end'}, label);
      t.appendChild(svg('title', {}, s.label));
      root.appendChild(t);
      root.appendChild(svg('rect', {x: x0, y: y + 4, width: Math.max(x1 - x0, 1), height: rowH - 8,
        'class': s.total ? 'tot' : (s.v > 0 ? 'pos' : 'neg')}));
      var v = s.total ? num(s.v, 2) : (s.v > 0 ? '+' : '\u2212') + num(Math.abs(s.v), 2);
      root.appendChild(svg('text', {x: W - right + 6, y: y + 15}, v));
    });
    root.appendChild(svg('text', {x: left, y: H - 6},
      'log-odds of the model before calibration; red raises the risk, green lowers it'));
    return root;
  }

  function historyChart(h) {
    var n = h.m.length, W = 660, left = 60, right = 10, H = 150, mid = 70;
    var bw = (W - left - right) / n;
    var root = svg('svg', {width: W, height: H * 2, viewBox: '0 0 ' + W + ' ' + (H * 2),
                           'class': 'hist', role: 'img', 'aria-label': 'payment history'});
    // days beyond terms of the invoices paid each month
    var dm = 1;
    h.dbt.forEach(function (d) { if (d !== null) { dm = Math.max(dm, Math.abs(d)); } });
    root.appendChild(svg('text', {x: 0, y: 12}, 'days beyond terms (invoices paid that month, amount-weighted)'));
    var base = 20 + mid;
    root.appendChild(svg('line', {x1: left, x2: W - right, y1: base, y2: base}));
    root.appendChild(svg('text', {x: left - 4, y: 28, 'text-anchor': 'end'}, Math.round(dm)));
    root.appendChild(svg('text', {x: left - 4, y: base + 4, 'text-anchor': 'end'}, '0'));
    h.dbt.forEach(function (d, i) {
      if (d === null) { return; }
      var hh = Math.abs(d) / dm * (mid - 10);
      var r = svg('rect', {x: left + i * bw + 1, y: d >= 0 ? base - hh : base,
                           width: Math.max(bw - 2, 1), height: Math.max(hh, 0.5), 'class': 'dbt'});
      r.appendChild(svg('title', {}, h.m[i] + ': ' + num(d, 1) + ' days, ' + h.n[i] + ' invoices paid'));
      root.appendChild(r);
    });
    // open and overdue amounts at each month end
    var y0 = H + 20, am = 1;
    h.open.forEach(function (v) { am = Math.max(am, v || 0); });
    root.appendChild(svg('text', {x: 0, y: y0 - 8}, 'open (blue) and overdue (red) amount at month end'));
    var bottom = y0 + H - 50;
    root.appendChild(svg('line', {x1: left, x2: W - right, y1: bottom, y2: bottom}));
    root.appendChild(svg('text', {x: left - 4, y: y0 + 8, 'text-anchor': 'end'}, num(am, 0)));
    h.open.forEach(function (v, i) {
      var ho = (v || 0) / am * (bottom - y0), hv = (h.over[i] || 0) / am * (bottom - y0);
      var r = svg('rect', {x: left + i * bw + 1, y: bottom - ho, width: Math.max(bw - 2, 1),
                           height: ho, 'class': 'open'});
      r.appendChild(svg('title', {}, h.m[i] + ': open ' + num(v, 0) + ', overdue ' + num(h.over[i], 0)));
      root.appendChild(r);
      root.appendChild(svg('rect', {x: left + i * bw + 1, y: bottom - hv, width: Math.max(bw - 2, 1),
                                    height: hv, 'class': 'over'}));
    });
    [0, n - 1].forEach(function (i) {
      root.appendChild(svg('text', {x: left + i * bw + bw / 2, y: bottom + 14,
                                    'text-anchor': i ? 'end' : 'start'}, h.m[i]));
    });
    return root;
  }

  function historyTable(h) {
    var d = el('details'); d.appendChild(el('summary', 'the numbers by month'));
    var t = el('table'), head = el('tr');
    ['month', 'invoices paid', 'mean days beyond terms', 'most days beyond terms',
     'open at month end', 'overdue at month end'].forEach(function (c) { head.appendChild(el('th', c)); });
    t.appendChild(head);
    h.m.forEach(function (m, i) {
      var tr = el('tr');
      tr.appendChild(el('td', m));
      tr.appendChild(el('td', h.n[i], 'num'));
      tr.appendChild(el('td', num(h.dbt[i], 1), 'num'));
      tr.appendChild(el('td', num(h.max[i], 0), 'num'));
      tr.appendChild(el('td', num(h.open[i], 0), 'num'));
      tr.appendChild(el('td', num(h.over[i], 0), 'num'));
      t.appendChild(tr);
    });
    d.appendChild(t);
    return d;
  }

  function openDetail(r) {
    var p = document.getElementById('detail');
    p.replaceChildren();
    var close = el('button', 'close', 'close');
    close.id = 'close';
    close.addEventListener('click', function () { p.hidden = true; });
    p.appendChild(close);
    p.appendChild(el('h2', r.id));
    var dl = el('dl');
    var facts = [['grade', r.g], ['PD (12 months)', pct(r.pd)], ['status', r.st],
                 ['as of', r.asof], ['industry', r.ind], ['country', r.cty]];
    if (META.previous) {
      facts.push(['previous run', r.new ? 'new buyer' :
                  'grade ' + r.pg + ', PD ' + pct(r.ppd) + ' (' + signedPct(r.dpd) + ')']);
    }
    facts.forEach(function (f) { dl.appendChild(el('dt', f[0])); dl.appendChild(el('dd', f[1])); });
    p.appendChild(dl);
    p.appendChild(el('h3', 'Reasons'));
    if (r.rs.length) {
      var ol = el('ol', null, 'reasons');
      r.rs.forEach(function (x) {
        var li = el('li', x[5] || '');
        li.appendChild(document.createTextNode(' '));
        li.appendChild(el('span', '[' + [x[1], x[2]].filter(Boolean).join(', ') + ']', 'code'));
        ol.appendChild(li);
      });
      p.appendChild(ol);
    } else { p.appendChild(el('p', 'No reasons for this buyer.', 'note')); }
    p.appendChild(el('h3', 'Contributions'));
    var wf = el('div'); wf.id = 'waterfall';
    if (r.w) { wf.appendChild(waterfall(r.w)); } else { wf.appendChild(el('p', 'No contributions.', 'note')); }
    p.appendChild(wf);
    p.appendChild(el('h3', 'Payment history'));
    var hd = el('div'); hd.id = 'history';
    if (r.h) { hd.appendChild(historyChart(r.h)); hd.appendChild(historyTable(r.h)); }
    else {
      hd.appendChild(el('p', 'Not included: payment histories are in this report for the ' +
        META.detail_n.toLocaleString('en-US') + ' riskiest live buyers and the buyers asked for only.', 'note'));
    }
    p.appendChild(hd);
    p.hidden = false;
    p.scrollTop = 0;
  }

  document.getElementById('search').addEventListener('input', function (ev) {
    state.q = ev.target.value; state.page = 0; refresh();
  });
  document.querySelectorAll('#buyers th[data-key]').forEach(function (th) {
    th.addEventListener('click', function () {
      var k = th.dataset.key;
      if (state.key === k) { state.dir = -state.dir; }
      else { state.key = k; state.dir = (k === 'id' || k === 'ind' || k === 'cty') ? 1 : -1; }
      state.page = 0; refresh();
    });
  });
  document.getElementById('prev').addEventListener('click', function () { state.page -= 1; refresh(); });
  document.getElementById('next').addEventListener('click', function () { state.page += 1; refresh(); });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape') { document.getElementById('detail').hidden = true; }
  });
  refresh();
  document.body.dataset.ready = '1';
})();
"""


def _page(*, title: str, cards: list[tuple[str, str]], charts: list[str], note: str,
          data: dict[str, Any], extra: str = "", css: str = _CSS) -> str:
    """The page; ``extra`` (sections rendered here, escaped) goes between the portfolio
    summary and the buyer table, ``css`` is the page's one style element (hashed in the
    content security policy, as the script is)."""
    script = _JS.replace("__TABLE_REASONS__", str(TABLE_REASONS))
    csp = ("default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
           f"script-src '{_csp_hash(script)}'; style-src '{_csp_hash(css)}'")
    heads = [("id", "buyer"), ("g", "grade"), ("pd", "PD")]
    if data["meta"]["previous"]:
        heads += [("dg", "grade change"), ("dpd", "PD change")]
    heads += [("ind", "industry"), ("cty", "country")]
    th = "".join(f'<th data-key="{_e(k)}" scope="col">{_e(t)}</th>' for k, t in heads)
    th += '<th scope="col" class="nosort">top reasons</th>'
    card_html = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
                        for k, v in cards)
    asof = ", ".join(data["meta"]["asof"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)} ({_e(asof)})</title>
<style>{css}</style>
</head>
<body>
<header><h1>{_e(title)}</h1>
<p>As of {_e(asof)}. This file contains buyer data: share it only with those allowed to see
the book.</p></header>
<main>
<section class="box" id="summary"><h2>Portfolio</h2>
<div class="cards">{card_html}</div>
<div class="charts">{"".join(charts)}</div>
</section>
{extra}<section class="box" id="table"><h2>Buyers</h2>
<div class="tools"><input id="search" type="search" placeholder="search buyer id or reason"
aria-label="search buyer id or reason text" autocomplete="off">
<span id="count" class="note"></span></div>
<p class="note">{_e(note)} Click a column to sort, a row to open the buyer.</p>
<table id="buyers"><thead><tr>{th}</tr></thead><tbody></tbody></table>
<div class="pager"><button id="prev" type="button">previous</button>
<span id="page" class="note"></span><button id="next" type="button">next</button></div>
</section>
</main>
<aside id="detail" hidden aria-label="buyer detail"></aside>
<script type="application/json" id="report-data">{safe_json(data)}</script>
<script>{script}</script>
</body>
</html>
"""
