"""Out-of-core validation: a raw folder, any size, into a book.

Three passes, each holding one batch or one bucket in memory, never the dataset:

1. **Stage.** Each raw table is read in batches (Parquet row groups, CSV chunks), mapped,
   and its rows appended, as read, to a staging file of their buyer's bucket, with their
   position in the input (``_seq``). Invoice ids go, typed, to key buckets of their own.
2. **Duplicates.** Invoice ids repeat across buyers, so across buckets: each key bucket is
   checked exactly in DuckDB (the first occurrence in input order is kept).
3. **Validate.** Bucket by bucket, every table is typed and split by the contract's rules
   (:mod:`riskmodel.data.contract.validation`, the same code as in memory). Every row of a
   buyer is in its bucket, so unknown and rejected buyers and duplicate buyer ids are exact
   within it. Accepted rows go to the book, rejected rows to the rejects files.

``observed_until``, when not given, is the latest issue, paid, dispute or event date of the
accepted rows: the observed_until rules come last, so they cannot change which rows are
accepted; if an accepted buyer turns out to be founded after the inferred year, pass 3 runs
again with the date fixed. A column in which no value parses is the wrong type, judged over
the whole table; then nothing is written. ``read = accepted + rejected`` for every table.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskmodel.data.book import (
    BookError,
    BookWriter,
    Manifest,
    arrow_schema,
    bucket_sql,
    buckets_of,
    choose_buckets,
    to_arrow,
)
from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping, apply_mapping, load_mapping
from riskmodel.data.contract.reader import (
    RawTable,
    check_csv_header,
    check_not_empty,
    check_required_columns,
    locate,
    parquet_parts,
)
from riskmodel.data.contract.schema import (
    CONTRACT_VERSION,
    OPTIONAL_TABLES,
    RULES,
    TABLE_COLUMNS,
    TABLES,
)
from riskmodel.data.contract.validation import (
    RuleContext,
    TableResult,
    TypeStats,
    check_observed_until,
    check_wrong_types,
    latest_observation,
    no_dates_error,
    split_table,
    type_table,
)

SEQ = "_seq"
BATCH_ROWS = 500_000
MIN_KEY_BUCKETS = 16
_DEPENDENTS = ("invoices", "events", "exposures")

Progress = Callable[[str, int, int], None]


@dataclass
class Built:
    manifest: Manifest
    report: dict[str, Any]
    path: Path


@dataclass
class _Source:
    """Where a table comes from: a file or folder (or derived from another table's file)."""

    name: str
    source: str
    path: Path | None
    derive_from: str | None = None
    empty: bool = False


@dataclass
class _Counts:
    read: int = 0
    accepted: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, res: TableResult) -> None:
        self.read += res.read
        self.accepted += len(res.accepted)
        for r, n in res.reasons.items():
            self.reasons[r] = self.reasons.get(r, 0) + n

    def summary(self, table: str) -> dict[str, Any]:
        order = RULES[table]
        return {"read": self.read, "accepted": self.accepted,
                "rejected": self.read - self.accepted,
                "reasons": {r: self.reasons[r] for r in order if r in self.reasons}}


# --------------------------------------------------------------------------- reading


def _sources(raw_dir: Path, mapping: Mapping) -> dict[str, _Source]:
    if not raw_dir.is_dir():
        raise ContractError(str(raw_dir), "missing folder", "RAW_DIR does not exist")
    out: dict[str, _Source] = {}
    for name in TABLES + OPTIONAL_TABLES:
        tm = mapping.for_table(name)
        if name in OPTIONAL_TABLES and name not in mapping.tables and locate(
                raw_dir, name) is None:
            continue
        if tm.empty:
            out[name] = _Source(name, f"mapping: {name} is empty", None, empty=True)
            continue
        src_name = tm.derive_from or name
        src_tm = mapping.for_table(src_name)
        path = raw_dir / src_tm.file if src_tm.file else locate(raw_dir, src_name)
        if path is None or not path.exists():
            expected = src_tm.file or f"{src_name}.parquet, {src_name}/ or {src_name}.csv"
            raise ContractError(str(raw_dir / (src_tm.file or f"{src_name}.*")),
                                "missing table",
                                f"table {src_name!r} not found (expected {expected})")
        label = f"{path} (derived {name})" if tm.derive_from else str(path)
        out[name] = _Source(name, label, path, derive_from=tm.derive_from)
    return out


def _batches(path: Path, rows: int) -> Iterator[pd.DataFrame | pa.Table]:
    """The file's rows in batches: Parquet as Arrow tables, CSV as pandas text (as the
    in-memory reader reads them)."""
    check_not_empty(path)
    try:
        if path.is_dir():
            for part in parquet_parts(path):
                yield from _parquet_batches(part, rows)
        elif path.suffix.lower() == ".csv":
            yield from _csv_batches(path, rows)
        else:
            yield from _parquet_batches(path, rows)
    except ContractError:
        raise
    except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError,
            pd.errors.ParserError) as exc:
        raise ContractError(str(path), "unreadable file", str(exc).splitlines()[0]) from exc


def _parquet_batches(path: Path, rows: int) -> Iterator[pa.Table]:
    pf = pq.ParquetFile(path)
    seen = False
    for batch in pf.iter_batches(batch_size=rows):
        seen = True
        yield pa.Table.from_batches([batch])
    if not seen:
        yield pf.schema_arrow.empty_table()


def _csv_batches(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    check_csv_header(path)
    try:
        reader = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False,
                             na_values=[""], chunksize=rows)
    except pd.errors.EmptyDataError as exc:
        raise ContractError(str(path), "empty file", "no header row") from exc
    with reader:
        seen = False
        for chunk in reader:
            seen = True
            chunk.columns = [str(c).strip() for c in chunk.columns]
            yield chunk
        if not seen:
            header = pd.read_csv(path, dtype=str, encoding="utf-8-sig", nrows=0)
            header.columns = [str(c).strip() for c in header.columns]
            yield header


def _mapped(src: _Source, frame: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    tm = mapping.for_table(src.name)
    mapped = apply_mapping(frame, src.name, tm, src.source)
    if src.derive_from:
        cols = [c.name for c in TABLE_COLUMNS[src.name] if c.name in mapped.columns]
        mapped = mapped[cols].drop_duplicates(ignore_index=True)
    return mapped


def _typed_ids(column: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    """An id column typed as the contract types it (blank -> null), as Arrow text."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = column.cast(pa.string())  # text: the typed id is the text itself
        blank = pc.equal(pc.utf8_trim_whitespace(text), "")
        out = pc.if_else(pc.fill_null(blank, False), pa.scalar(None, pa.string()), text)
        return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
    series = column.to_pandas()
    typed = type_table(RawTable("buyers", source, pd.DataFrame({"buyer_id": series})),
                       strict=False).typed["buyer_id"]
    return pa.array(typed.astype(object).where(typed.notna(), None).to_numpy(dtype=object),
                    type=pa.string())


def _cast(rows: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """A later batch in the schema of the first (parts of one table must agree)."""
    if set(rows.column_names) != set(schema.names):
        raise ContractError(source, "unreadable file",
                            f"the columns change between parts: {sorted(rows.column_names)} "
                            f"after {sorted(schema.names)}")
    try:
        return rows.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ContractError(source, "unreadable file",
                            f"the column types change between parts: {exc}") from exc


def _identity(mapping: Mapping, table: str) -> bool:
    """The mapping leaves this table as read (no renames, constants, recodes, derivation)."""
    tm = mapping.for_table(table)
    return not (tm.columns or tm.constants or tm.values or tm.derive_from)


def _contract_order(rows: pa.Table, table: str) -> pa.Table:
    """Contract columns first, in contract order, then the others (as the mapping does)."""
    names = [c.name for c in TABLE_COLUMNS[table] if c.name in rows.column_names]
    return rows.select(names + [c for c in rows.column_names if c not in names])


def _arrow_batch(frame: pd.DataFrame, schema: pa.Schema | None) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if schema is None:
        fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                  for f in table.schema]
        return table.cast(pa.schema(fields))
    if set(table.column_names) != set(schema.names):
        raise ContractError("", "unreadable file", "the columns change between parts")
    table = table.select(schema.names)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.Table.from_pandas(frame.astype({c: "str" for c in frame.columns}).where(
            frame.notna()), schema=schema, preserve_index=False)


# --------------------------------------------------------------------------- staging


def _key_buckets(keys: pa.Array, n: int) -> np.ndarray:
    """A transient partition of invoice ids for the duplicate check (DuckDB's own hash is
    fine here: it is never stored, only used within this run)."""
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("k", pa.table({"key": keys}))
        out = con.sql(f"SELECT (hash(key) % {int(n)})::INTEGER AS b FROM k"
                      ).fetchnumpy()["b"]
    finally:
        con.close()
    return np.asarray(out, dtype=np.int32)


class _Stage:
    """Pass 1: raw rows by bucket, and typed invoice ids by key bucket."""

    def __init__(self, root: Path, n_buckets: int) -> None:
        self.root = root
        self.n_buckets = n_buckets
        # invoice ids by their own buckets, about as many ids in each as invoices in a book
        # bucket, so the duplicate check holds one bucket's ids at a time
        self.key_buckets = max(MIN_KEY_BUCKETS, n_buckets)
        self.writers: dict[tuple[str, int], pa.ipc.RecordBatchFileWriter] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.read: dict[str, int] = {}
        self.columns: dict[str, list[str]] = {}

    def path(self, table: str, bucket: int) -> Path:
        return self.root / table / f"{bucket}.arrow"

    def _write(self, table: str, bucket: int, rows: pa.Table) -> None:
        key = (table, bucket)
        if key not in self.writers:
            p = self.path(table, bucket)
            p.parent.mkdir(parents=True, exist_ok=True)
            # Arrow IPC, uncompressed: staging is written and read once, locally
            self.writers[key] = pa.ipc.new_file(p, rows.schema)
        self.writers[key].write_table(rows)

    def add(self, table: str, batch: pd.DataFrame | pa.Table, source: str) -> None:
        """Append a mapped batch (pandas, or Arrow as read when the mapping changes
        nothing): each row to its buyer's bucket, with its input position."""
        if isinstance(batch, pd.DataFrame):
            rows = _arrow_batch(batch, self.schemas.get(table))
        else:
            rows = batch if table not in self.schemas else _cast(batch, self.schemas[table],
                                                                  source)
        start = self.read.get(table, 0)
        n = rows.num_rows
        self.read[table] = start + n
        self.columns.setdefault(table, list(rows.column_names))
        self.schemas.setdefault(table, rows.schema)  # as read, without the position
        if n == 0:
            return
        bucket = buckets_of(_typed_ids(rows["buyer_id"], source), self.n_buckets)
        rows = rows.append_column(SEQ, pa.array(np.arange(start, start + n, dtype=np.int64)))
        self._split(table, rows, bucket)
        if table == "invoices":
            keys = _typed_ids(rows["invoice_id"], source)
            self._split("_keys", pa.table({"key": keys, SEQ: rows[SEQ]}),
                        _key_buckets(keys, self.key_buckets))

    def _split(self, table: str, rows: pa.Table, bucket: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        sb = bucket[order]
        rows = rows.take(pa.array(order))
        cuts = np.flatnonzero(np.diff(sb)) + 1
        for s, e in zip(np.r_[0, cuts], np.r_[cuts, len(sb)], strict=True):
            self._write(table, int(sb[s]), rows.slice(int(s), int(e - s)))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()

    def keys(self, bucket: int) -> pa.Table | None:
        p = self.path("_keys", bucket)
        if not p.exists():
            return None
        with pa.memory_map(str(p)) as source:
            return pa.ipc.open_file(source).read_all()

    def frame(self, table: str, bucket: int) -> pd.DataFrame:
        p = self.path(table, bucket)
        if not p.exists():
            empty = self.schemas[table].append(pa.field(SEQ, pa.int64())).empty_table()
            return empty.to_pandas(date_as_object=False)
        with pa.memory_map(str(p)) as source:
            rows = pa.ipc.open_file(source).read_all()
        return rows.to_pandas(date_as_object=False)

    def duplicate_seqs(self, memory_limit: str, tmp: Path) -> np.ndarray:
        """Positions of invoice rows whose id occurred earlier in the input."""
        found = []
        con = duckdb.connect(config={"threads": 2, "memory_limit": memory_limit,
                                     "temp_directory": str(tmp)})
        try:
            for k in range(self.key_buckets):
                keys = self.keys(k)
                if keys is None:
                    continue
                con.register("keys", keys)
                got = con.sql(
                    f"SELECT {SEQ} FROM keys WHERE key IS NOT NULL "
                    f"QUALIFY row_number() OVER (PARTITION BY key ORDER BY {SEQ}) > 1"
                ).fetchnumpy()[SEQ]
                found.append(np.asarray(got, dtype=np.int64))
        except duckdb.OutOfMemoryException as exc:
            raise BookError(f"book.memory_limit {memory_limit} is too small for the duplicate "
                            "invoice-id check; give it more (e.g. 256MB or the default 2GB)"
                            ) from exc
        finally:
            con.close()
        return np.sort(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------- validation


@dataclass
class _Pass:
    counts: dict[str, _Counts]
    stats: dict[str, TypeStats]
    latest: pd.Timestamp | None
    data_start: pd.Timestamp | None
    max_founded: int | None


def _validate_buckets(stage: _Stage, names: list[str], sources: dict[str, _Source],
                      mapping: Mapping, ou: pd.Timestamp | None, today: pd.Timestamp,
                      dup_seqs: np.ndarray, writer: BookWriter,
                      rejects: dict[str, pq.ParquetWriter] | None,
                      progress: Progress | None) -> _Pass:
    counts = {n: _Counts() for n in names}
    stats = {n: TypeStats() for n in names}
    latest: pd.Timestamp | None = None
    start: pd.Timestamp | None = None
    max_founded: int | None = None
    for k in range(stage.n_buckets):
        results: dict[str, TableResult] = {}
        typed = {}
        seqs = {}
        for n in names:
            frame = stage.frame(n, k)
            seqs[n] = frame.pop(SEQ).to_numpy(dtype=np.int64)
            if sources[n].derive_from:  # distinct rows across the batches of the source
                keep = ~frame.duplicated()
                frame, seqs[n] = frame.loc[keep].reset_index(drop=True), seqs[n][keep.to_numpy()]
            tt = type_table(RawTable(n, sources[n].source, frame), mapping, strict=False)
            stats[n].add(tt.stats)
            typed[n] = tt
        buyers = split_table(typed["buyers"], RuleContext(ou, today=today))
        results["buyers"] = buyers
        known = pd.Index(typed["buyers"].typed["buyer_id"].dropna().unique())
        accepted = pd.Index(buyers.accepted["buyer_id"].unique())
        for n in names:
            if n == "buyers":
                continue
            dup = np.isin(seqs[n], dup_seqs) if n == "invoices" else None
            ctx = RuleContext(ou, known, accepted, today=today, duplicate_rows=dup)
            results[n] = split_table(typed[n], ctx)
        for n in names:
            res = results[n]
            counts[n].add(res)
            if len(res.accepted):
                writer.write_bucket(n, k, to_arrow(n, res.accepted))
            if rejects is not None and len(res.rejected):
                _write_rejects(rejects, n, res.rejected, stage.schemas[n])
            value = latest_observation(n, res.accepted)
            if value is not None and (latest is None or value > latest):
                latest = value
        first = results["invoices"].accepted["issue_date"].min()
        if pd.notna(first) and (start is None or first < start):
            start = pd.Timestamp(first)
        fy = results["buyers"].accepted["founded_year"].max()
        if pd.notna(fy):
            max_founded = int(fy) if max_founded is None else max(max_founded, int(fy))
        if progress is not None:
            progress("validate", k + 1, stage.n_buckets)
    return _Pass(counts, stats, latest, start, max_founded)


def _rejects_schema(staged: pa.Schema) -> pa.Schema:
    return staged.append(pa.field("reason", pa.string()))


def _write_rejects(rejects: dict[str, pq.ParquetWriter], table: str, frame: pd.DataFrame,
                   staged: pa.Schema) -> None:
    schema = _rejects_schema(staged)
    rejects[table].write_table(_arrow_batch(frame[[*schema.names]], schema))


# --------------------------------------------------------------------------- entry point


def build_book(
    raw_dir: Path,
    out: Path,
    *,
    mapping: Path | None = None,
    observed_until: dt.date | None = None,
    bucket_invoices: int = 1_000_000,
    n_buckets: int | None = None,
    memory_limit: str = "2GB",
    rejects: Path | None = None,
    today: dt.date | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> Built:
    """Validate the raw folder ``raw_dir`` into the book ``out`` (see the module docstring).

    ``n_buckets`` None: enough buckets for about ``bucket_invoices`` invoices each. Rejected
    rows go to ``rejects/<table>.parquet`` (values as read plus ``reason``). Raises
    :class:`ContractError` for problems of a file or column; nothing is written then."""
    run_day = today or dt.date.today()
    if observed_until is not None:
        check_observed_until(observed_until, run_day)
    mp = load_mapping(mapping) if mapping is not None else Mapping()
    sources = _sources(Path(raw_dir), mp)
    names = [n for n in TABLES + OPTIONAL_TABLES if n in sources]
    if n_buckets is None:
        n_buckets = choose_buckets(_estimate_rows(sources["invoices"]), bucket_invoices)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    stage = _Stage(work / "stage", n_buckets)
    try:
        for i, n in enumerate(names):
            _stage_table(stage, sources[n], mp, batch_rows)
            if progress is not None:
                progress("stage", i + 1, len(names))
        stage.close()
        for n in ("invoices", "buyers"):
            if stage.read.get(n, 0) == 0:
                raise ContractError(sources[n].source, "empty table",
                                    f"table {n} has a header but no rows")
        dups = stage.duplicate_seqs(memory_limit, work / "duckdb")
        ou = pd.Timestamp(observed_until) if observed_until is not None else None
        today_ts = pd.Timestamp(run_day)
        result = _run(stage, names, sources, mp, ou, today_ts, dups, out, n_buckets,
                      rejects, work, progress)
        try:
            ou_date = observed_until
            if observed_until is None:
                if result[0].latest is None:
                    raise no_dates_error(sources["invoices"].source)
                inferred = result[0].latest
                if result[0].max_founded is not None and result[0].max_founded > inferred.year:
                    result[1].abort()
                    result = _run(stage, names, sources, mp, inferred, today_ts, dups, out,
                                  n_buckets, rejects, work, progress)
                ou_date = inferred.date()
            assert ou_date is not None
            done, writer, reject_tmp = result
            manifest, report = _finish(done, stage, names, sources, ou_date, run_day,
                                       n_buckets, raw_dir)
            for n in names:
                writer.declare(n, arrow_schema(n))
            writer.commit(manifest)
        except BaseException:
            result[1].abort()
            raise
        if rejects is not None and reject_tmp is not None:
            _commit_rejects(reject_tmp, Path(rejects))
        return Built(manifest, report, out)
    finally:
        stage.close()
        shutil.rmtree(work, ignore_errors=True)


def _finish(done: _Pass, stage: _Stage, names: list[str], sources: dict[str, _Source],
            ou_date: dt.date, run_day: dt.date, n_buckets: int,
            raw_dir: Path) -> tuple[Manifest, dict[str, Any]]:
    """Whole-table checks on the totals, then the manifest and the report."""
    from riskmodel.provenance import fingerprint

    for n in names:
        check_wrong_types(sources[n].source, n, done.stats[n])
    tables = {n: done.counts[n].summary(n) for n in names}
    for n, t in tables.items():
        if t["read"] != t["accepted"] + t["rejected"] or t["read"] != stage.read[n]:
            raise RuntimeError(f"{sources[n].source}: {stage.read[n]} rows read but "
                               f"{t['accepted']}+{t['rejected']}")
    report = {"contract_version": CONTRACT_VERSION, "observed_until": ou_date.isoformat(),
              "tables": tables}
    manifest = Manifest(
        contract_version=CONTRACT_VERSION,
        observed_until=ou_date,
        data_start=done.data_start.date() if done.data_start is not None else None,
        n_buckets=n_buckets,
        validated_on=run_day,
        raw_fingerprint=fingerprint(raw_dir),
        tables=tables,
        columns={n: [c.name for c in TABLE_COLUMNS[n] if c.name in stage.columns[n]]
                 for n in names},
    )
    return manifest, report


def _run(stage: _Stage, names: list[str], sources: dict[str, _Source], mp: Mapping,
         ou: pd.Timestamp | None, today: pd.Timestamp, dups: np.ndarray, out: Path,
         n_buckets: int, rejects: Path | None, work: Path,
         progress: Progress | None) -> tuple[_Pass, BookWriter, Path | None]:
    writer = BookWriter(out, n_buckets)
    reject_tmp = work / f"rejects-{uuid.uuid4().hex[:6]}" if rejects is not None else None
    writers: dict[str, pq.ParquetWriter] | None = None
    if reject_tmp is not None:
        reject_tmp.mkdir(parents=True)
        writers = {}
        for n in names:
            writers[n] = pq.ParquetWriter(reject_tmp / f"{n}.parquet",
                                          _rejects_schema(stage.schemas[n]))
    try:
        done = _validate_buckets(stage, names, sources, mp, ou, today, dups, writer, writers,
                                 progress)
    except BaseException:
        writer.abort()
        raise
    finally:
        for w in (writers or {}).values():
            w.close()
    return done, writer, reject_tmp


def _commit_rejects(tmp: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in tmp.glob("*.parquet"):
        shutil.move(str(f), dest / f.name)


def _stage_table(stage: _Stage, src: _Source, mapping: Mapping, batch_rows: int) -> None:
    if src.empty:
        stage.add(src.name, pd.DataFrame({c.name: pd.Series(dtype=object)
                                          for c in TABLE_COLUMNS[src.name]}), src.source)
        return
    assert src.path is not None
    first = True
    for batch in _batches(src.path, batch_rows):
        mapped: pd.DataFrame | pa.Table
        if isinstance(batch, pa.Table) and _identity(mapping, src.name):
            mapped = _contract_order(batch, src.name)
            columns = mapped.column_names
        else:
            frame = batch.to_pandas(date_as_object=False) if isinstance(batch, pa.Table) \
                else batch
            mapped = _mapped(src, frame, mapping)
            columns = list(mapped.columns)
        if first:
            check_required_columns(list(columns), src.name, src.source)
            first = False
        stage.add(src.name, mapped, src.source)


def _estimate_rows(src: _Source) -> int:
    path = src.path
    if path is None:
        return 0
    if path.is_dir():
        try:
            return sum(pq.ParquetFile(p).metadata.num_rows for p in path.rglob("*.parquet"))
        except (OSError, pa.ArrowException):
            return 0  # the read says which part is broken
    if path.suffix.lower() == ".csv":
        return max(1, path.stat().st_size // 80)  # about 80 bytes an invoice row
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException):
        return 0


__all__ = ["Built", "bucket_sql", "build_book"]
