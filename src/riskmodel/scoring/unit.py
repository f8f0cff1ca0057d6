"""The unit of batch scoring: one bucket of the book at one as-of date.

A run makes two passes over the book's buckets, with one whole-book step between them:

1. :func:`prepare_bucket`: the bucket's point-in-time features at the as-of date (without
   the peer and cycle columns) go to the run's work folder, and the small per-buyer rows the
   whole-book context is made of go beside them;
2. between the passes (:func:`whole_book_context`, :func:`typical_values_of`): the peer and
   cycle context from every bucket's context rows, and the portfolio medians the reason
   sentences quote;
3. :func:`score_bucket`: the bucket's features get their context columns, then the PD, the
   grade and the reasons; the rows are written as the bucket's part of the output.

Every function is a pure function of the book, the job and what the first two steps made, so
a buyer's row is the same whichever engine, process or batch computes it. The local and the
Spark engines call exactly these functions.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from riskmodel.features.engine import FeatureConfig
    from riskmodel.modeling.model import RiskModel

#: statuses of the output, in this order of precedence
STATUSES = ("in_default", "scored", "no_recent_history")
#: the lineage columns, the same on every row of a run
LINEAGE = ("model_name", "model_version", "model_run_id", "data_fingerprint", "scored_at")


@dataclass(frozen=True)
class ScoreJob:
    """What every unit of one run needs (plain values: it travels to Spark workers).

    ``workdir`` is the run's staging folder (``features/``, ``context/`` and ``data/``, the
    output parts, inside it); ``model_dir`` a local model folder (``riskmodel train --out``
    or a downloaded registered model); ``top`` the reasons per buyer (0: none);
    ``recent_days``: a live buyer with no invoice issued in that many days before the
    as-of date and nothing open is ``no_recent_history`` (not scored);
    ``lineage`` the values of :data:`LINEAGE` (``scored_at`` an ISO 8601 UTC time)."""

    book: str
    as_of: dt.date
    cfg: FeatureConfig
    workdir: str
    model_dir: str
    top: int
    recent_days: int
    grades: tuple[str, ...]
    lineage: dict[str, str] = field(default_factory=dict)

    def path(self, kind: str, k: int, suffix: str) -> Path:
        return Path(self.workdir) / kind / f"part-{k:05d}{suffix}"


# --------------------------------------------------------------------------- pass 1


def prepare_bucket(job: ScoreJob, k: int) -> int:
    """Features of bucket ``k`` at the as-of date (no context columns) to
    ``features/part-k.arrow``, and its context rows (peer base; cycle measures at the as-of
    date and 3 and 6 months before) to ``context/part-k.base.parquet`` and
    ``.cycle.parquet``. Files are written under a temporary name and renamed, so a retried
    unit (a Spark task run twice) leaves one whole copy. Returns the bucket's buyers."""
    from riskmodel.data.book import Book
    from riskmodel.features.engine import (
        INVOICE_COLUMNS,
        bucket_cycle,
        bucket_features,
        peer_base,
    )

    book = Book(job.book)
    bucket = book.bucket(k, INVOICE_COLUMNS)
    when = [job.as_of]
    table = bucket_features(bucket.invoices, bucket.buyers, bucket.events, when, job.cfg)
    cycle = bucket_cycle(bucket.invoices, bucket.buyers, bucket.events, when, job.cfg)
    base = table.select(["as_of", "industry", "country", peer_base(job.cfg)])
    _atomic_ipc(table, job.path("features", k, ".arrow"))
    _atomic_parquet(base, job.path("context", k, ".base.parquet"))
    _atomic_parquet(cycle, job.path("context", k, ".cycle.parquet"))
    return int(bucket.buyers.num_rows)


def _atomic_ipc(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    os.replace(tmp, path)


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as mm:
        return pa.ipc.open_file(mm).read_all()


# --------------------------------------------------------------------------- between


def whole_book_context(job: ScoreJob, buckets: list[int]) -> pa.Table:
    """The peer and cycle context over every bucket's context rows (read from the work
    folder by DuckDB: memory holds the group medians, not the rows)."""
    from riskmodel.features.engine import peer_context_files

    base = [str(job.path("context", k, ".base.parquet")) for k in buckets]
    cycle = [str(job.path("context", k, ".cycle.parquet")) for k in buckets]
    return peer_context_files(base, cycle, [job.as_of], job.cfg)


def features_with_context(job: ScoreJob, k: int, context: pa.Table) -> pd.DataFrame:
    """Bucket ``k``'s features with their context columns, as pandas."""
    from riskmodel.features.engine import features_to_pandas, with_peers

    table = _read_ipc(job.path("features", k, ".arrow"))
    if not table.num_rows:
        from riskmodel.features.engine import feature_schema

        return features_to_pandas(feature_schema(job.cfg).empty_table())
    return features_to_pandas(with_peers([table], context, job.cfg))


def typical_values_of(job: ScoreJob, buckets: list[int], context: pa.Table,
                      names: list[str], sample_buyers: int
                      ) -> tuple[pd.Series, pd.DataFrame]:
    """The portfolio median of each model feature over the live buyers, the value the
    reason sentences compare a buyer with: over the first buckets (in bucket order) that
    hold at least ``sample_buyers`` buyers, every bucket when the book is smaller. Buckets
    are a hash of the buyer id, so the sample is a fixed pseudo-random one; the medians are
    the same for every buyer of the run, whichever batch or engine scores it. Returns them
    and the sample (``status`` and the model features)."""
    from riskmodel.explain.reasons import typical_values

    frames, seen = [], 0
    for k in buckets:
        frame = features_with_context(job, k, context)
        frames.append(frame[["status", *names]])
        seen += len(frame)
        if seen >= sample_buyers:
            break
    if not frames:
        empty = pd.DataFrame(columns=["status", *names])
        return pd.Series({n: np.nan for n in names}, dtype=np.float64), empty
    sample = pd.concat(frames, ignore_index=True)
    return typical_values(sample, names), sample


# --------------------------------------------------------------------------- pass 2

_MODELS: dict[str, RiskModel] = {}


def load_model(model_dir: str) -> RiskModel:
    """The model of a local model folder, loaded once per process (a Spark executor's
    Python worker loads it for its first task and keeps it)."""
    from riskmodel.modeling.model import load_model_dir

    model = _MODELS.get(model_dir)
    if model is None:
        model = _MODELS[model_dir] = load_model_dir(model_dir)
    return model


def output_schema(job: ScoreJob) -> pa.Schema:
    grade = pa.dictionary(pa.int8(), pa.string(), ordered=True)
    fields = [pa.field("buyer_id", pa.string(), nullable=False),
              pa.field("as_of", pa.date32(), nullable=False),
              pa.field("status", pa.string(), nullable=False),
              pa.field("pd", pa.float64()), pa.field("grade", grade),
              pa.field("grade_rank", pa.int8())]
    fields += [pa.field(f"reason_{i}", pa.string()) for i in range(1, job.top + 1)]
    fields += [pa.field(f"reason_{i}_text", pa.string()) for i in range(1, job.top + 1)]
    fields += [pa.field(n, pa.string(), nullable=False) for n in LINEAGE[:-1]]
    fields.append(pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False))
    return pa.schema(fields)


def score_bucket(job: ScoreJob, k: int, context: pa.Table, typical: pd.Series) -> pa.Table:
    """Score bucket ``k`` and write its output part (``data/part-k.parquet``); returns the
    part's counts by status and grade (``status``, ``grade``, ``buyers``).

    One row per buyer of the bucket's buyers table, sorted by buyer id: ``in_default``
    (PD 1, grade D), ``no_recent_history`` (no PD: nothing issued in ``recent_days`` and
    nothing open at the as-of date, or no invoice by then at all) or ``scored``."""
    from riskmodel.data.book import Book

    model = load_model(job.model_dir)
    frame = features_with_context(job, k, context)
    book = Book(job.book)
    ids = book.read("buyers", k, ["buyer_id"])["buyer_id"]
    events = book.read("events", k, ["buyer_id", "event_date"])
    known = pc.less_equal(events["event_date"], pa.scalar(job.as_of, pa.date32()))
    with_event = set(pc.filter(events["buyer_id"], known).to_pylist())
    rows = score_frame(job, model, frame, typical, ids, with_event)
    _atomic_parquet(rows, job.path("data", k, ".parquet"))
    _atomic_parquet(profile_counts(model, frame, rows), job.path("profile", k, ".parquet"))
    return counts(rows)


def profile_counts(model: RiskModel, frame: pd.DataFrame, rows: pa.Table) -> pa.Table:
    """The scored buyers' feature values in the bins of the model's training profile
    (:func:`riskmodel.modeling.domain.bin_counts`): what ``riskmodel watch`` compares two
    runs with. Empty for a model saved without a profile."""
    from riskmodel.modeling.domain import bin_counts

    schema = pa.schema([("feature", pa.string()), ("bin", pa.string()), ("rows", pa.int64())])
    if model.profile is None or not len(frame):
        return schema.empty_table()
    scored = pc.filter(rows["buyer_id"], pc.equal(rows["status"], "scored"))
    keep = pc.is_in(pa.array(frame["buyer_id"].to_numpy(), pa.string()), value_set=scored)
    live = frame[keep.to_numpy(zero_copy_only=False)]
    return pa.Table.from_pandas(bin_counts(model.profile, live), schema=schema,
                                preserve_index=False)


def score_frame(job: ScoreJob, model: RiskModel, frame: pd.DataFrame, typical: pd.Series,
                buyer_ids: pa.Array | pa.ChunkedArray,
                with_event: set[str] | None = None) -> pa.Table:
    """The output rows of one batch: ``frame`` is the features (with context) of the
    buyers of ``buyer_ids`` that have an invoice by the as-of date; ``with_event`` the
    buyers with a credit event dated by then (in default by the contract, invoices or not:
    those without any invoice have no features row and are set here)."""
    all_ids = np.sort(np.asarray(buyer_ids.to_pylist(), dtype=object))
    n = len(all_ids)
    at = pd.Index(all_ids).get_indexer(frame["buyer_id"].to_numpy())
    if (at < 0).any():
        raise ValueError("features of a buyer outside the batch's buyers")
    status = np.full(n, "no_recent_history", dtype=object)
    pdv = np.full(n, np.nan)
    grade_idx = np.full(n, -1, dtype=np.int8)
    reasons = np.full((job.top, n), None, dtype=object)
    texts = np.full((job.top, n), None, dtype=object)

    in_default = frame["status"].astype("str").eq("in_default").to_numpy()
    since = pd.to_numeric(frame["days_since_last_invoice"]).to_numpy(dtype=float,
                                                                       na_value=np.nan)
    open_amount = pd.to_numeric(frame["open_amount"]).to_numpy(dtype=float, na_value=0.0)
    recent = (since < job.recent_days) | (open_amount > 0)
    rated = in_default | recent
    if rated.any():
        sub = frame[rated].reset_index(drop=True)
        cols = ["status", *model.spec.names]
        pred = model.predict(sub[cols])
        where = at[rated]
        status[where] = np.where(in_default[rated], "in_default", "scored")
        pdv[where] = pred["pd"].to_numpy()
        order = {g: i for i, g in enumerate(job.grades)}
        grade_idx[where] = pd.Series(pred["grade"]).map(order).to_numpy(dtype=np.int8)
        if job.top:
            _reasons_into(job, model, sub, typical, where, reasons, texts)
    if with_event:
        no_row = np.ones(n, dtype=bool)
        no_row[at] = False
        event = no_row & np.isin(all_ids, np.asarray(sorted(with_event), dtype=object))
        if event.any():
            from riskmodel.explain.reasons import SPECIAL_REASONS

            code, _, text = SPECIAL_REASONS["in_default"]
            status[event] = "in_default"
            pdv[event] = 1.0
            grade_idx[event] = len(job.grades) - 1
            if job.top:
                reasons[0, event] = code
                texts[0, event] = text
    grade = pa.DictionaryArray.from_arrays(
        pa.array(grade_idx, mask=grade_idx < 0, type=pa.int8()),
        pa.array(list(job.grades), pa.string()), ordered=True)
    cols_out: dict[str, Any] = {
        "buyer_id": pa.array(all_ids, pa.string()),
        "as_of": pa.array(np.full(n, np.datetime64(job.as_of, "D")), pa.date32()),
        "status": pa.array(status, pa.string()),
        "pd": pa.array(pdv, mask=np.isnan(pdv)),
        "grade": grade,
        "grade_rank": pa.array(grade_idx + 1, mask=grade_idx < 0, type=pa.int8()),
    }
    for i in range(job.top):
        cols_out[f"reason_{i + 1}"] = pa.array(reasons[i], pa.string())
    for i in range(job.top):
        cols_out[f"reason_{i + 1}_text"] = pa.array(texts[i], pa.string())
    for name in LINEAGE[:-1]:
        cols_out[name] = pa.array(np.full(n, job.lineage.get(name, ""), dtype=object),
                                  pa.string())
    stamp = pa.scalar(dt.datetime.fromisoformat(job.lineage["scored_at"]),
                      pa.timestamp("us", tz="UTC"))
    cols_out["scored_at"] = pa.array(np.full(n, stamp.value, dtype=np.int64),
                                     pa.timestamp("us", tz="UTC"))
    return pa.Table.from_pydict(cols_out, schema=output_schema(job))


def _reasons_into(job: ScoreJob, model: RiskModel, sub: pd.DataFrame, typical: pd.Series,
                  where: np.ndarray, reasons: np.ndarray, texts: np.ndarray) -> None:
    """The reason codes and sentences of the rows of ``sub`` into the output arrays (row
    ``i`` of ``sub`` is output row ``where[i]``), exact TreeSHAP contributions."""
    from riskmodel.explain.contributions import contributions_frame
    from riskmodel.explain.reasons import reason_codes

    contrib = contributions_frame(model, sub[list(model.spec.names)])
    keyed = sub[["buyer_id", "status", *model.spec.names]].reset_index(drop=True)
    found = reason_codes(contrib.reset_index(drop=True), keyed, typical, top=job.top)
    if not len(found):
        return
    row = pd.Index(keyed["buyer_id"]).get_indexer(found["buyer_id"].to_numpy())
    rank = found["rank"].to_numpy().astype(np.int64) - 1
    ok = rank < job.top
    reasons[rank[ok], where[row[ok]]] = found["code"].to_numpy()[ok]
    texts[rank[ok], where[row[ok]]] = found["text"].to_numpy()[ok]


def counts(rows: pa.Table) -> pa.Table:
    """Buyers per status and grade of some output rows."""
    grade = pc.cast(rows["grade"], pa.string()) if rows.num_rows else pa.array([], pa.string())
    t = pa.table({"status": rows["status"], "grade": grade})
    g = t.group_by(["status", "grade"]).aggregate([("status", "count")])
    return pa.table({"status": g["status"], "grade": g["grade"],
                     "buyers": g["status_count"].cast(pa.int64())})
