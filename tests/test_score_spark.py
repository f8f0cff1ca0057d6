"""``riskmodel score --engine spark`` on ``local[2]``: every row and every part file equal to
the local engine's (all but ``scored_at``; the Parquet layout too), and the same
``_profile.parquet``, for a model folder at the book's latest date and for a registered
model downloaded by the driver at an earlier date. One Spark session for
the module, stopped at its end. The project (book, features, registered models) is the one
of ``test_score.py``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_score import (
    EARLIER,
    NAME,
    Project,
    Scoring,
    _no_tracking_env,
    assert_same_layout,
    assert_same_parts,
    assert_same_rows,
    base_scoring,
    build_project,
    run_score,
)

pytestmark = pytest.mark.slow

SPARK = ("--engine", "spark", "--spark-master", "local[2]")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return build_project(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scoring:
    return base_scoring(tmp_path_factory)


@pytest.fixture(scope="module")
def spark_env() -> Iterator[None]:
    """Spark on the loopback interface, workers on this interpreter, no process-wide MLflow
    store; the session is stopped when the module is done."""
    assert shutil.which("java"), ("the Spark engine needs a Java 17+ runtime "
                                  "(apt-get install openjdk-17-jre-headless)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        _no_tracking_env(mp)
        yield
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()


@pytest.fixture(scope="module")
def spark_latest(project: Project, spark_env: None) -> Scoring:
    _, done = run_score(project.book, project.root / "scores_spark", project.params,
                        "--model", project.model, *SPARK)
    return done


@pytest.fixture(scope="module")
def spark_registered(project: Project, spark_env: None) -> Scoring:
    """The challenger (version 2) from the registry at an earlier date, in the same Spark
    session as :func:`spark_latest`."""
    _, done = run_score(project.book, project.root / "scores_spark_v2", project.params,
                        "--model", f"models:/{NAME}@challenger", "--as-of",
                        EARLIER.isoformat(), *SPARK)
    return done


def test_spark_rows_equal_the_local_engines(base: Scoring, spark_latest: Scoring) -> None:
    local, spark = base.frame(), spark_latest.frame()
    assert len(spark) == 1500
    assert_same_rows(local, spark)
    assert spark["scored_at"].nunique() == 1
    stamp = spark["scored_at"].iloc[0].to_pydatetime()
    assert spark_latest.started.replace(microsecond=0) <= stamp <= spark_latest.ended
    manifest = json.loads((spark_latest.out / "_scoring.json").read_text())
    reference = json.loads((base.out / "_scoring.json").read_text())
    assert manifest["engine"] == "spark"
    for key in ("as_of", "buyers", "by_status", "by_grade", "reasons", "parts", "model_name",
                "model_version", "model_run_id", "data_fingerprint"):
        assert manifest[key] == reference[key], key
    assert "(spark)" in spark_latest.stdout
    assert not list(spark_latest.out.parent.glob(f".{spark_latest.out.name}.scoring-*"))


def test_spark_part_files_equal_the_local_ones(base: Scoring, spark_latest: Scoring) -> None:
    """Rows and layout (row groups, rows per group, each column chunk's compression and
    encodings, the key-value metadata) of each part pair."""
    assert_same_parts(base.out, spark_latest.out)


def assert_same_profile(local: Path, spark: Path) -> None:
    a, b = local / "_profile.parquet", spark / "_profile.parquet"
    assert a.is_file() and b.is_file()
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.num_rows and ta.schema.names == ["feature", "bin", "rows"]
    assert ta.schema.equals(tb.schema) and ta.equals(tb)
    assert_same_layout(a, b, set())


def test_spark_profile_equals_the_local_one(base: Scoring, spark_latest: Scoring) -> None:
    assert_same_profile(base.out, spark_latest.out)


def test_spark_with_a_registered_model_at_an_earlier_date(
        project: Project, spark_registered: Scoring, tmp_path: Path) -> None:
    _, local = run_score(project.book, tmp_path / "local", project.params, "--model",
                         f"models:/{NAME}@challenger", "--as-of", EARLIER.isoformat())
    spark = spark_registered.frame()
    assert (spark["as_of"] == EARLIER).all()
    assert (spark["model_version"] == "2").all() and (spark["model_run_id"] == project.run2).all()
    assert_same_rows(local.frame(), spark)
    assert_same_parts(local.out, spark_registered.out)
    assert_same_profile(local.out, spark_registered.out)
    assert dt.date.fromisoformat(
        json.loads((spark_registered.out / "_scoring.json").read_text())["as_of"]) == EARLIER
