"""Cycle features: where the credit cycle stands at A, by industry, country and portfolio.

A six-buyer book worked out by hand at A = 2023-06-30 and at the dates the context needs,
A - 3 months = 2023-03-31 and A - 6 months = 2022-12-31 (and 2022-09-30, three months before
that, for the default rate there); point in time at A and at each earlier date; the same
values whichever batch computes them, with a stored context; missing values for small groups.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, Phase, find, given, settings

from riskmodel import pipeline
from riskmodel.data.book import Book, bucket_of, to_arrow
from riskmodel.data.contract import ValidationResult
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.features import FeatureConfig, build_features, cycle_names
from riskmodel.features.engine import (
    bucket_cycle,
    bucket_features,
    months_back,
    peer_context,
)
from riskmodel.params import parse_params
from test_features_pit import A as PIT_A
from test_features_pit import book as random_book
from test_features_pit import day as pit_day
from worlds import d, dataset

REPO = Path(__file__).resolve().parents[1]
A = d("2023-06-30")
A3, A6, A9 = d("2023-03-31"), d("2022-12-31"), d("2022-09-30")

# --------------------------------------------------------------------------- the hand book

BUYERS = [
    dict(buyer_id="B1", industry="C", country="DE"),
    dict(buyer_id="B2", industry="C", country="DE"),
    dict(buyer_id="B3", industry="C", country="FR"),
    dict(buyer_id="B4", industry="F", country="FR"),
    dict(buyer_id="B5", industry="F", country="DE"),
    dict(buyer_id="B6", industry="F", country="FR"),
]


def inv(iid: str, buyer: str, amount: float, issue: str, due: str,
        paid: str | None) -> dict[str, Any]:
    return dict(invoice_id=iid, buyer_id=buyer, supplier_id="S1", issue_date=issue,
                due_date=due, paid_date=paid, amount=amount)


INVOICES = [
    # B1: paid 40 days late in Nov 2022, 15 days late in Mar 2023; one open at A, 61 days
    # past due (more than 30 and more than 60)
    inv("i11", "B1", 100, "2022-09-01", "2022-10-01", "2022-11-10"),
    inv("i12", "B1", 100, "2023-01-15", "2023-02-14", "2023-03-01"),
    inv("i13", "B1", 100, "2023-04-01", "2023-04-30", None),
    # B2: 300 paid 50 days late and 100 paid 10 days late in Q4 2022 (weighted 40); i23 is
    # open at A - 3m (28 days past due) and paid 78 days late in May 2023
    inv("i21", "B2", 300, "2022-08-01", "2022-08-31", "2022-10-20"),
    inv("i22", "B2", 100, "2022-10-01", "2022-10-31", "2022-11-10"),
    inv("i23", "B2", 200, "2023-02-01", "2023-03-03", "2023-05-20"),
    # B3: open exactly 30 days past due at A - 6m (not more than 30), paid 50 days late in
    # Jan 2023; another exactly 30 days past due at A
    inv("i31", "B3", 100, "2022-06-01", "2022-07-01", "2022-07-11"),
    inv("i32", "B3", 100, "2022-11-01", "2022-12-01", "2023-01-20"),
    inv("i33", "B3", 100, "2023-05-01", "2023-05-31", None),
    # B4: due on A - 3m, never paid; a default event on 2023-05-10
    inv("i41", "B4", 100, "2022-07-01", "2022-07-31", "2022-08-10"),
    inv("i42", "B4", 100, "2023-03-01", "2023-03-31", None),
    # B5 (first invoice 2022-10-01, after A - 9m): 60 days past due at A - 6m, 90 days past
    # due on 2023-01-30 (in default), paid 2023-02-15 (106 days late): cured by A - 3m
    inv("i51", "B5", 100, "2022-10-01", "2022-11-01", "2023-02-15"),
    inv("i52", "B5", 100, "2023-04-10", "2023-05-10", "2023-05-20"),
    # B6: a default event on 2022-11-15, in default ever after
    inv("i61", "B6", 100, "2022-09-01", "2022-10-01", None),
]
EVENTS = [dict(buyer_id="B4", event_date="2023-05-10", event_type="default"),
          dict(buyer_id="B6", event_date="2022-11-15", event_type="insolvency")]

# Worked out by hand, per date (live buyers; the 30+ ones; DBT of the last 90 days of the
# live buyers; buyers live 3 months earlier and those of them that defaulted since):
#
# 2022-12-31  live B1 B2 B3 B4 B5 (B6 in default)   30+: B5 (60 dpd)      DBT: B1 40, B2 40
#             live at 2022-09-30: B1 B2 B3 B4 B6 (B5 not yet a buyer)   defaulted: B6
# 2023-03-31  live B1 .. B5 (B5 cured)              30+: none             DBT: B1 15, B3 50,
#             live at 2022-12-31: B1 .. B5          defaulted: B5         B5 106
# 2023-06-30  live B1 B2 B3 B5 (B4 in default)      30+: B1 (61 dpd)      DBT: B2 78, B5 10
#             live at 2023-03-31: B1 .. B5          defaulted: B4
#
# The context (dimension, value) -> (live, 30+ share, DBT median, default rate) at each date
CONTEXT = {
    A6: {
        ("industry", "C"): (3, 0.0, 40.0, 0 / 3), ("industry", "F"): (2, 1 / 2, None, 1 / 2),
        ("country", "DE"): (3, 1 / 3, 40.0, 0 / 2), ("country", "FR"): (2, 0.0, None, 1 / 3),
        ("portfolio", None): (5, 1 / 5, 40.0, 1 / 5),
    },
    A3: {
        ("industry", "C"): (3, 0.0, 32.5, 0 / 3), ("industry", "F"): (2, 0.0, 106.0, 1 / 2),
        ("country", "DE"): (3, 0.0, 60.5, 1 / 3), ("country", "FR"): (2, 0.0, 50.0, 0 / 2),
        ("portfolio", None): (5, 0.0, 50.0, 1 / 5),
    },
    A: {
        ("industry", "C"): (3, 1 / 3, 78.0, 0 / 3), ("industry", "F"): (1, 0.0, 10.0, 1 / 2),
        ("country", "DE"): (3, 1 / 3, 44.0, 0 / 3), ("country", "FR"): (1, 0.0, None, 1 / 2),
        ("portfolio", None): (4, 1 / 4, 44.0, 1 / 5),
    },
}

NAN = math.nan
# the cycle features at A with every group counted (cycle_min_buyers 1)
B1_AT_A = {  # industry C, country DE
    "cycle_industry_overdue30_share": 1 / 3, "cycle_industry_dbt_median": 78.0,
    "cycle_industry_dbt_median_chg6m": 78.0 - 40.0,
    "cycle_industry_new_default_rate": 0.0, "cycle_industry_new_default_rate_chg6m": 0.0,
    "cycle_country_overdue30_share": 1 / 3, "cycle_country_dbt_median": 44.0,
    "cycle_country_dbt_median_chg6m": 44.0 - 40.0,
    "cycle_country_new_default_rate": 0.0, "cycle_country_new_default_rate_chg6m": 0.0,
    "cycle_portfolio_overdue30_share": 1 / 4, "cycle_portfolio_dbt_median": 44.0,
    "cycle_portfolio_dbt_median_chg6m": 44.0 - 40.0,
    "cycle_portfolio_new_default_rate": 1 / 5, "cycle_portfolio_new_default_rate_chg6m": 0.0,
}
B4_AT_A = {  # industry F, country FR; in default at A, but its groups' values are known
    "cycle_industry_overdue30_share": 0.0, "cycle_industry_dbt_median": 10.0,
    "cycle_industry_dbt_median_chg6m": NAN,  # no DBT in F at A - 6m
    "cycle_industry_new_default_rate": 1 / 2, "cycle_industry_new_default_rate_chg6m": 0.0,
    "cycle_country_overdue30_share": 0.0, "cycle_country_dbt_median": NAN,  # none in FR
    "cycle_country_dbt_median_chg6m": NAN,
    "cycle_country_new_default_rate": 1 / 2,
    "cycle_country_new_default_rate_chg6m": 1 / 2 - 1 / 3,
    **{k: v for k, v in B1_AT_A.items() if k.startswith("cycle_portfolio_")},
}
# with cycle_min_buyers 2: a group value over fewer buyers is missing, and so is a change
# with a missing end
B4_AT_A_MIN2 = {
    "cycle_industry_overdue30_share": NAN,  # F has 1 live buyer at A
    "cycle_industry_dbt_median": NAN,  # ... and 1 DBT
    "cycle_industry_dbt_median_chg6m": NAN,
    "cycle_industry_new_default_rate": 1 / 2,  # 2 buyers live at A - 3m
    "cycle_industry_new_default_rate_chg6m": 0.0,  # 2 at A - 9m too
    "cycle_country_overdue30_share": NAN,  # FR: 1 live buyer
    "cycle_country_dbt_median": NAN, "cycle_country_dbt_median_chg6m": NAN,
    "cycle_country_new_default_rate": 1 / 2,
    "cycle_country_new_default_rate_chg6m": 1 / 2 - 1 / 3,
    "cycle_portfolio_overdue30_share": 1 / 4, "cycle_portfolio_dbt_median": 44.0,
    "cycle_portfolio_dbt_median_chg6m": 4.0, "cycle_portfolio_new_default_rate": 1 / 5,
    "cycle_portfolio_new_default_rate_chg6m": 0.0,
}


@pytest.fixture(scope="module")
def hand() -> ValidationResult:
    return dataset(INVOICES, BUYERS, EVENTS, observed_until=A)


def features(data: ValidationResult, as_of: Sequence[dt.date], least: int = 1) -> pd.DataFrame:
    return build_features(data.invoices, data.buyers, data.events, as_of,
                          FeatureConfig(cycle_min_buyers=least))


def context(data: ValidationResult, as_of: Sequence[dt.date], least: int = 1,
            invoices: pd.DataFrame | None = None) -> pd.DataFrame:
    """The context (peer and cycle) of a book held in memory, as pandas (``invoices``: in
    place of the book's)."""
    cfg = FeatureConfig(cycle_min_buyers=least)
    tables = (to_arrow("invoices", data.invoices if invoices is None else invoices),
              to_arrow("buyers", data.buyers), to_arrow("events", data.events))
    part = bucket_features(*tables, as_of, cfg)
    return peer_context([part], [bucket_cycle(*tables, as_of, cfg)], as_of, cfg).to_pandas()


def assert_values(row: pd.Series, expected: dict[str, float]) -> None:
    for name, value in expected.items():
        if math.isnan(value):
            assert pd.isna(row[name]), f"{name}: expected missing, got {row[name]}"
        else:
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_months_back_is_month_end_aware():
    assert months_back(d("2023-06-30"), 3) == d("2023-03-31")
    assert months_back(d("2023-03-31"), 3) == d("2022-12-31")
    assert months_back(d("2023-06-30"), 6) == d("2022-12-31")
    assert months_back(d("2023-05-31"), 3) == d("2023-02-28")
    assert months_back(d("2024-05-31"), 3) == d("2024-02-29")
    assert months_back(d("2024-02-29"), 3) == d("2023-11-30")  # a month end: to a month end
    assert months_back(d("2023-05-30"), 3) == d("2023-02-28")  # cut to February's length
    assert months_back(d("2023-01-15"), 6) == d("2022-07-15")


def test_context_by_hand(hand):
    ctx = context(hand, [A])
    assert sorted(set(ctx["as_of"])) == [A6, A3, A]  # A, and 3 and 6 months back
    for date, groups in CONTEXT.items():
        at = ctx[ctx["as_of"] == date]
        assert len(at) == len(groups), date
        for (dim, value), (live, od30, dbt, rate) in groups.items():
            row = at[(at["dimension"] == dim)
                     & (at["value"].isna() if value is None else at["value"] == value)]
            assert len(row) == 1, (date, dim, value)
            r = row.iloc[0]
            assert r["live_buyers"] == live, (date, dim, value)
            assert r["overdue30_share"] == pytest.approx(od30), (date, dim, value)
            assert (pd.isna(r["dbt_median"]) if dbt is None
                    else r["dbt_median"] == pytest.approx(dbt)), (date, dim, value)
            assert r["new_default_rate"] == pytest.approx(rate), (date, dim, value)
    # the 60+ share: only B1 (61 days past due) at A, of 3 in C, 3 in DE and 4 in all
    at_a = ctx[ctx["as_of"] == A].set_index(["dimension", "value"])
    assert at_a.loc[("industry", "C"), "overdue60_share"] == pytest.approx(1 / 3)
    assert (ctx.loc[ctx["as_of"] < A, "overdue60_share"].dropna() == 0).all()
    # peer medians only at the as-of date; buyer counts as worked out
    assert ctx.loc[ctx["as_of"] < A, "buyers"].isna().all()
    assert ctx.loc[ctx["as_of"] == A, "buyers"].notna().all()
    port = ctx[ctx["dimension"] == "portfolio"].set_index("as_of")
    assert port["prior_live_buyers"].to_dict() == {A6: 5, A3: 5, A: 5}
    assert port["dbt_buyers"].to_dict() == {A6: 2, A3: 3, A: 2}


def test_cycle_features_by_hand(hand):
    feats = features(hand, [A]).set_index("buyer_id")
    assert set(feats.index) == {f"B{i}" for i in range(1, 7)}
    assert feats.loc["B4", "status"] == "in_default"
    assert_values(feats.loc["B1"], B1_AT_A)
    assert_values(feats.loc["B2"], B1_AT_A)  # the same groups as B1
    assert_values(feats.loc["B4"], B4_AT_A)
    assert_values(feats.loc["B6"], B4_AT_A)
    # B3: industry C (as B1), country FR (as B4)
    assert_values(feats.loc["B3"], {k: v for k, v in {**B4_AT_A, **B1_AT_A}.items()
                                    if not k.startswith("cycle_country_")})
    assert_values(feats.loc["B3"], {k: v for k, v in B4_AT_A.items()
                                    if k.startswith("cycle_country_")})
    # the buyer's own DBT figure the cycle median is made of is its dbt_wmean_90
    assert feats.loc["B2", "dbt_wmean_90"] == 78.0 and feats.loc["B5", "dbt_wmean_90"] == 10.0


def test_every_cycle_column_is_checked_by_hand():
    assert set(B1_AT_A) == set(B4_AT_A) == set(B4_AT_A_MIN2) == set(cycle_names())


def test_the_earlier_dates_need_not_be_as_of_dates(hand):
    """Scoring A alone still gives the changes: the context is computed at A - 3m and
    A - 6m too; and A scored among other dates gets the same values."""
    alone = features(hand, [A])
    among = features(hand, [A6, d("2023-02-14"), A])
    cols = ["buyer_id", *cycle_names()]
    pd.testing.assert_frame_equal(
        alone[cols], among.loc[among["as_of"] == pd.Timestamp(A), cols].reset_index(drop=True))
    # and at A - 6m, its changes go back to 2022-06-30, when only B3 was a buyer, without a
    # payment in the last 90 days: no DBT median there, so no change
    at6 = among[among["as_of"] == pd.Timestamp(A6)]
    assert at6["cycle_portfolio_dbt_median_chg6m"].isna().all()
    assert (at6["cycle_portfolio_dbt_median"] == 40.0).all()


def test_small_groups_are_missing(hand):
    feats = features(hand, [A], least=2).set_index("buyer_id")
    assert_values(feats.loc["B4"], B4_AT_A_MIN2)
    # C has 3 live buyers (the share stands) but a single DBT (the median does not)
    assert feats.loc["B1", "cycle_industry_overdue30_share"] == pytest.approx(1 / 3)
    assert pd.isna(feats.loc["B1", "cycle_industry_dbt_median"])
    # at the default threshold (30 buyers) every group of this book is too small
    default = features(hand, [A], least=FeatureConfig().cycle_min_buyers)
    assert default[cycle_names()].isna().all().all()
    # the threshold applies when the context is used: the stored values are all there
    ctx = context(hand, [A], least=30)
    assert ctx.loc[ctx["as_of"] == A, "overdue30_share"].notna().all()


# --------------------------------------------------------------------------- point in time


def known_at(rows: list[dict[str, Any]], events: list[dict[str, Any]], when: dt.date
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The book as it was known at ``when``: invoices issued by then, payments and disputes
    dated by then, events dated by then."""
    def date(v: Any) -> dt.date | None:
        return None if v is None else pd.Timestamp(v).date()

    out = []
    for r in rows:
        if date(r["issue_date"]) > when:
            continue
        paid = date(r.get("paid_date"))
        dispute = date(r.get("dispute_date"))
        r = dict(r, paid_date=paid if paid is not None and paid <= when else None)
        if "dispute_date" in r or "disputed" in r:
            known = dispute is not None and dispute <= when
            r.update(dispute_date=dispute if known else None, disputed=known)
        out.append(r)
    return out, [e for e in events if date(e["event_date"]) <= when]


ContextFn = Callable[[ValidationResult, Sequence[dt.date]], pd.DataFrame]


def cycle_context(data: ValidationResult, as_of: Sequence[dt.date],
                  invoices: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cycle columns of the context, by date, dimension and value."""
    ctx = context(data, as_of, invoices=invoices)
    return ctx.drop(columns=["median", "buyers"]).reset_index(drop=True)


def check_each_date_known_then(fn: ContextFn, rows, buyers, events, as_of: dt.date) -> None:
    """The context rows at A, A - 3m and A - 6m from the whole book equal those computed
    from the book as known at each of those dates."""
    whole = fn(dataset(rows, buyers, events), [as_of])
    for when in sorted(set(whole["as_of"])):
        r, e = known_at(rows, events, when)
        then = fn(dataset(r, buyers, e, observed_until=when), [when])
        pd.testing.assert_frame_equal(
            whole[whole["as_of"] == when].reset_index(drop=True),
            then[then["as_of"] == when].reset_index(drop=True), obj=f"context at {when}")


def knows_payments_early(data: ValidationResult, as_of: Sequence[dt.date]) -> pd.DataFrame:
    """A leaky context: each payment is known 45 days before it is made."""
    inv = data.invoices.copy()
    inv["paid_date"] = (inv["paid_date"] - pd.Timedelta(days=45)).clip(lower=inv["issue_date"])
    return cycle_context(data, as_of, invoices=inv)


def test_hand_context_at_each_date_uses_what_was_known_then():
    check_each_date_known_then(cycle_context, INVOICES, BUYERS, EVENTS, A)


def test_the_known_then_check_catches_a_leaky_context():
    # B3's i32 is open at A - 6m and paid 2023-01-20: a context that knows it 45 days early
    # sees it paid at A - 6m, with a DBT (the earliest date where the leak shows)
    with pytest.raises(AssertionError, match="context at 2022-12-31.*dbt_buyers"):
        check_each_date_known_then(knows_payments_early, INVOICES, BUYERS, EVENTS, A)


def _rows(world) -> tuple[list, list, list]:
    """A random world of test_features_pit as one book: the past, the later payments,
    disputes and invoices, and the events."""
    buyers, past, future_payments, future, past_events, future_events = world[:6]
    future_disputes = world[6] if len(world) > 6 else {}
    rows = [dict(r, paid_date=future_payments.get(r["invoice_id"], r["paid_date"]),
                 dispute_date=future_disputes.get(r["invoice_id"], r.get("dispute_date")))
            for r in past] + future
    return rows, buyers, past_events + future_events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_book())
def test_random_books_context_at_each_date_uses_what_was_known_then(world):
    rows, buyers, events = _rows(world)
    check_each_date_known_then(cycle_context, rows, buyers, events, PIT_A)


def cycle_features(data: ValidationResult, as_of: Sequence[dt.date]) -> pd.DataFrame:
    """Ids, status and the cycle features at A, every group counted."""
    return features(data, as_of)[["buyer_id", "as_of", "status", *cycle_names()]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_book())
def test_appending_future_data_changes_no_cycle_feature_at_as_of(world):
    from test_features_pit import check_point_in_time

    check_point_in_time(cycle_features, world)


def test_the_property_finds_a_leaky_context_on_its_own():
    """The random books expose the leak on their own (not shrunk: any one will do)."""
    def leaky(world) -> bool:
        rows, buyers, events = _rows(world)
        try:
            check_each_date_known_then(knows_payments_early, rows, buyers, events, PIT_A)
        except AssertionError:
            return True
        return False

    found = find(random_book(), leaky,
                 settings=settings(max_examples=200, deadline=None, database=None,
                                   derandomize=True, phases=[Phase.generate],
                                   suppress_health_check=list(HealthCheck)))
    rows, buyers, events = _rows(found)
    check_each_date_known_then(cycle_context, rows, buyers, events, PIT_A)


def test_later_data_changes_nothing_at_a_but_would_with_a_leak():
    """At A = day 400: B0 has an invoice 40 days past due, paid 10 days after A. Known
    payments only: B0 is 30+ at A, a share of 1/2; counting the later payment would make it 0.
    """
    buyers = [dict(buyer_id="B0", country="DE", industry="C"),
              dict(buyer_id="B1", country="DE", industry="C")]
    late = dict(invoice_id="I0", buyer_id="B0", supplier_id="S1", issue_date=pit_day(330),
                due_date=pit_day(360), paid_date=None, amount=100.0, disputed=False)
    other = dict(invoice_id="I1", buyer_id="B1", supplier_id="S1", issue_date=pit_day(300),
                 due_date=pit_day(330), paid_date=pit_day(335), amount=40.0, disputed=False)
    world = (buyers, [late, other], {"I0": pit_day(410)}, [], [], [])
    from test_features_pit import check_point_in_time, leaks

    check_point_in_time(cycle_features, world)
    at_a = cycle_features(dataset([late, other], buyers, [], observed_until=PIT_A), [PIT_A])
    assert (at_a["cycle_industry_overdue30_share"] == 0.5).all()

    def pays_early(data: ValidationResult, as_of: Sequence[dt.date]) -> pd.DataFrame:
        """A leaky engine: a payment made after A counts as made at A."""
        inv = data.invoices.copy()
        a = pd.Timestamp(max(as_of))
        inv.loc[inv["paid_date"] > a, "paid_date"] = a
        return build_features(inv, data.buyers, data.events, as_of, FeatureConfig(
            cycle_min_buyers=1))[["buyer_id", "as_of", "status", *cycle_names()]]

    assert leaks(pays_early, world)


# --------------------------------------------------------------------------- batch independence

AS_OF = [dt.date(2021, 12, 31), dt.date(2022, 6, 30), dt.date(2022, 12, 31)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cycle") / "raw"
    write_world(SynthConfig(n_buyers=900, start=dt.date(2020, 1, 1), end=dt.date(2022, 12, 31),
                            seed=21, chunk_buyers=300), out)
    return out


@pytest.fixture(scope="module")
def params():
    # groups of at least 40 buyers: most industries and countries of 900 buyers count, the
    # smallest industry (4% of the buyers) does not
    return parse_params({"book": {"buckets": 5}, "features": {"cycle_min_buyers": 40}})


@pytest.fixture(scope="module")
def book(world: Path, params, tmp_path_factory: pytest.TempPathFactory) -> Book:
    root = tmp_path_factory.mktemp("cyclebook")
    pipeline.validate(world, root / "book", params)
    return Book(root / "book")


@pytest.fixture(scope="module")
def full(book: Book, params, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("cyclefull") / "features.parquet"
    pipeline.features(book, out, params, dates=AS_OF)
    return out, pq.read_table(out).to_pandas()


def test_the_cycle_columns_mean_something_on_the_book(full):
    frame = full[1]
    cols = cycle_names()
    assert frame[cols].notna().mean().min() > 0.5
    # industry and country values differ between buyers at a date; portfolio ones do not
    at = frame[frame["as_of"] == AS_OF[-1]]
    assert at["cycle_industry_dbt_median"].nunique() > 3
    assert at["cycle_country_new_default_rate"].nunique() > 3
    assert at["cycle_portfolio_overdue30_share"].nunique() == 1
    # some group of this book is under 40 buyers: its values are missing
    assert frame["cycle_industry_overdue30_share"].isna().any()


def test_a_subset_with_the_stored_context_equals_the_full_run(book, params, full, tmp_path):
    path, frame = full
    ids = sorted(b for b in frame["buyer_id"].unique() if bucket_of(b, book.n_buckets) == 3)[:40]
    out = tmp_path / "sub.parquet"
    pipeline.features(book, out, params, dates=AS_OF, buyers=ids,
                      peers=pipeline.peers_path_for(path))
    got = pq.read_table(out).to_pandas()
    want = frame[frame["buyer_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["cycle_industry_dbt_median_chg6m"].notna().any()


def test_one_date_with_the_stored_context_equals_the_full_run(book, params, full, tmp_path):
    """Scoring the last date alone, with the stored context (which holds its dates 3 and 6
    months back, though 2022-09-30 is no as-of date of the full run) and without it."""
    path, frame = full
    ids = sorted(frame["buyer_id"].unique())[::50]
    want = frame[frame["buyer_id"].isin(ids) & (frame["as_of"] == AS_OF[-1])]
    for peers in (pipeline.peers_path_for(path), None):
        out = tmp_path / "one.parquet"
        pipeline.features(book, out, params, dates=AS_OF[-1:], buyers=ids, peers=peers)
        pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(),
                                      want.reset_index(drop=True), check_exact=True)


def test_the_bucket_count_changes_no_cycle_value(world, full, tmp_path):
    one = parse_params({"book": {"buckets": 1}, "features": {"cycle_min_buyers": 40}})
    pipeline.validate(world, tmp_path / "b1", one)
    out = tmp_path / "f.parquet"
    pipeline.features(Book(tmp_path / "b1"), out, one, dates=AS_OF)
    key = ["as_of", "buyer_id"]
    pd.testing.assert_frame_equal(
        pq.read_table(out).to_pandas().sort_values(key, ignore_index=True),
        full[1].sort_values(key, ignore_index=True), check_exact=True)
    pd.testing.assert_frame_equal(pq.read_table(pipeline.peers_path_for(out)).to_pandas(),
                                  pq.read_table(pipeline.peers_path_for(full[0])).to_pandas(),
                                  check_exact=True)


def test_a_stored_context_must_hold_the_dates_of_the_changes(book, params, full, tmp_path):
    path = pipeline.peers_path_for(full[0])
    # 2022-09-30 is in the context (3 months before 2022-12-31), but only for the changes,
    # without peer medians: it is no as-of date of the context
    with pytest.raises(pipeline.PipelineError, match="has no as-of date 2022-09-30"):
        pipeline.features(book, tmp_path / "x.parquet", params, dates=[dt.date(2022, 9, 30)],
                          buyers=["B0000001"], peers=path)
    # without its rows at 2022-06-30, the context cannot give 2022-12-31 its 6-month changes
    ctx = pq.read_table(path)
    cut = ctx.filter(pc.not_equal(ctx["as_of"], pa.scalar(dt.date(2022, 6, 30), pa.date32())))
    pq.write_table(cut, tmp_path / "cut.peers.parquet")
    with pytest.raises(pipeline.PipelineError, match="no cycle values at 2022-06-30"):
        pipeline.features(book, tmp_path / "y.parquet", params, dates=[dt.date(2022, 12, 31)],
                          buyers=["B0000001"], peers=tmp_path / "cut.peers.parquet")
    # a one-date run stores its context at the date and 3 and 6 months back
    single = tmp_path / "single.parquet"
    pipeline.features(book, single, params, dates=[dt.date(2022, 12, 31)])
    one = pq.read_table(pipeline.peers_path_for(single))
    assert sorted(set(one["as_of"].to_pylist())) == [
        dt.date(2022, 6, 30), dt.date(2022, 9, 30), dt.date(2022, 12, 31)]


def test_a_context_without_cycle_values_is_an_error(book, params, full, tmp_path):
    ctx = pq.read_table(pipeline.peers_path_for(full[0]))
    old = ctx.select(["as_of", "dimension", "value", "median", "buyers"]).replace_schema_metadata(
        {b"riskmodel.peer_base": b"dbt_wmean_365"})
    pq.write_table(old, tmp_path / "old.peers.parquet")
    with pytest.raises(pipeline.PipelineError, match="older context without them"):
        pipeline.features(book, tmp_path / "x.parquet", params, dates=AS_OF,
                          buyers=["B0000001"], peers=tmp_path / "old.peers.parquet")
    other = parse_params({"book": {"buckets": 5}, "label": {"dpd_threshold": 60}})
    with pytest.raises(pipeline.PipelineError, match="dpd_threshold"):
        pipeline.features(book, tmp_path / "y.parquet", other, dates=AS_OF,
                          buyers=["B0000001"], peers=pipeline.peers_path_for(full[0]))


# --------------------------------------------------------------------------- params


def test_every_cycle_feature_is_monotone_increasing_in_params_yaml():
    """The feature catalogue's default (1), not overridden in params.yaml."""
    from riskmodel.modeling.model import FeatureSpec
    from riskmodel.modeling.training import monotone_vector
    from riskmodel.params import load_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    names = cycle_names()
    assert monotone_vector(FeatureSpec(names, {}), load_params(REPO / "params.yaml")) == [1] * 15
    assert raw["features"]["cycle_min_buyers"] == 30
