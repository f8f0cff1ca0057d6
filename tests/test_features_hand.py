"""Each feature of a hand-built three-buyer book equals the number worked out by hand.

As-of date A = 2024-06-30 (2024 is a leap year). Days from A: i1 issued 2024-01-01 is 181 days
back, i2 (2024-04-01) 90, i3 (2024-05-15) 46, i5 (2024-06-20) 10, i4 (2023-05-01) 426.
Payments known at A: i1 paid 2024-02-10 (141 days back, 10 days beyond terms) and i2 paid
2024-05-31 (30 days back, 30 days beyond terms). i5 is paid after A, so it is open at A.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.features import FeatureConfig, build_features, cycle_names, feature_names
from riskmodel.params import load_params
from worlds import d, dataset

A = d("2024-06-30")
REPO = Path(__file__).resolve().parents[1]


def features(invoices: pd.DataFrame, buyers: pd.DataFrame, events: pd.DataFrame,
             as_of: list[dt.date], cfg: FeatureConfig | None = None) -> pd.DataFrame:
    """The feature engine on validated frames: the one place this file calls it."""
    return build_features(invoices, buyers, events, as_of, cfg)


@pytest.fixture(scope="module")
def feats(three_buyers) -> pd.DataFrame:
    f = features(three_buyers.invoices, three_buyers.buyers, three_buyers.events, [A])
    return f.set_index("buyer_id")


def test_rows_are_buyers_with_an_invoice_by_as_of(feats):
    assert list(feats.index) == ["B1", "B2", "B3"]  # B4's first invoice is after A
    assert list(feats.columns) == ["as_of", "status", *feature_names(FeatureConfig())]


B1_PAYDEX_I1 = 80 - 10 * (10 / 15)  # 10 days late: between 80 (prompt) and 70 (15 days)
B1_EXPECTED = {
    # window 90: only i2 was paid in (A-90, A]
    "dbt_mean_90": 30, "dbt_wmean_90": 30, "dbt_p90_90": 30, "dbt_max_90": 30,
    "late_share_0_90": 1.0, "late_share_30_90": 0.0, "late_share_60_90": 0.0, "paydex_90": 50,
    # windows 180 and 365: i1 (10 days, 1000) and i2 (30 days, 2000)
    "dbt_mean_180": 20, "dbt_wmean_180": 70000 / 3000, "dbt_p90_180": 10 + 0.9 * 20,
    "dbt_max_180": 30, "late_share_0_180": 1.0, "late_share_30_180": 0.0,
    "paydex_180": (B1_PAYDEX_I1 * 1000 + 50 * 2000) / 3000,
    "dbt_mean_365": 20, "dbt_wmean_365": 70000 / 3000, "dbt_p90_365": 28, "dbt_max_365": 30,
    # issued in (A-w, A]: 90 -> i3, i5; 180 -> i2, i3, i5; 365 -> i1, i2, i3, i5
    "invoice_count_90": 2, "invoice_amount_90": 800,
    "invoice_count_180": 3, "invoice_amount_180": 2800,
    "invoice_count_365": 4, "invoice_amount_365": 3800,
    # the same windows a year earlier hold only i4 (400)
    "invoice_count_yoy_90": 2.0, "invoice_amount_yoy_90": 2.0,
    "invoice_count_yoy_180": 3.0, "invoice_amount_yoy_180": 7.0,
    # ... but the data start 2023-01-01 (k1): the 365-day window a year earlier,
    # (2022-07-01, 2023-07-01], starts before it, so that ratio is censored: missing
    "invoice_count_yoy_365": math.nan, "invoice_amount_yoy_365": math.nan,
    "dbt_trend": 30 - 70000 / 3000,
    "dbt_slope_monthly": math.nan,  # payments in only two months: too few for a slope
    # open at A: i3 (500, 16 days past due) and i5 (300, due in 20 days)
    "open_amount": 800, "overdue_1_30": 500, "overdue_31_60": 0, "overdue_61_90": 0,
    "overdue_90p": 0, "oldest_open_dpd": 16, "open_to_invoiced_12m": 800 / 3800,
    "overdue_share_open": 500 / 800,
    # due in (A-60, A]: only i3 (i2 fell due exactly 60 days before A), and it is unpaid
    "due_60_unpaid_share": 1.0,
    "days_since_last_invoice": 10, "history_days": 426, "distinct_suppliers_365": 3,
    "disputed_share_365": 2000 / 3800,
    "age_years": 24, "log_revenue": math.log(1 + 1e6), "log_employees": math.log(51),
    "industry": "C", "country": "DE",
    "dbt_vs_industry": 0.0,  # B1 is the only buyer of C with a DBT at A: it is the median
    "dbt_vs_country": 0.0,  # ... and the only one of DE (B3 has no DBT in the year)
}

B2_EXPECTED = {
    # nothing paid yet: no payment history means missing, not zero
    "dbt_mean_365": math.nan, "dbt_wmean_90": math.nan, "dbt_p90_365": math.nan,
    "late_share_0_365": math.nan, "paydex_365": math.nan, "dbt_trend": math.nan,
    "invoice_count_90": 1, "invoice_amount_90": 100, "invoice_count_yoy_90": math.nan,
    "open_amount": 100, "overdue_1_30": 0, "oldest_open_dpd": -1,
    "overdue_share_open": 0.0, "due_60_unpaid_share": math.nan,  # j1 falls due after A
    "open_to_invoiced_12m": 1.0, "days_since_last_invoice": 29, "history_days": 29,
    "distinct_suppliers_365": 1, "disputed_share_365": 0.0,
    "age_years": math.nan, "log_revenue": math.nan, "log_employees": math.nan,
    "industry": "C", "country": "FR", "dbt_vs_industry": math.nan, "dbt_vs_country": math.nan,
}

B3_EXPECTED = {
    # k1 was paid 2023-03-01, more than 365 days before A: no DBT in any window
    "dbt_mean_365": math.nan, "invoice_count_365": 0, "invoice_amount_365": 0,
    # the year before: k2 (395 days back) in every window, k1 (546 days back) only in 365
    "invoice_count_yoy_90": 0.0, "invoice_amount_yoy_90": 0.0, "invoice_count_yoy_180": 0.0,
    "invoice_count_yoy_365": math.nan,  # censored by the data start (see B1)
    "open_amount": 700, "overdue_90p": 700, "overdue_61_90": 0, "oldest_open_dpd": 365,
    "overdue_share_open": 1.0, "due_60_unpaid_share": math.nan,
    "open_to_invoiced_12m": math.nan,  # nothing invoiced in the last 12 months
    "days_since_last_invoice": 395, "history_days": 546, "distinct_suppliers_365": 0,
    "disputed_share_365": math.nan, "age_years": 34, "log_employees": math.log(6),
}


@pytest.mark.parametrize(
    ("buyer", "expected"), [("B1", B1_EXPECTED), ("B2", B2_EXPECTED), ("B3", B3_EXPECTED)]
)
def test_feature_values_by_hand(feats, buyer, expected):
    row = feats.loc[buyer]
    for name, value in expected.items():
        got = row[name]
        if isinstance(value, str):
            assert got == value, name
        elif math.isnan(value):
            assert pd.isna(got), f"{name}: expected missing, got {got}"
        else:
            assert float(got) == pytest.approx(value, rel=1e-9, abs=1e-9), name


def test_status_follows_the_contract(feats):
    assert feats.loc["B1", "status"] == "active"
    assert feats.loc["B2", "status"] == "active"
    assert feats.loc["B3", "status"] == "in_default"  # event on A and 365 days past due


def test_every_feature_of_b1_is_checked():
    # the cycle columns describe the whole book, not B1: tests/test_features_cycle.py
    unchecked = set(feature_names(FeatureConfig())) - set(B1_EXPECTED) - set(cycle_names())
    # windows 180/365 late shares above 0 days and paydex_365 follow from the same two
    # payments as the ones listed; they are checked here to leave nothing out
    assert unchecked == {"late_share_60_180", "late_share_30_365", "late_share_60_365",
                         "late_share_0_365", "paydex_365"}


def test_remaining_b1_window_features(feats):
    row = feats.loc["B1"]
    assert row["late_share_0_365"] == pytest.approx(1.0)
    assert row["late_share_30_365"] == 0 and row["late_share_60_365"] == 0
    assert row["late_share_60_180"] == 0
    assert row["paydex_365"] == pytest.approx((B1_PAYDEX_I1 * 1000 + 50 * 2000) / 3000)


def test_inputs_are_not_mutated(three_buyers):
    before = three_buyers.invoices.copy()
    features(three_buyers.invoices, three_buyers.buyers, three_buyers.events, [A])
    pd.testing.assert_frame_equal(three_buyers.invoices, before)


def test_a_buyers_features_depend_on_its_own_rows_only(three_buyers):
    """Each buyer featurised alone (its own invoices and events) gets the values it gets in
    the whole book, except the peer and cycle columns, which describe the other buyers. (The
    data start, which censors year-on-year features, is the book's, given explicitly: by
    default it is the first issue date of the invoices given.)"""
    inv, ev = three_buyers.invoices, three_buyers.events
    cfg = FeatureConfig(data_start=d("2023-01-01"))
    whole = features(inv, three_buyers.buyers, ev, [A], cfg).set_index("buyer_id")
    peers = [c for c in whole.columns if c.startswith(("dbt_vs_", "cycle_"))]
    assert peers  # dbt_vs_industry at least
    for buyer in whole.index:
        alone = features(inv[inv["buyer_id"] == buyer].reset_index(drop=True),
                         three_buyers.buyers, ev[ev["buyer_id"] == buyer].reset_index(drop=True),
                         [A], cfg).set_index("buyer_id")
        pd.testing.assert_series_equal(alone.loc[buyer].drop(peers),
                                       whole.loc[buyer].drop(peers), check_names=False)


def test_unknown_buyer_is_an_error(three_buyers):
    inv = three_buyers.invoices.copy()
    inv.loc[0, "buyer_id"] = "NOPE"
    with pytest.raises(ValueError, match="buyer_id 'NOPE' is not in the buyers table"):
        features(inv, three_buyers.buyers, three_buyers.events, [A])


def test_paydex_scale_points():
    from riskmodel.features import paydex_score

    got = paydex_score(np.array([-40.0, 0.0, 15.0, 30.0, 120.0, 400.0]))
    assert got.tolist() == [100.0, 80.0, 70.0, 50.0, 20.0, 1.0]


def test_history_but_nothing_recent_is_zero_not_missing():
    """A buyer whose only invoice was paid two years before A: counts and amounts are 0."""
    data = dataset(
        [dict(invoice_id="i1", buyer_id="B1", supplier_id="S1", issue_date="2020-01-01",
              due_date="2020-01-31", paid_date="2020-02-10", amount=100.0)],
        [dict(buyer_id="B1", country="DE", industry="C")], [], d("2022-06-30"))
    row = features(data.invoices, data.buyers, data.events, [d("2022-06-30")]).iloc[0]
    assert row["history_days"] == 911
    for name in ("invoice_count_90", "invoice_amount_365", "open_amount", "overdue_90p",
                 "distinct_suppliers_365"):
        assert row[name] == 0, name
    for name in ("dbt_mean_365", "invoice_count_yoy_365", "open_to_invoiced_12m",
                 "oldest_open_dpd", "disputed_share_365"):
        assert pd.isna(row[name]), name
    assert row["days_since_last_invoice"] == 911


# --------------------------------------------------------------------------- history cap


def test_history_days_is_capped_at_the_production_setting():
    """params.yaml caps history_days (features.history_cap_days): a buyer whose first invoice
    is longer ago than the cap has history_days == cap, one with a shorter history its exact
    day count. Each buyer has one invoice, issued ``back`` days before A."""
    cap = load_params(REPO / "params.yaml").features.history_cap_days
    assert cap == 365
    backs = {"LONG": cap + 135, "CAP_PLUS_1": cap + 1, "AT_CAP": cap, "CAP_MINUS_1": cap - 1,
             "SHORT": 200, "TODAY": 0}
    data = dataset(
        [dict(invoice_id=f"i-{b}", buyer_id=b, supplier_id="S1",
              issue_date=A - dt.timedelta(days=back),
              due_date=A - dt.timedelta(days=back) + dt.timedelta(days=30),
              paid_date=None, amount=100.0) for b, back in backs.items()],
        [dict(buyer_id=b, country="DE", industry="C") for b in backs], [], A)
    capped = features(data.invoices, data.buyers, data.events, [A],
                      FeatureConfig(history_cap_days=cap)).set_index("buyer_id")
    expected = {"LONG": cap, "CAP_PLUS_1": cap, "AT_CAP": cap, "CAP_MINUS_1": cap - 1,
                "SHORT": 200, "TODAY": 0}
    assert capped["history_days"].to_dict() == expected
    # the cap touches history_days only: the same invoices are days_since_last_invoice back
    assert capped["days_since_last_invoice"].to_dict() == backs
    # without a cap, history_days is the full day count
    uncapped = features(data.invoices, data.buyers, data.events, [A]).set_index("buyer_id")
    assert uncapped["history_days"].to_dict() == backs
