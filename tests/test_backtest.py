"""Walk-forward backtest: the book cut at a date is the book as known that day, and the
backtest trains on it and judges the next horizon."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskmodel import pipeline
from riskmodel.data.book import Book, CutBook, cut_table
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.modeling.backtest import cut_figures
from riskmodel.params import parse_params

CUT = dt.date(2022, 6, 30)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "raw"
    write_world(SynthConfig(n_buyers=2500, start=dt.date(2019, 1, 1), end=dt.date(2023, 12, 31),
                            seed=8, chunk_buyers=1250), out)
    return out


@pytest.fixture(scope="module")
def params():
    return parse_params({"book": {"buckets": 3}})


@pytest.fixture(scope="module")
def book(world: Path, params, tmp_path_factory: pytest.TempPathFactory) -> Book:
    root = tmp_path_factory.mktemp("btbook")
    pipeline.validate(world, root / "book", params)
    return Book(root / "book")


def test_a_cut_hides_what_was_not_known_yet(book: Book) -> None:
    inv = book.read("invoices", 0)
    cut = cut_table("invoices", inv, CUT).to_pandas()
    assert (cut["issue_date"] <= CUT).all()
    assert not (cut["paid_date"].dropna() > CUT).any()
    # an invoice issued before the cut and paid after it is open at the cut
    full = inv.to_pandas().set_index("invoice_id")
    later = full[(full["issue_date"] <= CUT) & (full["paid_date"] > CUT)].index
    assert len(later) > 10
    assert cut.set_index("invoice_id").loc[later, "paid_date"].isna().all()
    ev = cut_table("events", book.read("events", 0), CUT).to_pandas()
    assert (ev["event_date"] <= CUT).all()
    assert len(ev) < book.read("events", 0).num_rows


def test_features_of_the_cut_book_at_the_cut_equal_the_full_books(book, params,
                                                                   tmp_path) -> None:
    """Point in time at the scale of the book: the data appended after the cut change
    nothing at the cut."""
    cb = CutBook(book, CUT)
    assert cb.observed_until == CUT
    pipeline.features(cb, tmp_path / "cut.parquet", params, dates=[CUT])
    pipeline.features(book, tmp_path / "full.parquet", params, dates=[CUT])
    a = pq.read_table(tmp_path / "cut.parquet").to_pandas()
    b = pq.read_table(tmp_path / "full.parquet").to_pandas()
    assert len(a) > 1000
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_labels_of_the_cut_book_stop_at_the_cut(book, params, tmp_path) -> None:
    cb = CutBook(book, CUT)
    res = pipeline.labels(cb, tmp_path / "l.parquet", params)
    lab = pipeline.read_labels(res.path)
    labelled = lab[lab["bad"].notna()]
    # labelled only where the 365-day window ends by the cut: 2021-06-30 is the last
    assert labelled["as_of"].max() == pd.Timestamp("2021-06-30")
    assert lab["as_of"].max() == pd.Timestamp(CUT)


def test_cut_after_the_data_is_an_error(book) -> None:
    with pytest.raises(ValueError, match="after the book's observed_until"):
        CutBook(book, dt.date(2024, 3, 31))


def test_backtest_judges_each_cut_on_the_following_year(world, book, tmp_path) -> None:
    # the truth file named by params (evaluate.truth), as the DVC stage gives it
    params = parse_params({"book": {"buckets": 3},
                           "evaluate": {"truth": str(world / "truth.parquet")}})
    res = pipeline.backtest(book, params, cuts=2, out_dir=tmp_path)
    t = res.table
    # the last two quarter ends whose 365-day window is observed by 2023-12-31
    assert t["cut"].tolist() == ["2022-09-30", "2022-12-31"]
    for r in t.to_dict("records"):
        cut = pd.Timestamp(r["cut"])
        assert 1000 < r["buyers"] <= 2500
        assert 0 < r["bads"] < r["buyers"]
        assert r["bad_rate"] == pytest.approx(r["bads"] / r["buyers"])
        assert 0.7 < r["auc"] <= r["oracle_auc"] + 0.03
        assert r["auc_to_oracle"] == pytest.approx(r["auc"] / r["oracle_auc"])
        assert r["pd_to_true"] == pytest.approx(r["mean_pd"] / r["mean_pd_true"])
        assert r["trees"] > 0 and r["train_rows"] > 0
        assert cut.year == 2022
    assert (tmp_path / "backtest.csv").exists() and (tmp_path / "backtest.json").exists()
    assert res.summary["backtest_auc_mean"] == pytest.approx(t["auc"].mean())
    # the live buyers of each cut checked against that cut's training domain
    assert res.domain is not None  # the models carry a domain profile
    assert list(res.domain) == t["cut"].tolist()
    assert t["domain_warnings"].tolist() == [len(res.domain[c]) for c in t["cut"]]
    assert res.summary["backtest_domain_warnings"] == t["domain_warnings"].sum()


def test_backtest_needs_an_observed_window(book) -> None:
    short = parse_params({"book": {"buckets": 3}, "label": {"horizon_days": 2000}})
    with pytest.raises(pipeline.PipelineError, match="outcome window observed"):
        pipeline.backtest(book, short, cuts=1)


def test_cut_figures_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.1, 0.6, 0.3, 0.4])
    t = np.array([0.05, 0.1, 0.1, 0.7, 0.2, 0.5])
    f = cut_figures(y, p, t, bins=2)
    assert f["buyers"] == 6 and f["bads"] == 2
    assert f["bad_rate"] == pytest.approx(2 / 6)
    assert f["mean_pd"] == pytest.approx(1.7 / 6)
    assert f["pd_to_observed"] == pytest.approx((1.7 / 6) / (2 / 6))
    # AUC: of the 8 (bad, good) pairs, the bads (0.6, 0.4) outrank every good (0.1..0.3)
    assert f["auc"] == pytest.approx(1.0)
    assert f["oracle_auc"] == pytest.approx(1.0)
    assert f["mean_pd_true"] == pytest.approx(1.65 / 6)
    assert f["pd_to_true"] == pytest.approx(1.7 / 1.65)
    # two equal-count bins of 3 by PD: {0.1, 0.1, 0.2} all good, {0.3, 0.4, 0.6} 2 bads
    assert f["ece"] == pytest.approx(0.5 * abs(0.4 / 3 - 0) + 0.5 * abs(1.3 / 3 - 2 / 3))
    assert math.isnan(cut_figures(y, p)["oracle_auc"])
