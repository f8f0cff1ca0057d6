"""Credit-limit recommendations for the credit lines of an exposures table.

For each line (a buyer, and the policyholder ``supplier_id`` that holds the line, where
given) at the scores' as-of date ``A``, from the book and the scores (docs/decisions.md has
the policy in a credit manager's words):

* ``need``: the line's usual outstanding: the amount invoiced in the 12 months ``(A - 365,
  A]`` x (the amount-weighted terms of those invoices (due - issue) + max(0, the
  amount-weighted days beyond terms (paid - due) of the invoices paid in those 12 months))
  / 365. A line without ``supplier_id`` stands for the buyer's trading with every supplier;
* ``revenue``: the buyer's ``annual_revenue``, or its amount invoiced in the 12 months (all
  suppliers) where that is missing (``revenue_source``);
* the buyer-level caps: ``grade_cap`` = ``limits.revenue_share`` of the grade x revenue (0
  for grade D) and ``el_cap`` = ``limits.el_budget`` / (PD x ``limits.lgd``); the lower
  one binds the sum of the buyer's lines, split in proportion to each line's target when the
  lines together exceed it;
* the target of a line: its request (no request: its need, rounded up to
  ``limits.round_to``); a limit is never above it;
* no increase above the current limit for a buyer with an invoice more than
  ``limits.overdue_days`` past due; grade D: 0;
* ``decision``: ``decline`` (limit 0 because of grade D, or 0 where the request, or the
  current limit when there is no request, is above 0), ``reduce`` (below the request, or the
  current limit when there is no request), ``approve`` (otherwise), and ``refer`` over approve
  and reduce where the model is outside its comfort zone (codes L11-L16).

Everything is vectorised: the book is read a bucket at a time and reduced by DuckDB to a row
per buyer-supplier pair (amounts summed in integer cents, so no sum depends on the order of
rows), and the policy is numpy over all lines of a bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskmodel.decisions import portfolio as pf
from riskmodel.decisions import terms as tm

if TYPE_CHECKING:
    from riskmodel.data.book import Book
    from riskmodel.params import LimitsParams, Params

Progress = Callable[[str, int, int], None]

#: the decision codes (docs/decisions.md): constraints L01-L08, notes L09-L10, referrals L11-L16
CODES: dict[str, str] = {
    "L01": "the buyer is in default (grade D): no cover",
    "L02": "capped by the grade's share of the buyer's revenue",
    "L03": "capped by the expected-loss budget",
    "L04": "the buyer's lines together exceed the cap: split in proportion to each line's target",
    "L05": "no request: the limit follows the need (the usual outstanding)",
    "L06": "request of 0: the line is closed as asked",
    "L07": "an invoice is more than limits.overdue_days past due: no increase above the "
           "current limit",
    "L08": "no invoicing in the 12 months: no need for a limit",
    "L09": "annual revenue unknown: the grade cap uses the 12 months' invoicing instead",
    "L10": "open receivables above the recommended limit: the excess is not insured",
    "L11": "refer: no recent history, the model gives no PD",
    "L12": "refer: the buyer is not in the scores",
    "L13": "refer: payment history shorter than limits.min_history_days",
    "L14": "refer: an industry the model never saw",
    "L15": "refer: a country the model never saw",
    "L16": "refer: a request more than limits.refer_request_multiple times the need",
}
DECISIONS = ("approve", "reduce", "decline", "refer")
GRADES = (*[str(g) for g in range(1, 11)], "D")
#: grade_rank of grade D in the scores
RANK_D = 11
INVOICED = "invoiced_12m"
ANNUAL = "annual_revenue"

#: the columns of the limits output, in order
OUTPUT_SCHEMA = pa.schema([
    ("buyer_id", pa.string()), ("supplier_id", pa.string()), ("as_of", pa.date32()),
    ("grade", pa.string()), ("pd", pa.float64()), ("current_limit", pa.float64()),
    ("requested_limit", pa.float64()), ("need", pa.float64()),
    ("open_receivables", pa.float64()), ("revenue", pa.float64()),
    ("revenue_source", pa.string()), ("grade_cap", pa.float64()), ("el_cap", pa.float64()),
    ("recommended_limit", pa.float64()), ("decision", pa.string()),
    ("decision_reasons", pa.string()), ("sentence", pa.string()), ("model_name", pa.string()),
    ("model_version", pa.string()),
])
SCORES_KIND = "riskmodel-scores"
SCORES_MANIFEST = "_scoring.json"


class LimitsError(ValueError):
    """The inputs of a limits run cannot be used as given; the message says why."""


# --------------------------------------------------------------------------- formatting


def fmt_amount(values: np.ndarray | pd.Series) -> pa.Array:
    """Amounts as whole currency units with thousands separators (``45,000``), in Arrow
    kernels (no Python call per value); null where the value is missing."""
    x = np.asarray(values, dtype=float)
    bad = ~np.isfinite(x)
    v = np.where(bad, 0, np.round(x)).astype(np.int64)
    a = np.abs(v)
    digits = len(str(int(a.max()))) if len(a) else 1
    groups = []
    for power in range(3 * ((digits - 1) // 3), -1, -3):
        g = pc.cast(pa.array((a // 10**power) % 1000), pa.string())
        groups.append(pc.utf8_lpad(g, 3, "0"))
    text = pc.binary_join_element_wise(*groups, ",")
    text = pc.utf8_ltrim(text, characters="0,")
    text = pc.if_else(pc.equal(text, ""), "0", text)
    text = pc.if_else(pa.array(v < 0), pc.binary_join_element_wise("-", text, ""), text)
    return pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), text)


def fmt_percent(values: np.ndarray | pd.Series) -> pa.Array:
    """Shares as percentages: one decimal from 1% up (``2.3%``), two below (``0.45%``)."""
    x = np.asarray(values, dtype=float)
    bad = ~np.isfinite(x)
    small = np.abs(x) < 0.01
    dec = np.where(small, 2, 1)
    scaled = np.where(bad, 0, np.round(x * 100 * 10.0**dec)).astype(np.int64)
    whole = pc.cast(pa.array(scaled // 10**dec), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(scaled % 10**dec), pa.string()), 1, "0")
    frac = pc.if_else(pa.array(small), pc.utf8_lpad(frac, 2, "0"), frac)
    text = pc.binary_join_element_wise(whole, ".", frac, "%", "")
    return pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), text)


def percent_text(x: float) -> str:
    """One setting as a percentage, without trailing zeros (``0.025`` -> ``2.5%``)."""
    text = f"{x * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _cat(*parts: Any) -> pa.Array:
    """Concatenate strings element-wise; a null part counts as empty."""
    arrays = [p if isinstance(p, pa.Array | pa.ChunkedArray) else
              (pa.array(p, pa.string()) if isinstance(p, np.ndarray) else p) for p in parts]
    return pc.binary_join_element_wise(*arrays, "", null_handling="replace",
                                       null_replacement="")


# --------------------------------------------------------------------------- scores


@dataclass
class Scores:
    """A scoring output: one row per buyer (``buyer_id``, ``status``, ``pd``, ``grade``,
    ``grade_rank``), its as-of date and the lineage of its manifest."""

    path: Path
    frame: pd.DataFrame
    as_of: dt.date
    manifest: dict[str, Any]

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model_name", ""))

    @property
    def model_version(self) -> str:
        return str(self.manifest.get("model_version", ""))


def read_scores(path: str | Path) -> Scores:
    """Read the output of ``riskmodel score`` (only the columns the decisions need)."""
    import pyarrow.dataset as pads

    path = Path(path)
    manifest_path = path / SCORES_MANIFEST
    if not path.is_dir() or not manifest_path.is_file():
        raise LimitsError(f"--scores {path}: not a scoring output (no {SCORES_MANIFEST}; "
                          "write one with `riskmodel score BOOK --out DIR`)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        as_of = dt.date.fromisoformat(manifest["as_of"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LimitsError(f"--scores {manifest_path}: unreadable manifest: {exc}") from exc
    if manifest.get("kind") != SCORES_KIND:
        raise LimitsError(f"--scores {path}: {SCORES_MANIFEST} is not a riskmodel scores "
                          "manifest")
    parts = sorted(path.glob("part-*.parquet"))
    cols = ["buyer_id", "status", "pd", "grade", "grade_rank"]
    if parts:
        table = pads.dataset([str(p) for p in parts], format="parquet").to_table(columns=cols)
    else:
        table = pa.table({"buyer_id": pa.array([], pa.string()),
                          "status": pa.array([], pa.string()),
                          "pd": pa.array([], pa.float64()), "grade": pa.array([], pa.string()),
                          "grade_rank": pa.array([], pa.int8())})
    frame = pd.DataFrame({
        "buyer_id": table["buyer_id"].to_numpy(zero_copy_only=False),
        "status": table["status"].to_numpy(zero_copy_only=False),
        "pd": table["pd"].to_numpy(zero_copy_only=False).astype(float),
        "grade": pc.cast(table["grade"], pa.string()).to_numpy(zero_copy_only=False),
        "grade_rank": pc.cast(table["grade_rank"], pa.float64()).to_numpy(
            zero_copy_only=False),
    })
    if frame["buyer_id"].duplicated().any():
        raise LimitsError(f"--scores {path}: a buyer appears more than once")
    return Scores(path, frame, as_of, manifest)


# --------------------------------------------------------------------------- exposures


@dataclass
class Exposures:
    """Accepted credit lines (contract columns, typed), the rejected ones with their
    ``reason``, and the counts (``read``, ``accepted``, ``rejected``, ``reasons``)."""

    lines: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, Any]
    source: str

    @property
    def reject_rate(self) -> float:
        read = int(self.counts["read"])
        return int(self.counts["rejected"]) / read if read else 0.0


def book_buyer_ids(book: Book) -> pd.Index:
    """Every buyer id of the book (one small read per bucket)."""
    ids = [book.read("buyers", k, ["buyer_id"])["buyer_id"] for k in range(book.n_buckets)]
    arr = pa.chunked_array([c for t in ids for c in t.chunks], type=pa.string())
    return pd.Index(arr.to_numpy(zero_copy_only=False))


def validate_exposures(path: str | Path, buyer_ids: pd.Index,
                       observed_until: dt.date) -> Exposures:
    """An exposures file (CSV, Parquet or a folder of Parquet parts) checked with the data
    contract's own rules: a line with a missing, negative or non-finite ``current_limit``, a
    negative or non-finite ``requested_limit``, a duplicate buyer-supplier pair or a buyer
    that is not in ``buyer_ids`` (the book's buyers) is set aside with the rule it breaks.
    A column of the wrong type raises :class:`~riskmodel.data.contract.ContractError`."""
    from riskmodel.data.contract.reader import RawTable, check_required_columns, read_file
    from riskmodel.data.contract.validation import RuleContext, split_table, type_table

    path = Path(path)
    if not path.exists():
        raise LimitsError(f"--exposures {path}: no such file")
    frame = read_file(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    check_required_columns(list(frame.columns), "exposures", str(path))
    typed = type_table(RawTable("exposures", str(path), frame))
    result = split_table(typed, RuleContext(pd.Timestamp(observed_until), buyer_ids, buyer_ids))
    return Exposures(_lines(result.accepted), result.rejected, result.summary(), str(path))


def book_exposures(book: Book) -> Exposures:
    """The exposures table the book was validated with (already checked)."""
    from riskmodel.data.book import to_pandas

    if not (book.path / "exposures").is_dir():
        raise LimitsError(f"{book.path}: the book has no exposures table; give --exposures "
                          "FILE")
    parts = [book.read("exposures", k) for k in range(book.n_buckets)]
    table = pa.concat_tables(parts) if parts else pa.table({})
    counts = dict(book.manifest.tables.get("exposures", {}))
    counts.setdefault("read", table.num_rows)
    counts.setdefault("accepted", table.num_rows)
    counts.setdefault("rejected", 0)
    counts.setdefault("reasons", {})
    return Exposures(_lines(to_pandas(table)), pd.DataFrame(), counts,
                     f"{book.path}/exposures")


def _lines(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "buyer_id": _text(frame["buyer_id"]),
        "supplier_id": _text(frame["supplier_id"]) if "supplier_id" in frame
        else np.full(len(frame), None, dtype=object),
        "current_limit": pd.to_numeric(frame["current_limit"]).to_numpy(dtype=float),
        "requested_limit": (pd.to_numeric(frame["requested_limit"]).to_numpy(
            dtype=float, na_value=np.nan) if "requested_limit" in frame
            else np.full(len(frame), np.nan)),
        "currency": _text(frame["currency"]) if "currency" in frame
        else np.full(len(frame), None, dtype=object),
    })
    return out


def _text(col: pd.Series) -> np.ndarray:
    values = np.array(col.to_numpy(dtype=object, na_value=None), dtype=object)
    values[pd.isna(values)] = None
    return values


# --------------------------------------------------------------------------- the book


#: per buyer-supplier pair, in cents (sums of whole cents are exact in any order)
PAIR_SQL = """
SELECT buyer_id, supplier_id,
  CAST(SUM(CASE WHEN iss > {w0} THEN c END) AS DOUBLE) AS invoiced,
  COUNT(CASE WHEN iss > {w0} THEN 1 END) AS invoices,
  CAST(SUM(CASE WHEN iss > {w0} THEN c * (due - iss) END) AS DOUBLE) AS terms_amount,
  CAST(SUM(CASE WHEN iss > {w0} AND shift > 0 THEN c END) AS DOUBLE) AS over_terms,
  CAST(SUM(CASE WHEN paid > {w0} THEN c END) AS DOUBLE) AS paid_amount,
  CAST(SUM(CASE WHEN paid > {w0} THEN c * (paid - due) END) AS DOUBLE) AS late_amount,
  CAST(SUM(CASE WHEN paid IS NULL THEN c END) AS DOUBLE) AS open_amount,
  MAX(CASE WHEN paid IS NULL THEN {a} - due END) AS max_dpd,
  CAST(SUM(c * greatest(0, (CASE WHEN paid IS NULL THEN {a} ELSE paid END)
                           - greatest(iss, {w0}))) AS DOUBLE) AS days_before,
  CAST(SUM(c * greatest(0, (CASE WHEN paid IS NULL THEN {a}
                                 ELSE greatest(iss, paid - shift) END)
                           - greatest(iss, {w0}))) AS DOUBLE) AS days_after
FROM x
GROUP BY buyer_id, supplier_id
"""
#: the same per buyer over every supplier, from the pairs, with the first issue date of
#: every buyer with an invoice by the as-of date
BUYER_SQL = """
SELECT f.buyer_id, CAST(NULL AS VARCHAR) AS supplier_id, s.* EXCLUDE (buyer_id),
       f.first_issue
FROM (SELECT buyer_id, MIN(issue_date) AS first_issue FROM inv
      WHERE issue_date <= {a} GROUP BY buyer_id) f
LEFT JOIN (
  SELECT buyer_id, SUM(invoiced) AS invoiced, SUM(invoices) AS invoices,
    SUM(terms_amount) AS terms_amount, SUM(over_terms) AS over_terms,
    SUM(paid_amount) AS paid_amount, SUM(late_amount) AS late_amount,
    SUM(open_amount) AS open_amount, MAX(max_dpd) AS max_dpd,
    SUM(days_before) AS days_before, SUM(days_after) AS days_after
  FROM p GROUP BY buyer_id) s ON s.buyer_id = f.buyer_id
"""
MONEY = ("invoiced", "terms_amount", "over_terms", "paid_amount", "late_amount",
         "open_amount")


def _view_sql(as_of: dt.date, columns: Sequence[str]) -> str:
    """The invoices issued by the as-of date that count for anything but the first issue
    date: issued in the 12 months, or open or paid in them (older ones add nothing)."""
    a = f"DATE '{as_of.isoformat()}'"
    w0 = f"DATE '{(as_of - dt.timedelta(days=365)).isoformat()}'"
    supplier = "i.supplier_id" if "supplier_id" in columns else "CAST(NULL AS VARCHAR)"
    return f"""
CREATE OR REPLACE VIEW x AS
SELECT i.buyer_id, {supplier} AS supplier_id, i.issue_date AS iss, i.due_date AS due,
       CASE WHEN i.paid_date <= {a} THEN i.paid_date END AS paid,
       CAST(round(i.amount * 100) AS BIGINT) AS c,
       CASE WHEN m.max_terms IS NOT NULL AND i.due_date - i.issue_date > m.max_terms
            THEN CAST(i.due_date - i.issue_date - m.max_terms AS INTEGER) ELSE 0 END AS shift
FROM inv i LEFT JOIN mt m ON i.buyer_id = m.buyer_id
WHERE i.issue_date <= {a}
  AND (i.issue_date > {w0} OR i.paid_date IS NULL OR i.paid_date > {w0})
"""


def bucket_facts(con: duckdb.DuckDBPyConnection, invoices: pa.Table, max_terms: pa.Table,
                 as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per buyer-supplier pair (``whole`` False) and per buyer over every supplier (``whole``
    True), at ``as_of``: the amount invoiced in the 12 months and the number of those
    invoices, their amount x terms, their amount on terms longer than the buyer's
    ``max_terms``, the amount and amount x days beyond terms of the invoices paid in the 12
    months, the open amount, the most days past due of an open invoice, and the first issue
    date. A payment after ``as_of`` is not known (the invoice is open). Also the DSO sums
    per supplier (:func:`riskmodel.decisions.terms.dso_sums`)."""
    con.register("inv", invoices)
    con.register("mt", max_terms)
    try:
        con.execute(_view_sql(as_of, invoices.column_names))
        a = f"DATE '{as_of.isoformat()}'"
        w0 = f"DATE '{(as_of - dt.timedelta(days=365)).isoformat()}'"
        pairs = con.sql(PAIR_SQL.format(a=a, w0=w0)).to_arrow_table()
        con.register("p", pairs)
        buyers = con.sql(BUYER_SQL.format(a=a)).to_arrow_table()
        dso = tm.dso_sums(con)
    finally:
        con.execute("DROP VIEW IF EXISTS x")
        for name in ("inv", "mt", "p"):
            con.unregister(name)
    frame = pd.concat([pairs.to_pandas().assign(whole=False),
                       buyers.to_pandas().assign(whole=True)], ignore_index=True)
    for col in MONEY:
        frame[col] = frame[col].astype(float) / 100
    frame["max_dpd"] = frame["max_dpd"].astype(float)
    frame["first_issue"] = pd.to_datetime(frame["first_issue"])
    return frame, dso


def need_of(invoiced: np.ndarray, terms_amount: np.ndarray, paid_amount: np.ndarray,
            late_amount: np.ndarray) -> np.ndarray:
    """The usual outstanding: invoiced x (weighted terms + max(0, weighted days beyond
    terms of the invoices paid)) / 365; 0 without invoicing."""
    inv = np.nan_to_num(invoiced)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(inv > 0, np.nan_to_num(terms_amount) / np.where(inv > 0, inv, 1), 0.0)
        paid = np.nan_to_num(paid_amount)
        late = np.where(paid > 0, np.nan_to_num(late_amount) / np.where(paid > 0, paid, 1), 0.0)
    return inv * (terms + np.maximum(late, 0.0)) / 365.0


# --------------------------------------------------------------------------- the policy


def _round_down(x: np.ndarray, step: float) -> np.ndarray:
    if step <= 0:
        return x
    with np.errstate(invalid="ignore"):
        return np.floor(x / step + 1e-9) * step


def _round_up(x: np.ndarray, step: float) -> np.ndarray:
    if step <= 0:
        return x
    with np.errstate(invalid="ignore"):
        return np.ceil(x / step - 1e-9) * step


def decide(lines: pd.DataFrame, params: LimitsParams) -> pd.DataFrame:
    """The policy over a frame of lines (vectorised; every line of a buyer must be in the
    frame). Columns used: ``buyer_id``, ``current_limit``, ``requested_limit`` (NaN: none),
    ``need``, ``open_receivables``, ``revenue``, ``revenue_source``, ``status`` (None: the
    buyer is not in the scores), ``pd``, ``grade``, ``grade_rank`` (1-10, 11 for D),
    ``history_days`` (NaN: no invoice), ``max_dpd`` (NaN: nothing open), ``industry``,
    ``country``, ``industry_seen``, ``country_seen``. Returns the frame with ``grade_cap``,
    ``el_cap``, ``recommended_limit``, ``decision``, ``decision_reasons`` and ``sentence``."""
    f = lines.reset_index(drop=True).copy()
    n = len(f)
    req = f["requested_limit"].to_numpy(dtype=float, na_value=np.nan)
    cur = f["current_limit"].to_numpy(dtype=float)
    need = f["need"].to_numpy(dtype=float, na_value=np.nan)
    need = np.nan_to_num(need)
    rank = pd.to_numeric(f["grade_rank"]).to_numpy(dtype=float, na_value=np.nan)
    pdv = pd.to_numeric(f["pd"]).to_numpy(dtype=float, na_value=np.nan)
    revenue = f["revenue"].to_numpy(dtype=float, na_value=np.nan)
    status = f["status"].to_numpy(dtype=object, na_value=None)
    has_req = ~np.isnan(req)
    has_pd = ~np.isnan(pdv)
    graded = ~np.isnan(rank)
    is_d = rank == RANK_D
    absent = pd.isna(status)
    no_recent = status == "no_recent_history"

    shares = np.array([*params.revenue_share, 0.0])
    share = np.full(n, np.nan)
    share[graded] = shares[rank[graded].astype(np.int64) - 1]
    grade_cap = share * revenue
    with np.errstate(divide="ignore", invalid="ignore"):
        el_cap = np.where(pdv > 0, params.el_budget / (pdv * params.lgd),
                          np.where(pdv == 0, np.inf, np.nan))
    cap = np.fmin(grade_cap, el_cap)

    target = np.where(has_req, req, _round_up(need, params.round_to))
    buyer = f["buyer_id"]
    total = pd.Series(target).groupby(buyer.to_numpy()).transform("sum").to_numpy()
    n_lines = buyer.groupby(buyer.to_numpy()).transform("size").to_numpy()
    over = np.nan_to_num(total - cap, nan=-1.0) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(over, _round_down(target * cap / np.where(over, total, 1.0),
                                            params.round_to), target)
    binding_grade = over & (grade_cap <= el_cap)
    binding_el = over & ~binding_grade
    dpd = f["max_dpd"].to_numpy(dtype=float, na_value=np.nan)
    overdue = np.nan_to_num(dpd, nan=-np.inf) > params.overdue_days
    held = overdue & (scaled > cur) & ~is_d
    rec = np.where(held, cur, scaled)
    rec = np.where(is_d, 0.0, rec)
    rec = np.where(has_pd, rec, np.nan)

    ref = np.where(has_req, req, cur)
    decline = has_pd & (is_d | ((rec == 0) & (ref > 0)))
    reduce = has_pd & ~decline & (rec < ref)
    history = f["history_days"].to_numpy(dtype=float, na_value=np.nan)
    short = ~absent & ~no_recent & (np.isnan(history) | (history < params.min_history_days))
    unseen_industry = ~f["industry_seen"].to_numpy(dtype=bool)
    unseen_country = ~f["country_seen"].to_numpy(dtype=bool)
    with np.errstate(invalid="ignore"):
        big_ask = has_req & (req > params.refer_request_multiple * need)
    refer_why = {"L11": no_recent, "L12": absent, "L13": short, "L14": unseen_industry,
                 "L15": unseen_country, "L16": big_ask}
    refer = ~decline & (~has_pd | np.logical_or.reduce(list(refer_why.values())))
    decision = np.select([refer, decline, reduce], ["refer", "decline", "reduce"], "approve")

    live = has_pd & ~is_d
    open_amt = np.nan_to_num(f["open_receivables"].to_numpy(dtype=float, na_value=np.nan))
    excess = has_pd & ~refer & (open_amt > np.nan_to_num(rec) + 0.005)
    from_invoicing = (f["revenue_source"].to_numpy(dtype=object) == INVOICED) & graded & ~is_d
    flags = {
        "L01": is_d,
        "L02": live & binding_grade & ~held,
        "L03": live & binding_el & ~held,
        "L04": live & over & (n_lines > 1) & ~held,
        "L05": live & ~has_req,
        "L06": has_req & (req == 0) & ~is_d,
        "L07": held,
        "L08": live & ~has_req & (need == 0),
        "L09": from_invoicing,
        "L10": excess,
        **{code: refer & mask for code, mask in refer_why.items()},
    }
    names = sorted(flags)
    bits = np.zeros(n, dtype=np.int64)
    for b, name in enumerate(names):
        bits |= flags[name].astype(np.int64) << b
    combos, which = np.unique(bits, return_inverse=True)
    texts = np.array([";".join(c for b, c in enumerate(names) if int(v) >> b & 1)
                      for v in combos], dtype=object)
    codes = pa.array(texts[which] if n else np.array([], dtype=object), pa.string())

    f["grade_cap"] = np.round(grade_cap, 2)
    f["el_cap"] = np.where(np.isfinite(el_cap), np.round(el_cap, 2), np.nan)
    f["recommended_limit"] = rec + 0.0  # a zero reached from below prints as 0, not -0
    f["decision"] = decision
    f["decision_reasons"] = codes.to_numpy(zero_copy_only=False)
    ctx = _Context(f, params, req, cur, need, rec, cap, share, has_req, is_d, held, over,
                   binding_grade, binding_el, n_lines, refer_why, refer, excess, open_amt,
                   decision)
    f["sentence"] = sentences(ctx).to_numpy(zero_copy_only=False)
    return f


@dataclass
class _Context:
    f: pd.DataFrame
    params: LimitsParams
    req: np.ndarray
    cur: np.ndarray
    need: np.ndarray
    rec: np.ndarray
    cap: np.ndarray
    share: np.ndarray
    has_req: np.ndarray
    is_d: np.ndarray
    held: np.ndarray
    over: np.ndarray
    binding_grade: np.ndarray
    binding_el: np.ndarray
    n_lines: np.ndarray
    refer_why: dict[str, np.ndarray]
    refer: np.ndarray
    excess: np.ndarray
    open_amt: np.ndarray
    decision: np.ndarray


class _Text:
    """Texts of the rows of a batch, each filled by the first template whose rows it is in;
    a template is built only for its own rows."""

    def __init__(self, n: int) -> None:
        self.out = np.full(n, None, dtype=object)
        self.done = np.zeros(n, dtype=bool)

    def put(self, mask: np.ndarray, make: Callable[[np.ndarray], Any]) -> None:
        idx = np.flatnonzero(mask & ~self.done)
        if not len(idx):
            return
        value = make(idx)
        if isinstance(value, pa.Scalar):
            value = value.as_py()
        self.out[idx] = (value.to_numpy(zero_copy_only=False)
                         if isinstance(value, pa.Array | pa.ChunkedArray) else value)
        self.done[idx] = True

    def array(self) -> pa.Array:
        return pa.array(self.out, pa.string())


def sentences(c: _Context) -> pa.Array:
    """The sentence of every line: the decision with its numbers, and why (docs/decisions.md,
    "The sentence")."""
    f, p = c.f, c.params
    n = len(f)
    grade = f["grade"].to_numpy(dtype=object, na_value=None)
    pdv = f["pd"].to_numpy(dtype=float, na_value=np.nan)
    revenue = f["revenue"].to_numpy(dtype=float, na_value=np.nan)
    dpd = f["max_dpd"].to_numpy(dtype=float, na_value=np.nan)
    hist = f["history_days"].to_numpy(dtype=float, na_value=np.nan)
    invoiced = f["revenue_source"].to_numpy(dtype=object) == INVOICED
    share_text = _share_texts(f["grade_rank"], p)
    dec = c.decision
    has_rec = ~np.isnan(c.rec)

    def txt(values: np.ndarray, i: np.ndarray) -> pa.Array:
        return pa.array(values[i], pa.string())

    def asked(i: np.ndarray) -> pa.Array:
        out = _Text(len(i))
        out.put(c.has_req[i], lambda j: _cat(" (requested ", fmt_amount(c.req[i][j]), ")"))
        out.put(~c.has_req[i], lambda j: _cat(" (current ", fmt_amount(c.cur[i][j]), ")"))
        return out.array()

    def split(i: np.ndarray) -> pa.Array:
        out = _Text(len(i))
        several = c.over[i] & (c.n_lines[i] > 1)
        out.put(several, lambda j: _cat(
            " for its ", pa.array(c.n_lines[i][j].astype(str)),
            " lines together, shared in proportion to what each line asks"))
        return out.array()

    # the decision with its numbers
    lead = _Text(n)
    approve = dec == "approve"
    lead.put(approve & c.has_req & (np.nan_to_num(c.req) == 0),
             lambda i: "Close the line as requested (limit 0)")
    lead.put(approve & c.has_req, lambda i: _cat(
        "Approve ", fmt_amount(c.rec[i]), " as requested (grade ", txt(grade, i), ", PD ",
        fmt_percent(pdv[i]), ")"))
    lead.put(approve & (np.nan_to_num(c.rec) > c.cur), lambda i: _cat(
        "Increase to ", fmt_amount(c.rec[i]), " (current ", fmt_amount(c.cur[i]), ")"))
    lead.put(approve, lambda i: _cat("Keep at ", fmt_amount(c.rec[i])))
    lead.put(dec == "reduce", lambda i: _cat("Reduce to ", fmt_amount(c.rec[i]), asked(i)))
    lead.put(dec == "decline", lambda i: _cat("Decline", asked(i)))

    # why, by the rule that set the limit (nothing more for a request approved as asked)
    why = _Text(n)
    body = ~c.refer & ~(approve & c.has_req)
    why.put(body & c.is_d, lambda i: ": the buyer is in default (grade D), so there is no cover")
    why.put(body & c.held, lambda i: _cat(
        ": an invoice is ", fmt_amount(dpd[i]), " days past due, so the limit is not raised "
        "above the current ", fmt_amount(c.cur[i])))
    why.put(body & c.binding_grade, lambda i: _cat(
        ": grade ", txt(grade, i), " allows ", share_text.take(pa.array(i)),
        " of the buyer's ", pa.array(np.where(
            invoiced[i], "invoicing over the last 12 months (annual revenue unknown)",
            "annual revenue"), pa.string()),
        " of ", fmt_amount(revenue[i]), ", ", fmt_amount(c.cap[i]), split(i)))
    why.put(body & c.binding_el, lambda i: _cat(
        ": the expected-loss budget of ", fmt_amount(np.array([p.el_budget]))[0].as_py(),
        " at PD ", fmt_percent(pdv[i]), " and LGD ", percent_text(p.lgd), " allows ",
        fmt_amount(c.cap[i]), split(i)))
    why.put(body & ~c.has_req & (c.need == 0), lambda i: (
        ": no invoices to this buyer in the last 12 months, so there is no need for a limit"))
    why.put(body & ~c.has_req, lambda i: _cat(
        ": the buyer's usual outstanding with you over the last 12 months is ",
        fmt_amount(c.need[i])))

    note = _Text(n)
    note.put(c.excess, lambda i: _cat(
        " Open receivables of ", fmt_amount(c.open_amt[i]), " exceed the limit by ",
        fmt_amount(c.open_amt[i] - np.nan_to_num(c.rec[i])), "; the excess is not insured."))

    # referrals: every reason, then what the policy alone would give
    phrases: dict[str, Callable[[np.ndarray], Any]] = {
        "L11": lambda i: "no invoice issued in the last year and nothing open, so the model "
                         "gives no PD",
        "L12": lambda i: "the buyer is not in the scores",
        "L13": lambda i: _cat("only ", fmt_amount(hist[i]),
                              f" days of payment history (fewer than {p.min_history_days})"),
        "L14": lambda i: _cat("industry ", txt(f["industry"].to_numpy(dtype=object,
                                                                      na_value=None), i),
                              " was never seen by the model"),
        "L15": lambda i: _cat("country ", txt(f["country"].to_numpy(dtype=object,
                                                                    na_value=None), i),
                              " was never seen by the model"),
        "L16": lambda i: _cat("the request of ", fmt_amount(c.req[i]), " is more than ",
                              f"{p.refer_request_multiple:g}", " times the need of ",
                              fmt_amount(c.need[i])),
    }
    listed = []
    for code, make in phrases.items():
        part = _Text(n)
        mask = c.refer & c.refer_why[code]
        if code == "L13":
            part.put(mask & np.isnan(hist), lambda i: "; no payment history")
        part.put(mask, _prefixed(make))
        listed.append(part.array())
    reasons = pc.replace_substring_regex(_cat(*listed), "^; ", "")
    policy = _Text(n)
    policy.put(c.refer & has_rec, lambda i: _cat(" The policy alone gives ",
                                                 fmt_amount(c.rec[i]), asked(i), "."))
    policy.put(c.refer, lambda i: " No limit is computed without a PD.")

    body_text = _cat(lead.array(), why.array(), ".", note.array())
    refer_text = _cat("Refer to a credit manager: ", reasons, ".", policy.array())
    return pc.if_else(pa.array(c.refer), refer_text, body_text)


def _prefixed(make: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """A phrase template with ``"; "`` before it, for joining the reasons of a referral."""
    return lambda i: _cat("; ", make(i))


def _share_texts(grade_rank: pd.Series, p: LimitsParams) -> pa.Array:
    """The grade's revenue share as text per line (the eleven texts are made once)."""
    texts = np.array([percent_text(s) for s in (*p.revenue_share, 0.0)], dtype=object)
    rank = pd.to_numeric(grade_rank).to_numpy(dtype=float, na_value=np.nan)
    out = np.full(len(rank), None, dtype=object)
    known = ~np.isnan(rank)
    out[known] = texts[rank[known].astype(np.int64) - 1]
    return pa.array(out, pa.string())


# --------------------------------------------------------------------------- the run


ALL_SUPPLIERS = "\x00all"


def _by_bucket(frame: pd.DataFrame, n_buckets: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``frame`` sorted by the bucket of its ``buyer_id`` (stable), and where each bucket's
    rows start (``bounds[k]:bounds[k + 1]``)."""
    from riskmodel.data.book import buckets_of

    if not len(frame):
        return frame, np.zeros(n_buckets + 1, dtype=np.int64)
    bucket = buckets_of(pa.array(frame["buyer_id"].to_numpy(dtype=object), pa.string()),
                        n_buckets)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1), side="left")
    return frame.iloc[order].reset_index(drop=True), bounds


def line_inputs(lines: pd.DataFrame, facts: pd.DataFrame, buyers: pd.DataFrame,
                scores: pd.DataFrame, as_of: dt.date,
                categories: dict[str, set[str]] | None) -> pd.DataFrame:
    """The inputs of :func:`decide` for the lines of one bucket: each line's sums from its
    buyer-supplier pair (the buyer over every supplier for a line without ``supplier_id``),
    the buyer's sums, firmographics and score, and whether the model saw its industry and
    country (``categories``: the categories of the model's training domain; None: not
    checked)."""
    lines = lines.sort_values(["buyer_id", "supplier_id"], na_position="first",
                              kind="stable").reset_index(drop=True)
    whole = facts["whole"].to_numpy(dtype=bool)
    sums = ["invoiced", "terms_amount", "paid_amount", "late_amount", "open_amount"]
    keyed = facts[["buyer_id", *sums]].copy()
    keyed["skey"] = np.where(whole, ALL_SUPPLIERS, facts["supplier_id"].to_numpy(dtype=object))
    keyed = keyed[whole | facts["supplier_id"].notna().to_numpy()]
    m = lines.assign(skey=lines["supplier_id"].fillna(ALL_SUPPLIERS).to_numpy(dtype=object))
    m = m.merge(keyed, how="left", on=["buyer_id", "skey"])
    per_buyer = facts.loc[whole, ["buyer_id", "invoiced", "max_dpd", "first_issue"]].rename(
        columns={"invoiced": "invoiced_all"})
    m = m.merge(per_buyer, how="left", on="buyer_id")
    m = m.merge(buyers[["buyer_id", "industry", "country", "annual_revenue"]], how="left",
                on="buyer_id")
    m = m.merge(scores[["buyer_id", "status", "pd", "grade", "grade_rank"]], how="left",
                on="buyer_id")
    m["need"] = np.round(need_of(m["invoiced"].to_numpy(dtype=float, na_value=np.nan),
                                 m["terms_amount"].to_numpy(dtype=float, na_value=np.nan),
                                 m["paid_amount"].to_numpy(dtype=float, na_value=np.nan),
                                 m["late_amount"].to_numpy(dtype=float, na_value=np.nan)), 2)
    m["open_receivables"] = np.nan_to_num(m["open_amount"].to_numpy(dtype=float,
                                                                     na_value=np.nan))
    annual = m["annual_revenue"].to_numpy(dtype=float, na_value=np.nan)
    invoiced_all = np.nan_to_num(m["invoiced_all"].to_numpy(dtype=float, na_value=np.nan))
    m["revenue"] = np.where(np.isnan(annual), invoiced_all, annual)
    m["revenue_source"] = np.where(np.isnan(annual), INVOICED, ANNUAL)
    first = pd.to_datetime(m["first_issue"])
    m["history_days"] = (pd.Timestamp(as_of) - first).dt.days.astype(float)
    for dim in ("industry", "country"):
        known = None if categories is None else categories.get(dim)
        if known is None:
            m[f"{dim}_seen"] = True
        else:
            m[f"{dim}_seen"] = m[dim].isna() | m[dim].isin(sorted(known))
    return m.drop(columns=["skey"])


class _Writer:
    """A table of a fixed schema written chunk by chunk into a temporary file beside
    ``path`` and renamed into place by :meth:`commit`: CSV (``.csv``: a header row, text
    quoted where needed, empty for null) or Parquet (``.parquet``)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow.csv as pacsv

        self.path = path
        self.tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        self.schema = schema
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: Any
        if path.suffix.lower() == ".parquet":
            self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        else:
            self._writer = pacsv.CSVWriter(self.tmp, schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))

    def write(self, rows: pd.DataFrame | pa.Table) -> None:
        table = (rows if isinstance(rows, pa.Table) else
                 pa.Table.from_pandas(rows, schema=self.schema, preserve_index=False))
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> Path:
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class LimitsResult:
    out: Path
    views: Path | None
    as_of: dt.date
    lines: int
    buyers: int
    decisions: dict[str, int]
    exposures: dict[str, Any]
    exposures_source: str
    model_name: str
    model_version: str
    seconds: float
    files: list[Path] = field(default_factory=list)
    portfolio: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def output_table(decided: pd.DataFrame, as_of: dt.date,
                 lineage: dict[str, str]) -> pa.Table:
    """The decided lines in the columns of :data:`OUTPUT_SCHEMA`."""
    n = len(decided)
    arrays = []
    for f in OUTPUT_SCHEMA:
        if f.name == "as_of":
            arrays.append(pa.array(np.full(n, np.datetime64(as_of, "D")), pa.date32()))
        elif f.name in ("model_name", "model_version"):
            arrays.append(pa.array(np.full(n, lineage.get(f.name, ""), dtype=object), f.type))
        else:
            arrays.append(pa.array(decided[f.name], f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=OUTPUT_SCHEMA)


INVOICE_COLUMNS = ("buyer_id", "supplier_id", "issue_date", "due_date", "amount", "paid_date")


def run(book: Book, scores: Scores, exposures: Exposures, params: Params, out: Path,
        views: Path | None = None, categories: dict[str, set[str]] | None = None,
        warnings: list[str] | None = None, progress: Progress | None = None) -> LimitsResult:
    """Recommend a limit for every line of ``exposures`` at the scores' as-of date, reading
    the book a bucket at a time; write the lines to ``out`` (CSV or Parquet by its suffix)
    and, with ``views``, ``terms.csv``, ``dso.csv``, the portfolio views and the bank export
    into that folder. Every file appears only when the run has finished."""
    t0 = time.perf_counter()
    as_of = scores.as_of
    lineage = {"model_name": scores.model_name, "model_version": scores.model_version}
    n = book.n_buckets
    score_rows, score_at = _by_bucket(scores.frame, n)
    line_rows, line_at = _by_bucket(exposures.lines, n)
    main = _Writer(out, OUTPUT_SCHEMA)
    writers = [main]
    terms_w = bank_w = None
    portfolio = pf.Portfolio(params, as_of, lineage)
    dso_parts: list[pd.DataFrame] = []
    if views is not None:
        terms_w = _Writer(views / "terms.csv", tm.TERMS_SCHEMA)
        bank_w = _Writer(views / "bank_coverage.csv", pf.BANK_SCHEMA)
        writers += [terms_w, bank_w]
    decisions: dict[str, int] = {}
    buyers_seen = 0
    con = duckdb.connect()
    try:
        for k in range(n):
            lines = line_rows.iloc[line_at[k]:line_at[k + 1]]
            if views is None and not len(lines):
                continue
            sc = score_rows.iloc[score_at[k]:score_at[k + 1]]
            days = tm.max_terms(sc["grade_rank"].to_numpy(dtype=float), params.terms)
            mt = pa.table({"buyer_id": pa.array(sc["buyer_id"].to_numpy(dtype=object),
                                                pa.string()),
                           "max_terms": pa.array(np.nan_to_num(days).astype(np.int32),
                                                 mask=np.isnan(days))})
            invoices = book.read("invoices", k, list(INVOICE_COLUMNS))
            buyers = _buyers(book, k)
            facts, dso = bucket_facts(con, invoices, mt, as_of)
            if terms_w is not None:
                dso_parts.append(dso)
                per_buyer = facts[facts["whole"]]
                rows = (buyers[["buyer_id"]]
                        .merge(sc[["buyer_id", "status", "grade", "grade_rank"]], how="left",
                               on="buyer_id")
                        .merge(per_buyer, how="left", on="buyer_id")
                        .sort_values("buyer_id", kind="stable"))
                terms_w.write(tm.terms_rows(rows, params.terms, as_of, lineage))
            if len(lines):
                inputs = line_inputs(lines, facts, buyers, sc, as_of, categories)
                decided = decide(inputs, params.limits)
                main.write(output_table(decided, as_of, lineage))
                buyers_seen += int(decided["buyer_id"].nunique())
                for d, c in decided["decision"].value_counts().items():
                    decisions[str(d)] = decisions.get(str(d), 0) + int(c)
                bank = portfolio.add(decided)
                if bank_w is not None:
                    bank_w.write(bank)
            if progress is not None:
                progress("limits", k + 1, n)
        files = [main.commit()]
        summary = None
        if views is not None and terms_w is not None and bank_w is not None:
            files.append(terms_w.commit())
            files.append(bank_w.commit())
            tables, summary = portfolio.finish()
            tables["dso.csv"] = tm.finish_dso(dso_parts, as_of)
            summary["exposures"] = exposures.counts
            for name in ("dso.csv", *pf.GROUPS.values(), "concentration.csv"):
                path = views / name
                tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
                tables[name].to_csv(tmp, index=False, lineterminator="\n")
                os.replace(tmp, path)
                files.append(path)
            path = views / "portfolio.json"
            tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
            tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
            files.append(path)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        con.close()
    return LimitsResult(out, views, as_of, main.rows, buyers_seen,
                        {d: decisions.get(d, 0) for d in DECISIONS}, exposures.counts,
                        exposures.source, lineage["model_name"], lineage["model_version"],
                        time.perf_counter() - t0, files, summary, list(warnings or []))


def _buyers(book: Book, k: int) -> pd.DataFrame:
    table = book.read("buyers", k, ["buyer_id", "industry", "country", "annual_revenue"])
    return pd.DataFrame({
        "buyer_id": table["buyer_id"].to_numpy(zero_copy_only=False),
        "industry": table["industry"].to_numpy(zero_copy_only=False),
        "country": table["country"].to_numpy(zero_copy_only=False),
        "annual_revenue": table["annual_revenue"].to_numpy(zero_copy_only=False).astype(float),
    })


def model_categories(model_dir: str | Path) -> dict[str, set[str]] | None:
    """The industries and countries a model saw in training, from its domain profile
    (``domain_profile.json``), else from its feature spec (``features.json``); None when the
    folder has neither. ``model_dir``: a model folder (``riskmodel train --out``, or a
    downloaded registered model) or its files folder."""
    from riskmodel.modeling.domain import DomainProfile, DomainProfileError

    base = Path(model_dir)
    for folder in (base / "artifacts" / "riskmodel", base):
        profile = folder / "domain_profile.json"
        if profile.is_file():
            try:
                prof = DomainProfile.from_dict(json.loads(profile.read_text(encoding="utf-8")))
            except (OSError, ValueError, DomainProfileError):
                prof = None
            if prof is not None:
                return {dim: set(cp.shares) for dim, cp in prof.categorical.items()
                        if dim in ("industry", "country")}
        spec = folder / "features.json"
        if spec.is_file():
            try:
                cats = json.loads(spec.read_text(encoding="utf-8")).get("categories", {})
            except (OSError, ValueError):
                continue
            return {dim: set(v) for dim, v in cats.items() if dim in ("industry", "country")}
    return None
