"""Payment terms: the longest terms recommended per grade, and what they do to DSO.

* Per buyer (``terms.csv``): the recommended maximum terms of its grade
  (``terms.max_days``, never above ``terms.insurable_max_days``; grade D: 0, cash in
  advance; no grade: none), and its current amount-weighted terms (due - issue) over the
  invoices issued in the 12 months ``(A - 365, A]``.
* Per policyholder (``dso.csv``, by ``supplier_id``): the DSO of its book over those 12
  months, ``sum(amount x days outstanding inside the window) / amount invoiced in the
  window``, before and after applying the recommended terms. *After*: an invoice on longer
  terms than its buyer's maximum has its due date moved to issue + maximum; the buyer's days
  beyond terms are kept, so its payment moves earlier by the same number of days (never
  before the issue date). An invoice still open at ``A`` counts up to ``A`` in both (its
  payment date is not known, so it is not moved).

The sums are computed by DuckDB in integer cents, a bucket of the book at a time, and added
up over the buckets (:func:`finish_dso`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from riskmodel.params import TermsParams

#: the action each buyer's terms call for (``terms.csv`` column ``terms_action``)
ACTIONS = ("keep", "shorten", "cash_in_advance", "none")
#: the columns of ``terms.csv``
TERMS_SCHEMA = pa.schema([
    ("buyer_id", pa.string()), ("as_of", pa.string()), ("status", pa.string()),
    ("grade", pa.string()), ("invoiced_12m", pa.float64()),
    ("current_terms_days", pa.float64()), ("days_beyond_terms", pa.float64()),
    ("max_terms_days", pa.int32()), ("invoiced_over_max_share", pa.float64()),
    ("terms_action", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
])

#: per supplier from one bucket's buyer-supplier pairs (``p``: the pair rows of
#: :data:`riskmodel.decisions.limits.PAIR_SQL`, amounts in cents)
DSO_SQL = """
SELECT supplier_id, COUNT(CASE WHEN invoices > 0 THEN 1 END) AS buyers,
  SUM(invoices) AS invoices, SUM(invoiced) AS invoiced, SUM(days_before) AS days_before,
  SUM(days_after) AS days_after
FROM p
GROUP BY supplier_id
"""


def max_terms(grade_rank: np.ndarray, params: TermsParams) -> np.ndarray:
    """The recommended maximum terms in days per grade rank (1-10; 11 is D: 0, cash in
    advance); NaN where there is no grade."""
    rank = np.asarray(grade_rank, dtype=float)
    days = np.array([*params.max_days, 0], dtype=float)
    days = np.minimum(days, params.insurable_max_days)
    out = np.full(len(rank), np.nan)
    known = ~np.isnan(rank)
    out[known] = days[rank[known].astype(np.int64) - 1]
    return out


def dso_sums(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per supplier, from the pairs ``p`` of one bucket: buyers and invoices issued in the
    12 months, the amount invoiced (in cents), and the cents x days outstanding inside the
    window before and after the recommended terms. Sums of several buckets add up."""
    frame = con.sql(DSO_SQL).to_arrow_table().to_pandas()
    for col in ("invoiced", "days_before", "days_after"):
        frame[col] = frame[col].astype(float)
    return frame


def finish_dso(parts: list[pd.DataFrame], as_of: dt.date) -> pd.DataFrame:
    """``dso.csv``: the sums of the buckets added up per supplier, and the DSO before and
    after (suppliers that invoiced nothing in the 12 months have no DSO and are left out;
    invoices without ``supplier_id`` form one group with an empty ``supplier_id``)."""
    cols = ["supplier_id", "as_of", "buyers", "invoices_12m", "invoiced_12m", "dso_before",
            "dso_after", "dso_change"]
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    allp = pd.concat(frames, ignore_index=True)
    allp["supplier_id"] = allp["supplier_id"].fillna("")
    sums = allp.groupby("supplier_id", sort=True).agg(
        buyers=("buyers", "sum"), invoices=("invoices", "sum"), invoiced=("invoiced", "sum"),
        days_before=("days_before", "sum"), days_after=("days_after", "sum")).reset_index()
    sums = sums[sums["invoiced"] > 0].reset_index(drop=True)
    before = sums["days_before"] / sums["invoiced"]
    after = sums["days_after"] / sums["invoiced"]
    return pd.DataFrame({
        "supplier_id": sums["supplier_id"],
        "as_of": as_of.isoformat(),
        "buyers": sums["buyers"].astype(np.int64),
        "invoices_12m": sums["invoices"].astype(np.int64),
        "invoiced_12m": (sums["invoiced"] / 100).round(2),
        "dso_before": before.round(2),
        "dso_after": after.round(2),
        "dso_change": (after - before).round(2),
    })[cols]


def terms_rows(buyers: pd.DataFrame, params: TermsParams, as_of: dt.date,
               lineage: dict[str, str]) -> pd.DataFrame:
    """``terms.csv`` rows of one bucket. ``buyers``: one row per buyer of the bucket with
    ``status``, ``grade``, ``grade_rank`` (from the scores; missing where the buyer is not
    scored) and the buyer-level sums of :func:`riskmodel.decisions.limits.bucket_facts`
    (``invoiced``, ``terms_amount``, ``over_terms``, ``paid_amount``, ``late_amount``)."""
    buyers = buyers.reset_index(drop=True)
    rank = pd.to_numeric(buyers["grade_rank"]).to_numpy(dtype=float, na_value=np.nan)
    days = max_terms(rank, params)
    inv = np.nan_to_num(buyers["invoiced"].to_numpy(dtype=float, na_value=np.nan))
    paid = np.nan_to_num(buyers["paid_amount"].to_numpy(dtype=float, na_value=np.nan))
    over = np.nan_to_num(buyers["over_terms"].to_numpy(dtype=float, na_value=np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        current = np.where(inv > 0, buyers["terms_amount"].to_numpy(dtype=float) / inv, np.nan)
        late = np.where(paid > 0, buyers["late_amount"].to_numpy(dtype=float) / paid, np.nan)
        over_share = np.where(inv > 0, over / inv, np.nan)
    action = np.select([np.isnan(days), days == 0, over > 0], ["none", "cash_in_advance",
                                                                "shorten"], "keep")
    return pd.DataFrame({
        "buyer_id": buyers["buyer_id"],
        "as_of": as_of.isoformat(),
        "status": buyers["status"],
        "grade": buyers["grade"],
        "invoiced_12m": np.round(inv, 2),
        "current_terms_days": np.round(current, 1),
        "days_beyond_terms": np.round(late, 1),
        "max_terms_days": pd.Series(days).astype("Int64").to_numpy(dtype=object,
                                                                     na_value=None),
        "invoiced_over_max_share": np.round(over_share, 4),
        "terms_action": action,
        "model_name": lineage.get("model_name", ""),
        "model_version": lineage.get("model_version", ""),
    })
