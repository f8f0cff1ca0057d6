"""Default status and the 12-month bad flag, exactly as the raw data contract defines them.

* An invoice is *d days past due at T* if it is unpaid at T (no ``paid_date <= T``) and
  ``T - due_date = d``.
* A buyer is *in default at A* if it has an event dated ``<= A``, or an invoice at least
  ``dpd_threshold`` days past due at A.
* A buyer not in default at A is *bad* if, in ``(A, A + horizon]``, it has an event or an
  invoice reaches ``dpd_threshold`` days past due (``due_date + dpd_threshold`` falls in the
  window and the invoice is still unpaid that day).
* A snapshot whose window passes ``observed_until`` has no label (``bad`` is null); so has a
  buyer in default at A (the question "will it go bad" does not arise).

Only invoices that ever reach the threshold matter, and they are few, so both flags are
computed from that small set with DuckDB, vectorised over buyers and as-of dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def as_of_table(as_of_dates: Sequence[dt.date]) -> pa.Table:
    dates = sorted(set(as_of_dates))
    if not dates:
        raise ValueError("no as-of dates given")
    return pa.table({"as_of": pa.array(dates, type=pa.date32())})


def _reached(invoices: pa.Table, dpd_threshold: int) -> pa.Table:
    """Invoices still unpaid on the day they reach ``dpd_threshold`` days past due."""
    crossing = pc.add(invoices["due_date"].cast(pa.int32()),
                      pa.scalar(int(dpd_threshold), pa.int32())).cast(pa.date32())
    paid = invoices["paid_date"]
    hit = pc.or_kleene(pc.is_null(paid), pc.greater(paid, crossing))
    hit = pc.fill_null(hit, True)
    return pa.table({"buyer_id": pc.filter(invoices["buyer_id"], hit),
                     "crossing": pc.filter(crossing, hit),
                     "paid_date": pc.filter(paid, hit)})


def _first_issue(invoices: pa.Table) -> pa.Table:
    first = invoices.select(["buyer_id", "issue_date"]).group_by("buyer_id").aggregate(
        [("issue_date", "min")])
    return pa.table({"buyer_id": first["buyer_id"], "first_issue": first["issue_date_min"]})


_STATUS_SQL = """
WITH panel AS (
    SELECT f.buyer_id, a.as_of FROM {fi} f JOIN snapshot_dates a ON f.first_issue <= a.as_of
),
ev AS (
    SELECT p.buyer_id, p.as_of,
           bool_or(e.event_date <= p.as_of) AS event_before,
           bool_or(e.event_date > p.as_of AND e.event_date <= p.as_of + {h}) AS event_in_window,
           min(e.event_date) FILTER (WHERE e.event_date > p.as_of
                                     AND e.event_date <= p.as_of + {h}) AS event_first
    FROM panel p JOIN {ev} e USING (buyer_id)
    GROUP BY ALL
),
dpd AS (
    SELECT p.buyer_id, p.as_of,
           bool_or(r.crossing <= p.as_of AND (r.paid_date IS NULL OR r.paid_date > p.as_of))
               AS dpd_now,
           bool_or(r.crossing > p.as_of AND r.crossing <= p.as_of + {h}) AS dpd_in_window,
           min(r.crossing) FILTER (WHERE r.crossing > p.as_of
                                   AND r.crossing <= p.as_of + {h}) AS dpd_first
    FROM panel p JOIN {re} r USING (buyer_id)
    GROUP BY ALL
)
SELECT p.buyer_id, p.as_of,
       coalesce(ev.event_before, false) OR coalesce(dpd.dpd_now, false) AS in_default,
       coalesce(ev.event_in_window, false) OR coalesce(dpd.dpd_in_window, false) AS bad_raw,
       least(ev.event_first, dpd.dpd_first) AS first_bad
FROM panel p
LEFT JOIN ev USING (buyer_id, as_of)
LEFT JOIN dpd USING (buyer_id, as_of)
"""


def status_sql(
    con: duckdb.DuckDBPyConnection,
    invoices: pa.Table,
    events: pa.Table,
    dpd_threshold: int,
    horizon_days: int = 0,
    prefix: str = "status_",
) -> str:
    """Register what the status query needs on ``con`` (which must have the
    ``snapshot_dates`` table) and return the query: ``buyer_id, as_of, in_default,
    bad_raw, first_bad`` (the day of the first bad outcome in the window, or null) for every
    buyer with an invoice issued on or before each as-of date."""
    names = {k: f"{prefix}{k}" for k in ("first_issue", "events", "reached")}
    con.register(names["first_issue"], _first_issue(invoices))
    con.register(names["events"], events.select(["buyer_id", "event_date"]))
    con.register(names["reached"], _reached(invoices, dpd_threshold))
    return _STATUS_SQL.format(h=int(horizon_days), fi=names["first_issue"],
                              ev=names["events"], re=names["reached"])


def status_table(
    invoices: pa.Table,
    events: pa.Table,
    as_of_dates: Sequence[dt.date],
    dpd_threshold: int,
    horizon_days: int = 0,
    threads: int = 1,
) -> pa.Table:
    """``buyer_id, as_of, in_default, bad_raw`` for every buyer with an invoice issued on or
    before each as-of date, from the book's Arrow tables (``invoices``: buyer_id, issue_date,
    due_date, paid_date; ``events``: buyer_id, event_date). Rows sorted by as-of, buyer."""
    con = duckdb.connect(config={"threads": threads})
    try:
        con.register("snapshot_dates", as_of_table(as_of_dates))
        sql = status_sql(con, invoices, events, dpd_threshold, horizon_days)
        return con.sql(f"SELECT * FROM ({sql}) ORDER BY as_of, buyer_id").to_arrow_table()
    finally:
        con.close()


def _arrow_inputs(invoices: pd.DataFrame, events: pd.DataFrame) -> tuple[pa.Table, pa.Table]:
    from riskmodel.data.book import to_arrow

    inv = to_arrow("invoices", invoices[["buyer_id", "issue_date", "due_date", "paid_date"]])
    return inv, to_arrow("events", events[["buyer_id", "event_date"]])


def _status_frame(
    invoices: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    dpd_threshold: int,
    horizon_days: int,
) -> pd.DataFrame:
    inv, ev = _arrow_inputs(invoices, events)
    frame = status_table(inv, ev, as_of_dates, dpd_threshold, horizon_days).to_pandas()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[s]")
    frame["buyer_id"] = frame["buyer_id"].astype("str")
    return frame


def default_status(
    invoices: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    dpd_threshold: int = 90,
) -> pd.DataFrame:
    """``buyer_id, as_of, status`` ('active' or 'in_default') for every buyer with an invoice
    issued on or before each as-of date."""
    frame = _status_frame(invoices, events, as_of_dates, dpd_threshold, horizon_days=0)
    status = np.where(frame["in_default"].to_numpy(dtype=bool), "in_default", "active")
    return pd.DataFrame(
        {"buyer_id": frame["buyer_id"], "as_of": frame["as_of"],
         "status": pd.Series(status, dtype="str")}
    )


def labels_table(
    invoices: pa.Table,
    events: pa.Table,
    as_of_dates: Sequence[dt.date],
    observed_until: dt.date,
    horizon_days: int = 365,
    dpd_threshold: int = 90,
) -> pa.Table:
    """``buyer_id, as_of, in_default, bad, observed_days, days_to_bad`` from the book's
    Arrow tables; ``bad`` is null where it is undefined (see module docstring).
    ``observed_days`` is how much of the window ``observed_until`` covers (``horizon_days``
    for a labelled row); ``days_to_bad`` the days from ``as_of`` to the first bad outcome
    when it happened by ``observed_until`` (null otherwise, and for buyers in default): the
    outcomes of the latest, partly observed windows, which the training uses to read the
    current default level. A pure function of each buyer's rows."""
    if horizon_days <= 0 or dpd_threshold < 0:
        raise ValueError(
            f"horizon_days must be > 0 and dpd_threshold >= 0, got {horizon_days}, "
            f"{dpd_threshold}"
        )
    st = status_table(invoices, events, as_of_dates, dpd_threshold, horizon_days)
    ou = pa.scalar(observed_until - dt.timedelta(days=int(horizon_days)), type=pa.date32())
    labelled = pc.less_equal(st["as_of"], ou)
    undefined = pc.or_(pc.invert(labelled), st["in_default"])
    bad = pc.if_else(undefined, pa.scalar(None, pa.bool_()), st["bad_raw"])
    as_of_day = st["as_of"].cast(pa.int32())
    ou_day = pa.scalar((observed_until - dt.date(1970, 1, 1)).days, pa.int32())
    observed = pc.min_element_wise(pc.subtract(ou_day, as_of_day),
                                   pa.scalar(int(horizon_days), pa.int32()))
    observed = pc.max_element_wise(observed, pa.scalar(0, pa.int32()))
    first = st["first_bad"].cast(pa.int32())
    seen = pc.fill_null(pc.and_(pc.less_equal(first, ou_day), pc.invert(st["in_default"])),
                        False)
    days = pc.if_else(seen, pc.subtract(first, as_of_day), pa.scalar(None, pa.int32()))
    return pa.table({"buyer_id": st["buyer_id"], "as_of": st["as_of"],
                     "in_default": st["in_default"], "bad": bad,
                     "observed_days": observed, "days_to_bad": days})


def labels_to_pandas(table: pa.Table) -> pd.DataFrame:
    frame = pd.DataFrame({
        "buyer_id": pd.Series(table["buyer_id"].to_numpy(zero_copy_only=False), dtype="str"),
        "as_of": pd.Series(table["as_of"].cast(pa.timestamp("s")).to_numpy(),
                           dtype="datetime64[s]"),
        "in_default": pd.Series(table["in_default"].to_numpy(zero_copy_only=False),
                                dtype=bool),
        "bad": pd.Series(table["bad"].to_pandas(), dtype="boolean"),
    })
    for col in ("observed_days", "days_to_bad"):
        if col in table.column_names:
            frame[col] = pd.Series(table[col].to_pandas(), dtype="Int32")
    return frame


def compute_labels(
    invoices: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    observed_until: dt.date,
    horizon_days: int = 365,
    dpd_threshold: int = 90,
) -> pd.DataFrame:
    """``buyer_id, as_of, in_default, bad`` for every buyer with an invoice issued on or
    before each as-of date; ``bad`` is null where it is undefined (see module docstring)."""
    inv, ev = _arrow_inputs(invoices, events)
    return labels_to_pandas(labels_table(inv, ev, as_of_dates, observed_until, horizon_days,
                                         dpd_threshold))
