"""params.yaml: strict (unknown keys are errors naming their dotted path), one way to give the
snapshot dates, master-scale bounds checked, and the snapshot dates a frequency resolves to."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from riskmodel.params import (
    Params,
    ParamsError,
    SnapshotParams,
    load_params,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]
D = dt.date


# --------------------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"trian": {"num_leaves": 3}}, "trian"),
        ({"train": {"num_leavs": 3}}, "train.num_leavs"),
        ({"data": {"observed_untill": "2024-01-01"}}, "data.observed_untill"),
        ({"snapshots": {"frequency": "monthly", "every": 2}}, "snapshots.every"),
        ({"label": {"horizon": 180}}, "label.horizon"),
        ({"features": {"window": [30]}}, "features.window"),
        ({"calibration": {"method": "isotonic", "bins": 5}}, "calibration.bins"),
        ({"master_scale": {"bounds": [0.5, 1.0]}}, "master_scale.bounds"),
        ({"evaluate": {"ece_bin": 5}}, "evaluate.ece_bin"),
        ({"promote": {"min_gini": 0.5}}, "promote.min_gini"),
        ({"registry": {"name": "x"}}, "registry.name"),
    ],
)
def test_unknown_key_names_its_dotted_path(raw: dict, path: str) -> None:
    with pytest.raises(ParamsError) as exc:
        parse_params(raw, "my.yaml")
    msg = str(exc.value)
    assert msg.startswith("my.yaml: ")
    assert f"{path}: Extra inputs are not permitted" in msg


def test_every_problem_is_named() -> None:
    with pytest.raises(ParamsError) as exc:
        parse_params({"train": {"num_leavs": 3, "learning_rate": -1}, "labl": {}})
    msg = str(exc.value)
    assert "train.num_leavs" in msg and "train.learning_rate" in msg and "labl" in msg


def test_wrong_values_name_their_key() -> None:
    cases = {
        "train.learning_rate": {"train": {"learning_rate": 0}},
        "train.class_weight": {"train": {"class_weight": "auto"}},
        "train.monotone.dbt_mean_*": {"train": {"monotone": {"dbt_mean_*": 2}}},
        "calibration.method": {"calibration": {"method": "beta"}},
        "features.windows": {"features": {"windows": [90, -30]}},
        "label.horizon_days": {"label": {"horizon_days": 0}},
        "train.holdout_share": {"train": {"holdout_share": 0.5}},
    }
    for path, raw in cases.items():
        with pytest.raises(ParamsError, match=path.replace(".", r"\.").replace("*", r"\*")):
            parse_params(raw)


def test_params_are_frozen() -> None:
    prm = parse_params({})
    with pytest.raises(ValueError):
        prm.train.num_leaves = 3  # type: ignore[misc]


def test_the_repos_params_yaml_loads() -> None:
    prm = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert prm.snapshots.frequency == raw["snapshots"]["frequency"]
    assert prm.label.horizon_days == raw["label"]["horizon_days"]
    assert prm.train.num_leaves == raw["train"]["num_leaves"]
    assert prm.train.monotone == raw["train"]["monotone"]
    assert prm.master_scale.upper_bounds == raw["master_scale"]["upper_bounds"]
    assert prm.registry.model_name == raw["registry"]["model_name"]
    # every section of the file is a section of Params, and back
    assert set(raw) == set(Params.model_fields)


def test_load_params_none_is_the_defaults_and_missing_file_is_an_error(tmp_path: Path) -> None:
    assert load_params(None) == Params()
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match=f"{bad}: cannot read"):
        load_params(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_params(empty) == Params()
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  num_leavs: 3\n")
    with pytest.raises(ParamsError, match=rf"{typo}: train\.num_leavs"):
        load_params(typo)


# --------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize(
    "snap",
    [
        {"dates": ["2021-12-31"], "frequency": "quarterly"},
        {"history_days": 30},
        {},
    ],
)
def test_snapshots_need_exactly_one_of_dates_and_frequency(snap: dict) -> None:
    with pytest.raises(ParamsError, match="exactly one of snapshots.dates and snapshots.frequency"):
        parse_params({"snapshots": snap})


def test_snapshot_frequency_is_monthly_or_quarterly() -> None:
    with pytest.raises(ParamsError, match="snapshots.frequency"):
        parse_params({"snapshots": {"frequency": "weekly"}})


def test_default_snapshots_are_quarterly() -> None:
    assert parse_params({}).snapshots.frequency == "quarterly"


def test_resolve_quarterly() -> None:
    snap = SnapshotParams(frequency="quarterly", history_days=365)
    # 2020-01-01 + 365 days = 2020-12-31 (leap year), itself a quarter end
    assert snap.resolve(D(2020, 1, 1), D(2021, 12, 31)) == [
        D(2020, 12, 31),
        D(2021, 3, 31),
        D(2021, 6, 30),
        D(2021, 9, 30),
        D(2021, 12, 31),
    ]
    # the last date is included only when it is a quarter end
    assert snap.resolve(D(2020, 1, 1), D(2021, 12, 30)) == [
        D(2020, 12, 31),
        D(2021, 3, 31),
        D(2021, 6, 30),
        D(2021, 9, 30),
    ]
    # the first as-of date is the first quarter end on or after first + history_days
    later = SnapshotParams(frequency="quarterly", history_days=366)
    assert later.resolve(D(2020, 1, 1), D(2021, 6, 30)) == [D(2021, 3, 31), D(2021, 6, 30)]
    # no room: no dates
    assert snap.resolve(D(2020, 1, 1), D(2020, 12, 30)) == []


def test_resolve_monthly() -> None:
    snap = SnapshotParams(frequency="monthly", history_days=0)
    assert snap.resolve(D(2023, 11, 15), D(2024, 3, 31)) == [
        D(2023, 11, 30),
        D(2023, 12, 31),
        D(2024, 1, 31),
        D(2024, 2, 29),
        D(2024, 3, 31),
    ]
    snap = SnapshotParams(frequency="monthly", history_days=10)
    assert snap.resolve(D(2024, 1, 25), D(2024, 4, 29)) == [D(2024, 2, 29), D(2024, 3, 31)]


def test_resolve_dates_sorts_and_dedups() -> None:
    prm = parse_params({"snapshots": {"dates": ["2022-06-30", "2021-12-31", "2022-06-30"]}})
    assert prm.snapshots.dates is not None
    assert prm.snapshots.resolve(D(2020, 1, 1), D(2023, 1, 1)) == [D(2021, 12, 31), D(2022, 6, 30)]


def test_resolve_returns_dates_not_timestamps() -> None:
    out = SnapshotParams(frequency="quarterly", history_days=0).resolve(
        D(2021, 1, 1), D(2021, 12, 31)
    )
    assert all(type(d) is dt.date for d in out) and len(out) == 4


# --------------------------------------------------------------------------- master scale


@pytest.mark.parametrize(
    "bounds",
    [
        [0.0015, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35],  # 9 bounds
        [0.0015, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 0.9, 1.0],  # 11
        [0.0015, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 0.99],  # not 1.0
        [0.0015, 0.003, 0.003, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 1.0],  # not strict
        [0.0015, 0.006, 0.003, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 1.0],  # decreasing
    ],
)
def test_master_scale_bounds_are_checked(bounds: list[float]) -> None:
    with pytest.raises(ParamsError, match="master_scale.upper_bounds: .*10 strictly increasing"):
        parse_params({"master_scale": {"upper_bounds": bounds}})


def test_master_scale_first_bound_must_be_positive() -> None:
    bounds = [0.0, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 1.0]
    with pytest.raises(ParamsError, match="master_scale.upper_bounds: .*first bound must be > 0"):
        parse_params({"master_scale": {"upper_bounds": bounds}})


def test_valid_master_scale_is_kept() -> None:
    bounds = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0]
    assert (
        parse_params({"master_scale": {"upper_bounds": bounds}}).master_scale.upper_bounds == bounds
    )


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("data:\n  observed_until: 2023-02-30\n", "'2023-02-30'"),  # no such day
        ("data:\n  observed_until: 2023-13-01\n", "'2023-13-01'"),
        ("data:\n  observed_until: last friday\n", "'last friday'"),
        ("data:\n  observed_until: 31.12.2023\n", "'31.12.2023'"),
        ("snapshots:\n  dates: [2021-12-31, 2022-02-29]\n", "'2022-02-29'"),
    ],
    ids=["feb-30", "month-13", "words", "german", "snapshot-feb-29"],
)
def test_a_bad_date_names_the_key_and_the_value(tmp_path: Path, text: str, value: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError) as exc:
        load_params(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ")
    key = "data.observed_until" if "observed_until" in text else "snapshots.dates.1"
    assert f"{key}: " in msg
    assert f"(got {value})" in msg


def test_good_dates_in_yaml_are_dates(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  observed_until: 2023-02-28\n"
                    "snapshots:\n  dates: [2022-06-30, '2021-12-31']\n", encoding="utf-8")
    prm = load_params(path)
    assert prm.data.observed_until == D(2023, 2, 28)
    assert prm.snapshots.dates == [D(2022, 6, 30), D(2021, 12, 31)]


def test_observed_until_after_today_is_an_error() -> None:
    with pytest.raises(ParamsError, match=r"data\.observed_until: .*2099-01-01 is after today"):
        parse_params({"data": {"observed_until": "2099-01-01"}})
    today = dt.date.today()
    assert parse_params({"data": {"observed_until": today}}).data.observed_until == today
