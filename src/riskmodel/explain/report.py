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
  history (days beyond terms, open and overdue amounts by month).

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
) -> Report:
    """Write the analyst report of ``explain_dir`` (the folder of ``riskmodel explain``) to
    ``out``: one HTML file with everything inline. ``previous`` (an earlier explain folder)
    adds each buyer's change of grade and PD and marks new buyers. Payment histories are
    computed from ``book`` for the ``detail_buyers_n`` riskiest buyers and for ``buyers``."""
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
                 note=history_note, data={"meta": meta, "buyers": rows})
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return Report(path, len(rows), len(chosen), dates, prev is not None,
                  path.stat().st_size)


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
          data: dict[str, Any]) -> str:
    script = _JS.replace("__TABLE_REASONS__", str(TABLE_REASONS))
    csp = ("default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
           f"script-src '{_csp_hash(script)}'; style-src '{_csp_hash(_CSS)}'")
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
<style>{_CSS}</style>
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
<section class="box" id="table"><h2>Buyers</h2>
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
