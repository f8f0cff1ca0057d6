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
    groups = []
    for power in (18, 15, 12, 9, 6, 3, 0):
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


def _pick(n: int, cases: Sequence[tuple[np.ndarray, Any]], default: Any = None) -> pa.Array:
    """Per row the first choice whose condition holds (``default`` where none does)."""
    out = np.full(n, default, dtype=object)
    done = np.zeros(n, dtype=bool)
    for cond, choice in cases:
        if isinstance(choice, pa.Scalar):
            choice = choice.as_py()
        take = cond & ~done
        if take.any():
            values = (choice.to_numpy(zero_copy_only=False)
                      if isinstance(choice, pa.Array | pa.ChunkedArray)
                      else np.broadcast_to(np.asarray(choice, dtype=object), (n,)))
            out[take] = values[take]
            done |= take
    return pa.array(out, pa.string())


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


FACTS_SQL = """
SELECT buyer_id, supplier_id, CAST(GROUPING(supplier_id) AS BOOLEAN) AS whole,
  CAST(SUM(CASE WHEN iss > {w0} THEN c END) AS DOUBLE) / 100 AS invoiced,
  CAST(SUM(CASE WHEN iss > {w0} THEN c * (due - iss) END) AS DOUBLE) / 100 AS terms_amount,
  CAST(SUM(CASE WHEN iss > {w0} AND due - iss > max_terms THEN c END) AS DOUBLE) / 100
    AS over_terms,
  CAST(SUM(CASE WHEN paid > {w0} THEN c END) AS DOUBLE) / 100 AS paid_amount,
  CAST(SUM(CASE WHEN paid > {w0} THEN c * (paid - due) END) AS DOUBLE) / 100 AS late_amount,
  CAST(SUM(CASE WHEN paid IS NULL THEN c END) AS DOUBLE) / 100 AS open_amount,
  MAX(CASE WHEN paid IS NULL THEN {a} - due END) AS max_dpd,
  MIN(iss) AS first_issue
FROM x
GROUP BY GROUPING SETS ((buyer_id, supplier_id), (buyer_id))
"""


def _view_sql(as_of: dt.date, columns: Sequence[str]) -> str:
    a = f"DATE '{as_of.isoformat()}'"
    supplier = "i.supplier_id" if "supplier_id" in columns else "CAST(NULL AS VARCHAR)"
    return f"""
CREATE OR REPLACE VIEW x AS
SELECT i.buyer_id, {supplier} AS supplier_id, i.issue_date AS iss, i.due_date AS due,
       CASE WHEN i.paid_date <= {a} THEN i.paid_date END AS paid,
       CAST(round(i.amount * 100) AS BIGINT) AS c, m.max_terms
FROM inv i LEFT JOIN mt m ON i.buyer_id = m.buyer_id
WHERE i.issue_date <= {a}
"""


def bucket_facts(con: duckdb.DuckDBPyConnection, invoices: pa.Table, max_terms: pa.Table,
                 as_of: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per buyer-supplier pair (``whole`` False) and per buyer over every supplier (``whole``
    True), at ``as_of``: the amount invoiced in the 12 months, the amount x terms of those
    invoices, their amount on terms longer than the buyer's ``max_terms``, the amount and
    amount x days beyond terms of the invoices paid in the 12 months, the open amount, the
    most days past due of an open invoice, and the first issue date. A payment after
    ``as_of`` is not known (the invoice is open). Also the DSO sums per supplier
    (:func:`riskmodel.decisions.terms.dso_sums`)."""
    con.register("inv", invoices)
    con.register("mt", max_terms)
    try:
        con.execute(_view_sql(as_of, invoices.column_names))
        a = f"DATE '{as_of.isoformat()}'"
        w0 = f"DATE '{(as_of - dt.timedelta(days=365)).isoformat()}'"
        facts = con.sql(FACTS_SQL.format(a=a, w0=w0)).to_arrow_table()
        dso = tm.dso_sums(con, as_of)
    finally:
        con.execute("DROP VIEW IF EXISTS x")
        con.unregister("inv")
        con.unregister("mt")
    frame = pd.DataFrame({name: facts[name].to_numpy(zero_copy_only=False)
                          for name in facts.column_names})
    for col in ("invoiced", "terms_amount", "over_terms", "paid_amount", "late_amount",
                "open_amount", "max_dpd"):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
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
    codes = _cat(*[_pick(n, [(flags[c], c + ";")]) for c in sorted(flags)])
    codes = pc.utf8_rtrim(codes, characters=";")

    f["grade_cap"] = np.round(grade_cap, 2)
    f["el_cap"] = np.where(np.isfinite(el_cap), np.round(el_cap, 2), np.nan)
    f["recommended_limit"] = rec
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


def sentences(c: _Context) -> pa.Array:
    """The sentence of every line: the decision with its numbers, and why (docs/decisions.md,
    "The sentence")."""
    f, p = c.f, c.params
    n = len(f)
    rec, req, cur = fmt_amount(c.rec), fmt_amount(c.req), fmt_amount(c.cur)
    grade = pa.array(f["grade"].to_numpy(dtype=object, na_value=None), pa.string())
    pd_text = fmt_percent(f["pd"].to_numpy(dtype=float, na_value=np.nan))
    asked = _pick(n, [(c.has_req, _cat(" (requested ", req, ")"))],
                  None)
    asked = _cat(asked, _pick(n, [(~c.has_req, _cat(" (current ", cur, ")"))]))
    dec = c.decision

    # why the limit is what it is, by the rule that set it
    lines_together = _cat(" for its ", pa.array(c.n_lines.astype(str)),
                          " lines together, shared in proportion to what each line asks")
    split = _pick(n, [(c.over & (c.n_lines > 1), lines_together)], "")
    source = np.where(f["revenue_source"].to_numpy(dtype=object) == INVOICED,
                      "invoicing over the last 12 months (annual revenue unknown)",
                      "annual revenue")
    share_text = _share_texts(f["grade_rank"], p)
    why_grade = _cat(": grade ", grade, " allows ", share_text, " of the buyer's ",
                     pa.array(source, pa.string()), " of ",
                     fmt_amount(f["revenue"].to_numpy(dtype=float, na_value=np.nan)), ", ",
                     fmt_amount(c.cap), split)
    why_el = _cat(": the expected-loss budget of ", fmt_amount(np.full(n, p.el_budget)),
                  " at PD ", pd_text, " and LGD ", percent_text(p.lgd), " allows ",
                  fmt_amount(c.cap), split)
    dpd = f["max_dpd"].to_numpy(dtype=float, na_value=np.nan)
    why_held = _cat(": an invoice is ", fmt_amount(dpd), " days past due, so the limit is "
                    "not raised above the current ", cur)
    why_need = _cat(": the buyer's usual outstanding with you over the last 12 months is ",
                    fmt_amount(c.need))
    no_need = ": no invoices to this buyer in the last 12 months, so there is no need for a limit"
    why = _pick(n, [
        (c.is_d, ": the buyer is in default (grade D), so there is no cover"),
        (c.held, why_held),
        (c.binding_grade, why_grade),
        (c.binding_el, why_el),
        (~c.has_req & (c.need == 0), no_need),
        (~c.has_req, why_need),
    ], "")
    grade_pd = _cat(" (grade ", grade, ", PD ", pd_text, ")")
    lead = _pick(n, [
        ((dec == "approve") & c.has_req & (np.nan_to_num(c.req) == 0),
         "Close the line as requested (limit 0)"),
        ((dec == "approve") & c.has_req, _cat("Approve ", rec, " as requested", grade_pd)),
        ((dec == "approve") & (np.nan_to_num(c.rec) > c.cur),
         _cat("Increase to ", rec, " (current ", cur, ")")),
        (dec == "approve", _cat("Keep at ", rec)),
        (dec == "reduce", _cat("Reduce to ", rec, asked)),
        (dec == "decline", _cat("Decline", asked)),
    ], "")
    approved_as_asked = (dec == "approve") & c.has_req
    body = _cat(lead, _pick(n, [(~approved_as_asked, why)], ""), ".")

    # referrals: every reason, then what the policy alone would give
    hist = f["history_days"].to_numpy(dtype=float, na_value=np.nan)
    phrases = {
        "L11": "no invoice issued in the last year and nothing open, so the model gives no PD",
        "L12": "the buyer is not in the scores",
        "L13": _pick(n, [(np.isnan(hist), "no payment history"),
                         (~np.isnan(hist), _cat("only ", fmt_amount(hist),
                                                " days of payment history (fewer than ",
                                                str(p.min_history_days), ")"))]),
        "L14": _cat("industry ", pa.array(f["industry"].to_numpy(dtype=object, na_value=None),
                                          pa.string()), " was never seen by the model"),
        "L15": _cat("country ", pa.array(f["country"].to_numpy(dtype=object, na_value=None),
                                         pa.string()), " was never seen by the model"),
        "L16": _cat("the request of ", req, " is more than ",
                    f"{p.refer_request_multiple:g}", " times the need of ", fmt_amount(c.need)),
    }
    parts = [_pick(n, [(c.refer_why[code], _cat("; ", phrases[code]))]) for code in sorted(phrases)]
    listed = pc.replace_substring_regex(_cat(*parts), "^; ", "")
    has_rec = ~np.isnan(c.rec)
    policy = _pick(n, [(has_rec, _cat(" The policy alone gives ", rec, asked, ".")),
                       (~has_rec, " No limit is computed without a PD.")], "")
    refer_text = _cat("Refer to a credit manager: ", listed, ".", policy)

    note = _pick(n, [(c.excess, _cat(" Open receivables of ", fmt_amount(c.open_amt),
                                     " exceed the limit by ",
                                     fmt_amount(c.open_amt - np.nan_to_num(c.rec)),
                                     "; the excess is not insured."))], "")
    return _cat(_pick(n, [(c.refer, refer_text)], None),
                _pick(n, [(~c.refer, _cat(body, note))], None))


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
    """A table written chunk by chunk into a temporary file beside ``path`` and renamed
    into place by :meth:`commit`: CSV (``.csv``) or Parquet (``.parquet``)."""

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        self.parquet = path.suffix.lower() == ".parquet"
        self.schema = schema
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh: Any = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self._pq.write_table(table)
        else:
            first = self._fh is None
            if first:
                self._fh = open(self.tmp, "w", encoding="utf-8", newline="")
            frame.to_csv(self._fh, header=first, index=False, lineterminator="\n")
        self.rows += len(frame)

    def commit(self, empty: pd.DataFrame) -> Path:
        if self.rows == 0:
            self.write(empty)
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


def _empty(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


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


def output_frame(decided: pd.DataFrame, as_of: dt.date,
                 lineage: dict[str, str]) -> pd.DataFrame:
    """The decided lines in the columns of :data:`OUTPUT_SCHEMA`."""
    n = len(decided)
    out = pd.DataFrame({
        "buyer_id": decided["buyer_id"].to_numpy(dtype=object),
        "supplier_id": decided["supplier_id"].to_numpy(dtype=object),
        "as_of": np.full(n, as_of, dtype=object),
        "grade": decided["grade"].to_numpy(dtype=object, na_value=None),
        "pd": decided["pd"].to_numpy(dtype=float, na_value=np.nan),
    })
    for col in ("current_limit", "requested_limit", "need", "open_receivables", "revenue"):
        out[col] = decided[col].to_numpy(dtype=float, na_value=np.nan)
    out["revenue_source"] = decided["revenue_source"].to_numpy(dtype=object)
    for col in ("grade_cap", "el_cap", "recommended_limit"):
        out[col] = decided[col].to_numpy(dtype=float, na_value=np.nan)
    for col in ("decision", "decision_reasons", "sentence"):
        out[col] = decided[col].to_numpy(dtype=object)
    out["model_name"] = lineage.get("model_name", "")
    out["model_version"] = lineage.get("model_version", "")
    return out[OUTPUT_SCHEMA.names]


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
        terms_w, bank_w = _Writer(views / "terms.csv"), _Writer(views / "bank_coverage.csv")
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
                main.write(output_frame(decided, as_of, lineage))
                buyers_seen += int(decided["buyer_id"].nunique())
                for d, c in decided["decision"].value_counts().items():
                    decisions[str(d)] = decisions.get(str(d), 0) + int(c)
                bank = portfolio.add(decided)
                if bank_w is not None:
                    bank_w.write(bank)
            if progress is not None:
                progress("limits", k + 1, n)
        files = [main.commit(_empty(OUTPUT_SCHEMA))]
        summary = None
        if views is not None and terms_w is not None and bank_w is not None:
            files.append(terms_w.commit(_empty_terms()))
            files.append(bank_w.commit(pd.DataFrame(columns=list(pf.BANK_COLUMNS))))
            tables, summary = portfolio.finish()
            tables["dso.csv"] = tm.finish_dso(dso_parts, as_of)
            summary["exposures"] = exposures.counts
            for name in ("dso.csv", *pf.GROUPS.values(), "concentration.csv"):
                w = _Writer(views / name)
                w.write(tables[name])
                files.append(w.commit(tables[name]))
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


def _empty_terms() -> pd.DataFrame:
    return pd.DataFrame(columns=["buyer_id", "as_of", "status", "grade", "invoiced_12m",
                                 "current_terms_days", "days_beyond_terms", "max_terms_days",
                                 "invoiced_over_max_share", "terms_action", "model_name",
                                 "model_version"])


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
