"""Point-in-time buyer features: one row per (buyer, as-of date).

A feature at as-of date ``A`` uses only what was known at ``A`` (the contract's point-in-time
rule): invoices issued on or before ``A``; a payment only if ``paid_date <= A`` (otherwise the
invoice is open at ``A``); a dispute only if ``dispute_date <= A``; events dated on or before
``A``; the buyer's static attributes.

Batch independence: :func:`bucket_features` is the unit of work (a book bucket locally, a
partition in Spark). A buyer's row is a pure function of that buyer's own rows and a frozen
context: the data start (from the book's manifest) and the peer context (medians over the
whole book at each as-of date, :func:`peer_context`), which :func:`with_peers` joins on. So a
buyer's features are the same whichever batch it is computed in.

Determinism: amounts are summed in integer cents and the PAYDEX score times 840 (exact integers), so no
sum depends on the order DuckDB's threads add rows; the monthly slope is an ordered
aggregate. Two runs give identical bytes. Where a buyer has no history for a feature, the
feature is missing (NaN), not 0.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from riskmodel.features.labels import as_of_table, status_sql

ID_COLUMNS = ("buyer_id", "as_of", "status")
CATEGORICAL = ("industry", "country")
#: the invoice columns the engine reads
INVOICE_COLUMNS = ("buyer_id", "supplier_id", "issue_date", "due_date", "paid_date", "amount",
                   "dispute_date")
#: peer columns: the buyer's peer base feature minus the book's median of it over the
#: buyers of the same dimension value at the same as-of date (the frozen peer context)
PEER_COLUMNS = {"dbt_vs_industry": "industry", "dbt_vs_country": "country"}
#: where the credit cycle stands at A: the groups whose cycle values a buyer's row carries
#: (its industry, its country, the whole book)
CYCLE_GROUPS = ("industry", "country", "portfolio")
#: the cycle measures of a group at a date, as the peer context stores them
CYCLE_MEASURES = ("overdue30_share", "overdue60_share", "dbt_median", "new_default_rate")
#: months back of the changes: the context holds every as-of date A and A minus these
CYCLE_CHANGES = (3, 6)
#: the cycle feature columns of each group: (measure, months back of the change; 0 for the
#: level). A compact set (the reasons are in docs/features.md): the 60+ share is nested in
#: the 30+ one; a 3-month change is one step of quarterly snapshots and largely repeats the
#: 6-month one; the change of the 30+ share follows the seasons more than the cycle.
CYCLE_FEATURES = (("overdue30_share", 0), ("dbt_median", 0), ("dbt_median", 6),
                  ("new_default_rate", 0), ("new_default_rate", 6))
#: the buyer count each cycle measure is over (its group's value is missing below
#: ``FeatureConfig.cycle_min_buyers``)
_CYCLE_COUNT = {"overdue30_share": "live_buyers", "overdue60_share": "live_buyers",
                "dbt_median": "dbt_buyers", "new_default_rate": "prior_live_buyers"}
# PAYDEX-style scale: days beyond terms -> score (100 anticipates, 80 prompt, 50 is 30 days
# late, 20 is 120 days late), amount-weighted over the invoices paid in the window.
_PAYDEX_DAYS = np.array([-30.0, -10.0, 0.0, 15.0, 22.0, 30.0, 60.0, 90.0, 120.0, 180.0])
_PAYDEX_SCORE = np.array([100.0, 90.0, 80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 1.0])
#: the score of a whole number of days times 840 (the least common multiple of the segment
#: lengths' denominators) is a whole number: the engine sums it exactly as an integer
_PAYDEX_SCALE = 840


@dataclass(frozen=True)
class FeatureConfig:
    windows: tuple[int, ...] = (90, 180, 365)
    dpd_threshold: int = 90
    #: first day of the book (the manifest's ``data_start``): a window that starts before it
    #: is censored, so a year-on-year feature whose earlier window starts before it is missing
    data_start: dt.date | None = None
    #: cap on history_days, so that buyers of early snapshots (whose history the start of
    #: the data cuts short) and of late ones look alike; None: no cap
    history_cap_days: int | None = None
    #: the data carry ``dispute_date``: dispute features are built (a dispute counts at A only
    #: if ``dispute_date <= A``); without it they are left out
    disputes: bool = True
    #: a group's cycle value (industry, country, portfolio) is missing when fewer buyers
    #: count in it (live buyers; for the default rate, buyers live 3 months earlier)
    cycle_min_buyers: int = 30
    threads: int = 2

    def __post_init__(self) -> None:
        if not self.windows or any(w <= 0 for w in self.windows):
            raise ValueError(f"feature windows must be positive days, got {self.windows}")
        if self.cycle_min_buyers < 1:
            raise ValueError(f"cycle_min_buyers must be at least 1, got {self.cycle_min_buyers}")


def paydex_score(days_beyond_terms: np.ndarray) -> np.ndarray:
    return np.interp(days_beyond_terms, _PAYDEX_DAYS, _PAYDEX_SCORE)


def feature_names(cfg: FeatureConfig) -> list[str]:
    """The model's feature columns, in output order."""
    names: list[str] = []
    for w in cfg.windows:
        names += [
            f"dbt_mean_{w}", f"dbt_wmean_{w}", f"dbt_p90_{w}", f"dbt_max_{w}",
            f"late_share_0_{w}", f"late_share_30_{w}", f"late_share_60_{w}", f"paydex_{w}",
            f"invoice_count_{w}", f"invoice_amount_{w}", f"invoice_count_yoy_{w}",
            f"invoice_amount_yoy_{w}",
        ]
    names += [
        "dbt_trend", "dbt_slope_monthly",
        "open_amount", "overdue_1_30", "overdue_31_60", "overdue_61_90", "overdue_90p",
        "oldest_open_dpd", "overdue_share_open", "due_60_unpaid_share", "open_to_invoiced_12m",
        "days_since_last_invoice", "history_days", "distinct_suppliers_365",
        *(["disputed_share_365"] if cfg.disputes else []),
        "age_years", "log_revenue", "log_employees", "industry", "country",
        *PEER_COLUMNS,
        *cycle_names(),
    ]
    return names


def cycle_names() -> list[str]:
    """The cycle feature columns, in output order: ``cycle_<group>_<measure>`` and
    ``..._chg<n>m`` (the value at A minus the value n calendar months earlier)."""
    return [f"cycle_{g}_{m}" + (f"_chg{n}m" if n else "")
            for g in CYCLE_GROUPS for m, n in CYCLE_FEATURES]


def context_columns() -> list[str]:
    """The feature columns that come from the frozen context (peers and cycle), not from the
    buyer's own rows."""
    return [*PEER_COLUMNS, *cycle_names()]



def _when(cond: str, expr: str) -> str:
    """``CASE WHEN cond THEN expr END``: DuckDB runs many conditional aggregates over one
    scan 2-3x faster written this way than as ``agg(expr) FILTER (WHERE cond)``."""
    return f"CASE WHEN {cond} THEN {expr} END"


def _window_sql(w: int, data_start: dt.date | None) -> str:
    paid = f"paid_age < {w}"
    issued = f"issue_age < {w}"
    prev = f"issue_age >= 365 AND issue_age < {365 + w}"
    # the earlier window (A-365-w, A-365] must lie inside the data, or the ratio is censored
    seen = "true" if data_start is None else f"as_of - {365 + w} >= DATE '{data_start}' - 1"
    paid_amt = f"sum({_when(paid, 'cents')})"
    n_issued = f"count({_when(issued, '1')})"
    amt_issued = f"coalesce(sum({_when(issued, 'cents')}), 0)"
    late = "coalesce(sum({}), 0) / {}"
    return f"""
        avg({_when(paid, 'dbt')}) AS dbt_mean_{w},
        sum({_when(paid, 'dbt * cents')}) / {paid_amt} AS dbt_wmean_{w},
        quantile_cont({_when(paid, 'dbt')}, 0.9) AS dbt_p90_{w},
        max({_when(paid, 'dbt')}) AS dbt_max_{w},
        {late.format(_when(paid + ' AND dbt > 0', 'cents'), paid_amt)} AS late_share_0_{w},
        {late.format(_when(paid + ' AND dbt > 30', 'cents'), paid_amt)} AS late_share_30_{w},
        {late.format(_when(paid + ' AND dbt > 60', 'cents'), paid_amt)} AS late_share_60_{w},
        sum({_when(paid, 'paydex_c * cents')}) / {paid_amt} / {_PAYDEX_SCALE} AS paydex_{w},
        {n_issued} AS invoice_count_{w},
        {amt_issued} / 100 AS invoice_amount_{w},
        CASE WHEN {seen} THEN {n_issued}::DOUBLE / nullif(count({_when(prev, '1')}), 0) END
            AS invoice_count_yoy_{w},
        CASE WHEN {seen} THEN {amt_issued} / nullif(sum({_when(prev, 'cents')}), 0) END
            AS invoice_amount_yoy_{w},"""


#: features that are 0, not missing, for a buyer with history but nothing recent
_ZERO_WHEN_NOTHING_RECENT = (
    "open_amount", "overdue_1_30", "overdue_31_60", "overdue_61_90", "overdue_90p",
    "distinct_suppliers_365",
)
#: amounts summed in integer cents (exact, so the result never depends on summation order)
_CENTS = ("open_amount", "overdue_1_30", "overdue_31_60", "overdue_61_90", "overdue_90p")


def _chunk_sql(cfg: FeatureConfig) -> str:
    longest = max(cfg.windows)
    short = min(cfg.windows)
    lookback = 365 + longest
    windows = "".join(_window_sql(w, cfg.data_start) for w in cfg.windows)
    history = ("p.history_days" if cfg.history_cap_days is None
               else f"least(p.history_days, {int(cfg.history_cap_days)})")
    zero_cols = [*(f"invoice_count_{w}" for w in cfg.windows),
                 *(f"invoice_amount_{w}" for w in cfg.windows), *_ZERO_WHEN_NOTHING_RECENT]
    zeros = ", ".join(
        f"coalesce(agg.{c}, 0){' / 100' if c in _CENTS else ''} AS {c}" for c in zero_cols)
    disputes = (
        f",\n        coalesce(sum({_when('issue_age < 365 AND disputed', 'cents')}), 0)"
        f"\n            / sum({_when('issue_age < 365', 'cents')}) AS disputed_share_365"
        if cfg.disputes else "")
    is_open = "is_open"
    return f"""
WITH
panel AS (
    SELECT f.buyer, a.as_of, a.as_of - f.first_issue AS history_days
    FROM first_issue f JOIN snapshot_dates a ON f.first_issue <= a.as_of
),
x AS (
    -- invoices that can matter at A: issued in the look-back, paid in the longest window,
    -- or open at A. Payment facts are masked unless the payment is dated on or before A.
    SELECT i.buyer, a.as_of, i.cents, i.supplier,
           coalesce(i.dispute_date <= a.as_of, false) AS disputed,
           a.as_of - i.issue_date AS issue_age,
           CASE WHEN i.paid_date <= a.as_of THEN a.as_of - i.paid_date END AS paid_age,
           CASE WHEN i.paid_date <= a.as_of THEN i.paid_date - i.due_date END AS dbt,
           CASE WHEN i.paid_date <= a.as_of THEN i.paydex_c END AS paydex_c,
           (i.paid_date IS NULL OR i.paid_date > a.as_of) AS is_open,
           a.as_of - i.due_date AS dpd
    FROM inv i JOIN snapshot_dates a
      ON i.issue_date <= a.as_of
     AND (i.issue_date > a.as_of - {lookback} OR i.paid_date IS NULL
          OR i.paid_date > a.as_of - {longest})
),
agg AS (
    SELECT buyer, as_of,{windows}
        coalesce(sum({_when(is_open, 'cents')}), 0) AS open_amount,
        coalesce(sum({_when('is_open AND dpd BETWEEN 1 AND 30', 'cents')}), 0) AS overdue_1_30,
        coalesce(sum({_when('is_open AND dpd BETWEEN 31 AND 60', 'cents')}), 0)
            AS overdue_31_60,
        coalesce(sum({_when('is_open AND dpd BETWEEN 61 AND 90', 'cents')}), 0)
            AS overdue_61_90,
        coalesce(sum({_when('is_open AND dpd > 90', 'cents')}), 0) AS overdue_90p,
        max({_when(is_open, 'dpd')}) AS oldest_open_dpd,
        coalesce(sum({_when('is_open AND dpd >= 1', 'cents')}), 0)
            / nullif(sum({_when(is_open, 'cents')}), 0) AS overdue_share_open,
        coalesce(sum({_when('is_open AND dpd >= 0 AND dpd < 60', 'cents')}), 0)
            / sum({_when('dpd >= 0 AND dpd < 60', 'cents')}) AS due_60_unpaid_share,
        coalesce(sum({_when('issue_age < 365', 'cents')}), 0) AS invoiced_12m,
        count(DISTINCT {_when('issue_age < 365', 'supplier')})
            AS distinct_suppliers_365{disputes}
    FROM x GROUP BY buyer, as_of
),
monthly AS (
    SELECT buyer, as_of, floor(paid_age / 30.4375) AS month_ago, avg(dbt) AS dbt
    FROM x WHERE paid_age < 365 GROUP BY ALL
),
slope AS (
    SELECT buyer, as_of,
           CASE WHEN count(*) >= 3 THEN regr_slope(dbt, -month_ago ORDER BY month_ago) END AS dbt_slope_monthly
    FROM monthly GROUP BY ALL
),
last_issue AS (
    SELECT p.buyer, p.as_of, p.as_of - d.issue_date AS days_since_last_invoice
    FROM panel p ASOF JOIN (SELECT DISTINCT buyer, issue_date FROM inv) d
      ON p.buyer = d.buyer AND d.issue_date <= p.as_of
)
SELECT ids.buyer_id, p.as_of,
       CASE WHEN st.in_default THEN 'in_default' ELSE 'active' END AS status,
       agg.* EXCLUDE (buyer, as_of, invoiced_12m, {", ".join(zero_cols)}),
       {zeros},
       agg.dbt_wmean_{short} - agg.dbt_wmean_{longest} AS dbt_trend,
       slope.dbt_slope_monthly,
       agg.open_amount / nullif(agg.invoiced_12m, 0) AS open_to_invoiced_12m,
       l.days_since_last_invoice,
       {history} AS history_days,
       year(p.as_of) - b.founded_year AS age_years,
       ln(1 + b.annual_revenue) AS log_revenue,
       ln(1 + b.employees) AS log_employees,
       b.industry, b.country
FROM panel p
LEFT JOIN agg USING (buyer, as_of)
LEFT JOIN slope USING (buyer, as_of)
LEFT JOIN last_issue l USING (buyer, as_of)
LEFT JOIN buyers b ON b.buyer = p.buyer
JOIN ids ON ids.buyer = p.buyer
LEFT JOIN st ON st.buyer_id = ids.buyer_id AND st.as_of = p.as_of
ORDER BY p.as_of, ids.buyer_id
"""


def _engine_invoices(invoices: pa.Table, buyer_ids: pa.Array) -> pa.Table:
    """The invoice columns the query needs: integer buyer and supplier codes, dates as
    date32, amounts in integer cents, and the PAYDEX-style score of each paid invoice
    times 840 (both exact integers) (masked to paid-by-A inside the query)."""
    codes = pc.index_in(invoices["buyer_id"], value_set=buyer_ids)
    if codes.null_count:
        bad = pc.filter(invoices["buyer_id"], pc.is_null(codes))[0].as_py()
        raise ValueError(f"invoices: buyer_id {bad!r} is not in the buyers table "
                         "(validate first)")
    n = invoices.num_rows
    if "supplier_id" in invoices.column_names:
        enc = pc.dictionary_encode(invoices["supplier_id"])
        enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
        supplier = enc.indices.cast(pa.int32())
    else:
        supplier = pa.nulls(n, pa.int32())
    dbt = pc.days_between(invoices["due_date"], invoices["paid_date"])
    dbt_np = dbt.to_numpy(zero_copy_only=False).astype(float)
    paydex = np.round(paydex_score(dbt_np) * _PAYDEX_SCALE)
    amount = invoices["amount"].to_numpy(zero_copy_only=False)
    if "dispute_date" in invoices.column_names:
        dispute = invoices["dispute_date"]
    else:
        dispute = pa.nulls(n, pa.date32())
    return pa.table({
        "buyer": codes.cast(pa.int32()),
        "supplier": supplier,
        "issue_date": invoices["issue_date"],
        "due_date": invoices["due_date"],
        "paid_date": invoices["paid_date"],
        "cents": pa.array(np.round(amount * 100).astype(np.int64)),
        "dispute_date": dispute,
        "paydex_c": pa.array(paydex, mask=np.isnan(dbt_np)).cast(pa.int64()),
    })


def _engine_buyers(buyers: pa.Table) -> pa.Table:
    return pa.table({
        "buyer": pa.array(np.arange(buyers.num_rows, dtype=np.int32)),
        "country": buyers["country"],
        "industry": buyers["industry"],
        "founded_year": buyers["founded_year"].cast(pa.float64()),
        "employees": buyers["employees"],
        "annual_revenue": buyers["annual_revenue"],
    })


def _first_issue(inv: pa.Table) -> pa.Table:
    """First issue date per buyer code."""
    grouped = inv.group_by("buyer").aggregate([("issue_date", "min")])
    return pa.table({"buyer": grouped["buyer"], "first_issue": grouped["issue_date_min"]})


def bucket_features(
    invoices: pa.Table,
    buyers: pa.Table,
    events: pa.Table,
    as_of_dates: Sequence[dt.date],
    cfg: FeatureConfig,
) -> pa.Table:
    """Features of every buyer in these tables at each as-of date, without the peer columns:
    the unit of work of a book bucket (and of a Spark partition).

    The tables are the book's Arrow tables; every row of each buyer must be present. A
    buyer's row is a pure function of its own rows and ``cfg`` (the data start comes from the
    book's manifest, never from the rows at hand), so it is the same whichever other buyers
    are in the call. Columns: ``buyer_id, as_of, status``, then :func:`feature_names`
    without the peer columns; rows sorted by as-of date and buyer.
    """
    buyer_ids = buyers["buyer_id"].combine_chunks()
    if buyer_ids.null_count or pc.count_distinct(buyer_ids).as_py() != len(buyer_ids):
        raise ValueError("buyers: buyer_id must be unique and present (validate first)")
    inv = _engine_invoices(invoices, buyer_ids)
    con = duckdb.connect(config={"threads": cfg.threads})
    try:
        con.register("inv", inv)
        con.register("first_issue", _first_issue(inv))
        con.register("snapshot_dates", as_of_table(as_of_dates))
        con.register("buyers", _engine_buyers(buyers))
        con.register("ids", pa.table({"buyer": pa.array(np.arange(len(buyer_ids),
                                                                  dtype=np.int32)),
                                      "buyer_id": buyer_ids}))
        con.sql(f"CREATE TEMP VIEW st AS {status_sql(con, invoices, events, cfg.dpd_threshold)}")
        table = con.sql(_chunk_sql(cfg)).to_arrow_table()
    finally:
        con.close()
    return _typed(table, [n for n in feature_names(cfg) if n not in context_columns()])


def _schema(names: Sequence[str]) -> pa.Schema:
    fields = [pa.field("buyer_id", pa.string()), pa.field("as_of", pa.date32()),
              pa.field("status", pa.string())]
    fields += [pa.field(n, pa.string() if n in CATEGORICAL else pa.float64()) for n in names]
    return pa.schema(fields)


def feature_schema(cfg: FeatureConfig) -> pa.Schema:
    """The Arrow schema of a feature table: ids as text and date, features as float64,
    categories as text."""
    return _schema(feature_names(cfg))


def _typed(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """Output column order and types (see :func:`feature_schema`)."""
    schema = _schema(names)
    return table.select(schema.names).cast(schema)


# --------------------------------------------------------------------------- context


#: schema metadata of a peer context: which feature its medians are of
PEER_BASE_KEY = b"riskmodel.peer_base"
#: schema metadata of a peer context: the definitions its cycle measures follow (JSON)
CYCLE_KEY = b"riskmodel.cycle"


def peer_base(cfg: FeatureConfig) -> str:
    """The feature the peer columns compare: the amount-weighted days beyond terms over the
    longest window."""
    return f"dbt_wmean_{max(cfg.windows)}"


def cycle_spec(cfg: FeatureConfig) -> str:
    """What the cycle measures of a context depend on, as stored in its metadata: a context
    fits a run only with the same text."""
    return json.dumps({"dbt": f"dbt_wmean_{min(cfg.windows)}",
                       "dpd_threshold": int(cfg.dpd_threshold),
                       "changes_months": list(CYCLE_CHANGES)}, sort_keys=True)


def months_back(day: dt.date, months: int) -> dt.date:
    """``day`` minus calendar months, month-end aware: a month end goes to the month end
    (2023-06-30 -> 2023-03-31 -> 2022-12-31); another day keeps its number, cut to the
    length of the month (2023-05-30 -> 2023-02-28)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    last = calendar.monthrange(y, m + 1)[1]
    if day.day == calendar.monthrange(day.year, day.month)[1]:
        return dt.date(y, m + 1, last)
    return dt.date(y, m + 1, min(day.day, last))


def cycle_dates(as_of_dates: Iterable[dt.date]) -> list[dt.date]:
    """The dates a context needs for these as-of dates: each ``A`` and ``A`` minus each of
    :data:`CYCLE_CHANGES` months."""
    return sorted({d for a in as_of_dates
                   for d in (a, *(months_back(a, n) for n in CYCLE_CHANGES))})


def _shifts(as_of_dates: Iterable[dt.date]) -> pa.Table:
    """``as_of`` and, per change, ``as_of_<n>m``: the date n calendar months earlier."""
    dates = sorted(set(as_of_dates))
    cols = {"as_of": pa.array(dates, pa.date32())}
    for n in CYCLE_CHANGES:
        cols[f"as_of_{n}m"] = pa.array([months_back(d, n) for d in dates], pa.date32())
    return pa.table(cols)


_CYCLE_ROWS_SQL = """
WITH
x AS (
    -- the open invoices at D (for days past due) and the payments of (D - w, D]
    SELECT i.buyer, d.as_of,
           max(CASE WHEN i.paid_date IS NULL OR i.paid_date > d.as_of
                    THEN d.as_of - i.due_date END) AS max_dpd,
           sum(CASE WHEN i.paid_date <= d.as_of THEN (i.paid_date - i.due_date) * i.cents END)
               / sum(CASE WHEN i.paid_date <= d.as_of THEN i.cents END) AS dbt
    FROM inv i JOIN cycle_dates d
      ON i.issue_date <= d.as_of AND (i.paid_date IS NULL OR i.paid_date > d.as_of - {w})
    GROUP BY ALL
),
entered AS (
    -- the default started in (D - 3 months, D]: an event, or an invoice reaching the
    -- threshold still unpaid (both known at D)
    SELECT e.buyer_id, d.as_of FROM status_events e JOIN cycle_dates d
      ON e.event_date > d.prev AND e.event_date <= d.as_of
    UNION
    SELECT r.buyer_id, d.as_of FROM status_reached r JOIN cycle_dates d
      ON r.crossing > d.prev AND r.crossing <= d.as_of
)
SELECT s.as_of, b.industry, b.country,
       NOT s.in_default AS live,
       coalesce(NOT s.in_default AND x.max_dpd > 30, false) AS overdue30,
       coalesce(NOT s.in_default AND x.max_dpd > 60, false) AS overdue60,
       CASE WHEN NOT s.in_default THEN x.dbt END AS dbt,
       coalesce(NOT sp.in_default, false) AS prior_live,
       coalesce(NOT sp.in_default, false) AND en.buyer_id IS NOT NULL AS entered
FROM st s
JOIN cycle_dates d ON d.as_of = s.as_of
JOIN ids ON ids.buyer_id = s.buyer_id
LEFT JOIN buyers b ON b.buyer = ids.buyer
LEFT JOIN x ON x.buyer = ids.buyer AND x.as_of = s.as_of
LEFT JOIN st sp ON sp.buyer_id = s.buyer_id AND sp.as_of = d.prev
LEFT JOIN entered en ON en.buyer_id = s.buyer_id AND en.as_of = s.as_of
ORDER BY s.as_of, s.buyer_id
"""

#: columns of :func:`bucket_cycle`
_CYCLE_ROW_SCHEMA = pa.schema([
    ("as_of", pa.date32()), ("industry", pa.string()), ("country", pa.string()),
    ("live", pa.bool_()), ("overdue30", pa.bool_()), ("overdue60", pa.bool_()),
    ("dbt", pa.float64()), ("prior_live", pa.bool_()), ("entered", pa.bool_()),
])


def bucket_cycle(
    invoices: pa.Table,
    buyers: pa.Table,
    events: pa.Table,
    as_of_dates: Sequence[dt.date],
    cfg: FeatureConfig,
) -> pa.Table:
    """The buyer-level measures the cycle context is made of, at every date of
    :func:`cycle_dates` (so also 3 and 6 months before each as-of date), for the buyers of
    one bucket: one small row per buyer and date, for every buyer with an invoice issued by
    the date (so a group has a row at every date it has a buyer). Point in time at each
    date ``D`` like the features: ``live`` (not in default at D), ``overdue30``/``overdue60``
    (live, with an invoice open at D more than 30/60 days past due), ``dbt`` (live:
    ``dbt_wmean`` of the shortest window at D),
    ``prior_live`` (not in default 3 calendar months before D) and ``entered`` (prior_live,
    and an event or an invoice reaching ``dpd_threshold`` days past due in between).
    Only this bucket's buyers' own rows are used."""
    dates = cycle_dates(as_of_dates)
    shifts = _shifts(dates)
    buyer_ids = buyers["buyer_id"].combine_chunks()
    codes = pc.index_in(invoices["buyer_id"], value_set=buyer_ids)
    if codes.null_count:
        raise ValueError("invoices: a buyer_id is not in the buyers table (validate first)")
    amount = invoices["amount"].to_numpy(zero_copy_only=False)
    inv = pa.table({"buyer": codes.cast(pa.int32()), "issue_date": invoices["issue_date"],
                    "due_date": invoices["due_date"], "paid_date": invoices["paid_date"],
                    "cents": pa.array(np.round(amount * 100).astype(np.int64))})
    con = duckdb.connect(config={"threads": cfg.threads})
    try:
        con.register("inv", inv)
        con.register("cycle_dates", pa.table({"as_of": shifts["as_of"],
                                              "prev": shifts["as_of_3m"]}))
        con.register("snapshot_dates", as_of_table([*dates, *shifts["as_of_3m"].to_pylist()]))
        con.register("buyers", _engine_buyers(buyers))
        con.register("ids", pa.table({"buyer": pa.array(np.arange(len(buyer_ids),
                                                                  dtype=np.int32)),
                                      "buyer_id": buyer_ids}))
        con.sql(f"CREATE TEMP VIEW st AS {status_sql(con, invoices, events, cfg.dpd_threshold)}")
        table = con.sql(_CYCLE_ROWS_SQL.format(w=int(min(cfg.windows)))).to_arrow_table()
    finally:
        con.close()
    return table.select(_CYCLE_ROW_SCHEMA.names).cast(_CYCLE_ROW_SCHEMA)


_CONTEXT_SCHEMA = pa.schema([
    ("as_of", pa.date32()), ("dimension", pa.string()), ("value", pa.string()),
    ("median", pa.float64()), ("buyers", pa.int64()),
    ("live_buyers", pa.int64()), ("overdue30_share", pa.float64()),
    ("overdue60_share", pa.float64()), ("dbt_buyers", pa.int64()),
    ("dbt_median", pa.float64()), ("prior_live_buyers", pa.int64()),
    ("new_default_rate", pa.float64()),
])


def peer_context(
    parts: Iterable[pa.Table],
    cycle_parts: Iterable[pa.Table],
    as_of_dates: Sequence[dt.date],
    cfg: FeatureConfig,
) -> pa.Table:
    """The frozen context of a run, over the whole book: one row per date, dimension
    (``industry``, ``country``, ``portfolio``) and value (empty for the portfolio).

    * Peer columns, at each as-of date (empty at the other dates): ``median``, the median
      of the peer base feature over the buyers of the group, and ``buyers``, how many.
      ``parts`` are :func:`bucket_features` outputs (or just their ``as_of``, ``industry``,
      ``country`` and base columns), all of the book's buckets.
    * Cycle columns, at each date of :func:`cycle_dates`: ``live_buyers``, the shares of
      them more than 30 and 60 days past due, ``dbt_median`` over the ``dbt_buyers`` live
      buyers with a DBT, ``new_default_rate`` of the ``prior_live_buyers`` (live 3 months
      earlier). ``cycle_parts`` are :func:`bucket_cycle` outputs, all of the book's buckets.
      No minimum group size is applied here (see :func:`peers_sql`).

    Rows sorted; the schema metadata names the peer base feature and the cycle definitions."""
    base = peer_base(cfg)
    cols = ["as_of", "industry", "country", base]
    tables = [t.select(cols) for t in parts]
    schema = pa.schema([("as_of", pa.date32()), ("industry", pa.string()),
                        ("country", pa.string()), (base, pa.float64())])
    rows = pa.concat_tables(tables) if tables else schema.empty_table()
    cyc_tables = [t.select(_CYCLE_ROW_SCHEMA.names) for t in cycle_parts]
    cyc_rows = (pa.concat_tables(cyc_tables) if cyc_tables
                else _CYCLE_ROW_SCHEMA.empty_table())
    con = duckdb.connect(config={"threads": cfg.threads})
    try:
        con.register("rows", rows)
        con.register("cyc_rows", cyc_rows)
        return _context(con, as_of_dates, cfg)
    finally:
        con.close()


def peer_context_files(
    base_files: Sequence[str],
    cycle_files: Sequence[str],
    as_of_dates: Sequence[dt.date],
    cfg: FeatureConfig,
    memory_limit: str = "1GB",
) -> pa.Table:
    """:func:`peer_context` of context rows stored in Parquet files (``base_files``: the
    ``as_of``, ``industry``, ``country`` and peer base columns of :func:`bucket_features`
    outputs; ``cycle_files``: :func:`bucket_cycle` outputs), every bucket of the book. DuckDB
    reads the files itself, so memory holds the groups' medians, not the rows."""
    if not base_files or not cycle_files:
        return peer_context([], [], as_of_dates, cfg)
    base = peer_base(cfg)
    con = duckdb.connect(config={"threads": cfg.threads, "memory_limit": memory_limit})
    try:
        con.read_parquet(list(base_files)).create_view("base_files")
        con.read_parquet(list(cycle_files)).create_view("cycle_files")
        con.execute(f"CREATE VIEW rows AS SELECT as_of, industry, country, {base} "
                    "FROM base_files")
        names = ", ".join(_CYCLE_ROW_SCHEMA.names)
        con.execute(f"CREATE VIEW cyc_rows AS SELECT {names} FROM cycle_files")
        return _context(con, as_of_dates, cfg)
    finally:
        con.close()


def _context(con: duckdb.DuckDBPyConnection, as_of_dates: Sequence[dt.date],
             cfg: FeatureConfig) -> pa.Table:
    """The context query over the relations ``rows`` and ``cyc_rows`` of ``con``."""
    base = peer_base(cfg)
    peer_sel = f"median(r.{base}) AS median, count(r.{base}) AS buyers"
    cyc_sel = """count(CASE WHEN r.live THEN 1 END) AS live_buyers,
        count(CASE WHEN r.overdue30 THEN 1 END)::DOUBLE
            / nullif(count(CASE WHEN r.live THEN 1 END), 0) AS overdue30_share,
        count(CASE WHEN r.overdue60 THEN 1 END)::DOUBLE
            / nullif(count(CASE WHEN r.live THEN 1 END), 0) AS overdue60_share,
        count(r.dbt) AS dbt_buyers, median(r.dbt) AS dbt_median,
        count(CASE WHEN r.prior_live THEN 1 END) AS prior_live_buyers,
        count(CASE WHEN r.entered THEN 1 END)::DOUBLE
            / nullif(count(CASE WHEN r.prior_live THEN 1 END), 0) AS new_default_rate"""

    def by_group(sel: str, src: str, dates: str) -> str:
        groups = [f"SELECT r.as_of, '{dim}' AS dimension, r.{dim} AS value, {sel} "
                  f"FROM {src} r GROUP BY ALL" for dim in CATEGORICAL]
        # a portfolio row at every date, even one without buyers
        groups.append(f"SELECT d.as_of, 'portfolio' AS dimension, NULL::VARCHAR AS value, "
                      f"{sel} FROM {dates} d LEFT JOIN {src} r USING (as_of) GROUP BY ALL")
        return " UNION ALL ".join(groups)

    con.register("peer_dates", as_of_table(as_of_dates))
    con.register("cyc_dates", as_of_table(cycle_dates(as_of_dates)))
    table = con.sql(f"""
        WITH p AS ({by_group(peer_sel, "rows", "peer_dates")}),
             c AS ({by_group(cyc_sel, "cyc_rows", "cyc_dates")})
        SELECT coalesce(p.as_of, c.as_of) AS as_of,
               coalesce(p.dimension, c.dimension) AS dimension,
               coalesce(p.value, c.value) AS value,
               p.median, p.buyers, c.* EXCLUDE (as_of, dimension, value)
        FROM p FULL JOIN c ON p.as_of = c.as_of AND p.dimension = c.dimension
                          AND p.value IS NOT DISTINCT FROM c.value
        ORDER BY as_of, dimension, value NULLS FIRST""").to_arrow_table()
    table = table.select(_CONTEXT_SCHEMA.names).cast(_CONTEXT_SCHEMA)
    return table.replace_schema_metadata({PEER_BASE_KEY: base.encode(),
                                          CYCLE_KEY: cycle_spec(cfg).encode()})


def context_dates(context: pa.Table) -> tuple[set[dt.date], set[dt.date]]:
    """The dates a context holds: those with peer medians (the as-of dates of the run that
    computed it) and those with cycle values."""
    port = context.filter(pc.equal(context["dimension"], "portfolio"))
    peer = port.filter(pc.is_valid(port["buyers"]))["as_of"].to_pylist()
    return set(peer), set(port["as_of"].to_pylist())


def peers_sql(features: str, context: str, shifts: str, cfg: FeatureConfig) -> str:
    """A query that adds the peer and cycle columns to ``features`` (a relation of bucket
    outputs) from ``context`` (:func:`peer_context`) and ``shifts`` (each as-of date and the
    dates 3 and 6 months earlier), sorted by as-of date and buyer. A cycle value is missing
    where its group has fewer than ``cfg.cycle_min_buyers`` buyers, and a change where
    either end is."""
    base = peer_base(cfg)
    least = int(cfg.cycle_min_buyers)

    def level(alias: str, measure: str) -> str:
        return (f"CASE WHEN {alias}.{_CYCLE_COUNT[measure]} >= {least} "
                f"THEN {alias}.{measure} END")

    values = []
    for measure, n in CYCLE_FEATURES:
        if n:
            values.append(f"{level('c', measure)} - {level(f'c{n}', measure)} "
                          f"AS {measure}_chg{n}m")
        else:
            values.append(f"{level('c', measure)} AS {measure}")
    earlier = "".join(
        f" LEFT JOIN {context} c{n} ON c{n}.as_of = s.as_of_{n}m "
        f"AND c{n}.dimension = c.dimension AND c{n}.value IS NOT DISTINCT FROM c.value"
        for n in sorted({n for _, n in CYCLE_FEATURES if n}))
    cycle = (f"SELECT s.as_of, c.dimension, c.value, {', '.join(values)} FROM {shifts} s "
             f"JOIN {context} c ON c.as_of = s.as_of{earlier}")
    cols, joins = [], []
    for i, (name, dim) in enumerate(PEER_COLUMNS.items()):
        cols.append(f"f.{base} - c{i}.median AS {name}")
        joins.append(f"LEFT JOIN {context} c{i} ON c{i}.as_of = f.as_of "
                     f"AND c{i}.dimension = '{dim}' AND c{i}.value = f.{dim}")
    for group in CYCLE_GROUPS:
        on = "" if group == "portfolio" else f" AND g_{group}.value = f.{group}"
        joins.append(f"LEFT JOIN cycle g_{group} ON g_{group}.as_of = f.as_of "
                     f"AND g_{group}.dimension = '{group}'{on}")
        cols += [f"g_{group}.{m}{f'_chg{n}m' if n else ''} AS "
                 f"cycle_{group}_{m}{f'_chg{n}m' if n else ''}" for m, n in CYCLE_FEATURES]
    return (f"WITH cycle AS ({cycle}) SELECT f.*, {', '.join(cols)} FROM {features} f "
            f"{' '.join(joins)} ORDER BY f.as_of, f.buyer_id")


def with_peers(parts: Sequence[pa.Table], context: pa.Table, cfg: FeatureConfig) -> pa.Table:
    """Bucket outputs (at least one) joined with the context: the final feature table."""
    table = pa.concat_tables(parts)
    con = duckdb.connect(config={"threads": cfg.threads})
    try:
        con.register("f", table)
        con.register("ctx", context)
        con.register("shifts", _shifts(pc.unique(table["as_of"]).to_pylist()))
        table = con.sql(peers_sql("f", "ctx", "shifts", cfg)).to_arrow_table()
    finally:
        con.close()
    return _typed(table, feature_names(cfg))


def features_to_pandas(table: pa.Table) -> pd.DataFrame:
    """The feature table as pandas: ``as_of`` as ``datetime64[s]``, text as ``str``."""
    frame = table.to_pandas()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[s]")
    for col in ("buyer_id", "status", *CATEGORICAL):
        frame[col] = frame[col].astype("str")
    return frame


def build_features(
    invoices: pd.DataFrame,
    buyers: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    cfg: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Features of validated pandas tables held in memory: :func:`bucket_features` over all
    of them, the peer and cycle context from the same rows, then the context columns.

    Columns: ``buyer_id``, ``as_of``, ``status``, then :func:`feature_names`; rows sorted by
    as-of date and buyer. Without ``cfg.data_start`` the first issue date of ``invoices`` is
    the data start. A book is featurised bucket by bucket with the same functions
    (:func:`riskmodel.pipeline.features`).
    """
    from riskmodel.data.book import to_arrow

    cfg = cfg or FeatureConfig()
    if cfg.data_start is None and len(invoices):
        cfg = dataclasses.replace(cfg, data_start=invoices["issue_date"].min().date())
    if not len(invoices):
        return pd.DataFrame(columns=[*ID_COLUMNS, *feature_names(cfg)])
    tables = (to_arrow("invoices", invoices), to_arrow("buyers", buyers),
              to_arrow("events", events))
    part = bucket_features(*tables, as_of_dates, cfg)
    context = peer_context([part], [bucket_cycle(*tables, as_of_dates, cfg)], as_of_dates, cfg)
    return features_to_pandas(with_peers([part], context, cfg))
