"""Labels equal a plain brute-force reading of the contract, on random small worlds."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskmodel.features.labels import compute_labels, default_status
from worlds import d, dataset

BASE = dt.date(2024, 1, 1)


def brute_force(invoices, events, as_of, ou, horizon, dpd):
    """The contract, written plainly: one buyer, one date, one invoice at a time."""
    rows = []
    for a in as_of:
        for b in sorted({r["buyer_id"] for r in invoices}):
            inv = [r for r in invoices if r["buyer_id"] == b]
            if not any(r["issue"] <= a for r in inv):
                continue
            ev = [e["date"] for e in events if e["buyer_id"] == b]

            def unpaid_at(r, t):
                return r["paid"] is None or r["paid"] > t

            in_default = any(e <= a for e in ev) or any(
                r["issue"] <= a and unpaid_at(r, a) and (a - r["due"]).days >= dpd for r in inv
            )
            end = a + dt.timedelta(days=horizon)
            if in_default or end > ou:
                bad = None
            else:
                bad = any(a < e <= end for e in ev) or any(
                    a < r["due"] + dt.timedelta(days=dpd) <= end
                    and unpaid_at(r, r["due"] + dt.timedelta(days=dpd))
                    for r in inv
                )
            rows.append((b, a, in_default, bad))
    return rows


@st.composite
def worlds(draw):
    n_buyers = draw(st.integers(1, 3))
    dpd = draw(st.integers(0, 15))
    horizon = draw(st.integers(1, 40))
    invoices, events = [], []
    for b in range(n_buyers):
        for k in range(draw(st.integers(0, 5))):
            issue = draw(st.integers(0, 60))
            due = issue + draw(st.integers(0, 20))
            paid = draw(st.one_of(st.none(), st.integers(issue, 110)))
            invoices.append(dict(buyer_id=f"B{b}", invoice_id=f"I{b}-{k}",
                                 issue=BASE + dt.timedelta(days=issue),
                                 due=BASE + dt.timedelta(days=due),
                                 paid=None if paid is None else BASE + dt.timedelta(days=paid)))
        for _ in range(draw(st.integers(0, 2))):
            events.append(dict(buyer_id=f"B{b}",
                               date=BASE + dt.timedelta(days=draw(st.integers(0, 110)))))
    as_of = sorted(set(draw(st.lists(st.integers(0, 70), min_size=1, max_size=4))))
    return invoices, events, [BASE + dt.timedelta(days=x) for x in as_of], dpd, horizon


def _to_dataset(invoices, events, n_buyers=3, ou=BASE + dt.timedelta(days=110)):
    inv = [dict(invoice_id=r["invoice_id"], buyer_id=r["buyer_id"], issue_date=r["issue"],
                due_date=r["due"], paid_date=r["paid"], amount=1.0) for r in invoices]
    buyers = [dict(buyer_id=f"B{b}", country="DE", industry="C") for b in range(n_buyers)]
    ev = [dict(buyer_id=e["buyer_id"], event_date=e["date"], event_type="default")
          for e in events]
    return dataset(inv, buyers, ev, observed_until=ou)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_labels_equal_brute_force(world):
    invoices, events, as_of, dpd, horizon = world
    ou = BASE + dt.timedelta(days=110)
    data = _to_dataset(invoices, events, ou=ou)
    got = compute_labels(data.invoices, data.events, as_of, ou, horizon, dpd)
    got_rows = [
        (r.buyer_id, r.as_of.date(), bool(r.in_default), None if pd.isna(r.bad) else bool(r.bad))
        for r in got.itertuples()
    ]
    assert sorted(got_rows) == sorted(brute_force(invoices, events, as_of, ou, horizon, dpd))


# ---- boundary days, by example (dpd 90, horizon 365, A = 2023-01-01)
A = d("2023-01-01")
OU = d("2024-06-30")


def _one(invoice=None, event=None):
    inv = [invoice or dict(invoice_id="x", buyer_id="B0", issue_date="2022-12-01",
                           due_date="2022-12-31", paid_date="2022-12-31", amount=1.0)]
    ev = [dict(buyer_id="B0", event_date=event, event_type="claim")] if event else []
    data = dataset(inv, [dict(buyer_id="B0", country="DE", industry="C")], ev, OU)
    row = compute_labels(data.invoices, data.events, [A], OU).iloc[0]
    return bool(row.in_default), (None if pd.isna(row.bad) else bool(row.bad))


def _inv(due, paid, issue="2022-10-01"):
    return dict(invoice_id="y", buyer_id="B0", issue_date=issue, due_date=due,
                paid_date=paid, amount=1.0)


@pytest.mark.parametrize(
    ("invoice", "event", "expected"),
    [
        # event exactly at A: in default; exactly at A + 365: bad; a day later: good
        (None, "2023-01-01", (True, None)),
        (None, "2024-01-01", (False, True)),
        (None, "2024-01-02", (False, False)),
        # 90 days past due exactly at A (due 2022-10-03): in default
        (_inv("2022-10-03", None), None, (True, None)),
        (_inv("2022-10-04", None), None, (False, True)),
        # paid exactly on due + 90: never 90 days past due
        (_inv("2022-12-01", "2023-03-01"), None, (False, False)),
        # paid the day after due + 90: it reached 90 days past due inside the window
        (_inv("2022-12-01", "2023-03-02"), None, (False, True)),
        # paid at A itself, after due + 90 passed before A: was in default, not any more
        (_inv("2022-10-01", "2023-01-01"), None, (False, False)),
        # unpaid, reaching 90 days past due exactly on A + 365 (due 2023-10-03): bad; a day
        # later (due 2023-10-04) it reaches them after the window: good
        (_inv("2023-10-03", None, issue="2022-12-01"), None, (False, True)),
        (_inv("2023-10-04", None, issue="2022-12-01"), None, (False, False)),
    ],
)
def test_boundary_days(invoice, event, expected):
    assert _one(invoice, event) == expected


def test_window_past_observed_until_has_no_label():
    data = dataset(
        [dict(invoice_id="x", buyer_id="B0", issue_date="2022-12-01", due_date="2022-12-31",
              paid_date="2023-01-05", amount=1.0)],
        [dict(buyer_id="B0", country="DE", industry="C")], [], OU)
    # 2023-07-01 + 365 days = 2024-06-30 = observed_until: observed; a day later it is not
    got = compute_labels(data.invoices, data.events, [d("2023-07-01"), d("2023-07-02")], OU)
    assert got["bad"].isna().tolist() == [False, True]
    assert got["bad"].iloc[0] == False  # noqa: E712 (nullable boolean)


# ---- default status at A, against the contract read by hand, buyer by buyer


def status_by_hand(invoices, events, as_of, dpd):
    """``{(buyer, A): in_default}`` for every buyer with an invoice issued by A, read straight
    from the contract: an invoice is d days past due at T if it is unpaid at T (no paid date
    on or before T) and T - due = d; a buyer is in default at A if it has an event dated on or
    before A, or an invoice at least ``dpd`` days past due at A."""

    def days_past_due(inv, t):
        if inv["paid"] is not None and inv["paid"] <= t:
            return None  # paid by T: not past due at all
        return (t - inv["due"]).days

    out = {}
    for a in as_of:
        for b in {r["buyer_id"] for r in invoices if r["issue"] <= a}:
            past_due = [days_past_due(r, a) for r in invoices if r["buyer_id"] == b]
            out[(b, a)] = any(e["date"] <= a for e in events if e["buyer_id"] == b) or any(
                d is not None and d >= dpd for d in past_due)
    return out


def _status(invoices, events, as_of, dpd, n_buyers=3):
    """``{(buyer, A): in_default}`` from default_status (buyers B0 .. B{n_buyers - 1})."""
    data = _to_dataset(invoices, events, n_buyers, ou=BASE + dt.timedelta(days=1000))
    got = default_status(data.invoices, data.events, as_of, dpd)
    assert set(got["status"]) <= {"active", "in_default"}
    out = {(r.buyer_id, r.as_of.date()): r.status == "in_default" for r in got.itertuples()}
    assert len(out) == len(got), "one row per buyer and as-of date"
    return out


def random_world(rng, n_buyers, days, dpd):
    """Invoices and events of ``n_buyers`` independent buyers on days 0..days of BASE: dates
    drawn close together so that due + dpd, payments, events and as-of dates often coincide
    (a quarter of the payments fall within a day of the day the invoice reaches ``dpd``)."""
    invoices, events = [], []
    for b in range(n_buyers):
        for k in range(int(rng.integers(0, 5))):
            issue = int(rng.integers(0, days))
            due = issue + int(rng.integers(0, 25))
            u = rng.random()
            paid = (None if u < 0.35 else max(issue, due + dpd + int(rng.integers(-1, 2)))
                    if u < 0.6 else issue + int(rng.integers(0, days)))
            invoices.append(dict(buyer_id=f"B{b}", invoice_id=f"I{b}-{k}",
                                 issue=BASE + dt.timedelta(days=issue),
                                 due=BASE + dt.timedelta(days=due),
                                 paid=None if paid is None else BASE + dt.timedelta(days=paid)))
        for _ in range(int(rng.integers(0, 2))):
            events.append(dict(buyer_id=f"B{b}",
                               date=BASE + dt.timedelta(days=int(rng.integers(0, days)))))
    return invoices, events


@pytest.mark.parametrize(("dpd", "days", "seed"), [(0, 60, 1), (7, 60, 2), (30, 120, 3),
                                                   (90, 300, 4)])
def test_status_equals_the_contract_by_hand(dpd, days, seed):
    rng = np.random.default_rng(seed)
    invoices, events = random_world(rng, 250, days, dpd)
    as_of = sorted({BASE + dt.timedelta(days=int(x)) for x in rng.integers(0, days + 30, 12)})
    want = status_by_hand(invoices, events, as_of, dpd)
    assert _status(invoices, events, as_of, dpd, n_buyers=250) == want

    # the random world reaches the boundary days, each with the contract's answer
    def count(pred):
        return sum(pred(r, a) for r in invoices for a in as_of if r["issue"] <= a)

    def unpaid(r, a):
        return r["paid"] is None or r["paid"] > a

    exactly = count(lambda r, a: unpaid(r, a) and (a - r["due"]).days == dpd)
    one_short = count(lambda r, a: unpaid(r, a) and (a - r["due"]).days == dpd - 1)
    paid_on_crossing = count(
        lambda r, a: r["paid"] is not None and r["paid"] == r["due"] + dt.timedelta(days=dpd)
        and r["paid"] <= a)
    paid_on_a = count(lambda r, a: r["paid"] == a and (a - r["due"]).days >= dpd)
    event_on_a = sum(e["date"] == a for e in events for a in as_of)
    assert min(exactly, one_short, paid_on_crossing, paid_on_a, event_on_a) > 0, (
        exactly, one_short, paid_on_crossing, paid_on_a, event_on_a)
    assert 0 < sum(want.values()) < len(want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_status_equals_the_contract_on_random_worlds(world):
    invoices, events, as_of, dpd, _ = world
    if not invoices:
        return
    assert _status(invoices, events, as_of, dpd) == status_by_hand(invoices, events, as_of, dpd)


def _status_of_one(due=None, paid=None, event=None, issue="2022-09-01", dpd=90):
    """Status at A = 2023-01-01 of buyer B0 with one invoice (and perhaps one event)."""
    inv = [dict(buyer_id="B0", invoice_id="x", issue=d(issue), due=d(due or "2022-12-31"),
                paid=None if paid is None else d(paid))]
    ev = [dict(buyer_id="B0", date=d(event))] if event else []
    got = _status(inv, ev, [A], dpd)
    assert got.get(("B0", A)) == status_by_hand(inv, ev, [A], dpd).get(("B0", A))
    return got.get(("B0", A))


@pytest.mark.parametrize(
    ("kwargs", "in_default"),
    [
        # unpaid, exactly 90 days past due at A (due 2022-10-03): in default; 89: not yet
        (dict(due="2022-10-03"), True),
        (dict(due="2022-10-04"), False),
        # paid on A, the day it would have been 90 days past due: it never was
        (dict(due="2022-10-03", paid="2023-01-01"), False),
        # paid the day after A: unpaid at A, 90 days past due
        (dict(due="2022-10-03", paid="2023-01-02"), True),
        # due 2022-09-01 (90 days past due on 2022-11-30), paid on that crossing day: never
        # in default; paid the day after: in default then, cured (and active) by A
        (dict(due="2022-09-01", paid="2022-11-30"), False),
        (dict(due="2022-09-01", paid="2022-12-01"), False),
        # far past due and paid after A: in default
        (dict(due="2022-09-01", paid="2023-06-01"), True),
        # an event on A counts, one the day after does not; an event long before A counts
        (dict(event="2023-01-01"), True),
        (dict(event="2023-01-02"), False),
        (dict(event="2020-01-01"), True),
        # threshold 0: an unpaid invoice due on A is 0 days past due, so in default; paid on A
        # it is not; due the day after A it is not
        (dict(due="2023-01-01", dpd=0), True),
        (dict(due="2023-01-01", paid="2023-01-01", dpd=0), False),
        (dict(due="2023-01-02", dpd=0), False),
        # the buyer's only invoice issued on A: it has a row; a day later: no row at A
        (dict(issue="2023-01-01", due="2023-01-31"), False),
        (dict(issue="2023-01-02", due="2023-01-31", event="2022-12-01"), None),
    ],
)
def test_status_boundary_days(kwargs, in_default):
    assert _status_of_one(**kwargs) is in_default
