"""riskmodel's features equal two independent references on a synthetic world.

The references live in ``bench/`` (they are also the benchmark baselines): a plain DuckDB SQL
query straight over the raw Parquet files (``reference_duckdb``) and a naive pandas
``groupby("buyer_id").apply`` (``reference_pandas``). Both were written from the feature
definitions, not from ``riskmodel.features``; all three must agree on every row and column.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from reference_duckdb import reference_features_duckdb
from reference_pandas import read_raw, reference_features_pandas
from riskmodel.data.contract import load_dataset
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.features import ID_COLUMNS, FeatureConfig, build_features, cycle_names, feature_names

AS_OF = [dt.date(2021, 6, 30), dt.date(2021, 12, 31), dt.date(2022, 6, 30),
         dt.date(2022, 12, 31)]
TEXT = ("status", "industry", "country")
#: the cycle columns describe the whole book at A, 3 and 6 months back: checked by hand in
#: test_features_cycle.py, not by the references
CYCLE = set(cycle_names())
COLUMNS = ["status", *(n for n in feature_names(FeatureConfig()) if n not in CYCLE)]
KEYS = ["as_of", "buyer_id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    raw = tmp_path_factory.mktemp("crosscheck") / "raw"
    write_world(SynthConfig(n_buyers=800, start=dt.date(2020, 1, 1),
                            end=dt.date(2022, 12, 31), seed=3), raw)
    return raw


@pytest.fixture(scope="module")
def ours(world) -> pd.DataFrame:
    data = load_dataset(str(world))
    # the references read the raw files, so every row must have been accepted
    assert {n: t.summary()["rejected"] for n, t in data.tables.items()} == {
        "buyers": 0, "invoices": 0, "events": 0, "exposures": 0}
    return build_features(data.invoices, data.buyers, data.events, AS_OF)


@pytest.fixture(scope="module")
def duck(world) -> pd.DataFrame:
    return reference_features_duckdb(world, AS_OF)


def mismatches(got: pd.DataFrame, expected: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows (by key) where ``column`` differs: text exactly, numbers to 1e-9 (NaN == NaN)."""
    a, b = got[column], expected[column]
    if column in TEXT:
        bad = a.astype("str").to_numpy() != b.astype("str").to_numpy()
    else:
        x = a.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        y = b.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
    out = got.loc[bad, KEYS].copy()
    out["got"], out["expected"] = a[bad].to_numpy(), b[bad].to_numpy()
    return out


def assert_column_equal(got: pd.DataFrame, expected: pd.DataFrame, column: str) -> None:
    bad = mismatches(got, expected, column)
    assert bad.empty, (
        f"{column}: {len(bad)} of {len(got)} rows differ, first:\n{bad.head(5).to_string()}")


def test_same_rows_and_columns_as_duckdb_reference(ours, duck):
    assert list(ours.columns) == [*ID_COLUMNS, *feature_names(FeatureConfig())]
    assert set(duck.columns) == set(ours.columns) - CYCLE
    assert len(ours) > 2000  # the world is big enough to mean something
    pd.testing.assert_frame_equal(ours[KEYS], duck[KEYS])


@pytest.mark.parametrize("column", COLUMNS)
def test_column_equals_duckdb_reference(ours, duck, column):
    assert_column_equal(ours, duck, column)


def test_every_feature_is_exercised(duck):
    """A cross-check means little where a feature is constant or always missing. The synth
    world's live buyers pay every invoice by due + 59 days, so no payment is ever more than 60
    days late and ``late_share_60_*`` is always 0 here (test_features_hand covers it)."""
    numeric = [c for c in COLUMNS if c not in TEXT and not c.startswith("late_share_60_")]
    flat = [c for c in numeric if duck[c].astype("Float64").dropna().nunique() < 2]
    assert flat == []
    assert set(duck["status"]) == {"active", "in_default"}


def test_subset_equals_pandas_reference(world, ours):
    """The naive pandas reference is slow: every 10th buyer. ``dbt_vs_industry`` compares a
    buyer with all buyers of its industry (``dbt_vs_country`` of its country), so they are
    checked against DuckDB only."""
    ids = sorted(ours["buyer_id"].unique())[::10]
    inv, buyers, events = read_raw(world, buyer_ids=ids)
    ref = reference_features_pandas(inv, buyers, events, AS_OF)
    sub = ours[ours["buyer_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sub[KEYS], ref[KEYS])
    failures = []
    for column in COLUMNS:
        if column in ("dbt_vs_industry", "dbt_vs_country"):
            continue
        bad = mismatches(sub, ref, column)
        if not bad.empty:
            failures.append(f"{column}: {len(bad)} rows, first:\n{bad.head(3).to_string()}")
    assert not failures, "\n".join(failures)
