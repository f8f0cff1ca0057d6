"""What a user sees when a path cannot be written, a truth file is not one, or a backtest
cut is too short: an ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.data.synth import SynthConfig, write_world

runner = CliRunner()
UNWRITABLE = Path("/proc/riskmodel-test")  # no one can create anything under /proc


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "raw"
    write_world(SynthConfig(n_buyers=300, start=dt.date(2020, 1, 1), end=dt.date(2022, 12, 31),
                            seed=3), out)
    return out


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


@pytest.mark.parametrize("target", ["file", "proc"])
def test_synth_to_a_path_that_cannot_be_a_folder(tmp_path: Path, target: str) -> None:
    out = tmp_path / "afile" if target == "file" else UNWRITABLE / "w"
    if target == "file":
        out.write_text("x")
    code, text = run("synth", "--out", out, "--buyers", "20")
    assert code == 2
    assert text.startswith("error: ") and str(out.parent) in text


@pytest.mark.parametrize("command", ["labels", "features", "validate"])
def test_stage_outputs_that_cannot_be_written(raw: Path, command: str) -> None:
    code, text = run(command, raw, "--out", UNWRITABLE / "out.parquet")
    assert code == 2
    assert text.startswith("error: ") and "/proc" in text


def test_a_folder_is_not_a_truth_file(raw: Path, tmp_path: Path) -> None:
    code, text = run("backtest", raw, "--truth", raw, "--cuts", "1")
    assert code == 2
    assert f"{raw} is a folder" in text


def test_a_parquet_without_truth_columns_is_named(raw: Path, tmp_path: Path) -> None:
    other = tmp_path / "not-truth.parquet"
    pd.DataFrame({"buyer_id": ["a"], "x": [1.0]}).to_parquet(other)
    code, text = run("backtest", raw, "--truth", other, "--cuts", "1")
    assert code == 2
    assert "not a truth file" in text and "as_of, pd_true" in text
    assert "FieldRef" not in text and "__fragment_index" not in text


def test_labels_without_any_observed_window_say_so(tmp_path: Path) -> None:
    short = tmp_path / "short"
    write_world(SynthConfig(n_buyers=100, start=dt.date(2021, 1, 1),
                            end=dt.date(2022, 6, 30), seed=4), short)
    code, text = run("labels", short, "--out", tmp_path / "l.parquet")
    assert code == 0
    assert "(0 labelled, no outcome window observed yet)" in text
    assert "nan" not in text


@pytest.mark.parametrize("bad", ["booster.txt", "features.json"])
def test_a_damaged_model_file_is_named(tmp_path: Path, raw: Path, bad: str) -> None:
    files = tmp_path / "m" / "artifacts" / "riskmodel"
    files.mkdir(parents=True)
    for name in ("booster.txt", "calibration.json", "master_scale.json", "features.json"):
        (files / name).write_text("{}")
    (files / "calibration.json").write_text('{"method": "platt", "a": 1.0, "b": 0.0}')
    (files / "master_scale.json").write_text('{"upper_bounds": [0.0015, 0.003, 0.006, 0.012, '
                                             '0.024, 0.048, 0.096, 0.19, 0.35, 1.0]}')
    if bad == "features.json":  # a readable booster, a features file without names
        import lightgbm as lgb
        import numpy as np

        x = np.random.default_rng(0).normal(size=(200, 2))
        y = (x[:, 0] > 0).astype(int)
        lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 2).save_model(
            str(files / "booster.txt"))
    features = tmp_path / "f.parquet"
    pd.DataFrame({"buyer_id": ["a"], "as_of": [pd.Timestamp("2022-12-31")],
                  "status": ["active"]}).to_parquet(features)
    code, text = run("explain", "--model", tmp_path / "m", "--features", features,
                     "--out", tmp_path / "out")
    assert code == 2
    assert text.startswith("error: ") and f"{bad}: damaged model file" in text
