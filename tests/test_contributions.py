"""Exact contributions (riskmodel.explain.contributions) against LightGBM's own
``pred_contrib`` and shap's TreeExplainer, on random models of several shapes and random data
with NaNs, zeros, unseen/negative/fractional/NaN categories; additivity; determinism; and the
frame of a trained RiskModel. Expected values come only from LightGBM and shap."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskmodel.explain import contributions as contrib_mod
from riskmodel.explain.contributions import Explainer, contributions, contributions_frame
from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.masterscale import MasterScale
from riskmodel.modeling.model import FeatureSpec, RiskModel, design_matrix

TOL = {"rtol": 1e-9, "atol": 1e-9}
N_FEATURES = 8
CAT = [6, 7]  # categorical columns (codes 0..n_cat-1 in training)


def make_data(rng: np.random.Generator, n: int, unseen: bool = False) -> np.ndarray:
    """Numeric columns with NaNs, exact zeros and ties; categorical codes; with ``unseen``,
    categories outside training (larger, negative, fractional, huge, inf) and NaN."""
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 1] = np.round(x[:, 1], 1)  # many ties at thresholds
    x[rng.random(n) < 0.3, 2] = 0.0  # zeros (missing_type Zero)
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.1, 3] = np.nan
    x[:, 6] = rng.integers(0, 12, n)
    x[:, 7] = rng.integers(0, 40, n)
    x[rng.random(n) < 0.05, 6] = np.nan
    if unseen:
        m = n // 10
        odd = np.array([40, 63, 64, 200, 1e10, np.inf, -np.inf, -1, -0.5, -3, 0.5, 2.7, 11.99,
                        np.nan, 1e-40, -1e-40])
        x[:m, 6] = rng.choice(odd, m)
        x[m:2 * m, 7] = rng.choice(odd, m)
        x[2 * m:3 * m, 2] = rng.choice([1e-40, -1e-40, -0.0, 1e-36, np.inf, -np.inf], m)
        x[3 * m:4 * m, 0] = rng.choice([0.0, -0.0, np.inf, -np.inf, 1e-300], m)
    return x


def make_target(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    z = (np.nan_to_num(x[:, 0], nan=1.0) + x[:, 1] - 0.8 * (x[:, 2] == 0)
         + np.isnan(x[:, 3]) + (np.nan_to_num(x[:, 6]) % 3 == 0) + 0.7 * (x[:, 7] % 5 == 1)
         + rng.normal(size=len(x)))
    return (z > 0.7).astype(int)


def train(params: dict, n_trees: int, seed: int = 0, n: int = 3000, **kwargs) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = make_data(rng, n)
    y = make_target(rng, x)
    base = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed,
            "min_data_per_group": 5, "cat_smooth": 1.0, "min_data_in_leaf": 5,
            "deterministic": True}
    ds = lgb.Dataset(x, y, categorical_feature=CAT)
    return lgb.train({**base, **params}, ds, n_trees, **kwargs)


def check_exact(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    phi = contributions(booster, x)
    assert phi.dtype == np.float64
    assert phi.shape == (len(x), booster.num_feature() + 1)
    np.testing.assert_allclose(phi, booster.predict(x, pred_contrib=True), **TOL)
    np.testing.assert_allclose(phi.sum(axis=1), booster.predict(x, raw_score=True), **TOL)
    return phi


SHAPES = [
    {"num_leaves": 2, "max_depth": 1},
    {"num_leaves": 3, "max_depth": 2},
    {"num_leaves": 4, "max_depth": 2},
    {"num_leaves": 8, "max_depth": 3},
    {"num_leaves": 16, "max_depth": 4},
    {"num_leaves": 31, "max_depth": 5},
    {"num_leaves": 12, "max_depth": -1},  # unbalanced, deeper paths
]
MISSING = [{}, {"zero_as_missing": True}, {"use_missing": False}]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['num_leaves']}D{s['max_depth']}")
@pytest.mark.parametrize("missing", MISSING, ids=["nan", "zero", "nomissing"])
def test_matches_pred_contrib(shape: dict, missing: dict) -> None:
    seed = shape["num_leaves"] * 7 + len(missing)
    booster = train({**shape, **missing, "learning_rate": 0.3}, 25, seed=seed)
    x = make_data(np.random.default_rng(seed + 1), 2000, unseen=True)
    check_exact(booster, x)


def test_matches_shap_tree_explainer() -> None:
    shap = pytest.importorskip("shap")
    for shape in (SHAPES[2], SHAPES[4], SHAPES[5]):
        booster = train({**shape, "learning_rate": 0.2}, 30, seed=shape["num_leaves"])
        x = make_data(np.random.default_rng(99), 1500, unseen=True)
        explainer = shap.TreeExplainer(booster)
        values = np.asarray(explainer.shap_values(x))
        phi = contributions(booster, x)
        np.testing.assert_allclose(phi[:, :-1], values, **TOL)
        np.testing.assert_allclose(phi[:, -1], float(np.ravel(explainer.expected_value)[0]),
                                   **TOL)


def test_monotone_constraints() -> None:
    mono = [1, 1, -1, 0, 0, 0, 0, 0]
    for method in ("basic", "intermediate", "advanced"):
        booster = train({"num_leaves": 8, "max_depth": 3, "monotone_constraints": mono,
                         "monotone_constraints_method": method}, 40, seed=3)
        check_exact(booster, make_data(np.random.default_rng(4), 1500, unseen=True))


def test_single_leaf_trees_and_one_tree() -> None:
    x = make_data(np.random.default_rng(5), 800, unseen=True)
    # a single-leaf tree (no split possible; LightGBM then stops adding trees)
    flat = train({"num_leaves": 4, "min_data_in_leaf": 5000}, 5, seed=5)
    assert [t["num_leaves"] for t in flat.dump_model()["tree_info"]] == [1]
    phi = check_exact(flat, x)
    assert np.all(phi[:, :-1] == 0.0)
    # then split trees after it
    rng = np.random.default_rng(6)
    xt = make_data(rng, 3000)
    mixed = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 6, "num_threads": 1,
                       "min_data_per_group": 5},
                      lgb.Dataset(xt, make_target(rng, xt), categorical_feature=CAT), 4,
                      init_model=flat)
    leaves = [t["num_leaves"] for t in mixed.dump_model()["tree_info"]]
    assert leaves[0] == 1 and min(leaves[1:]) > 1
    check_exact(mixed, x)
    # a model of one tree
    one = train({"num_leaves": 7}, 1, seed=7)
    assert one.num_trees() == 1
    check_exact(one, x)


def test_best_iteration_as_predict() -> None:
    """Early stopping: the contributions are those of the trees predict uses."""
    rng = np.random.default_rng(8)
    x = make_data(rng, 3000)
    y = make_target(rng, x)
    tr = lgb.Dataset(x[:2000], y[:2000], categorical_feature=CAT)
    va = lgb.Dataset(x[2000:], y[2000:], reference=tr)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 8,
                         "learning_rate": 0.5, "num_threads": 1}, tr, 200, valid_sets=[va],
                        callbacks=[lgb.early_stopping(5, verbose=False)],
                        keep_training_booster=True)
    assert 0 < booster.best_iteration < booster.current_iteration()
    check_exact(booster, make_data(np.random.default_rng(9), 1000, unseen=True))


def tree_depth(node: dict) -> int:
    if "split_feature" not in node:
        return 0
    return 1 + max(tree_depth(node["left_child"]), tree_depth(node["right_child"]))


def test_fallback_and_leaf_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-leaf tables (large trees) and the pred_contrib fallback (deep trees) are exact
    too: force them on a model of mixed depths."""
    booster = train({"num_leaves": 31, "max_depth": -1, "learning_rate": 0.3}, 20, seed=10)
    x = make_data(np.random.default_rng(11), 1500, unseen=True)
    monkeypatch.setattr(contrib_mod, "MAX_TREE_NODES", 0)
    explainer = Explainer(booster)
    assert len(explainer.fallback_trees) < booster.num_trees()
    np.testing.assert_allclose(explainer.contributions(x), booster.predict(x, pred_contrib=True),
                               **TOL)
    depths = [tree_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"]]
    cut = sorted(depths)[len(depths) // 2]
    monkeypatch.setattr(contrib_mod, "MAX_PATH_NODES", cut)
    explainer = Explainer(booster)
    assert explainer.fallback_trees == [t for t, d in enumerate(depths) if d > cut]
    assert 0 < len(explainer.fallback_trees) < booster.num_trees()
    np.testing.assert_allclose(explainer.contributions(x), booster.predict(x, pred_contrib=True),
                               **TOL)


def test_determinism_and_row_order() -> None:
    booster = train({"num_leaves": 16, "max_depth": 4}, 60, seed=12)
    x = make_data(np.random.default_rng(13), 5000, unseen=True)
    first = contributions(booster, x)
    assert first.tobytes() == contributions(booster, x).tobytes()
    perm = np.random.default_rng(14).permutation(len(x))
    assert contributions(booster, x[perm]).tobytes() == first[perm].tobytes()
    # a row's values do not depend on the other rows, nor on the input's memory layout
    assert contributions(booster, x[17:18]).tobytes() == first[17:18].tobytes()
    assert contributions(booster, np.asfortranarray(x)).tobytes() == first.tobytes()


def test_input_checks_and_empty() -> None:
    booster = train({"num_leaves": 4}, 3, seed=15)
    assert contributions(booster, np.zeros((0, N_FEATURES))).shape == (0, N_FEATURES + 1)
    with pytest.raises(ValueError, match="shape"):
        contributions(booster, np.zeros((3, N_FEATURES - 1)))
    # float32 and integer inputs go through float32, as LightGBM's Python package does
    x = make_data(np.random.default_rng(16), 500).astype(np.float32)
    check_exact(booster, x)
    xi = np.nan_to_num(make_data(np.random.default_rng(17), 500) * 10).astype(np.int64)
    check_exact(booster, xi)


# --------------------------------------------------------------------------- RiskModel


def hand_model(seed: int = 20) -> tuple[RiskModel, pd.DataFrame]:
    """A RiskModel over a hand frame with two categorical features (as design_matrix codes)
    and a frame to explain with unseen and missing categories."""
    rng = np.random.default_rng(seed)
    n = 3000
    industries = ["retail", "steel", "food", "transport", "energy"]
    countries = ["DE", "FR", "IT", "PL"]
    frame = pd.DataFrame({
        "dbt_mean_90": rng.normal(10, 5, n),
        "overdue_share_open": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "industry": rng.choice(industries, n),
        "country": rng.choice(countries, n),
    })
    spec = FeatureSpec(list(frame.columns), {"industry": industries, "country": countries})
    x = design_matrix(frame, spec)
    y = ((frame["dbt_mean_90"] > 12) ^ (frame["industry"] == "steel")
         ^ (rng.random(n) < 0.2)).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 6, "max_depth": 3,
                         "num_threads": 1, "min_data_per_group": 5},
                        lgb.Dataset(x, y, categorical_feature=[2, 3]), 40)
    calibrator = Calibrator("platt").fit(booster.predict(x, raw_score=True), y.to_numpy())
    model = RiskModel(booster, calibrator, MasterScale([0.5, 1.0]), spec)
    test = frame.sample(400, random_state=1).copy()
    test.loc[test.index[:20], "industry"] = "mining"  # unseen
    test.loc[test.index[20:40], "country"] = None  # missing
    test["buyer_id"] = np.arange(len(test))
    return model, test


def test_frame_of_hand_model() -> None:
    model, frame = hand_model()
    out = contributions_frame(model, frame)
    assert list(out.columns) == ["base_value", *model.spec.names, "margin"]
    assert out.index.equals(frame.index)
    np.testing.assert_allclose(out["margin"], model.margin(frame), **TOL)
    np.testing.assert_allclose(out.drop(columns="margin").sum(axis=1), out["margin"], **TOL)


@pytest.mark.slow
def test_frame_of_trained_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    from riskmodel.modeling.training import train_model
    from training_helpers import world

    w = world(tmp_path_factory)
    model = train_model(w.features, w.labels, w.params).model
    live = w.features[w.features["status"] == "active"].sample(n=800, random_state=3)
    out = contributions_frame(model, live)
    np.testing.assert_allclose(out["margin"], model.margin(live), **TOL)
    ref = model.booster.predict(design_matrix(live, model.spec), pred_contrib=True)
    np.testing.assert_allclose(out["base_value"], ref[:, -1], **TOL)
    np.testing.assert_allclose(out[model.spec.names].to_numpy(), ref[:, :-1], **TOL)
