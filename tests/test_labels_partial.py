"""The partly observed windows of the labels (``observed_days``, ``days_to_bad``) are point
in time: a book cut at ``observed_until`` (the contract's cut, :func:`cut_table`) gives the
same labels, row for row, as the whole book read with the same ``observed_until``, whatever
happened later; and a bad outcome dated after ``observed_until`` never counts.

Random books with many late payments and events straddling the cut, so that a leak would
show on many rows; the expected values are a plain brute-force reading of the rules."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from riskmodel.data.book import cut_table
from riskmodel.features.labels import labels_table

BASE = dt.date(2020, 1, 1)


def random_book(seed: int, n_buyers: int = 60, span: int = 1400
                ) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    invoices, events = [], []
    for b in range(n_buyers):
        bid = f"B{b:03d}"
        for _ in range(int(rng.integers(1, 12))):
            issue = int(rng.integers(0, span))
            due = issue + int(rng.integers(0, 60))
            r = rng.random()
            paid: int | None
            if r < 0.15:
                paid = None  # never paid
            elif r < 0.45:
                paid = due + int(rng.integers(30, 400))  # late, often past the threshold
            else:
                paid = issue + int(rng.integers(0, due - issue + 30))
            invoices.append({"buyer_id": bid, "issue": issue, "due": due, "paid": paid})
        if rng.random() < 0.25:
            events.append({"buyer_id": bid, "date": int(rng.integers(0, span + 200))})
    return invoices, events


def day(k: int | None) -> dt.date | None:
    return None if k is None else BASE + dt.timedelta(days=int(k))


def arrow(invoices: list[dict], events: list[dict]) -> tuple[pa.Table, pa.Table]:
    inv = pa.table({
        "buyer_id": pa.array([r["buyer_id"] for r in invoices], pa.string()),
        "issue_date": pa.array([day(r["issue"]) for r in invoices], pa.date32()),
        "due_date": pa.array([day(r["due"]) for r in invoices], pa.date32()),
        "paid_date": pa.array([day(r["paid"]) for r in invoices], pa.date32()),
    })
    ev = pa.table({"buyer_id": pa.array([e["buyer_id"] for e in events], pa.string()),
                   "event_date": pa.array([day(e["date"]) for e in events], pa.date32())})
    return inv, ev


def rows(table: pa.Table) -> dict[tuple[str, dt.date], tuple]:
    d = table.to_pydict()
    keys = list(zip(d["buyer_id"], d["as_of"], strict=True))
    assert len(set(keys)) == len(keys)
    return {k: (d["in_default"][i], d["bad"][i], d["observed_days"][i], d["days_to_bad"][i])
            for i, k in enumerate(keys)}


def brute_days_to_bad(invoices: list[dict], events: list[dict], buyer: str, a: dt.date,
                      ou: dt.date, horizon: int, dpd: int) -> int | None:
    """Days from ``a`` to the first bad outcome in ``(a, a + horizon]`` dated by ``ou``;
    None if there is none or the buyer is in default at ``a``."""
    inv = [r for r in invoices if r["buyer_id"] == buyer]
    ev = [day(e["date"]) for e in events if e["buyer_id"] == buyer]

    def unpaid_at(r: dict, t: dt.date) -> bool:
        return r["paid"] is None or day(r["paid"]) > t

    cross = [(day(r["due"]) + dt.timedelta(days=dpd), r) for r in inv]
    if any(e <= a for e in ev) or any(c <= a and unpaid_at(r, a) for c, r in cross):
        return None
    end = a + dt.timedelta(days=horizon)
    outcomes = [e for e in ev if a < e <= end]
    outcomes += [c for c, r in cross if a < c <= end and unpaid_at(r, c)]
    first = min(outcomes, default=None)
    return None if first is None or first > ou else (first - a).days


def month_ends(until: dt.date) -> list[dt.date]:
    out, y, m = [], BASE.year, BASE.month
    while True:
        nxt = dt.date(y + m // 12, m % 12 + 1, 1)
        end = nxt - dt.timedelta(days=1)
        if end > until:
            return out
        out.append(end)
        y, m = nxt.year, nxt.month


#: seed, observed_until (days after BASE), horizon, dpd threshold
CASES = [(0, 900, 365, 90), (1, 1000, 365, 90), (2, 1111, 180, 30), (3, 777, 365, 0),
         (4, 1250, 90, 60)]


@pytest.mark.parametrize(("seed", "ou_days", "horizon", "dpd"), CASES)
def test_labels_of_a_cut_book_equal_those_read_later(seed: int, ou_days: int, horizon: int,
                                                     dpd: int) -> None:
    invoices, events = random_book(seed)
    ou = day(ou_days)
    assert ou is not None
    dates = month_ends(ou)
    full_inv, full_ev = arrow(invoices, events)
    cut_inv, cut_ev = cut_table("invoices", full_inv, ou), cut_table("events", full_ev, ou)
    # the later data really differ: payments, invoices and events after the cut
    assert cut_inv.num_rows < full_inv.num_rows and cut_ev.num_rows < full_ev.num_rows
    at_cut = rows(labels_table(cut_inv, cut_ev, dates, ou, horizon, dpd))
    later = rows(labels_table(full_inv, full_ev, dates, ou, horizon, dpd))
    assert at_cut.keys() == later.keys()
    differ = {k: (at_cut[k], later[k]) for k in at_cut if at_cut[k] != later[k]}
    assert not differ, list(differ.items())[:5]
    # and those labels are the rules read by hand, on every row
    partial_bads = 0
    for (buyer, a), (in_default, bad, observed, to_bad) in later.items():
        assert observed == min(max((ou - a).days, 0), horizon), (buyer, a)
        expect = brute_days_to_bad(invoices, events, buyer, a, ou, horizon, dpd)
        assert to_bad == expect, (buyer, a, to_bad, expect)
        if to_bad is not None:
            assert not in_default
            assert 1 <= to_bad <= observed  # never after observed_until
            assert a + dt.timedelta(days=to_bad) <= ou
        if bad is not None:  # a fully observed window: days_to_bad is there iff bad
            assert observed == horizon
            assert bad == (to_bad is not None)
        elif not in_default and observed < horizon and to_bad is not None:
            partial_bads += 1
    # the property is not vacuous: partly observed windows with a bad outcome seen
    assert partial_bads > 0


def test_a_bad_outcome_after_observed_until_never_counts() -> None:
    """One buyer, one invoice: 90 days past due on day 200. Observed to day 150 the window of
    the as-of date day 100 holds no bad outcome yet; observed to day 250 it holds it, 100
    days in."""
    invoices = [{"buyer_id": "B", "issue": 0, "due": 110, "paid": None}]
    inv, ev = arrow(invoices, [])
    a = day(100)
    assert a is not None
    for ou, expect in ((150, None), (199, None), (200, 100), (250, 100)):
        got = rows(labels_table(inv, ev, [a], day(ou), 365, 90))[("B", a)]
        assert got == (False, None, min(ou - 100, 365), expect), (ou, got)
        cut = labels_table(cut_table("invoices", inv, day(ou)), ev, [a], day(ou), 365, 90)
        assert rows(cut)[("B", a)] == got
