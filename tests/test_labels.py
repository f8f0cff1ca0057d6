"""Labels equal a plain brute-force reading of the contract, on random small worlds."""

from __future__ import annotations

import datetime as dt

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


def _inv(due, paid):
    return dict(invoice_id="y", buyer_id="B0", issue_date="2022-10-01", due_date=due,
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


def test_status_matches_labels(small_world):
    dates = [d("2021-06-30"), d("2022-06-30")]
    lab = compute_labels(small_world.invoices, small_world.events, dates,
                         small_world.observed_until)
    st_ = default_status(small_world.invoices, small_world.events, dates)
    merged = lab.merge(st_, on=["buyer_id", "as_of"], validate="one_to_one")
    assert len(merged) == len(lab) == len(st_)
    assert ((merged["status"] == "in_default") == merged["in_default"]).all()
    assert merged["in_default"].any() and (~merged["in_default"]).any()
