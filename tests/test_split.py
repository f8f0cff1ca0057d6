"""The split of short histories, on synthetic panels (no invoices): books of 24 to 60 months,
quarterly and monthly snapshots, default params. Every expected date below is worked out by
hand from the book (first invoice 2019-01-01, history_days 365, horizon 365: the first as-of
date is the first period end on or after 2020-01-01, and an as-of date is labelled when it is
at most observed_until - 365 days), following the fallback order of ``split_panel``:

* test: the 2 latest labelled dates if some earlier date's label window ends by the first of
  them (embargo), else fewer test dates, else no embargo;
* validation by date, at most half of the dates before the test set, with a gap (training
  windows end by the first validation date) when there are enough dates, else without;
* validation by buyer when only one date is left before the test set.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from riskmodel.modeling.training import (
    TARGET,
    Split,
    TrainingError,
    build_panel,
    min_book_days,
    split_panel,
    train_model,
    trainable,
)
from riskmodel.params import Params, SnapshotParams, parse_params
from training_helpers import book_end, book_panel

HORIZON = pd.Timedelta(days=365)


def monthly_params(**train: object) -> Params:
    return parse_params({"snapshots": {"frequency": "monthly", "history_days": 365},
                         "train": train})


def params_for(frequency: str, **train: object) -> Params:
    if frequency == "monthly":
        return monthly_params(**train)
    return parse_params({"train": train})


def panel_of(months: int, frequency: str, **kw: object) -> pd.DataFrame:
    return build_panel(*book_panel(months, frequency, **kw))  # type: ignore[arg-type]


def month_ends(first: str, last: str) -> list[str]:
    return [d.date().isoformat() for d in pd.date_range(first, last, freq="ME")]


# --------------------------------------------------------------------------- the minimum


def test_min_book_days_by_hand() -> None:
    # 365 days of history, a 365-day label window, and the longest two quarters less a day:
    # Jun 30 -> Sep 30 -> Dec 31 is 92 + 92 days, so a window of 183 days after its first day
    # always holds two quarter ends; two months: Jun 30 -> Jul 31 -> Aug 31 is 31 + 31 days
    assert min_book_days(Params()) == 365 + 365 + 183 == 913
    assert min_book_days(monthly_params()) == 365 + 365 + 61 == 791
    listed = parse_params({"snapshots": {"dates": ["2022-12-31"]}})
    assert min_book_days(listed) is None


def labelled_count(first: dt.date, observed_until: dt.date, frequency: str) -> int:
    """Labelled as-of dates of a book: the snapshot dates whose 365-day window ends by
    observed_until (the rule of riskmodel.features.labels)."""
    dates = SnapshotParams(frequency=frequency, history_days=365).resolve(  # type: ignore[arg-type]
        first, observed_until)
    return sum(d + dt.timedelta(days=365) <= observed_until for d in dates)


@pytest.mark.parametrize(("frequency", "months"), [("quarterly", 30), ("monthly", 26)])
def test_the_minimum_book_always_has_two_labelled_dates(frequency: str, months: int) -> None:
    """Every first-invoice day of three years: a book of min_book_days days, or of
    ``months`` calendar months, has two labelled as-of dates; a day or a month less is not
    always enough."""
    days = min_book_days(params_for(frequency))
    assert days is not None
    short_by_a_day = short_by_a_month = 0
    first = dt.date(2019, 1, 1)
    while first < dt.date(2022, 1, 1):
        assert labelled_count(first, first + dt.timedelta(days=days), frequency) >= 2, first
        assert labelled_count(first, book_end(months, first), frequency) >= 2, first
        short_by_a_day += labelled_count(first, first + dt.timedelta(days=days - 1),
                                         frequency) < 2
        short_by_a_month += labelled_count(first, book_end(months - 1, first), frequency) < 2
        first += dt.timedelta(days=1)
    assert short_by_a_day > 0 and short_by_a_month > 0


# --------------------------------------------------------------------------- books of 24-60 months

Q = "quarterly"
M = "monthly"
# (frequency, months) -> kind, train, valid, test dates, test embargo, validation gap
EXPECTED = {
    # 2 labelled dates (2020-03-31, 06-30): test the last without embargo, buyers validate
    (Q, 30): ("out_of_time_buyer_valid", ["2020-03-31"], ["2020-03-31"], ["2020-06-30"],
              False, None),
    # 4 dates 2020-03-31..12-31, 9 months: no embargo possible; one date each side
    (Q, 36): ("out_of_time", ["2020-03-31"], ["2020-06-30"], ["2020-09-30", "2020-12-31"],
              False, False),
    # 8 dates to 2021-12-31: fit dates to 2020-09-30 (embargo), too few for a gap
    (Q, 48): ("out_of_time", ["2020-03-31", "2020-06-30"], ["2020-09-30"],
              ["2021-09-30", "2021-12-31"], True, False),
    # 12 dates to 2022-12-31: fit dates to 2021-09-30; 2 validation dates leave 2 training
    # dates a year before them (3 validation dates would leave 1)
    (Q, 60): ("out_of_time", ["2020-03-31", "2020-06-30"], ["2021-06-30", "2021-09-30"],
              ["2022-09-30", "2022-12-31"], True, True),
    (M, 30): ("out_of_time", ["2020-01-31", "2020-02-29"], ["2020-03-31", "2020-04-30"],
              ["2020-05-31", "2020-06-30"], False, False),
    (M, 36): ("out_of_time", month_ends("2020-01", "2020-07"), month_ends("2020-07", "2020-11"),
              ["2020-11-30", "2020-12-31"], False, False),
    (M, 48): ("out_of_time", month_ends("2020-01", "2020-08"), month_ends("2020-08", "2020-12"),
              ["2021-11-30", "2021-12-31"], True, False),
    (M, 60): ("out_of_time", month_ends("2020-01", "2020-09"), month_ends("2021-08", "2021-12"),
              ["2022-11-30", "2022-12-31"], True, True),
}


def check_invariants(split: Split, panel: pd.DataFrame) -> None:
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    for name, frame in parts.items():
        assert len(frame), name
        got = sorted(pd.Timestamp(d).date().isoformat() for d in frame["as_of"].unique())
        assert got == split.dates[name], name
        assert frame[TARGET].notna().all() and not frame["in_default"].any()
    first_test = pd.Timestamp(split.dates["test"][0])
    assert max(split.dates["train"] + split.dates["valid"]) < split.dates["test"][0]
    if split.test_embargo:
        for name in ("train", "valid"):
            assert (parts[name]["as_of"] + HORIZON <= first_test).all(), name
    else:
        assert (split.valid["as_of"] + HORIZON > first_test).any()
        assert any("no embargo" in n for n in split.notes)
    if split.validation == "dates":
        assert split.validation_gap is not None
        assert max(split.dates["train"]) < min(split.dates["valid"])
        reach = split.train["as_of"] + HORIZON <= pd.Timestamp(split.dates["valid"][0])
        assert reach.all() == split.validation_gap
        if not split.validation_gap:
            assert any("no gap" in n for n in split.notes)
    else:
        assert split.validation_gap is None
        assert not set(split.train["buyer_id"]) & set(split.valid["buyer_id"])
    # no buyer-date in two parts, and the fitted and tested rows are all labelled rows of
    # their dates
    keys = [set(zip(f["buyer_id"], f["as_of"], strict=True)) for f in parts.values()]
    assert sum(map(len, keys)) == len(set().union(*keys))
    used = set().union(*(split.dates[k] for k in parts))
    live = panel.loc[trainable(panel)]
    live = live[live["as_of"].dt.date.astype(str).isin(used)]
    assert sum(map(len, keys)) == len(live)


@pytest.mark.parametrize(("frequency", "months"), list(EXPECTED))
def test_default_params_split_a_short_book(frequency: str, months: int) -> None:
    panel = panel_of(months, frequency)
    split = split_panel(panel, params_for(frequency))
    kind, train, valid, test, embargo, gap = EXPECTED[frequency, months]
    assert split.kind == kind
    assert split.dates == {"train": train, "valid": valid, "test": test}
    assert (split.test_embargo, split.validation_gap) == (embargo, gap)
    assert split.validation == ("buyers" if kind == "out_of_time_buyer_valid" else "dates")
    check_invariants(split, panel)
    # what it chose is in the summary that training.json records
    summary = split.summary()
    assert summary["kind"] == kind and summary["notes"] == split.notes
    assert (summary["test_embargo"], summary["validation_gap"]) == (embargo, gap)


def test_fewer_dates_are_said_in_the_notes() -> None:
    q30 = split_panel(panel_of(30, Q), Params())
    assert "1 test date(s) instead of train.test_dates=2" in " ".join(q30.notes)
    assert any(n.startswith("validation by buyer") for n in q30.notes)
    # the labelled dates span 91 days: 274 days (9.0 months) short of an embargoed test
    assert any("span 91 days" in n and "about 10 more months" in n for n in q30.notes)
    q48 = split_panel(panel_of(48, Q), Params())
    assert "1 validation date(s) instead of train.validation_dates=4" in " ".join(q48.notes)
    q60 = split_panel(panel_of(60, Q), Params())
    assert q60.notes == [
        "2 validation date(s) instead of train.validation_dates=4: at most half of the 7 "
        "as-of dates before the test set, with 2 training date(s) whose label windows end "
        "by the first validation date (gap)"]
    assert split_panel(panel_of(60, M), monthly_params()).notes == []


def test_buyer_validation_is_a_stable_share_of_buyers() -> None:
    panel = panel_of(30, Q, n_buyers=2000)
    split = split_panel(panel, Params())
    assert split.kind == "out_of_time_buyer_valid"
    fit_buyers = len(split.train) + len(split.valid)
    assert abs(len(split.valid) / fit_buyers - 0.2) < 0.03
    shuffled = split_panel(panel.sample(frac=1.0, random_state=2), Params())
    assert set(shuffled.valid["buyer_id"]) == set(split.valid["buyer_id"])
    share = split_panel(panel, parse_params({"train": {"holdout_share": 0.3}}))
    assert abs(len(share.valid) / fit_buyers - 0.3) < 0.03


def test_an_embargo_is_kept_with_fewer_test_dates() -> None:
    # a 39-month book: 5 labelled dates 2020-03-31..2021-03-31. Two test dates (from
    # 2020-12-31) would leave no date a year before the first of them; one test date
    # (2021-03-31) leaves 2020-03-31, whose buyers are split for validation
    split = split_panel(panel_of(39, Q), Params())
    assert split.kind == "out_of_time_buyer_valid"
    assert split.dates == {"train": ["2020-03-31"], "valid": ["2020-03-31"],
                           "test": ["2021-03-31"]}
    assert split.test_embargo
    assert "1 test date(s) instead of train.test_dates=2" in " ".join(split.notes)
    assert not any("no embargo" in n for n in split.notes)


def test_embargo_off_is_no_gap_and_said() -> None:
    split = split_panel(panel_of(60, Q), parse_params({"train": {"embargo": False}}))
    # every date before the test set: half of the ten, four of them, validate
    assert split.dates["test"] == ["2022-09-30", "2022-12-31"]
    assert split.dates["valid"] == ["2021-09-30", "2021-12-31", "2022-03-31", "2022-06-30"]
    assert split.dates["train"][0] == "2020-03-31" and split.dates["train"][-1] == "2021-06-30"
    assert not split.test_embargo and split.validation_gap is False
    assert split.notes == ["no embargo and no gap (train.embargo: false): training label "
                           "windows may reach into the validation and test periods"]


@pytest.mark.parametrize(("frequency", "months"),
                         [(Q, 30), (Q, 31), (Q, 36), (Q, 48), (Q, 60), (M, 26), (M, 30)])
def test_a_book_of_the_minimum_or_more_trains_with_default_params(frequency: str,
                                                                  months: int) -> None:
    feats, labs = book_panel(months, frequency, n_buyers=800)
    result = train_model(feats, labs, params_for(frequency))
    meta = result.metadata()
    assert meta["split"]["kind"] in {"out_of_time", "out_of_time_buyer_valid"}
    assert meta["split"]["notes"] == result.split.notes
    assert set(result.split.notes) <= set(meta["notes"])
    # the model learned the signal, not the noise
    gain = dict(zip(result.model.booster.feature_name(),
                    result.model.booster.feature_importance("gain"), strict=True))
    assert gain["signal"] > gain["noise"]


# --------------------------------------------------------------------------- too short


def test_one_labelled_date_is_a_buyer_holdout_that_says_so() -> None:
    # 27 months to 2021-03-31: only 2020-03-31 is labelled; 2020-06-30 would be with data
    # to 2021-06-30
    split = split_panel(panel_of(27, Q), Params())
    assert split.kind == "buyer_holdout"
    assert split.dates == {"train": ["2020-03-31"], "valid": ["2020-03-31"],
                           "test": ["2020-03-31"]}
    (note,) = split.notes
    assert "not out of time" in note
    assert "data observed to at least 2021-06-30" in note
    assert "913 days" in note


@pytest.mark.parametrize(("frequency", "needed", "days"),
                         [(Q, "2021-06-30", 913), (M, "2021-02-28", 791)])
def test_no_labelled_date_says_how_much_history_is_missing(frequency: str, needed: str,
                                                           days: int) -> None:
    # 24 months to 2020-12-31: no as-of date is labelled; the second one (2020-06-30, or
    # 2020-02-29 monthly) is labelled with data to 365 days after it
    panel = panel_of(24, frequency)
    with pytest.raises(TrainingError, match="no labelled rows") as exc:
        split_panel(panel, params_for(frequency))
    msg = str(exc.value)
    assert f"data observed to at least {needed}" in msg
    assert f"a book of at least {days} days" in msg
    assert "about 30 months" in msg if frequency == Q else "about 26 months" in msg
    assert ("snapshots.frequency: monthly" in msg) == (frequency == Q)
