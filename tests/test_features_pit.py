"""Point-in-time discipline: appending anything dated after A changes nothing at A."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskmodel.features import FeatureConfig, build_features
from riskmodel.features.labels import default_status
from worlds import dataset

BASE = dt.date(2023, 1, 1)
A = BASE + dt.timedelta(days=400)
INDUSTRIES = ["C", "F"]


def day(n: int) -> dt.date:
    return BASE + dt.timedelta(days=n)


@st.composite
def book(draw):
    """A random book up to A, and random data dated after A to append to it."""
    n_buyers = draw(st.integers(1, 5))
    buyers = [dict(buyer_id=f"B{b}", country=draw(st.sampled_from(["DE", "FR"])),
                   industry=draw(st.sampled_from(INDUSTRIES)),
                   founded_year=draw(st.one_of(st.none(), st.integers(1950, 2020))),
                   employees=draw(st.one_of(st.none(), st.floats(0, 1e4))),
                   annual_revenue=draw(st.one_of(st.none(), st.floats(0, 1e8))))
              for b in range(n_buyers + 2)]  # two buyers that only trade after A
    past, future_payments, future = [], {}, []
    for b in range(n_buyers):
        for k in range(draw(st.integers(1, 8))):
            issue = draw(st.integers(0, 400))
            due = issue + draw(st.sampled_from([0, 30, 60, 90]))
            paid = draw(st.one_of(st.none(), st.integers(issue, 400)))
            inv = dict(invoice_id=f"I{b}-{k}", buyer_id=f"B{b}",
                       supplier_id=draw(st.sampled_from(["S1", "S2", "S3", None])),
                       issue_date=day(issue), due_date=day(due),
                       paid_date=None if paid is None else day(paid),
                       amount=draw(st.floats(1, 1e5)), disputed=draw(st.booleans()))
            past.append(inv)
            if paid is None and draw(st.booleans()):  # paid later, after A
                future_payments[inv["invoice_id"]] = day(401 + draw(st.integers(0, 200)))
    for k in range(draw(st.integers(0, 6))):
        b = draw(st.integers(0, n_buyers + 1))
        issue = 401 + draw(st.integers(0, 200))
        future.append(dict(invoice_id=f"F{k}", buyer_id=f"B{b}", supplier_id="S9",
                           issue_date=day(issue), due_date=day(issue + 30),
                           paid_date=None, amount=draw(st.floats(1, 1e5)), disputed=True))
    past_events = [dict(buyer_id=f"B{draw(st.integers(0, n_buyers - 1))}",
                        event_date=day(draw(st.integers(0, 400))), event_type="default")
                   for _ in range(draw(st.integers(0, 1)))]
    future_events = [dict(buyer_id=f"B{draw(st.integers(0, n_buyers + 1))}",
                          event_date=day(401 + draw(st.integers(0, 200))), event_type="claim")
                     for _ in range(draw(st.integers(0, 3)))]
    return buyers, past, future_payments, future, past_events, future_events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book())
def test_appending_future_data_changes_nothing_at_as_of(world):
    buyers, past, future_payments, future, past_events, future_events = world
    before = dataset(past, buyers, past_events, observed_until=A)
    later = [dict(r, paid_date=future_payments.get(r["invoice_id"], r["paid_date"]))
             for r in past] + future
    after = dataset(later, buyers, past_events + future_events,
                    observed_until=day(700))

    cfg = FeatureConfig()
    f_before = build_features(before.invoices, before.buyers, before.events, [A], cfg)
    f_after = build_features(after.invoices, after.buyers, after.events, [A], cfg)
    pd.testing.assert_frame_equal(f_before, f_after)

    s_before = default_status(before.invoices, before.events, [A])
    s_after = default_status(after.invoices, after.events, [A])
    pd.testing.assert_frame_equal(s_before, s_after)


def test_payment_after_as_of_is_an_open_invoice():
    """The same invoice, paid after A or never paid, looks the same at A."""
    def feats(paid):
        data = dataset(
            [dict(invoice_id="x", buyer_id="B0", issue_date="2023-01-01",
                  due_date="2023-01-31", paid_date=paid, amount=10.0)],
            [dict(buyer_id="B0", country="DE", industry="C")], [], dt.date(2023, 12, 31))
        return build_features(data.invoices, data.buyers, data.events, [dt.date(2023, 3, 1)])

    unpaid, paid_later = feats(None), feats("2023-06-01")
    pd.testing.assert_frame_equal(unpaid, paid_later)
    assert unpaid["open_amount"].iloc[0] == 10.0
    assert unpaid["overdue_1_30"].iloc[0] == 10.0  # 29 days past due at 2023-03-01
    assert pd.isna(unpaid["dbt_mean_365"].iloc[0])
