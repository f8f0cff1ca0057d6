"""``riskmodel explain`` end to end on a small trained model: the files and their columns,
contributions that add up to the margin, reasons in words, and the messages of bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.features import FeatureConfig, feature_names
from riskmodel.modeling.model import load_model_dir
from training_helpers import write_params

pytestmark = pytest.mark.slow

runner = CliRunner()


def cli(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    params = write_params(root / "params.yaml", train={"n_estimators": 60, "search": [{}]})
    raw, book = root / "raw", root / "book"
    feats, labs, model = root / "features.parquet", root / "labels.parquet", root / "model"
    steps = [
        ("synth", "--out", raw, "--buyers", "1200", "--start", "2020-01-01", "--end",
         "2023-12-31", "--seed", "8"),
        ("validate", raw, "--params", params, "--out", book),
        ("features", book, "--params", params, "--out", feats),
        ("labels", book, "--params", params, "--out", labs),
        ("train", book, "--params", params, "--features", feats, "--labels", labs, "--out",
         model, "--no-register"),
    ]
    for step in steps:
        res = cli(*step)
        assert res.exit_code == 0, (step[0], res.output)
    return {"root": root, "features": feats, "model": model}


@pytest.fixture(scope="module")
def explained(trained: dict[str, Path]) -> tuple[Path, list[str], str]:
    frame = pd.read_parquet(trained["features"], columns=["buyer_id", "as_of", "status"])
    latest = frame["as_of"].max()
    at = frame[frame["as_of"] == latest]
    chosen = [at[at["status"] == "active"]["buyer_id"].iloc[0],
              at[at["status"] == "active"]["buyer_id"].iloc[-1]]
    out = trained["root"] / "explain"
    res = cli("explain", "--model", trained["model"], "--features", trained["features"],
              "--out", out, "--buyers", ",".join(chosen))
    assert res.exit_code == 0, res.output
    assert f"at {pd.Timestamp(latest).date()}" in res.stdout
    return out, chosen, str(pd.Timestamp(latest).date())


def test_files_and_columns(explained: tuple[Path, list[str], str],
                           trained: dict[str, Path]) -> None:
    out, chosen, latest = explained
    names = load_model_dir(trained["model"]).spec.names
    assert set(names) <= set(feature_names(FeatureConfig()))
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == ["buyer_id", "as_of", "status", "pd", "grade", "margin"]
    feats = pd.read_parquet(trained["features"])
    at = feats[feats["as_of"] == pd.Timestamp(latest).date()]
    assert len(scores) == len(at) and set(scores["buyer_id"]) == set(at["buyer_id"])
    assert (pd.to_datetime(scores["as_of"]).dt.date.astype(str) == latest).all()
    d = scores["status"] == "in_default"
    assert (scores.loc[d, "grade"] == "D").all() and (scores.loc[d, "pd"] == 1.0).all()
    contrib = pd.read_parquet(out / "contributions.parquet")
    assert list(contrib.columns) == ["buyer_id", "as_of", "base_value", "margin", *names]
    reasons = pd.read_parquet(out / "reasons.parquet")
    assert list(reasons.columns) == ["buyer_id", "as_of", "rank", "code", "feature", "value",
                                     "typical", "text"]
    imp = pd.read_csv(out / "importance.csv")
    assert list(imp.columns) == ["level", "name", "code", "mean_abs_contribution"]
    assert set(imp["level"]) == {"feature", "concept"}
    for name in ("summary.png", "dependence.png", *(f"waterfall_{b}.png" for b in chosen)):
        assert (out / name).stat().st_size > 1000, name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["scores.parquet", "contributions.parquet", "reasons.parquet", "importance.csv",
         "summary.png", "dependence.png", *(f"waterfall_{b}.png" for b in chosen)])


def test_contributions_add_up_to_the_margin_of_the_scores(
        explained: tuple[Path, list[str], str], trained: dict[str, Path]) -> None:
    out, _, _ = explained
    names = load_model_dir(trained["model"]).spec.names
    contrib = pd.read_parquet(out / "contributions.parquet")
    scores = pd.read_parquet(out / "scores.parquet")
    total = contrib["base_value"] + contrib[names].sum(axis=1)
    assert np.abs(total - contrib["margin"]).max() < 1e-6
    assert np.abs(contrib["margin"].to_numpy() - scores["margin"].to_numpy()).max() < 1e-6
    assert (contrib["buyer_id"].to_numpy() == scores["buyer_id"].to_numpy()).all()


def test_reasons_are_words_ranked_and_raise_the_risk(
        explained: tuple[Path, list[str], str], trained: dict[str, Path]) -> None:
    out, _, _ = explained
    names = load_model_dir(trained["model"]).spec.names
    reasons = pd.read_parquet(out / "reasons.parquet")
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(reasons) > len(scores)  # most buyers have several reasons
    assert reasons.groupby("buyer_id")["rank"].max().max() <= 4
    # a column name (industry and country are words too, and said as words)
    columns = [n for n in names if "_" in n]
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in columns) + r")\b")
    assert not reasons["text"].str.contains(pattern).any()
    assert not reasons["text"].str.contains("_").any()
    assert not reasons["text"].str.contains(r"\bnan\b|\{|\}", case=False).any()
    assert reasons["code"].str.fullmatch(r"R\d\d").all()
    defaulted = set(scores.loc[scores["status"] == "in_default", "buyer_id"])
    assert defaulted, "the world should have buyers in default at the latest date"
    assert set(reasons[reasons["code"] == "R91"]["buyer_id"]) == defaulted
    # a model reason's feature has a positive contribution for its buyer
    contrib = pd.read_parquet(out / "contributions.parquet").set_index("buyer_id")
    model_rows = reasons[~reasons["code"].isin(["R90", "R91"])].head(200)
    for r in model_rows.itertuples():
        # the largest contribution of a group whose sum is positive
        assert contrib.loc[r.buyer_id, r.feature] > 0, r


def test_top_and_as_of(trained: dict[str, Path], tmp_path: Path) -> None:
    frame = pd.read_parquet(trained["features"], columns=["as_of"])
    first = str(sorted(frame["as_of"].unique())[0])
    res = cli("explain", "--model", trained["model"], "--features", trained["features"],
              "--out", tmp_path / "x", "--top", "1", "--as-of", first)
    assert res.exit_code == 0, res.output
    reasons = pd.read_parquet(tmp_path / "x" / "reasons.parquet")
    assert reasons["rank"].max() == 1
    assert (pd.to_datetime(reasons["as_of"]).dt.date.astype(str) == first).all()


def test_bad_inputs_have_clear_messages(trained: dict[str, Path], tmp_path: Path) -> None:
    base = ["explain", "--model", trained["model"], "--features", trained["features"]]
    res = cli(*base, "--out", tmp_path / "a", "--buyers", "NO-SUCH-BUYER")
    assert res.exit_code == 2
    assert "1 buyer id(s) not in" in res.stderr and "'NO-SUCH-BUYER'" in res.stderr
    res = cli(*base, "--out", tmp_path / "b", "--as-of", "1999-12-31")
    assert res.exit_code == 2 and "--as-of 1999-12-31: not a date of" in res.stderr
    lacking = tmp_path / "lacking.parquet"
    pd.read_parquet(trained["features"]).drop(columns=["paydex_90", "dbt_mean_180"]).to_parquet(
        lacking)
    res = cli("explain", "--model", trained["model"], "--features", lacking, "--out",
              tmp_path / "c")
    assert res.exit_code == 2
    assert "lacks 2 of the model's features" in res.stderr and "paydex_90" in res.stderr
    res = cli("explain", "--model", tmp_path, "--features", trained["features"], "--out",
              tmp_path / "d")
    assert res.exit_code == 2 and "not a riskmodel model directory" in res.stderr
    for name in ("a", "b", "c", "d"):
        assert not (tmp_path / name).exists()  # nothing written on failure
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = cli(*base, "--out", afile)
    assert res.exit_code == 2 and "is a file; --out names a folder" in res.stderr
    res = cli(*base, "--out", tmp_path / "e", "--top", "0")
    assert res.exit_code == 2


def test_a_rerun_replaces_its_own_files_only(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "waterfall_OLD.png").write_bytes(b"old")
    (out / "scores.parquet").write_bytes(b"old")
    res = cli("explain", "--model", trained["model"], "--features", trained["features"],
              "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "keep.txt").read_text() == "mine"
    assert not (out / "waterfall_OLD.png").exists()
    assert len(pd.read_parquet(out / "scores.parquet")) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_reasons_quote_the_buyers_own_values_and_rank_by_concept(
        explained: tuple[Path, list[str], str], trained: dict[str, Path]) -> None:
    """Each model reason quotes its buyer's value of its feature (from the features file,
    not from the reasons code) and the median over the live buyers; its concept's summed
    contribution raises the risk and the ranks follow it."""
    from riskmodel.features.catalogue import describe

    out, _, latest = explained
    names = load_model_dir(trained["model"]).spec.names
    feats = pd.read_parquet(trained["features"])
    feats = feats[pd.to_datetime(feats["as_of"]).dt.date.astype(str) == latest]
    feats = feats.set_index("buyer_id")
    live = feats[feats["status"].astype(str) != "in_default"]
    contrib = pd.read_parquet(out / "contributions.parquet").set_index("buyer_id")
    reasons = pd.read_parquet(out / "reasons.parquet")
    model = reasons[~reasons["code"].isin(["R90", "R91"])]
    assert len(model) > 100
    members: dict[str, list[str]] = {}
    for n in names:
        members.setdefault(describe(n).code, []).append(n)
    checked = 0
    for r in model.head(400).itertuples():
        assert describe(r.feature).code == r.code, r
        if describe(r.feature).concept.render != "category":
            own = feats.loc[r.buyer_id, r.feature]
            assert (np.isnan(r.value) and pd.isna(own)) or r.value == pytest.approx(own), r
            col = pd.to_numeric(live[r.feature], errors="coerce").dropna()
            assert r.typical == pytest.approx(float(np.median(col))), r
            checked += 1
    assert checked > 50
    for bid, g in model.groupby("buyer_id"):
        sums = [float(contrib.loc[bid, members[c]].sum()) for c in g.sort_values("rank")["code"]]
        assert all(s > 0.01 for s in sums), (bid, sums)
        assert sums == sorted(sums, reverse=True), (bid, sums)
        ranks = sorted(reasons[reasons["buyer_id"] == bid]["rank"])
        assert ranks == list(range(1, len(ranks) + 1)), bid
