"""The local engine: the book's buckets through the units in this process, one at a time.

Each unit uses both cores itself (DuckDB's threads for the features, LightGBM's for the
prediction, numba's for the contributions), so memory holds one bucket's rows, the model and
the context: it is set by the bucket size, never by the book.
"""

from __future__ import annotations

import pandas as pd

from riskmodel.scoring.job import Progress, between, timed
from riskmodel.scoring.unit import ScoreJob, load_model, prepare_bucket, score_bucket


def run(job: ScoreJob, buckets: list[int], sample_buyers: int, seconds: dict[str, float],
        progress: Progress | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Both passes over ``buckets``; returns the counts by status and grade and the domain
    warnings. The output parts are in ``job.workdir``/data."""
    n = len(buckets)
    done = timed(seconds, "features")
    for i, k in enumerate(buckets):
        prepare_bucket(job, k)
        if progress is not None:
            progress("features", i + 1, n)
    done()
    done = timed(seconds, "context")
    model = load_model(job.model_dir)
    mid = between(job, buckets, model, sample_buyers)
    done()
    done = timed(seconds, "score")
    parts = []
    for i, k in enumerate(buckets):
        parts.append(score_bucket(job, k, mid.context, mid.typical).to_pandas())
        if progress is not None:
            progress("score", i + 1, n)
    done()
    counts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["status", "grade", "buyers"])
    counts = counts.groupby(["status", "grade"], dropna=False, as_index=False)["buyers"].sum()
    return counts, mid.warnings
