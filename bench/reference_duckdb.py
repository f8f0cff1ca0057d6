"""A plain DuckDB SQL reference for riskmodel's point-in-time features.

Written independently of ``riskmodel.features`` from the feature definitions (the docstring
of ``tests/test_features_hand.py`` and the contract), the way a data engineer would write it
first: one SQL query straight over ``read_parquet`` of a raw dataset folder, string
``buyer_id`` keys, every invoice issued by the as-of date cross-joined with the as-of dates
(no look-back pruning), and plain ``CASE WHEN`` aggregates grouped by (buyer, as-of).

Definitions, at as-of date ``A`` with ``issue_age = A - issue_date`` and, for invoices paid on
or before ``A`` only, ``paid_age = A - paid_date`` and ``dbt = paid_date - due_date``:

* a window ``w`` holds the payments with ``paid_age < w`` (DBT features) or the invoices with
  ``issue_age < w`` (counts, amounts); the year-earlier window is ``365 <= issue_age < 365+w``;
* DBT means/quantiles/shares over an empty window are NULL; counts and amounts are 0;
  ratios with a zero denominator are NULL;
* an invoice is open at ``A`` if it has no ``paid_date <= A``; ``dpd = A - due_date``;
* ``overdue_share_open``: share of the open amount that is past due (``dpd >= 1``), NULL if
  nothing is open; ``due_60_unpaid_share``: of the amount that fell due in the last 60 days
  (``0 <= dpd < 60``), the share still open at ``A``, NULL if nothing fell due then;
* status is ``in_default`` if the buyer has an event on or before ``A`` or an open invoice at
  least ``dpd_threshold`` days past due;
* ``dbt_vs_industry`` is ``dbt_wmean_<longest>`` minus the median of it over the buyers of the
  same industry at the same ``A`` (NULLs ignored); ``dbt_vs_country`` the same by country.
* a dispute counts at ``A`` only if ``dispute_date <= A`` (contract 1.1).

Run as a script to print the features of a folder:
``python bench/reference_duckdb.py RAW_DIR 2023-12-31 [...]``.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

WINDOWS = (90, 180, 365)
# PAYDEX-style points: days beyond terms -> score, linear between points, flat outside
PAYDEX_POINTS = ((-30, 100), (-10, 90), (0, 80), (15, 70), (22, 60), (30, 50), (60, 40),
                 (90, 30), (120, 20), (180, 1))


def paydex_sql(x: str) -> str:
    """``CASE`` expression: the piecewise-linear PAYDEX score of days-beyond-terms ``x``."""
    (x0, y0), yn = PAYDEX_POINTS[0], PAYDEX_POINTS[-1][1]
    parts = [f"WHEN {x} <= {x0} THEN {float(y0)}"]
    for (xa, ya), (xb, yb) in zip(PAYDEX_POINTS, PAYDEX_POINTS[1:], strict=False):
        parts.append(f"WHEN {x} <= {xb} THEN {float(ya)} + ({x} - ({xa})) * "
                     f"({float(yb - ya)} / {float(xb - xa)})")
    parts.append(f"ELSE {float(yn)}")
    return "CASE " + " ".join(parts) + " END"


def feature_sql(raw_dir: str | Path, as_of_dates: Sequence[dt.date],
                windows: Sequence[int] = WINDOWS, dpd_threshold: int = 90) -> str:
    raw = Path(raw_dir)
    inv_src = raw / "invoices"
    inv_glob = f"{inv_src}/*.parquet" if inv_src.is_dir() else f"{raw}/invoices.parquet"
    dates = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(set(as_of_dates)))
    columns = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{inv_glob}')").fetchall()
    dispute_col = ("dispute_date" if any(c[0] == "dispute_date" for c in columns)
                   else "NULL::DATE")
    short, long_ = min(windows), max(windows)

    win = []
    for w in windows:
        paid = f"paid_age < {w}"
        issued = f"issue_age < {w}"
        prev = f"issue_age >= 365 AND issue_age < {365 + w}"
        win.append(f"""
        avg(CASE WHEN {paid} THEN dbt END) AS dbt_mean_{w},
        sum(CASE WHEN {paid} THEN dbt * amount END)
            / sum(CASE WHEN {paid} THEN amount END) AS dbt_wmean_{w},
        quantile_cont(CASE WHEN {paid} THEN dbt END, 0.9) AS dbt_p90_{w},
        max(CASE WHEN {paid} THEN dbt END) AS dbt_max_{w},
        sum(CASE WHEN {paid} AND dbt > 0 THEN amount ELSE 0 END)
            / sum(CASE WHEN {paid} THEN amount END) AS late_share_0_{w},
        sum(CASE WHEN {paid} AND dbt > 30 THEN amount ELSE 0 END)
            / sum(CASE WHEN {paid} THEN amount END) AS late_share_30_{w},
        sum(CASE WHEN {paid} AND dbt > 60 THEN amount ELSE 0 END)
            / sum(CASE WHEN {paid} THEN amount END) AS late_share_60_{w},
        sum(CASE WHEN {paid} THEN paydex * amount END)
            / sum(CASE WHEN {paid} THEN amount END) AS paydex_{w},
        count(CASE WHEN {issued} THEN 1 END) AS invoice_count_{w},
        sum(CASE WHEN {issued} THEN amount ELSE 0 END) AS invoice_amount_{w},
        CASE WHEN as_of - {365 + w} >= (SELECT min(issue_date) FROM inv) - 1 THEN
            count(CASE WHEN {issued} THEN 1 END)::DOUBLE
            / nullif(count(CASE WHEN {prev} THEN 1 END), 0) END AS invoice_count_yoy_{w},
        CASE WHEN as_of - {365 + w} >= (SELECT min(issue_date) FROM inv) - 1 THEN
            sum(CASE WHEN {issued} THEN amount ELSE 0 END)
            / nullif(sum(CASE WHEN {prev} THEN amount ELSE 0 END), 0) END
            AS invoice_amount_yoy_{w},""")
    window_cols = "".join(win)

    return f"""
WITH
dates AS (SELECT unnest([{dates}]) AS as_of),
inv AS (
    SELECT buyer_id, supplier_id, issue_date, due_date, paid_date, amount,
           {dispute_col} AS dispute_date
    FROM read_parquet('{inv_glob}')
),
x AS (
    SELECT i.buyer_id, d.as_of, i.issue_date, i.amount, i.supplier_id,
           coalesce(i.dispute_date <= d.as_of, false) AS disputed,
           d.as_of - i.issue_date AS issue_age,
           CASE WHEN i.paid_date <= d.as_of THEN d.as_of - i.paid_date END AS paid_age,
           CASE WHEN i.paid_date <= d.as_of THEN i.paid_date - i.due_date END AS dbt,
           CASE WHEN i.paid_date <= d.as_of
                THEN {paydex_sql("(i.paid_date - i.due_date)")} END AS paydex,
           (i.paid_date IS NULL OR i.paid_date > d.as_of) AS is_open,
           d.as_of - i.due_date AS dpd
    FROM inv i, dates d
    WHERE i.issue_date <= d.as_of
),
agg AS (
    SELECT buyer_id, as_of,{window_cols}
        sum(CASE WHEN is_open THEN amount ELSE 0 END) AS open_amount,
        sum(CASE WHEN is_open AND dpd BETWEEN 1 AND 30 THEN amount ELSE 0 END) AS overdue_1_30,
        sum(CASE WHEN is_open AND dpd BETWEEN 31 AND 60 THEN amount ELSE 0 END)
            AS overdue_31_60,
        sum(CASE WHEN is_open AND dpd BETWEEN 61 AND 90 THEN amount ELSE 0 END)
            AS overdue_61_90,
        sum(CASE WHEN is_open AND dpd > 90 THEN amount ELSE 0 END) AS overdue_90p,
        max(CASE WHEN is_open THEN dpd END) AS oldest_open_dpd,
        sum(CASE WHEN is_open AND dpd >= 1 THEN amount ELSE 0 END)
            / nullif(sum(CASE WHEN is_open THEN amount ELSE 0 END), 0) AS overdue_share_open,
        sum(CASE WHEN is_open AND dpd >= 0 AND dpd < 60 THEN amount ELSE 0 END)
            / sum(CASE WHEN dpd >= 0 AND dpd < 60 THEN amount END) AS due_60_unpaid_share,
        sum(CASE WHEN issue_age < 365 THEN amount ELSE 0 END) AS invoiced_12m,
        max(issue_date) AS last_issue,
        min(issue_date) AS first_issue,
        count(DISTINCT CASE WHEN issue_age < 365 THEN supplier_id END)
            AS distinct_suppliers_365,
        sum(CASE WHEN issue_age < 365 AND disputed THEN amount ELSE 0 END)
            / sum(CASE WHEN issue_age < 365 THEN amount END) AS disputed_share_365,
        bool_or(is_open AND dpd >= {int(dpd_threshold)}) AS long_overdue
    FROM x
    GROUP BY buyer_id, as_of
),
monthly AS (
    SELECT buyer_id, as_of, floor(paid_age / 30.4375) AS months_ago, avg(dbt) AS dbt
    FROM x WHERE paid_age < 365
    GROUP BY buyer_id, as_of, months_ago
),
slope AS (
    SELECT buyer_id, as_of, regr_slope(dbt, -months_ago) AS dbt_slope_monthly
    FROM monthly GROUP BY buyer_id, as_of HAVING count(*) >= 3
),
ev AS (
    SELECT e.buyer_id, d.as_of, true AS has_event
    FROM read_parquet('{raw / "events.parquet"}') e, dates d
    WHERE e.event_date <= d.as_of
    GROUP BY e.buyer_id, d.as_of
),
buyers AS (SELECT * FROM read_parquet('{raw / "buyers.parquet"}'))
SELECT a.buyer_id, a.as_of,
       CASE WHEN ev.has_event OR a.long_overdue THEN 'in_default' ELSE 'active' END AS status,
       a.* EXCLUDE (buyer_id, as_of, invoiced_12m, last_issue, first_issue, long_overdue),
       a.dbt_wmean_{short} - a.dbt_wmean_{long_} AS dbt_trend,
       s.dbt_slope_monthly,
       a.open_amount / nullif(a.invoiced_12m, 0) AS open_to_invoiced_12m,
       a.as_of - a.last_issue AS days_since_last_invoice,
       a.as_of - a.first_issue AS history_days,
       year(a.as_of) - b.founded_year AS age_years,
       ln(1 + b.annual_revenue) AS log_revenue,
       ln(1 + b.employees) AS log_employees,
       b.industry, b.country,
       a.dbt_wmean_{long_}
           - median(a.dbt_wmean_{long_}) OVER (PARTITION BY b.industry, a.as_of)
           AS dbt_vs_industry,
       a.dbt_wmean_{long_}
           - median(a.dbt_wmean_{long_}) OVER (PARTITION BY b.country, a.as_of)
           AS dbt_vs_country
FROM agg a
LEFT JOIN slope s USING (buyer_id, as_of)
LEFT JOIN ev USING (buyer_id, as_of)
LEFT JOIN buyers b USING (buyer_id)
ORDER BY a.as_of, a.buyer_id
"""


def reference_features_duckdb(
    raw_dir: str | Path,
    as_of_dates: Sequence[dt.date],
    windows: Sequence[int] = WINDOWS,
    dpd_threshold: int = 90,
    threads: int | None = None,
) -> pd.DataFrame:
    """Features of every buyer with an invoice issued on or before each as-of date: columns
    ``buyer_id, as_of, status`` and the features, sorted by as-of date and buyer."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        frame = con.sql(feature_sql(raw_dir, as_of_dates, windows, dpd_threshold)).df()
    finally:
        con.close()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[s]")
    return frame


if __name__ == "__main__":
    out = reference_features_duckdb(sys.argv[1], [dt.date.fromisoformat(a) for a in sys.argv[2:]])
    print(out.to_string(max_rows=20))
