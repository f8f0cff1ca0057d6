"""``riskmodel score --reference``: a few buyers taken out of the book into a raw folder of
their own get, against the book's run, exactly the book run's PD, grade and reasons; without
the reference, their peer and cycle values come from themselves alone and differ."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from test_score import OBSERVED, Project, base_scoring, build_project, read_scores, run_score

pytestmark = pytest.mark.slow


def few_buyers(project: Project, folder: Path, n: int = 5) -> list[str]:
    """The raw rows of ``n`` buyers of the book (some scored, one in default when there is
    one), as a raw folder of their own."""
    scores = read_scores(base_scoring_out(project))
    scored = scores[scores["status"] == "scored"]["buyer_id"].head(n - 1).tolist()
    default = scores[scores["status"] == "in_default"]["buyer_id"].head(1).tolist()
    ids = scored + default
    folder.mkdir()
    for table in ("buyers", "events"):
        frame = pd.read_parquet(project.raw / f"{table}.parquet")
        frame[frame["buyer_id"].isin(ids)].to_parquet(folder / f"{table}.parquet")
    inv = pd.read_parquet(project.raw / "invoices")
    inv[inv["buyer_id"].isin(ids)].to_parquet(folder / "invoices.parquet")
    return ids


def base_scoring_out(project: Project) -> Path:
    return project.root / "scores"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    build_project(tmp_path_factory)
    base_scoring(tmp_path_factory)
    return build_project(tmp_path_factory)


def test_a_few_buyers_score_as_in_the_books_run(project: Project, tmp_path: Path) -> None:
    ids = few_buyers(project, tmp_path / "few")
    ref = base_scoring_out(project)
    _, done = run_score(tmp_path / "few", tmp_path / "out", project.params, "--model",
                        project.model, "--reference", ref, "--observed-until",
                        OBSERVED.isoformat())
    got = read_scores(done.out).set_index("buyer_id")
    want = read_scores(ref).set_index("buyer_id").loc[sorted(ids)]
    assert sorted(got.index) == sorted(ids)
    cols = ["status", "pd", "grade", "reason_1", "reason_2", "reason_3", "reason_1_text",
            "reason_2_text", "reason_3_text"]
    pd.testing.assert_frame_equal(got[cols], want[cols])
    assert (got["status"] == "scored").sum() >= 3
    manifest = json.loads((done.out / "_scoring.json").read_text())
    assert manifest["reference"] == str(ref)
    # the run's own context and medians are the reference's, written again with it
    assert (done.out / "_context.parquet").read_bytes() == (ref / "_context.parquet").read_bytes()
    assert json.loads((done.out / "_typical.json").read_text()) == json.loads(
        (ref / "_typical.json").read_text())


def test_without_the_reference_the_few_are_their_own_portfolio(project: Project,
                                                              tmp_path: Path) -> None:
    ids = few_buyers(project, tmp_path / "few")
    res, done = run_score(tmp_path / "few", tmp_path / "out", project.params, "--model",
                          project.model, "--observed-until", OBSERVED.isoformat())
    assert sorted(read_scores(done.out)["buyer_id"]) == sorted(ids)
    # the context is that of these five buyers: the portfolio row counts them, not the book
    ctx = pd.read_parquet(done.out / "_context.parquet")
    ref = pd.read_parquet(base_scoring_out(project) / "_context.parquet")
    port = ctx[(ctx["dimension"] == "portfolio") & (ctx["as_of"] == OBSERVED)]
    ref_port = ref[(ref["dimension"] == "portfolio") & (ref["as_of"] == OBSERVED)]
    assert port["buyers"].iloc[0] <= len(ids) < ref_port["buyers"].iloc[0]
    assert "only" in res.output and "live buyers" in res.output


def test_the_reference_fixes_the_as_of_date(project: Project, tmp_path: Path) -> None:
    few_buyers(project, tmp_path / "few")
    other = OBSERVED - dt.timedelta(days=31)
    res, _ = run_score(tmp_path / "few", tmp_path / "out", project.params, "--model",
                       project.model, "--reference", base_scoring_out(project), "--as-of",
                       other.isoformat(), "--observed-until", OBSERVED.isoformat(), ok=False)
    assert res.exit_code == 2
    assert "--as-of" in res.output and OBSERVED.isoformat() in res.output
    assert not (tmp_path / "out").exists()


def test_a_reference_that_is_not_a_scoring_output_is_refused(project: Project,
                                                            tmp_path: Path) -> None:
    few_buyers(project, tmp_path / "few")
    (tmp_path / "notscores").mkdir()
    res, _ = run_score(tmp_path / "few", tmp_path / "out", project.params, "--model",
                       project.model, "--reference", tmp_path / "notscores",
                       "--observed-until", OBSERVED.isoformat(), ok=False)
    assert res.exit_code == 2
    assert "not a scoring output" in res.output
