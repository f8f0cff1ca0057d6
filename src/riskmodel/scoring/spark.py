"""The Spark engine: the same units inside Apache Spark executors.

Each pass is a ``mapInArrow`` over a DataFrame of bucket numbers, one bucket per partition:
the executors run :func:`riskmodel.scoring.unit.prepare_bucket` and then
:func:`riskmodel.scoring.unit.score_bucket`, each Python worker loading the model once and
keeping it; the whole-book context and the portfolio medians, computed on the driver between
the passes, reach them as broadcast variables. Executors read the book and write their
parts into the run's staging folder, so both must be on a file system every executor sees
(one machine's disk for ``local[N]``; a shared mount such as NFS on a cluster). The parts
are written by the same function as the local engine's, byte for byte.

Started from ``riskmodel score --engine spark --spark-master URL``, or submitted to a cluster
with ``spark-submit pipelines/spark_score.py ...`` (the master and resources then come from
``spark-submit``). Workers run this interpreter (``PYSPARK_PYTHON`` unless set).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from riskmodel.scoring.job import Between, Progress, ScoringError, between, timed
from riskmodel.scoring.unit import ScoreJob, load_model, prepare_bucket, score_bucket

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_PANDAS_NOTE = "PySpark does not yet fully support pandas"
_COUNTS = "status string, grade string, buyers long"
_CACHE: dict[Any, Any] = {}


def session(master: str | None = None) -> SparkSession:
    """The Spark session to run in: ``master`` when given; else the session of
    ``spark-submit`` when this process was started by it; else ``local[*]``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ScoringError("--engine spark needs PySpark, which is not installed: "
                           "pip install -e '.[spark]' (and a Java 17 or later runtime)") from exc

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # PySpark warns on every worker that it was not tested with pandas 3; the units use
    # pandas themselves, never through PySpark's pandas API
    os.environ.setdefault("PYTHONWARNINGS", f"ignore:{_PANDAS_NOTE}:FutureWarning")
    warnings.filterwarnings("ignore", message=_PANDAS_NOTE, category=FutureWarning)
    builder = SparkSession.builder.appName("riskmodel-score")
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
    try:
        spark = (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.python.worker.reuse", "true")
                 .getOrCreate())
    except Exception as exc:  # PySpark's own errors: no Java, a master it cannot reach
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ScoringError("--engine spark needs a Java 17 or later runtime, and `java` "
                               "is not on the PATH (Debian: apt-get install "
                               "openjdk-17-jre-headless)") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScoringError(f"cannot start Spark (master {master!r}): {first}") from exc
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _cached(key: Any, make: Any) -> Any:
    """A broadcast value decoded once per Python worker."""
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = make()
    return _CACHE[key]


def run(job: ScoreJob, buckets: list[int], sample_buyers: int, seconds: dict[str, float],
        *, master: str | None = None, progress: Progress | None = None,
        fixed: Between | None = None) -> tuple[pd.DataFrame, Between]:
    """Both passes on Spark; returns the counts by status and grade and the domain
    warnings (as :func:`riskmodel.scoring.local.run`)."""
    done = timed(seconds, "spark start")
    spark = session(master)
    done()
    n = len(buckets)
    ids = spark.range(0, n, 1, numPartitions=max(n, 1))
    todo = list(buckets)

    def prepare(batches: Any) -> Any:
        for batch in batches:
            for i in batch.column(0).to_pylist():
                buyers = prepare_bucket(job, todo[i])
                yield pa.RecordBatch.from_pydict({"bucket": [todo[i]], "buyers": [buyers]})

    done = timed(seconds, "features")
    ids.mapInArrow(prepare, "bucket long, buyers long").collect()
    done()
    if progress is not None:
        progress("features", n, n)
    done = timed(seconds, "context")
    model = load_model(job.model_dir)
    mid = between(job, buckets, model, sample_buyers, fixed)
    sc = spark.sparkContext
    context_b = sc.broadcast(_ipc(mid.context))
    typical_b = sc.broadcast(mid.typical.to_dict())
    done()

    def score(batches: Any) -> Any:
        context = _cached(("context", job.workdir), lambda: pa.ipc.open_stream(
            context_b.value).read_all())
        typical = pd.Series(typical_b.value, dtype="float64")
        for batch in batches:
            for i in batch.column(0).to_pylist():
                found = score_bucket(job, todo[i], context, typical)
                yield from found.to_batches()

    done = timed(seconds, "score")
    rows = ids.mapInArrow(score, _COUNTS).collect()
    done()
    if progress is not None:
        progress("score", n, n)
    context_b.unpersist()
    typical_b.unpersist()
    counts = pd.DataFrame([r.asDict() for r in rows], columns=["status", "grade", "buyers"])
    counts = counts.groupby(["status", "grade"], dropna=False, as_index=False)["buyers"].sum()
    return counts, mid
