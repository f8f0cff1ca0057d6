"""The same data and params give the same model, bit for bit: in one process, and through the
command line in two processes with different hash seeds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.features import FeatureConfig, build_features
from riskmodel.modeling.model import FILES, OPTIONAL_FILES, load_model_dir
from riskmodel.modeling.training import train_model
from training_helpers import World, fast_params, world, write_params

pytestmark = pytest.mark.slow

RISKMODEL = Path(sys.executable).with_name("riskmodel")


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_trainings_are_bitwise_identical(w: World, tmp_path: Path) -> None:
    a = train_model(w.features, w.labels, w.params)
    b = train_model(w.features, w.labels, w.params)
    pa, pb = a.model.predict(w.features), b.model.predict(w.features)
    assert np.array_equal(pa["pd"].to_numpy(), pb["pd"].to_numpy())
    assert np.array_equal(pa["margin"].to_numpy(), pb["margin"].to_numpy())
    assert (pa["grade"].to_numpy() == pb["grade"].to_numpy()).all()
    assert a.best_iteration == b.best_iteration

    ha, hb = a.model.save(tmp_path / "a"), b.model.save(tmp_path / "b")
    files = {**FILES, "profile": OPTIONAL_FILES["profile"]}  # with its domain profile
    assert set(ha) == set(files)
    assert ha == hb
    for key, name in files.items():  # the hashes are the files' SHA-256
        assert ha[key] == sha256(tmp_path / "a" / name)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_different_seed_changes_the_booster(w: World, tmp_path: Path) -> None:
    """The hash comparison above can fail: a different seed (bagging) gives other trees."""
    a = train_model(w.features, w.labels, w.params).model.save(tmp_path / "a")
    b = train_model(w.features, w.labels, fast_params(train={"seed": 7})).model.save(tmp_path / "b")
    assert a["booster"] != b["booster"]
    assert a["features"] == b["features"] and a["master_scale"] == b["master_scale"]


def test_feature_row_order_does_not_change_the_model(w: World) -> None:
    """Shuffled feature and label frames (same rows) train the same model."""
    feats = w.features.sample(frac=1.0, random_state=4)
    labs = w.labels.sample(frac=1.0, random_state=5)
    base = train_model(w.features, w.labels, w.params).model
    shuffled = train_model(feats, labs, w.params).model
    rows = w.features.head(2000)
    assert np.array_equal(
        base.predict(rows)["margin"].to_numpy(), shuffled.predict(rows)["margin"].to_numpy()
    )


def test_features_are_bitwise_deterministic(w: World) -> None:
    """DuckDB aggregates in parallel; the features (and so the model) must not depend on how
    its threads share the rows (dbt_slope_monthly once differed in the last bit)."""
    d = w.data
    cfg = FeatureConfig(
        windows=tuple(w.params.features.windows), dpd_threshold=w.params.label.dpd_threshold
    )
    for _ in range(3):
        again = build_features(d.invoices, d.buyers, d.events, w.dates, cfg)
        differ = [c for c in again.columns if not again[c].equals(w.features[c])]
        assert differ == []


def _cli_train(w: World, tmp_path: Path, out: Path, hash_seed: str) -> None:
    env = {
        **os.environ,
        "PYTHONHASHSEED": hash_seed,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    proc = subprocess.run(
        [
            str(RISKMODEL),
            "train",
            str(w.raw),
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(out),
            "--no-register",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trained on" in proc.stdout


def test_cli_trainings_write_identical_boosters(w: World, tmp_path: Path) -> None:
    write_params(tmp_path / "params.yaml")
    one, two = tmp_path / "one", tmp_path / "two"
    _cli_train(w, tmp_path, one, "1")
    _cli_train(w, tmp_path, two, "2")
    for name in FILES.values():
        f1 = one / "artifacts" / "riskmodel" / name
        f2 = two / "artifacts" / "riskmodel" / name
        assert f1.exists() and f2.exists()
        assert sha256(f1) == sha256(f2), name
    # --no-register: nothing was logged
    assert not (one / "registry.json").exists()
    assert not (tmp_path / "mlflow.db").exists()
    # and the CLI model is the library's model for the same params
    lib = train_model(w.features, w.labels, w.params).model
    cli = load_model_dir(one)
    rows = w.features.sample(n=1000, random_state=0)
    pd.testing.assert_frame_equal(lib.predict(rows), cli.predict(rows))
