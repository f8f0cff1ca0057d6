"""The local engine: the book's buckets through the units in this process.

The first pass (features) runs two buckets side by side on threads (DuckDB works without
Python's lock); the second (scores and reasons) one bucket at a time, each step using both
cores itself (LightGBM's threads for the prediction, numba's for the contributions). Memory
holds a bucket or two, the model and the context: it is set by the bucket size, never by the
book.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from riskmodel.scoring.job import Between, Progress, between, timed
from riskmodel.scoring.unit import ScoreJob, load_model, prepare_bucket, score_bucket


def run(job: ScoreJob, buckets: list[int], sample_buyers: int, seconds: dict[str, float],
        progress: Progress | None = None, workers: int = 2, fixed: Between | None = None
        ) -> tuple[pd.DataFrame, Between]:
    """Both passes over ``buckets`` (with ``fixed``: the context and medians of a reference
    run instead of this book's); returns the counts by status and grade and what the
    whole-book step found (context, medians, domain warnings). The output parts are in ``job.workdir``/data. The first pass runs ``workers``
    buckets at a time (each unit's DuckDB query on one thread: small queries use two threads
    poorly, two queries side by side use both cores)."""
    n = len(buckets)
    done = timed(seconds, "features")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, _ in enumerate(pool.map(lambda k: prepare_bucket(job, k), buckets)):
            if progress is not None:
                progress("features", i + 1, n)
    done()
    done = timed(seconds, "context")
    model = load_model(job.model_dir)
    mid = between(job, buckets, model, sample_buyers, fixed)
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
    return counts, mid
