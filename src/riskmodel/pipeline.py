"""The pipeline's stages as library functions over paths and params.

validate -> features -> labels -> train -> evaluate -> promote. Each stage takes paths and a
:class:`~riskmodel.params.Params`, does its work through the library, and returns a result
object; the CLI parses arguments and prints these results, DVC calls the CLI, and tests and
benchmarks call the same functions. Each stage imports what it uses inside its function, so
a stage depends (for DVC) only on the modules it runs. Every stage that reads data accepts a book or a raw
folder (validated into a temporary book first), reads it a bucket at a time, and fails when a
table's rejected share is above ``data.max_reject_rate``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskmodel.data.book import Book, BookError, is_book
from riskmodel.params import Params

if TYPE_CHECKING:
    from riskmodel.decisions.limits import LimitsResult
    from riskmodel.features.engine import FeatureConfig
    from riskmodel.scoring.job import ScoreResult

#: progress callback: (what, done, total)
Progress = Callable[[str, int, int], None]


class PipelineError(ValueError):
    """A stage cannot run as asked; the message says what to change (CLI exit code 2)."""


class RejectLimitError(PipelineError):
    """A table's rejected share is above ``data.max_reject_rate`` (CLI exit code 1)."""


def _tick(progress: Progress | None, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)


# --------------------------------------------------------------------------- validate


@dataclass
class ValidateResult:
    book: Path
    report: dict[str, Any]
    observed_until: dt.date
    n_buckets: int
    over_limit: list[str] = field(default_factory=list)


def _writable_ancestor(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a writable folder, so that the
    folders can be created when the stage writes (nothing is created before then)."""
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PipelineError(f"{path}: cannot create its folder ({probe} is a file)")
    if not os.access(probe, os.W_OK):
        raise PipelineError(f"{path}: cannot create it ({probe} is not writable)")


def output_file(path: str | Path, what: str = "--out") -> Path:
    """A file the stage will write, checked before any work: not a folder, and its folder
    exists or can be created."""
    path = Path(path)
    if path.is_dir():
        raise PipelineError(f"{path}: is a folder; {what} names a file to write")
    _writable_ancestor(path)
    return path


def output_folder(path: str | Path, what: str) -> Path:
    """A folder the stage will write into, checked before any work: not a file, and it
    exists or can be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PipelineError(f"{path}: is a file; {what} names a folder")
    _writable_ancestor(path / "x")
    return path


def check_reject_limit(report: dict[str, Any], max_reject_rate: float) -> list[str]:
    """Tables whose rejected share is above the limit, as 'name share' strings."""
    over = []
    for name, t in report["tables"].items():
        rate = t["rejected"] / t["read"] if t["read"] else 0.0
        if rate > max_reject_rate:
            over.append(f"{name} {rate:.2%}")
    return over


def validate(
    raw: str | Path,
    out: str | Path,
    params: Params,
    *,
    mapping: str | Path | None = None,
    observed_until: dt.date | None = None,
    rejects: str | Path | None = None,
    report: str | Path | None = None,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> ValidateResult:
    """Validate a raw folder into a book at ``out`` (with rejects and a JSON report where
    asked). The book, rejects and report are written even above the reject limit, so they can
    be inspected; :attr:`ValidateResult.over_limit` names the tables above it."""
    from riskmodel.data.ingest import build_book

    if report is not None:
        output_file(report, "--report")
    if rejects is not None and Path(rejects).exists() and not Path(rejects).is_dir():
        raise PipelineError(f"{rejects}: is a file; --rejects names a folder")
    output_file(out, "--out")  # the book's parent folder
    mp = mapping if mapping is not None else params.data.mapping
    built = build_book(
        Path(raw), Path(out),
        mapping=Path(mp) if mp else None,
        observed_until=observed_until or params.data.observed_until,
        bucket_invoices=params.book.bucket_invoices,
        n_buckets=params.book.buckets,
        memory_limit=params.book.memory_limit,
        rejects=Path(rejects) if rejects else None,
        today=today,
        progress=progress,
    )
    if report is not None:
        path = Path(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(built.report, indent=2) + "\n", encoding="utf-8")
    return ValidateResult(Path(out), built.report, built.manifest.observed_until,
                          built.manifest.n_buckets,
                          check_reject_limit(built.report, params.data.max_reject_rate))


@contextlib.contextmanager
def open_book(data: str | Path, params: Params, *, mapping: str | Path | None = None,
              observed_until: dt.date | None = None,
              progress: Progress | None = None) -> Iterator[Book]:
    """A book as given, or a raw folder validated into a temporary book (removed after).
    Fails (:class:`RejectLimitError`) when a table's rejected share is above the limit."""
    path = Path(data)
    if not path.exists():
        raise PipelineError(f"{path}: no such folder (give a book or a raw data folder)")
    if not path.is_dir():
        raise PipelineError(f"{path}: is a file; give a book or a raw data folder")
    if is_book(path):
        if mapping is not None or observed_until is not None:
            raise PipelineError(f"{path} is a book: --mapping and --observed-until apply to "
                                "raw data only (the book was validated with its own)")
        book = _open(path)
        _enforce(book.manifest.tables, params)
        yield book
        return
    tmp = Path(tempfile.mkdtemp(prefix="riskmodel-book-"))
    try:
        result = validate(path, tmp / "book", params, mapping=mapping,
                          observed_until=observed_until, progress=progress)
        if result.over_limit:
            raise RejectLimitError(_limit_message(result.over_limit, params))
        yield _open(result.book)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open(path: Path) -> Book:
    try:
        return Book(path)
    except BookError as exc:
        raise PipelineError(str(exc)) from exc


def _limit_message(over: list[str], params: Params) -> str:
    return (f"rejected share above data.max_reject_rate {params.data.max_reject_rate:.2%}: "
            f"{', '.join(over)} (see riskmodel validate --rejects)")


def _enforce(tables: dict[str, Any], params: Params) -> None:
    over = check_reject_limit({"tables": tables}, params.data.max_reject_rate)
    if over:
        raise RejectLimitError(_limit_message(over, params))


def as_of_dates(book: Book, params: Params, given: Sequence[dt.date] | None = None
                ) -> list[dt.date]:
    """The as-of dates asked for, or the params snapshot dates of the book; none may be after
    the book's ``observed_until``."""
    ou = book.observed_until
    if given:
        dates = sorted(set(given))
    else:
        start = book.manifest.data_start
        if start is None:
            raise PipelineError(f"{book.path}: the book holds no invoices")
        dates = params.snapshots.resolve(start, ou)
    late = [d for d in dates if d > ou]
    if late:
        raise PipelineError(f"as-of date {late[0]} is after observed_until {ou}: nothing is "
                            "known there yet")
    if not dates:
        raise PipelineError("no as-of dates (check snapshots in params: the data may be "
                            "shorter than snapshots.history_days)")
    return dates


def feature_config(params: Params, book: Book) -> FeatureConfig:
    """The feature settings of params, with the book's frozen context (data start; whether
    the data carry dispute dates)."""
    from riskmodel.features.engine import FeatureConfig

    return FeatureConfig(
        windows=tuple(params.features.windows),
        dpd_threshold=params.label.dpd_threshold,
        history_cap_days=params.features.history_cap_days,
        data_start=book.manifest.data_start,
        disputes=book.manifest.has_column("invoices", "dispute_date"),
        cycle_min_buyers=params.features.cycle_min_buyers,
    )


# --------------------------------------------------------------------------- features


@dataclass
class FeaturesResult:
    path: Path
    peers_path: Path
    rows: int
    columns: int
    dates: list[dt.date]
    buckets: int


def peers_path_for(out: str | Path) -> Path:
    """Where the peer context of a features file is stored: ``X.parquet`` ->
    ``X.peers.parquet``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".peers.parquet")


def read_buyer_ids(path: str | Path) -> list[str]:
    """A buyers file: one id a line, taken exactly as written (ids are compared byte for
    byte, as validation stores them); lines that are empty or only spaces are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read the buyers file: {exc}") from exc
    ids = sorted({s for s in lines if s.strip()})
    if not ids:
        raise PipelineError(f"{path}: no buyer ids (one id a line)")
    return ids


def features(
    book: Book,
    out: str | Path,
    params: Params,
    *,
    dates: Sequence[dt.date] | None = None,
    buyers: Sequence[str] | None = None,
    peers: str | Path | None = None,
    progress: Progress | None = None,
) -> FeaturesResult:
    """Point-in-time features of the book (or of some ``buyers``) at the as-of dates, written
    to ``out`` (Parquet; rows sorted by as-of date and buyer) with the peer context beside it.

    The book is read a bucket at a time: each bucket's features go to a temporary file, the
    peer and cycle context is computed from the whole book (or read from ``peers``, the
    context file of an earlier run) out of small per-buyer rows of each bucket, then each
    bucket's rows get their context columns and are appended to ``out``. Memory holds one
    bucket, never the book.
    """
    from riskmodel.features.engine import (
        INVOICE_COLUMNS,
        bucket_cycle,
        bucket_features,
        feature_names,
        peer_context,
    )
    out = output_file(out)
    when = as_of_dates(book, params, dates)
    cfg = feature_config(params, book)
    wanted: dict[int, list[str]] | None = None
    if buyers is not None:
        wanted = book.buckets_for(buyers)
        _check_known(book, wanted)
    context = _read_peers(peers, cfg, when) if peers is not None else None
    need_all = context is None  # the peer context is over the whole book
    todo = range(book.n_buckets) if (need_all or wanted is None) else sorted(wanted)
    base_cols = ["as_of", "industry", "country", f"dbt_wmean_{max(cfg.windows)}"]
    bases: list[pa.Table] = []
    cycles: list[pa.Table] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".features-") as tmp:
        parts: list[Path] = []
        for i, k in enumerate(todo):
            bucket = book.bucket(k, INVOICE_COLUMNS)
            table = bucket_features(bucket.invoices, bucket.buyers, bucket.events, when, cfg)
            if need_all:  # a copy: a zero-copy select would keep the whole bucket alive
                bases.append(table.select(base_cols).take(np.arange(table.num_rows)))
                cycles.append(bucket_cycle(bucket.invoices, bucket.buyers, bucket.events,
                                           when, cfg))
            if wanted is not None:
                keep = wanted.get(k, [])
                table = table.filter(pa.compute.is_in(table["buyer_id"],
                                                      value_set=pa.array(keep, pa.string())))
            part = Path(tmp) / f"{k}.arrow"  # Arrow IPC: written and read once, locally
            with pa.ipc.new_file(part, table.schema) as w:
                w.write_table(table)
            parts.append(part)
            _tick(progress, "features", i + 1, len(todo))
        if context is None:
            context = peer_context(bases, cycles, when, cfg)
        bases.clear()
        cycles.clear()
        rows = _finish_features(parts, context, cfg, out)
    peers_out = peers_path_for(out)
    pq.write_table(context, peers_out)
    return FeaturesResult(out, peers_out, rows, 3 + len(feature_names(cfg)), when, len(todo))


def _check_known(book: Book, wanted: dict[int, list[str]]) -> None:
    unknown: list[str] = []
    for k, ids in wanted.items():
        present = set(book.read("buyers", k, ["buyer_id"])["buyer_id"].to_pylist())
        unknown += [i for i in ids if i not in present]
    if unknown:
        raise PipelineError(f"{len(unknown)} buyer id(s) not in the book {book.path} "
                            f"(first: {sorted(unknown)[0]!r})")


def _read_peers(path: str | Path, cfg: FeatureConfig, dates: Sequence[dt.date]) -> pa.Table:
    """A stored peer context, checked to fit this run: the same base feature and cycle
    definitions, every as-of date asked for with its peer medians, and the cycle values at
    each of them and at the dates 3 and 6 months earlier."""
    from riskmodel.features.engine import (
        CYCLE_KEY,
        PEER_BASE_KEY,
        context_dates,
        cycle_dates,
        cycle_spec,
        peer_base,
    )

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{path}: cannot read the peer context: {exc}") from exc
    need = {"as_of", "dimension", "value", "median", "buyers"}
    if not need <= set(table.column_names):
        raise PipelineError(f"{path}: not a peer context (columns {table.column_names})")
    meta = table.schema.metadata or {}
    base = meta.get(PEER_BASE_KEY, b"").decode()
    if base != peer_base(cfg):
        raise PipelineError(f"{path}: the peer context is of {base or 'an unknown feature'}, "
                            f"this run needs {peer_base(cfg)} (features.windows differ?)")
    cycle = meta.get(CYCLE_KEY, b"").decode()
    if cycle != cycle_spec(cfg):
        raise PipelineError(f"{path}: the peer context's cycle values follow "
                            f"{cycle or 'no definition (an older context without them)'}, "
                            f"this run needs {cycle_spec(cfg)} (features.windows or "
                            "label.dpd_threshold differ?)")
    peer, cyc = context_dates(table)
    missing = [d for d in dates if d not in peer]
    if missing:
        raise PipelineError(f"{path}: the peer context has no as-of date {missing[0]} "
                            "(compute it with a run over the whole book at that date)")
    missing = [d for d in cycle_dates(dates) if d not in cyc]
    if missing:
        raise PipelineError(f"{path}: the peer context has no cycle values at {missing[0]}, "
                            "which the changes of an as-of date asked for need (compute it "
                            "with a run over the whole book at those as-of dates)")
    return table


def _finish_features(parts: list[Path], context: pa.Table, cfg: FeatureConfig,
                     out: Path) -> int:
    """Join the peer and cycle context onto each bucket's rows and append them to ``out``,
    one bucket at a time (rows ordered by bucket, then as-of date and buyer), so memory never
    holds more than a bucket."""
    from riskmodel.features.engine import feature_schema, with_peers

    rows = 0
    with pq.ParquetWriter(out, feature_schema(cfg), compression="zstd") as writer:
        for part in parts:
            with pa.memory_map(str(part)) as mm:
                table = with_peers([pa.ipc.open_file(mm).read_all()], context, cfg)
            writer.write_table(table)
            rows += table.num_rows
    return rows


def read_features(path: str | Path) -> pd.DataFrame:
    """A features file as pandas (``as_of`` as ``datetime64[s]``)."""
    from riskmodel.features.engine import features_to_pandas

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{path}: cannot read features: {exc}") from exc
    _need(table, path, "features", ("buyer_id", "as_of", "status"), "riskmodel features")
    return features_to_pandas(table)


def _need(table: pa.Table, path: str | Path, what: str, columns: Sequence[str],
          made_by: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise PipelineError(f"{path}: not a {what} file (no column {missing[0]!r}; it is "
                            f"written by `{made_by}`)")


# --------------------------------------------------------------------------- labels


@dataclass
class LabelsResult:
    path: Path
    rows: int
    labelled: int
    bad_rate: float
    dates: list[dt.date]


def labels(
    book: Book,
    out: str | Path,
    params: Params,
    *,
    dates: Sequence[dt.date] | None = None,
    progress: Progress | None = None,
) -> LabelsResult:
    """Contract labels of every buyer at the as-of dates, bucket by bucket."""
    out = output_file(out)
    when = as_of_dates(book, params, dates)
    table = labels_of(book, when, params, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    bad = table["bad"]
    labelled = len(bad) - bad.null_count
    rate = pa.compute.mean(bad.cast(pa.float64())).as_py() if labelled else float("nan")
    return LabelsResult(out, table.num_rows, labelled, float(rate), when)


def labels_of(book: Book, dates: Sequence[dt.date], params: Params,
              progress: Progress | None = None) -> pa.Table:
    """The contract labels of every buyer of the book at ``dates``, bucket by bucket, sorted
    by as-of date and buyer."""
    from riskmodel.features.labels import labels_table

    parts = []
    for k in range(book.n_buckets):
        inv = book.read("invoices", k, ["buyer_id", "issue_date", "due_date", "paid_date"])
        ev = book.read("events", k, ["buyer_id", "event_date"])
        parts.append(labels_table(inv, ev, dates, book.observed_until,
                                  params.label.horizon_days, params.label.dpd_threshold))
        _tick(progress, "labels", k + 1, book.n_buckets)
    return pa.concat_tables(parts).sort_by([("as_of", "ascending"), ("buyer_id", "ascending")])


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels file as pandas (``as_of`` as ``datetime64[s]``, ``bad`` nullable)."""
    from riskmodel.features.labels import labels_to_pandas

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{path}: cannot read labels: {exc}") from exc
    _need(table, path, "labels", ("buyer_id", "as_of", "in_default", "bad"), "riskmodel labels")
    return labels_to_pandas(table)


# --------------------------------------------------------------------------- train


@dataclass
class TrainStageResult:
    out: Path
    metadata: dict[str, Any]
    registered: Any | None = None  # riskmodel.registry.Registered


def raw_fingerprint(data: str | Path) -> str:
    """The fingerprint of the raw data behind ``data`` (a book's manifest, or the files of a
    raw folder)."""
    from riskmodel.provenance import fingerprint

    path = Path(data)
    if is_book(path):
        return _open(path).manifest.raw_fingerprint
    if not path.exists():
        raise PipelineError(f"{path}: no such folder (give a book or a raw data folder)")
    return fingerprint(path)


def train(
    data: str | Path,
    out: str | Path,
    params: Params,
    *,
    features_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    register: bool = True,
    project_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainStageResult:
    """Train the calibrated model on features and labels (built from ``data`` when not
    given), write the MLflow pyfunc model directory ``out`` and, with ``register``, log the
    run and register the model as the new challenger."""
    from riskmodel.modeling.training import TrainingError, train_model
    from riskmodel.provenance import git_commit
    from riskmodel.registry import (
        ModelDirError,
        check_replaceable,
        log_training,
        save_pyfunc,
        write_registration,
    )

    out = Path(out)
    try:
        check_replaceable(out)  # before any work, not after an hour of training
    except ModelDirError as exc:
        raise PipelineError(str(exc)) from exc
    if (features_path is None) != (labels_path is None):
        raise PipelineError("give both --features and --labels, or neither")
    fp = raw_fingerprint(data)
    steps = 4 if register else 3
    if features_path is not None and labels_path is not None:
        with open_book(data, params, progress=progress):
            pass  # the data the features came from must be within the reject limit
        feats, labs = read_features(features_path), read_labels(labels_path)
    else:
        with open_book(data, params, progress=progress) as book, \
                tempfile.TemporaryDirectory() as tmp:
            f = features(book, Path(tmp) / "features.parquet", params, progress=progress)
            lab = labels(book, Path(tmp) / "labels.parquet", params, progress=progress)
            feats, labs = read_features(f.path), read_labels(lab.path)
    _tick(progress, "train", 1, steps)
    try:
        result = train_model(feats, labs, params)
    except TrainingError as exc:
        raise PipelineError(str(exc)) from exc
    _tick(progress, "train", 2, steps)
    meta = result.metadata()
    meta["raw_fingerprint"] = fp
    try:
        save_pyfunc(result.model, out, {"training.json": meta},
                    holdout=result.holdout if result.refit is not None else None)
    except ModelDirError as exc:
        raise PipelineError(str(exc)) from exc
    _tick(progress, "train", 3, steps)
    reg = None
    if register:
        reg = log_training(
            result.model,
            params=params.model_dump(mode="json"),
            metrics={"best_iteration": meta["best_iteration"],
                     "trees_grown": meta.get("trees_grown", meta["best_iteration"]),
                     "hit_tree_cap": float(bool(meta.get("hit_tree_cap", False))),
                     "n_excluded_features": len(meta.get("excluded_features", [])),
                     "n_leaves_total": meta["n_leaves_total"],
                     "train_rows": meta["split"]["train"]["rows"],
                     "valid_rows": meta["split"]["valid"]["rows"],
                     "test_rows": meta["split"]["test"]["rows"]},
            tags={"git_commit": git_commit(), "raw_fingerprint": fp,
                  "split_kind": meta["split"]["kind"],
                  "split_validation": str(meta["split"].get("validation", "")),
                  "split_test_embargo": str(meta["split"].get("test_embargo", ""))},
            artifacts={"features.json": {"features": result.model.spec.names,
                                         "categories": result.model.spec.categories},
                       "training.json": meta},
            experiment=params.registry.experiment,
            model_name=params.registry.model_name,
            project_dir=project_dir,
            holdout=result.holdout if result.refit is not None else None,
        )
        write_registration(out, reg)
        _tick(progress, "train", 4, steps)
    return TrainStageResult(out, meta, reg)


# --------------------------------------------------------------------------- evaluate


@dataclass
class EvaluateStageResult:
    evaluation: Any  # riskmodel.modeling.evaluation.Evaluation
    files: list[Path]
    metrics_path: Path
    #: how the test set leaves the training domain (riskmodel.modeling.domain.DomainWarning);
    #: None when the model has no domain profile (saved before profiles existed)
    domain: list[Any] | None = None


def test_set(model_dir: str | Path, features_path: str | Path, labels_path: str | Path,
             params: Params) -> tuple[Any, Any, dict[str, Any]]:
    """The model and the split of these features and labels, checked to be the split the
    model was trained on."""
    from riskmodel.modeling.model import model_files
    from riskmodel.modeling.training import TrainingError, build_panel, load_holdout, split_panel

    try:
        model = load_holdout(model_dir)  # the test dates are in the shipped model's refit
        panel = build_panel(read_features(features_path), read_labels(labels_path))
        split = split_panel(panel, params)
    except (FileNotFoundError, TrainingError) as exc:
        raise PipelineError(str(exc)) from exc
    trained = json.loads((model_files(model_dir) / "training.json").read_text())
    if trained["split"]["dates"] != split.dates:
        raise PipelineError(
            "the split of these features/labels differs from the model's training split "
            f"({trained['split']['dates']} vs {split.dates}): evaluate the data the model "
            "was trained on")
    return model, split, trained


def evaluate(
    model_dir: str | Path,
    features_path: str | Path,
    labels_path: str | Path,
    params: Params,
    *,
    out_dir: str | Path = "reports",
    metrics_path: str | Path = "metrics.json",
    truth: str | Path | None = None,
    log: bool = True,
    project_dir: str | Path | None = None,
) -> EvaluateStageResult:
    """The validation report on the out-of-time test set (tables, plots, metrics JSON),
    logged to the model's MLflow run when it has one. ``truth`` (default: params
    ``evaluate.truth``) adds the oracle figures of a synthetic world. The test set is checked
    against the model's training domain (:attr:`EvaluateStageResult.domain`; the count is
    the metric ``domain_warnings``)."""
    from riskmodel.modeling.domain import check as check_domain
    from riskmodel.modeling.evaluation import evaluate as run_evaluation
    from riskmodel.modeling.plots import draw

    truth_path, truth_source = _truth_path(truth, params)
    truth_frame = _read_truth(truth_path, truth_source) if truth_path is not None else None
    out_dir = output_folder(out_dir, "--out-dir")
    metrics_path = output_file(metrics_path, "--metrics")
    model, split, trained = test_set(model_dir, features_path, labels_path, params)
    inputs = [c for c in ("buyer_id", "as_of", "status") if c in split.test.columns]
    inputs += list(model.spec.names)  # the model's own inputs (not excluded features)
    test_pred = model.predict(split.test[inputs])
    train_pred = model.predict(split.train[inputs])
    left_out = {e["feature"] for e in trained.get("excluded_features", [])}
    # features left out of learning are still inputs (blanked), but no part of the model
    judged = [n for n in model.spec.names if n not in left_out]
    oracle = None
    if truth_frame is not None:
        joined = split.test[["buyer_id", "as_of"]].merge(truth_frame, on=["buyer_id", "as_of"],
                                                         how="left")
        if joined["pd_true"].isna().any():
            raise PipelineError(f"{truth_path}: {int(joined['pd_true'].isna().sum())} test "
                                "rows have no pd_true (is this the truth of the same world?)")
        oracle = joined["pd_true"].to_numpy()
    ev = run_evaluation(split.test, test_pred, split.train, train_pred, judged,
                        model.scale, params.evaluate.ece_bins, params.evaluate.psi_bins,
                        oracle, params.evaluate.asset_correlation)
    domain = None
    if model.profile is not None:
        domain = check_domain(model.profile, split.test, features=domain_features(judged))
        ev.metrics["domain_warnings"] = float(len(domain))
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    tables = {"grades.csv": ev.grades, "calibration.csv": ev.calibration, "roc.csv": ev.roc,
              "feature_psi.csv": ev.feature_psi,
              "grade_distribution.csv": ev.grade_distribution}
    files = []
    for name, frame in tables.items():
        frame.to_csv(out_dir / name, index=False)
        files.append(out_dir / name)
    files += draw(ev, out_dir)
    metrics_path.write_text(json.dumps({k: round(v, 6) for k, v in ev.metrics.items()},
                                       indent=2, sort_keys=True) + "\n")
    if log:
        from riskmodel.registry import log_evaluation, read_registration

        reg = read_registration(model_dir)
        if reg is not None:
            log_evaluation(reg["run_id"], ev.metrics, [*files, metrics_path],
                           project_dir=project_dir)
    return EvaluateStageResult(ev, files, metrics_path, domain)


# --------------------------------------------------------------------------- promote


def promote(
    params: Params,
    *,
    model_dir: str | Path | None = None,
    features_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    out: str | Path | None = None,
    project_dir: str | Path | None = None,
) -> Any:
    """Move alias ``champion`` to the challenger when it passes the gates in params; with
    the features and labels, the champion is re-scored on the current test set."""
    from riskmodel.registry import RegistryError, read_registration
    from riskmodel.registry import promote as run_promotion

    if out is not None:
        output_file(out)
    test_frame = None
    expected = None
    if features_path is not None and labels_path is not None and model_dir is not None:
        _, split, _ = test_set(model_dir, features_path, labels_path, params)
        test_frame = split.test
        reg = read_registration(model_dir)
        if reg is None:
            raise PipelineError(f"{model_dir}: not registered (trained with --no-register?): "
                                "nothing to promote")
        expected = str(reg["version"])
    try:
        decision = run_promotion(params.registry.model_name, params.promote,
                                 test_frame=test_frame, project_dir=project_dir,
                                 expected_challenger=expected)
    except RegistryError as exc:
        raise PipelineError(str(exc)) from exc
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(decision.to_dict(), indent=2) + "\n")
    return decision


# --------------------------------------------------------------------------- backtest


@dataclass
class BacktestResult:
    table: pd.DataFrame
    summary: dict[str, float]
    files: list[Path]
    #: per cut (ISO date), how the live buyers scored there leave the training domain of
    #: that cut's model (riskmodel.modeling.domain.DomainWarning); None when the models have
    #: no domain profile
    domain: dict[str, list[Any]] | None = None


def cut_dates(book: Book, params: Params, cuts: int) -> list[dt.date]:
    """The last ``cuts`` snapshot dates whose outcome window is observed in the book."""
    horizon = dt.timedelta(days=params.label.horizon_days)
    usable = [d for d in as_of_dates(book, params) if d + horizon <= book.observed_until]
    if not usable:
        raise PipelineError(f"no snapshot date of {book.path} has its {horizon.days}-day "
                            f"outcome window observed by {book.observed_until}: a backtest "
                            "needs more history")
    return usable[-cuts:]


def _outcomes(book: Book, cut: dt.date, params: Params) -> pd.DataFrame:
    """The contract labels at ``cut`` from the whole book (what happened after it)."""
    from riskmodel.features.labels import labels_to_pandas

    return labels_to_pandas(labels_of(book, [cut], params))


def backtest(
    book: Book,
    params: Params,
    *,
    cuts: int = 3,
    truth: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Walk-forward backtest: for each of the last ``cuts`` snapshot dates whose outcome
    window is observed, the book is cut to what was known that day (``observed_until`` = the
    cut), features, labels and the model are built on it with these params exactly as the
    pipeline builds them, every live buyer at the cut is scored, and the scores are judged on
    the outcomes in ``(cut, cut + horizon]``. Costs one training per cut. ``truth`` (default:
    params ``evaluate.truth``) adds the oracle figures of a synthetic world. The live buyers
    of each cut are checked against the training domain of that cut's model
    (:attr:`BacktestResult.domain`; the column ``domain_warnings`` of the table)."""
    from riskmodel.data.book import CutBook
    from riskmodel.modeling.backtest import COLUMNS, cut_figures, decile_table, group_table, summary
    from riskmodel.modeling.domain import check as check_domain
    from riskmodel.modeling.training import TrainingError, train_model

    if cuts < 1:
        raise PipelineError(f"--cuts must be at least 1, got {cuts}")
    if out_dir is not None:
        output_folder(out_dir, "--out-dir")
    truth_path, truth_source = _truth_path(truth, params)
    truth_frame = _read_truth(truth_path, truth_source) if truth_path is not None else None
    chosen = cut_dates(book, params, cuts)
    rows = []
    detail: dict[str, list[pd.DataFrame]] = {"deciles": [], "grades": [], "industries": []}
    domain: dict[str, list[Any]] | None = {}
    for i, cut in enumerate(chosen):
        cb = CutBook(book, cut)
        with tempfile.TemporaryDirectory() as tmp:
            f = features(cb, Path(tmp) / "features.parquet", params)
            lab = labels(cb, Path(tmp) / "labels.parquet", params)
            feats, labs = read_features(f.path), read_labels(lab.path)
        try:
            result = train_model(feats, labs, params)
        except TrainingError as exc:
            raise PipelineError(
                f"cut {cut}: the book as it stood that day cannot be trained on: {exc}. The "
                f"backtest cuts the book at each of the last {len(chosen)} snapshot date(s) "
                "whose outcome window is observed and trains on what was known then: use "
                "fewer cuts (--cuts, backtest.cuts) or a book with more history") from exc
        at = pd.Timestamp(cut)
        live = feats[(feats["as_of"] == at) & (feats["status"] == "active")]
        pred = result.model.predict(live[["status", *result.model.spec.names]])
        scored = live[["buyer_id", "industry"]].assign(pd=pred["pd"].to_numpy(),
                                                       grade=pred["grade"].to_numpy())
        if result.model.profile is None:
            domain = None
        elif domain is not None:
            left_out = {e["feature"] for e in result.metadata().get("excluded_features", [])}
            domain[cut.isoformat()] = check_domain(
                result.model.profile, live, features=domain_features(
                    [n for n in result.model.spec.names if n not in left_out]))
        judged = scored.merge(_outcomes(book, cut, params)[["buyer_id", "bad"]],
                              on="buyer_id", how="left", validate="one_to_one")
        judged = judged[judged["bad"].notna()]
        pd_true = None
        if truth_frame is not None:
            t = truth_frame[truth_frame["as_of"] == at][["buyer_id", "pd_true"]]
            judged = judged.merge(t, on="buyer_id", how="left", validate="one_to_one")
            if judged["pd_true"].isna().any():
                raise PipelineError(f"{truth_path}: no pd_true for "
                                    f"{int(judged['pd_true'].isna().sum())} buyers at {cut} "
                                    "(is this the truth of the same world?)")
            pd_true = judged["pd_true"].to_numpy()
        fig = cut_figures(judged["bad"].astype(float).to_numpy(), judged["pd"].to_numpy(),
                          pd_true, params.evaluate.ece_bins)
        meta = result.metadata()
        chosen_cap: dict[str, Any] = next(
            (c for c in meta["capacity_search"] if c["chosen"]), {})
        fig.update(cut=cut.isoformat(), train_rows=meta["split"]["train"]["rows"],
                   refit_rows=(meta["refit"] or {}).get("rows", 0),
                   trees=meta["best_iteration"], num_leaves=chosen_cap.get("num_leaves"),
                   max_depth=chosen_cap.get("max_depth"), split_kind=meta["split"]["kind"],
                   features_left_out=len(meta["excluded_features"]),
                   level_shift=((meta["refit"] or {}).get("calibration", {})
                                .get("recent_level", {}).get("shift", 0.0)))
        rows.append(fig)
        dec = decile_table(judged["bad"].astype(float).to_numpy(), judged["pd"].to_numpy(),
                           pd_true)
        detail["deciles"].append(dec.assign(cut=cut.isoformat()))
        for key, col in (("grades", "grade"), ("industries", "industry")):
            detail[key].append(group_table(judged.assign(bad=judged["bad"].astype(float)),
                                           col, params.evaluate.ece_bins
                                           ).assign(cut=cut.isoformat()))
        _tick(progress, "backtest", i + 1, len(chosen))
    table = pd.DataFrame(rows)[list(COLUMNS)]
    summ = summary(table)
    if domain is not None:
        table["domain_warnings"] = [len(domain[c]) for c in table["cut"]]
        summ["backtest_domain_warnings"] = float(table["domain_warnings"].sum())
    files: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "backtest.csv", index=False)
        (out / "backtest.json").write_text(json.dumps(
            {k: round(v, 6) for k, v in summ.items()}, indent=2, sort_keys=True) + "\n")
        files = [out / "backtest.csv", out / "backtest.json"]
        for key, parts in detail.items():
            frame = pd.concat(parts, ignore_index=True)
            frame = frame[["cut", *[c for c in frame.columns if c != "cut"]]]
            frame.to_csv(out / f"backtest_{key}.csv", index=False)
            files.append(out / f"backtest_{key}.csv")
    return BacktestResult(table, summ, files, domain)


def _truth_path(given: str | Path | None, params: Params) -> tuple[Path | None, str]:
    """The truth file of this run and where it was named: the one given (``--truth``), else
    params ``evaluate.truth``, else none."""
    if given is not None:
        return Path(given), "--truth"
    if params.evaluate.truth is not None:
        return Path(params.evaluate.truth), "evaluate.truth"
    return None, ""


def domain_features(names: Sequence[str]) -> list[str]:
    """The features whose distribution the domain check compares: not the cycle features,
    which hold one value per group and date, so that any new date differs from the
    training dates by construction (the model is meant to meet new cycle values)."""
    from riskmodel.features import cycle_names

    cycle = set(cycle_names())
    return [n for n in names if n not in cycle]


def _read_truth(path: str | Path, source: str = "--truth") -> pd.DataFrame:
    """``buyer_id``, ``as_of`` and ``pd_true`` of a synthetic world's truth file, named by
    ``source`` (``--truth`` or the params key ``evaluate.truth``)."""
    if Path(path).is_dir():
        raise PipelineError(f"{source}: {path} is a folder; name the truth.parquet file of "
                            "a synthetic world")
    if not Path(path).is_file():
        if source == "evaluate.truth":
            raise PipelineError(
                f"params evaluate.truth: {path}: no such file (only a synthetic world has a "
                "truth file; for real data set evaluate.truth: null in params)")
        raise PipelineError(f"{path}: no such file ({source} is the truth.parquet of a "
                            "synthetic world)")
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise PipelineError(f"{path}: not a readable Parquet file ({source}): {exc}") from exc
    missing = [c for c in ("buyer_id", "as_of", "pd_true") if c not in names]
    if missing:
        raise PipelineError(f"{path}: not a truth file ({source}): no column(s) "
                            f"{', '.join(missing)} (a synthetic world's truth.parquet has "
                            "buyer_id, as_of, pd_true)")
    try:
        t = pd.read_parquet(path, columns=["buyer_id", "as_of", "pd_true"])
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise PipelineError(f"{path}: cannot read buyer_id, as_of, pd_true: {exc}") from exc
    t["as_of"] = pd.to_datetime(t["as_of"]).astype("datetime64[s]")
    t["buyer_id"] = t["buyer_id"].astype("str")
    return t


# --------------------------------------------------------------------------- report


def run_id_of(model_dir_or_run: str | Path) -> str:
    """A run id: the ``run_id`` of a model directory's ``registry.json`` when given a folder,
    else the value itself."""
    from riskmodel.registry import RegistryError, read_registration

    path = Path(model_dir_or_run)
    if not path.is_dir():
        return str(model_dir_or_run)
    try:
        reg = read_registration(path)
    except (RegistryError, ValueError) as exc:
        raise PipelineError(str(exc)) from exc
    if reg is None:
        raise PipelineError(f"{path}: no registry.json (trained with --no-register?): no run "
                            "to log the report to")
    return str(reg["run_id"])


def report(
    book: Book,
    explain_dir: str | Path,
    out: str | Path,
    *,
    previous: str | Path | None = None,
    detail_buyers: int = 500,
    buyers: Sequence[str] | None = None,
    log_run_id: str | None = None,
    project_dir: str | Path | None = None,
    limits: str | Path | None = None,
    views: str | Path | None = None,
    watch: str | Path | None = None,
) -> Any:  # riskmodel.explain.report.Report
    """The analyst report (one offline HTML file) of an explain folder, with payment
    histories from ``book`` for the ``detail_buyers`` riskiest buyers and ``buyers``;
    ``previous`` (an earlier explain folder) adds the changes since then. ``limits`` (the
    output of ``riskmodel limits``), ``views`` (its ``--views`` folder) and ``watch`` (the
    watch list of ``riskmodel watch``, its other files beside it) add the sections of credit
    limits, the watch list and the portfolio. ``log_run_id`` logs the file as artifact
    ``report/`` of that MLflow run."""
    from riskmodel.explain.report import ReportError, build_report, check_run, log_report

    out = output_file(out)
    if log_run_id is not None:
        try:
            check_run(log_run_id, project_dir=project_dir)  # before any work
        except ReportError as exc:
            raise PipelineError(str(exc)) from exc
    if previous is not None and not Path(previous).is_dir():
        raise PipelineError(f"{previous}: no such folder (--previous is the folder of an "
                            "earlier `riskmodel explain`)")
    try:
        rep = build_report(explain_dir, book, out, previous=previous,
                           detail_buyers_n=detail_buyers, buyers=list(buyers or ()),
                           limits=limits, views=views, watch=watch)
        if log_run_id is not None:
            log_report(rep.path, log_run_id, project_dir=project_dir)
    except ReportError as exc:
        raise PipelineError(str(exc)) from exc
    return dataclasses.replace(rep, logged_run=log_run_id)


# --------------------------------------------------------------------------- explain

#: the files ``explain`` writes (besides one ``waterfall_<buyer>.png`` per buyer asked for)
EXPLAIN_FILES = ("scores.parquet", "contributions.parquet", "reasons.parquet",
                 "importance.csv", "summary.png", "dependence.png")


@dataclass
class ExplainResult:
    out: Path
    as_of: dt.date
    rows: int
    reasons: int
    files: list[Path]
    #: seconds spent: scoring, contributions, reasons, writing the files and plots
    seconds: dict[str, float] = field(default_factory=dict)


def _safe_name(buyer_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in buyer_id)


def explain(
    model_dir: str | Path,
    features_path: str | Path,
    out: str | Path,
    *,
    buyers: Sequence[str] | None = None,
    top: int = 4,
    as_of: dt.date | None = None,
    progress: Progress | None = None,
) -> ExplainResult:
    """Score and explain every buyer of one as-of date of a features file (the latest, or
    ``as_of``) with the model of a ``riskmodel train`` output, and write into the folder
    ``out``: ``scores.parquet`` (buyer_id, as_of, status, pd, grade, margin),
    ``contributions.parquet`` (buyer_id, as_of, base_value, margin, one column per model
    feature: log-odds of the uncalibrated model, base_value + the features = margin),
    ``reasons.parquet`` (buyer_id, as_of, rank, code, feature, value, typical, text: up to
    ``top`` reasons per buyer, :func:`riskmodel.explain.reasons.reason_codes`),
    ``importance.csv`` (mean absolute contribution per feature and per concept),
    ``summary.png`` and ``dependence.png`` (the top features), and ``waterfall_<id>.png``
    for each of ``buyers``. The typical values are the medians over the live buyers of the
    date. The files are written to a folder beside ``out`` and moved into it at the end,
    each replacing the file of the same name (and the waterfalls of an earlier run are
    removed); other files in ``out`` are left alone."""
    import time

    from riskmodel.explain.contributions import contributions_frame
    from riskmodel.explain.plots import dependence, summary, waterfall
    from riskmodel.explain.reasons import importance, reason_codes, typical_values
    from riskmodel.features.catalogue import lookup
    from riskmodel.modeling.model import FeatureMismatchError, load_model_dir

    if top < 1:
        raise PipelineError(f"--top must be at least 1, got {top}")
    out = output_folder(out, "--out")
    try:
        model = load_model_dir(model_dir)
    except FileNotFoundError as exc:
        raise PipelineError(str(exc)) from exc
    unknown = [n for n in model.spec.names if lookup(n) is None]
    if unknown:
        raise PipelineError(f"{model_dir}: the model has features the feature catalogue does "
                            f"not describe {unknown[:5]}: it cannot be explained in words")
    if not Path(features_path).is_file():
        raise PipelineError(f"{features_path}: no such file (give the Parquet file that "
                            "`riskmodel features --out` wrote)")
    try:
        table = pq.read_table(features_path)
    except (OSError, pa.ArrowException) as exc:
        raise PipelineError(f"{features_path}: cannot read features: {exc}") from exc
    _need(table, features_path, "features", ("buyer_id", "as_of", "status"),
          "riskmodel features")
    lacking = [n for n in model.spec.names if n not in table.column_names]
    if lacking:
        raise PipelineError(
            f"{features_path}: lacks {len(lacking)} of the model's features (first: "
            f"{', '.join(lacking[:5])}): make the features with the params the model was "
            "trained with (features.windows, a dispute_date column)")
    dates = sorted(set(pa.compute.unique(table["as_of"]).to_pylist()))
    if not dates:
        raise PipelineError(f"{features_path}: no rows")
    when = as_of if as_of is not None else dates[-1]
    if when not in dates:
        shown = ", ".join(d.isoformat() for d in dates[-5:])
        raise PipelineError(f"--as-of {when}: not a date of {features_path} (its latest "
                            f"dates: {shown})")
    table = table.filter(pa.compute.equal(table["as_of"], pa.scalar(when, pa.date32())))
    frame = read_features_table(table)
    frame = frame[["buyer_id", "as_of", "status", *model.spec.names]].reset_index(drop=True)
    wanted = list(dict.fromkeys(buyers or []))
    known = set(frame["buyer_id"])
    missing = [b for b in wanted if b not in known]
    if missing:
        raise PipelineError(f"{len(missing)} buyer id(s) not in {features_path} at {when} "
                            f"(first: {missing[0]!r})")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        pred = model.predict(frame)
    except FeatureMismatchError as exc:
        raise PipelineError(f"{features_path}: {exc}") from exc
    seconds["score"] = time.perf_counter() - t0
    _tick(progress, "explain", 1, 4)
    t0 = time.perf_counter()
    contrib = contributions_frame(model, frame)
    seconds["contributions"] = time.perf_counter() - t0
    _tick(progress, "explain", 2, 4)
    t0 = time.perf_counter()
    typical = typical_values(frame, model.spec.names)
    reasons = reason_codes(contrib, frame, typical, top=top)
    seconds["reasons"] = time.perf_counter() - t0
    _tick(progress, "explain", 3, 4)
    t0 = time.perf_counter()
    ids = frame[["buyer_id", "as_of"]]
    scores = pd.concat([frame[["buyer_id", "as_of", "status"]], pred[["pd", "grade", "margin"]]],
                       axis=1)
    contrib_out = pd.concat([ids, contrib[["base_value", "margin", *model.spec.names]]], axis=1)
    live = frame["status"].astype("str").ne("in_default").to_numpy()
    imp = importance(contrib[live] if live.any() else contrib)
    feat_imp = imp[imp["level"] == "feature"]
    top_features = feat_imp["name"].head(12).tolist()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        new = staging / "explain"
        new.mkdir()
        scores.to_parquet(new / "scores.parquet", index=False)
        contrib_out.to_parquet(new / "contributions.parquet", index=False)
        reasons.to_parquet(new / "reasons.parquet", index=False)
        imp.to_csv(new / "importance.csv", index=False)
        summary(contrib[live], frame[live], top_features, new / "summary.png")
        dependence(contrib[live], frame[live], top_features[:4], new / "dependence.png")
        names = []
        for b in wanted:
            i = int(np.flatnonzero(frame["buyer_id"].to_numpy() == b)[0])
            name = f"waterfall_{_safe_name(b)}.png"
            title = (f"{b} at {when}: PD {pred['pd'].iloc[i]:.2%}, grade "
                     f"{pred['grade'].iloc[i]}")
            waterfall(contrib.iloc[i], title, new / name)
            names.append(name)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("waterfall_*.png"):
            old.unlink()
        for name in (*EXPLAIN_FILES, *names):
            os.replace(new / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds["write"] = time.perf_counter() - t0
    _tick(progress, "explain", 4, 4)
    files = [out / f for f in (*EXPLAIN_FILES, *names)]
    return ExplainResult(out, when, len(frame), len(reasons), files, seconds)


def read_features_table(table: pa.Table) -> pd.DataFrame:
    """A features table (as read from a features file) as pandas, as :func:`read_features`."""
    from riskmodel.features.engine import features_to_pandas

    return features_to_pandas(table)


# --------------------------------------------------------------------------- score


def score(
    book: Book,
    out: str | Path,
    params: Params,
    *,
    model_uri: str | None = None,
    as_of: dt.date | None = None,
    top: int | None = None,
    engine: str = "local",
    spark_master: str | None = None,
    reference: str | Path | None = None,
    months_back: int | None = None,
    project_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> ScoreResult:
    """Score every buyer of the book at ``as_of`` (default: the book's ``observed_until``)
    with a model (a model folder, ``runs:/...`` or ``models:/NAME@ALIAS``; default the
    champion of ``registry.model_name``) and write the scores, grades, ``top`` reasons and
    lineage as a Parquet dataset at ``out`` (see :mod:`riskmodel.scoring`). The book is read
    a bucket at a time, by this process (``engine='local'``) or by Spark executors
    (``engine='spark'``: ``spark_master``, or the session of ``spark-submit``); ``out``
    appears only when every buyer is scored.

    ``months_back``: the as-of date is ``observed_until`` that many calendar months earlier
    (month-end aware), e.g. the previous quarter end for a watch list.

    ``reference``, an earlier scoring output of the whole book at the same as-of date: its
    peer and cycle context and its portfolio medians are used instead of this data's (to
    score a few new buyers as the nightly run would have scored them)."""
    import time

    from riskmodel.features.catalogue import lookup
    from riskmodel.features.engine import feature_names
    from riskmodel.modeling.masterscale import DEFAULT_GRADE
    from riskmodel.modeling.model import DamagedModelError
    from riskmodel.registry import RegistryError, fetch_model
    from riskmodel.scoring import job as jobs
    from riskmodel.scoring.unit import ScoreJob, load_model

    if engine not in ("local", "spark"):
        raise PipelineError(f"--engine {engine!r}: expected 'local' or 'spark'")
    if spark_master is not None and engine != "spark":
        raise PipelineError("--spark-master needs --engine spark")
    out = output_folder(out, "--out")
    try:
        jobs.check_out(out)
    except jobs.ScoringError as exc:
        raise PipelineError(str(exc)) from exc
    if months_back is not None:
        from riskmodel.features.engine import months_back as back

        if as_of is not None or reference is not None:
            raise PipelineError("--months-back replaces --as-of: give one of them (and not "
                                "with --reference, whose date is fixed)")
        if months_back < 0:
            raise PipelineError(f"--months-back must be 0 or more, got {months_back}")
        as_of = back(book.observed_until, months_back)
    fixed = None
    ref_manifest: dict[str, Any] = {}
    if reference is not None:
        try:
            ref_manifest, fixed = jobs.read_reference(reference)
        except jobs.ScoringError as exc:
            raise PipelineError(str(exc)) from exc
        ref_day = dt.date.fromisoformat(str(ref_manifest["as_of"]))
        if as_of is not None and as_of != ref_day:
            raise PipelineError(f"--as-of {as_of}: the reference {reference} was scored at "
                                f"{ref_day}; its context holds that date only")
        as_of = ref_day
    when = as_of or book.observed_until
    if when > book.observed_until:
        raise PipelineError(f"--as-of {when} is after the book's observed_until "
                            f"{book.observed_until}: nothing is known there yet (score at "
                            "or before it, or validate newer data)")
    start = book.manifest.data_start
    if start is None or when < start:
        raise PipelineError(f"--as-of {when} is before the book's first invoice ({start}): "
                            "no buyer has a history there")
    k = params.score.reasons if top is None else top
    if k < 0:
        raise PipelineError(f"--explain must be 0 or more, got {k}")
    uri = model_uri or f"models:/{params.registry.model_name}@champion"
    jobs.remove_stale(out)
    staging = jobs.staging_for(out)
    t_start = time.perf_counter()
    try:
        try:
            fetched = fetch_model(uri, staging / "model", project_dir=project_dir)
            model = load_model(str(fetched.path))
        except (RegistryError, DamagedModelError, FileNotFoundError) as exc:
            raise PipelineError(str(exc)) from exc
        # one DuckDB thread a unit: Spark gives each task one core, and the local engine
        # runs two units side by side; the same setting in both gives the same bytes
        cfg = dataclasses.replace(feature_config(params, book), threads=1)
        if fixed is not None:
            cfg = _reference_config(cfg, ref_manifest, fixed, reference)
        made = set(feature_names(cfg))
        lacking = [n for n in model.spec.names if n not in made]
        if lacking:
            hint = (" (the book has no dispute_date column)"
                    if any(n.startswith("disputed") for n in lacking) else
                    " (features.windows in params differ from the model's?)")
            raise PipelineError(f"--model {uri}: the model needs {len(lacking)} feature(s) "
                                f"this data and params cannot provide: {', '.join(lacking[:5])}"
                                f"{hint}")
        unknown = [n for n in model.spec.names if lookup(n) is None]
        if k and unknown:
            raise PipelineError(f"--model {uri}: features the feature catalogue does not "
                                f"describe {unknown[:5]}: no reasons in words (use --explain 0)")
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        job = ScoreJob(
            book=str(book.path.resolve()), as_of=when, cfg=cfg, workdir=str(staging.resolve()),
            model_dir=str(fetched.path.resolve()), top=k,
            recent_days=params.score.recent_days,
            grades=(*model.scale.grades, DEFAULT_GRADE),
            lineage={"model_name": fetched.model_name, "model_version": fetched.version,
                     "model_run_id": fetched.run_id,
                     "data_fingerprint": book.manifest.raw_fingerprint,
                     "scored_at": scored_at.isoformat()})
        seconds: dict[str, float] = {"model": time.perf_counter() - t_start}
        buckets = list(range(book.n_buckets))
        if engine == "spark":
            from riskmodel.scoring.spark import run as run_spark

            counts, mid = run_spark(job, buckets, params.score.typical_buyers, seconds,
                                    master=spark_master, progress=progress, fixed=fixed)
        else:
            from riskmodel.scoring.local import run as run_local

            counts, mid = run_local(job, buckets, params.score.typical_buyers, seconds,
                                    progress=progress, fixed=fixed)
        t0 = time.perf_counter()
        extra = {"engine": engine, "model_uri": uri,
                 "data_start": cfg.data_start.isoformat() if cfg.data_start else None,
                 "reference": str(reference) if reference is not None else None}
        jobs.publish(job, staging, out, counts, extra, mid)
        seconds["publish"] = time.perf_counter() - t0
    except jobs.ScoringError as exc:
        raise PipelineError(str(exc)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return jobs.ScoreResult(out, when, engine, int(counts["buyers"].sum()), counts, seconds,
                            job.lineage, mid.warnings)


def _reference_config(cfg: FeatureConfig, manifest: dict[str, Any], fixed: Any,
                      reference: str | Path | None) -> FeatureConfig:
    """The feature settings of a run scored against a reference run: its data start (the
    censoring of year-on-year ratios follows the whole book's, not this folder's), checked
    to give the context's peer base and cycle definitions."""
    from riskmodel.features.engine import CYCLE_KEY, PEER_BASE_KEY, cycle_spec, peer_base

    start = manifest.get("data_start")
    if start:
        cfg = dataclasses.replace(cfg, data_start=dt.date.fromisoformat(str(start)))
    meta = fixed.context.schema.metadata or {}
    if (meta.get(PEER_BASE_KEY, b"").decode() != peer_base(cfg)
            or meta.get(CYCLE_KEY, b"").decode() != cycle_spec(cfg)):
        raise PipelineError(f"--reference {reference}: its context was made with other "
                            "feature settings (features.windows or label.dpd_threshold "
                            "differ from --params)")
    return cfg


# --------------------------------------------------------------------------- watch

if TYPE_CHECKING:
    from riskmodel.decisions.watch import WatchResult


def watch(
    book: Book,
    previous: str | Path,
    current: str | Path,
    out: str | Path,
    params: Params,
    *,
    delay: str | Path | None = None,
    exposures: str | Path | None = None,
    progress: Progress | None = None,
) -> WatchResult:
    """Compare two scoring outputs of a book (``previous`` before ``current``) and write the
    watch list to ``out`` (``.parquet`` or ``.csv``) with the grade migration matrix, the
    score and feature PSI and a summary beside it (see :mod:`riskmodel.decisions.watch`).
    ``book`` is read at both as-of dates for overdue invoices and open receivables;
    ``delay`` is a scoring output of the 30-day payment-delay model at the current date;
    ``exposures`` a file of credit limits (``buyer_id``, ``current_limit``), which the
    exposure at risk is then computed on."""
    from riskmodel.decisions import watch as w

    try:
        files = w.output_paths(out)
        for path in files.values():
            output_file(path, "--out")
        prev = w.read_run(previous, "--previous")
        cur = w.read_run(current, "--current")
        late = w.read_run(delay, "--delay") if delay is not None else None
        notes = w.check_runs(prev, cur, book, late)
        lines = w.read_lines(exposures) if exposures is not None else None
        return w.run(prev, cur, book, out, params.watch, delay=late, lines=lines,
                     notes=notes, progress=progress)
    except w.WatchError as exc:
        raise PipelineError(str(exc)) from exc


# --------------------------------------------------------------------------- limits


def limits(
    book: Book,
    scores: str | Path,
    out: str | Path,
    params: Params,
    *,
    exposures: str | Path | None = None,
    views: str | Path | None = None,
    rejects: str | Path | None = None,
    model_uri: str | None = None,
    project_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> LimitsResult:
    """Recommend a credit limit, a decision, reason codes and a sentence for every credit
    line of ``exposures`` (a CSV or Parquet file checked with the contract's rules; default:
    the book's exposures table) from a scoring output of the book, and write them to ``out``
    (``.csv`` or ``.parquet``); with ``views``, the payment terms, DSO, portfolio and bank
    views in that folder (see :mod:`riskmodel.decisions`). Rejected exposure lines go to
    ``rejects`` (``.csv`` or ``.parquet``); above ``data.max_reject_rate`` the stage fails.
    The industries and countries the model saw in training come from the model that made
    the scores (``model_uri`` overrides it); when it cannot be read they are not checked."""
    from riskmodel.decisions import limits as lim

    out = output_file(out, "--out")
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise PipelineError(f"--out {out}: name a .csv or .parquet file")
    views_dir = output_folder(views, "--views") if views is not None else None
    if rejects is not None and Path(rejects).suffix.lower() not in (".csv", ".parquet"):
        raise PipelineError(f"--rejects {rejects}: name a .csv or .parquet file")
    rejects_path = output_file(rejects, "--rejects") if rejects is not None else None
    try:
        sc = lim.read_scores(scores)
        if sc.as_of > book.observed_until:
            raise PipelineError(f"--scores {scores}: as of {sc.as_of}, after the book's "
                                f"observed_until {book.observed_until}: give the book the "
                                "scores were made from")
        notes: list[str] = []
        if sc.manifest.get("data_fingerprint") not in (None, "", book.manifest.raw_fingerprint):
            notes.append(f"--scores {scores} were made from other data than the book "
                         f"{book.path} (another data fingerprint)")
        if exposures is not None:
            lines = lim.validate_exposures(exposures, lim.book_buyer_ids(book),
                                           book.observed_until)
            if rejects_path is not None:
                rejects_path.parent.mkdir(parents=True, exist_ok=True)
                if rejects_path.suffix.lower() == ".csv":
                    lines.rejected.to_csv(rejects_path, index=False, lineterminator="\n")
                else:
                    lines.rejected.to_parquet(rejects_path, index=False)
            if lines.reject_rate > params.data.max_reject_rate:
                reasons = ", ".join(f"{r} {c:,}" for r, c in lines.counts["reasons"].items())
                raise RejectLimitError(
                    f"--exposures {exposures}: rejected share {lines.reject_rate:.2%} above "
                    f"data.max_reject_rate {params.data.max_reject_rate:.2%} ({reasons})")
        else:
            lines = lim.book_exposures(book)
        given = str(sc.manifest.get("model_uri", "") or "")
        uri = model_uri
        if uri is None:
            if given and not given.startswith(("models:/", "runs:/")) and Path(given).is_dir():
                uri = given
            elif sc.model_name and sc.model_version:
                uri = f"models:/{sc.model_name}/{sc.model_version}"
            else:
                uri = given or None
        categories = None
        problem = "the scores name no model"
        if uri is not None and Path(uri).is_dir():
            categories = lim.model_categories(uri)
            problem = f"{uri} holds no domain profile or feature spec"
        elif uri is not None:
            from riskmodel.registry import RegistryError, fetch_model

            with tempfile.TemporaryDirectory(prefix="riskmodel-limits-") as tmp:
                try:
                    fetched = fetch_model(uri, Path(tmp) / "model", project_dir=project_dir)
                    categories = lim.model_categories(fetched.path)
                    problem = f"{uri} holds no domain profile or feature spec"
                except RegistryError as exc:
                    problem = str(exc)
        if categories is None:
            notes.append(f"the model's training domain could not be read ({problem}): "
                         "industries and countries were not checked (codes L14, L15)")
        return lim.run(book, sc, lines, params, out, views_dir, categories, notes, progress)
    except lim.LimitsError as exc:
        raise PipelineError(str(exc)) from exc
