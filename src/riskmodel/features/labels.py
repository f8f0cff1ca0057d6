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


def date32(values: pd.Series) -> pa.Array:
    """A pandas date column as Arrow date32 (nulls kept): what the DuckDB engines read."""
    arr = values.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
    return pa.array(arr.astype("datetime64[D]"), type=pa.date32(), from_pandas=True)


def as_of_table(as_of_dates: Sequence[dt.date]) -> pa.Table:
    dates = sorted(set(as_of_dates))
    if not dates:
        raise ValueError("no as-of dates given")
    return pa.table({"as_of": pa.array(dates, type=pa.date32())})


def _reached(invoices: pd.DataFrame, dpd_threshold: int) -> pa.Table:
    """Invoices still unpaid on the day they reach ``dpd_threshold`` days past due."""
    crossing = invoices["due_date"] + pd.Timedelta(days=dpd_threshold)
    paid = invoices["paid_date"]
    hit = (paid.isna() | (paid > crossing)).to_numpy(dtype=bool)
    sub = invoices.loc[hit]
    return pa.table(
        {
            "buyer_id": pa.array(sub["buyer_id"].astype("str").to_numpy(dtype=object)),
            "crossing": date32(crossing[hit]),
            "paid_date": date32(sub["paid_date"]),
        }
    )


def _events(events: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            "buyer_id": pa.array(events["buyer_id"].astype("str").to_numpy(dtype=object),
                                 type=pa.string()),
            "event_date": date32(events["event_date"]),
        }
    )


def _first_issue(invoices: pd.DataFrame) -> pa.Table:
    table = pa.table({"buyer_id": pa.array(invoices["buyer_id"].astype("str"), from_pandas=True),
                      "issue_date": date32(invoices["issue_date"])})
    first = table.group_by("buyer_id").aggregate([("issue_date", "min")])
    return pa.table({"buyer_id": first["buyer_id"], "first_issue": first["issue_date_min"]})


_STATUS_SQL = """
WITH panel AS (
    SELECT f.buyer_id, a.as_of FROM first_issue f JOIN snapshot_dates a ON f.first_issue <= a.as_of
),
ev AS (
    SELECT p.buyer_id, p.as_of,
           bool_or(e.event_date <= p.as_of) AS event_before,
           bool_or(e.event_date > p.as_of AND e.event_date <= p.as_of + {h}) AS event_in_window
    FROM panel p JOIN events e USING (buyer_id)
    GROUP BY ALL
),
dpd AS (
    SELECT p.buyer_id, p.as_of,
           bool_or(r.crossing <= p.as_of AND (r.paid_date IS NULL OR r.paid_date > p.as_of))
               AS dpd_now,
           bool_or(r.crossing > p.as_of AND r.crossing <= p.as_of + {h}) AS dpd_in_window
    FROM panel p JOIN reached r USING (buyer_id)
    GROUP BY ALL
)
SELECT p.buyer_id, p.as_of,
       coalesce(ev.event_before, false) OR coalesce(dpd.dpd_now, false) AS in_default,
       coalesce(ev.event_in_window, false) OR coalesce(dpd.dpd_in_window, false) AS bad_raw
FROM panel p
LEFT JOIN ev USING (buyer_id, as_of)
LEFT JOIN dpd USING (buyer_id, as_of)
ORDER BY p.as_of, p.buyer_id
"""


def _status_frame(
    invoices: pd.DataFrame,
    events: pd.DataFrame,
    as_of_dates: Sequence[dt.date],
    dpd_threshold: int,
    horizon_days: int,
) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        con.register("snapshot_dates", as_of_table(as_of_dates))
        con.register("first_issue", _first_issue(invoices))
        con.register("events", _events(events))
        con.register("reached", _reached(invoices, dpd_threshold))
        out = con.sql(_STATUS_SQL.format(h=int(horizon_days))).to_arrow_table()
    finally:
        con.close()
    frame = out.to_pandas()
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
    if horizon_days <= 0 or dpd_threshold < 0:
        raise ValueError(
            f"horizon_days must be > 0 and dpd_threshold >= 0, got {horizon_days}, "
            f"{dpd_threshold}"
        )
    frame = _status_frame(invoices, events, as_of_dates, dpd_threshold, horizon_days)
    ou = pd.Timestamp(observed_until)
    labelled = frame["as_of"] + pd.Timedelta(days=horizon_days) <= ou
    bad = frame["bad_raw"].astype("boolean")
    bad[~labelled | frame["in_default"]] = pd.NA
    return pd.DataFrame(
        {
            "buyer_id": frame["buyer_id"],
            "as_of": frame["as_of"],
            "in_default": frame["in_default"].astype(bool),
            "bad": bad,
        }
    )
