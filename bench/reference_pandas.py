"""A naive pandas reference for riskmodel's point-in-time features.

The way features are often first written in a notebook: ``invoices.groupby("buyer_id")
.apply(one_buyer)``, where ``one_buyer`` loops over the as-of dates and computes every feature
of that buyer with ordinary pandas/NumPy operations on its invoices. Written independently of
``riskmodel.features`` from the feature definitions (see ``reference_duckdb.py``'s docstring
for the conventions). Deliberately simple and slow: it is the baseline, and a second opinion
on the numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

WINDOWS = (90, 180, 365)
PAYDEX_X = np.array([-30, -10, 0, 15, 22, 30, 60, 90, 120, 180], dtype=float)
PAYDEX_Y = np.array([100, 90, 80, 70, 60, 50, 40, 30, 20, 1], dtype=float)
NAN = math.nan


def read_raw(raw_dir: str | Path, buyer_ids: Sequence[str] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """invoices, buyers, events of a synth-style folder (dates as ``datetime64``)."""
    raw = Path(raw_dir)
    filters = [("buyer_id", "in", list(buyer_ids))] if buyer_ids is not None else None
    kw = {"filters": filters}
    inv = pd.read_parquet(raw / "invoices", **kw)
    buyers = pd.read_parquet(raw / "buyers.parquet", **kw)
    events = pd.read_parquet(raw / "events.parquet", **kw)
    for frame, cols in ((inv, ("issue_date", "due_date", "paid_date")), (events, ("event_date",))):
        for c in cols:
            frame[c] = pd.to_datetime(frame[c])
    return inv, buyers, events


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 and not math.isnan(den) else NAN


def _days(s: pd.Series) -> np.ndarray:
    """Dates as int64 days since 1970; missing dates as a far-future day."""
    d = s.to_numpy(dtype="datetime64[D]")
    out = d.astype(np.int64)
    out[np.isnat(d)] = 10**9
    return out


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float((x * w).sum() / w.sum()) if len(x) else NAN


def one_buyer(g: pd.DataFrame, as_of_dates: Sequence[dt.date], windows: Sequence[int],
              event_dates: np.ndarray, dpd_threshold: int, data_start: int) -> pd.DataFrame:
    """Every feature of one buyer (its invoices ``g``) at each as-of date."""
    issue_all, due_all, paid_all = _days(g["issue_date"]), _days(g["due_date"]), _days(
        g["paid_date"])
    amount_all = g["amount"].to_numpy(dtype=float)
    supplier_all = g["supplier_id"].to_numpy(dtype=object)
    dispute_all = (_days(g["dispute_date"]) if "dispute_date" in g
                   else np.full(len(g), np.iinfo(np.int64).max))
    events = event_dates.astype("datetime64[D]").astype(np.int64)
    rows = []
    for a in as_of_dates:
        A = int(np.datetime64(a, "D").astype(np.int64))
        keep = issue_all <= A
        if not keep.any():
            continue
        issue, due, paid = issue_all[keep], due_all[keep], paid_all[keep]
        amount, supplier = amount_all[keep], supplier_all[keep]
        disputed = dispute_all[keep] <= A  # known at A only once disputed (contract 1.1)
        issue_age = A - issue
        known = paid <= A
        paid_age = (A - paid)[known]
        dbt = (paid - due)[known].astype(float)
        p_amt = amount[known]
        paydex = np.interp(dbt, PAYDEX_X, PAYDEX_Y)
        is_open = ~known
        dpd = (A - due)[is_open]
        o_amt = amount[is_open]
        row: dict[str, object] = {"as_of": pd.Timestamp(a)}
        for w in windows:
            inw = paid_age < w
            d, amt = dbt[inw], p_amt[inw]
            has = len(d) > 0
            row[f"dbt_mean_{w}"] = d.mean() if has else NAN
            row[f"dbt_wmean_{w}"] = _wmean(d, amt)
            row[f"dbt_p90_{w}"] = np.quantile(d, 0.9) if has else NAN
            row[f"dbt_max_{w}"] = d.max() if has else NAN
            for k in (0, 30, 60):
                row[f"late_share_{k}_{w}"] = amt[d > k].sum() / amt.sum() if has else NAN
            row[f"paydex_{w}"] = _wmean(paydex[inw], amt)
            now = issue_age < w
            before = (issue_age >= 365) & (issue_age < 365 + w)
            n_now, amt_now = int(now.sum()), amount[now].sum()
            row[f"invoice_count_{w}"] = n_now
            row[f"invoice_amount_{w}"] = amt_now
            # the window a year earlier must lie inside the data (days since the epoch)
            censored = A - 365 - w < data_start - 1
            row[f"invoice_count_yoy_{w}"] = NAN if censored else _ratio(n_now, before.sum())
            row[f"invoice_amount_yoy_{w}"] = NAN if censored else _ratio(
                amt_now, amount[before].sum())
        short, long_ = min(windows), max(windows)
        row["dbt_trend"] = row[f"dbt_wmean_{short}"] - row[f"dbt_wmean_{long_}"]
        # mean DBT per month (30.4375-day buckets back from A) over the last year; OLS slope
        # of it against time in months (so a positive slope means paying later lately)
        last_year = paid_age < 365
        months, bucket = np.unique(np.floor(paid_age[last_year] / 30.4375),
                                   return_inverse=True)
        if len(months) >= 3:
            x = -months
            y = np.bincount(bucket, dbt[last_year]) / np.bincount(bucket)
            row["dbt_slope_monthly"] = ((x - x.mean()) * (y - y.mean())).sum() / (
                (x - x.mean()) ** 2).sum()
        else:
            row["dbt_slope_monthly"] = NAN
        row["open_amount"] = o_amt.sum()
        row["overdue_1_30"] = o_amt[(dpd >= 1) & (dpd <= 30)].sum()
        row["overdue_31_60"] = o_amt[(dpd >= 31) & (dpd <= 60)].sum()
        row["overdue_61_90"] = o_amt[(dpd >= 61) & (dpd <= 90)].sum()
        row["overdue_90p"] = o_amt[dpd > 90].sum()
        row["oldest_open_dpd"] = dpd.max() if len(dpd) else NAN
        row["overdue_share_open"] = _ratio(o_amt[dpd >= 1].sum(), o_amt.sum())
        fell_due = (A - due >= 0) & (A - due < 60)
        row["due_60_unpaid_share"] = (
            amount[fell_due & ~known].sum() / amount[fell_due].sum() if fell_due.any() else NAN)
        year = issue_age < 365
        invoiced_12m = amount[year].sum()
        row["open_to_invoiced_12m"] = _ratio(row["open_amount"], invoiced_12m)
        row["days_since_last_invoice"] = A - issue.max()
        row["history_days"] = A - issue.min()
        row["distinct_suppliers_365"] = len(set(supplier[year & pd.notna(supplier)]))
        row["disputed_share_365"] = (
            amount[year & disputed].sum() / invoiced_12m if year.any() else NAN)
        in_default = bool((events <= A).any()) or bool((dpd >= dpd_threshold).any())
        row["status"] = "in_default" if in_default else "active"
        rows.append(row)
    return pd.DataFrame(rows)


def reference_features_pandas(
    invoices: pd.DataFrame,
    buyers: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    windows: Sequence[int] = WINDOWS,
    dpd_threshold: int = 90,
) -> pd.DataFrame:
    """Same columns as ``riskmodel.features.build_features`` (any order; select by name)."""
    dates = sorted(set(as_of_dates))
    ev = {b: grp["event_date"].to_numpy(dtype="datetime64[ns]")
          for b, grp in events.groupby("buyer_id")}
    no_events = np.array([], dtype="datetime64[ns]")
    data_start = int(_days(invoices["issue_date"]).min())

    def f(g: pd.DataFrame) -> pd.DataFrame:
        return one_buyer(g, dates, windows, ev.get(g.name, no_events), dpd_threshold,
                         data_start)

    out = invoices.groupby("buyer_id").apply(f)
    out = out.reset_index(level=0).reset_index(drop=True)
    firm = buyers.set_index("buyer_id")
    f_year = firm["founded_year"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    idx = firm.index.get_indexer(out["buyer_id"])
    out["age_years"] = out["as_of"].dt.year.to_numpy() - f_year[idx]
    out["log_revenue"] = np.log1p(firm["annual_revenue"].to_numpy(dtype=float)[idx])
    out["log_employees"] = np.log1p(firm["employees"].to_numpy(dtype=float)[idx])
    out["industry"] = firm["industry"].to_numpy()[idx]
    out["country"] = firm["country"].to_numpy()[idx]
    base = f"dbt_wmean_{max(windows)}"
    out["dbt_vs_industry"] = out[base] - out.groupby(["industry", "as_of"])[base].transform(
        "median")
    out["dbt_vs_country"] = out[base] - out.groupby(["country", "as_of"])[base].transform(
        "median")
    out["as_of"] = out["as_of"].astype("datetime64[s]")
    return out.sort_values(["as_of", "buyer_id"], ignore_index=True)
