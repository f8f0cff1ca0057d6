"""The training domain of a model (``riskmodel.modeling.domain``): hand-made frames whose
unseen categories and shifted features are known, the PSI against the evaluation's, the JSON
round trip, and the profile as a model file (optional, so older model folders still load)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.domain import (
    DomainProfile,
    DomainProfileError,
    DomainWarning,
    check,
    fit_profile,
)
from riskmodel.modeling.evaluation import psi
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import (
    FILES,
    OPTIONAL_FILES,
    FeatureSpec,
    RiskModel,
    content_hash,
)
from riskmodel.params import MasterScaleParams

SPEC = FeatureSpec(["x", "y", "industry", "country"],
                   {"industry": ["C", "G"], "country": ["DE", "FR"]})


def training_rows() -> pd.DataFrame:
    """100 rows: x and y run 0..99; industry C/G and country DE/FR half and half."""
    i = np.arange(100)
    return pd.DataFrame({
        "buyer_id": [f"B{k}" for k in i],
        "x": i.astype(float),
        "y": i.astype(float),
        "industry": np.where(i % 2 == 0, "C", "G"),
        "country": np.where(i < 50, "DE", "FR"),
    })


@pytest.fixture(scope="module")
def profile() -> DomainProfile:
    return fit_profile(training_rows(), SPEC)


def test_profile_of_hand_made_rows(profile: DomainProfile) -> None:
    assert profile.rows == 100
    assert profile.features == ["x", "y", "industry", "country"]
    x = profile.numeric["x"]
    # deciles of 0..99: 9.9, 19.8, ..., 89.1, ten bins of ten rows
    assert x.edges == pytest.approx([9.9 * k for k in range(1, 10)])
    assert x.shares == pytest.approx([0.1] * 10)
    assert x.missing == 0
    assert profile.categorical["industry"].shares == {"C": 0.5, "G": 0.5}
    assert profile.categorical["country"].missing == 0


def test_unseen_categories_and_a_shifted_feature_are_reported(profile: DomainProfile) -> None:
    scored = training_rows()
    scored["x"] = scored["x"] + 200  # every row beyond the training maximum: the last bin
    scored.loc[[3, 5, 7], "industry"] = "Z"
    scored.loc[[10], "country"] = "XX"
    warnings = check(profile, scored)
    assert [(w.feature, w.kind, w.value, w.rows) for w in warnings] == [
        ("industry", "unseen_category", "Z", 3),
        ("country", "unseen_category", "XX", 1),
        ("x", "psi", None, 100),
    ]
    # x: nine bins go from 0.1 to 0 (floored at 1e-4), the last from 0.1 to 1
    by_hand = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 0.9 * math.log(1 / 0.1)
    assert warnings[2].psi == pytest.approx(by_hand)
    assert warnings[2].psi == pytest.approx(psi(training_rows()["x"], scored["x"]))
    assert warnings[0].message == ("industry 'Z' was never seen in training (3 of 100 rows); "
                                   "the model scores it as a missing value")
    assert warnings[2].message == ("x has shifted from its training distribution: PSI 8.28 "
                                   "over 100 rows (above 0.25)")
    assert all(isinstance(w, DomainWarning) for w in warnings)


def test_a_shifted_category_mix_is_reported_by_psi(profile: DomainProfile) -> None:
    scored = training_rows()
    scored["country"] = np.where(np.arange(100) < 95, "DE", "FR")  # 50/50 -> 95/5
    [w] = check(profile, scored)
    assert (w.feature, w.kind) == ("country", "psi")
    expected = (0.95 - 0.5) * math.log(0.95 / 0.5) + (0.05 - 0.5) * math.log(0.05 / 0.5)
    assert w.psi == pytest.approx(expected)
    assert w.psi == pytest.approx(psi(training_rows()["country"].astype(object),
                                      pd.Series(scored["country"], dtype=object)))


def test_an_in_domain_frame_gives_no_warning(profile: DomainProfile) -> None:
    rows = training_rows()
    assert check(profile, rows) == []
    every_other = rows.iloc[::2].copy()  # x, y still spread over 0..98; DE and FR
    every_other["industry"] = np.where(np.arange(50) % 2 == 0, "C", "G")
    assert check(profile, every_other) == []
    assert check(profile, rows.iloc[:0]) == []


def test_a_small_drift_stays_below_the_limit(profile: DomainProfile) -> None:
    scored = training_rows()
    scored["y"] = scored["y"] + 5  # half a bin
    assert check(profile, scored) == []
    assert check(profile, scored, psi_limit=0.01)[0].feature == "y"


def test_missing_values_are_a_bin_of_their_own() -> None:
    rows = training_rows()
    rows.loc[:19, "x"] = np.nan
    rows.loc[:9, "industry"] = None
    prof = fit_profile(rows, SPEC)
    assert prof.numeric["x"].missing == pytest.approx(0.2)
    assert sum(prof.numeric["x"].shares) == pytest.approx(0.8)
    assert prof.categorical["industry"].missing == pytest.approx(0.1)
    scored = training_rows()  # no missing values at all
    for name in ("x", "industry"):
        got = {w.feature: w.psi for w in check(prof, scored, psi_limit=0.0)}
        assert got[name] == pytest.approx(psi(rows[name], scored[name]))
    # a missing category is not an unseen one
    assert not [w for w in check(prof, rows) if w.kind == "unseen_category"]


def test_psi_equals_the_evaluations_on_random_data() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"x": rng.lognormal(size=2000), "y": rng.integers(0, 4, 2000) * 1.0,
                          "industry": rng.choice(["A", "B", "C"], 2000),
                          "country": rng.choice(["DE", "FR"], 2000)})
    train.loc[rng.random(2000) < 0.1, "x"] = np.nan
    scored = pd.DataFrame({"x": rng.lognormal(0.5, size=700), "y": rng.integers(0, 6, 700) * 1.0,
                           "industry": rng.choice(["A", "B", "D"], 700),
                           "country": rng.choice(["DE", "FR", "PL"], 700)})
    prof = fit_profile(train, SPEC)
    got = {w.feature: w.psi for w in check(prof, scored, psi_limit=-1.0) if w.kind == "psi"}
    for name in ("x", "y", "industry", "country"):
        assert got[name] == pytest.approx(psi(train[name], scored[name]), rel=1e-12), name


def test_check_can_be_limited_to_some_features(profile: DomainProfile) -> None:
    scored = training_rows()
    scored["x"] = scored["x"] + 200
    assert check(profile, scored, features=["y", "industry"]) == []


def test_json_round_trip(profile: DomainProfile) -> None:
    text = json.dumps(profile.to_dict())
    back = DomainProfile.from_dict(json.loads(text))
    assert back == profile
    scored = training_rows()
    scored["x"] = scored["x"] + 200
    scored.loc[[3], "industry"] = "Z"
    assert check(back, scored) == check(profile, scored)


def test_a_profile_of_another_version_is_refused(profile: DomainProfile) -> None:
    data = profile.to_dict() | {"version": 99}
    with pytest.raises(DomainProfileError, match="version 99"):
        DomainProfile.from_dict(data)
    with pytest.raises(DomainProfileError, match="not a domain profile"):
        DomainProfile.from_dict({"version": 1, "rows": 3})


def test_fit_and_check_need_the_features(profile: DomainProfile) -> None:
    with pytest.raises(DomainProfileError, match=r"lack feature columns \['country'\]"):
        fit_profile(training_rows().drop(columns="country"), SPEC)
    with pytest.raises(DomainProfileError, match=r"lacks profiled feature columns \['x'\]"):
        check(profile, training_rows().drop(columns="x"))


def test_fit_and_check_leave_the_frame_alone(profile: DomainProfile) -> None:
    rows = training_rows()
    rows.loc[3, "industry"] = "Z"
    before = rows.copy()
    fit_profile(rows, SPEC)
    check(profile, rows)
    pd.testing.assert_frame_equal(rows, before)


# --------------------------------------------------------------------------- model files


def small_model(profile: DomainProfile | None) -> RiskModel:
    rows = training_rows()
    rng = np.random.default_rng(0)
    y = (rng.random(100) < rows["x"] / 150).astype(float)
    x = rows[["x", "y"]].to_numpy()
    x = np.column_stack([x, rows["industry"].eq("G"), rows["country"].eq("FR")]).astype(float)
    booster = lgb.train({"objective": "binary", "num_leaves": 3, "min_data_in_leaf": 5,
                         "verbose": -1, "seed": 1, "deterministic": True, "num_threads": 1},
                        lgb.Dataset(x, y, feature_name=SPEC.names), num_boost_round=5)
    cal = Calibrator("platt").fit(np.asarray(booster.predict(x, raw_score=True)), y)
    return RiskModel(booster, cal, MasterScale(MasterScaleParams().upper_bounds), SPEC,
                     profile=profile)


def test_the_profile_is_saved_and_loaded_with_the_model(profile: DomainProfile,
                                                        tmp_path: Path) -> None:
    model = small_model(profile)
    hashes = model.save(tmp_path / "m")
    assert (tmp_path / "m" / OPTIONAL_FILES["profile"]).is_file()
    assert set(hashes) == {*FILES, "profile"}
    back = RiskModel.load(tmp_path / "m")
    assert back.profile == profile


def test_an_old_model_folder_without_the_profile_still_loads(profile: DomainProfile,
                                                             tmp_path: Path) -> None:
    small_model(profile).save(tmp_path / "new")
    small_model(None).save(tmp_path / "old")
    assert not (tmp_path / "old" / OPTIONAL_FILES["profile"]).exists()
    old = RiskModel.load(tmp_path / "old")
    assert old.profile is None
    rows = training_rows().assign(status="active")[["status", *SPEC.names]]
    pd.testing.assert_frame_equal(old.predict(rows), RiskModel.load(tmp_path / "new").predict(rows))
    # the hash of a folder without a profile is that of its four files, as before
    new_without = tmp_path / "new-without"
    shutil.copytree(tmp_path / "new", new_without)
    (new_without / OPTIONAL_FILES["profile"]).unlink()
    assert content_hash(new_without) == content_hash(tmp_path / "old")
    assert content_hash(tmp_path / "new") != content_hash(tmp_path / "old")
