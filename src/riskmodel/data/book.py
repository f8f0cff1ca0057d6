"""The book: validated data, written once, read a bucket at a time.

A book is a folder::

    BOOK/manifest.json                       what is in it (see :class:`Manifest`)
    BOOK/<table>/bucket=<k>/part-0.parquet   the accepted rows of a table whose buyer falls
                                             in bucket k (every bucket has a file per table)

A buyer's bucket is ``int(first 8 bytes of MD5(utf-8 buyer_id), big-endian) % n_buckets``:
a named hash of the id's bytes, so DuckDB (:func:`bucket_sql`), Python (:func:`bucket_of`)
and Spark compute the same bucket in every version. Every row of a buyer (its invoices, its
buyers row, its events and exposures) is in the bucket of its ``buyer_id``, so a stage that
reads one bucket sees whole buyers, and memory is set by the bucket size, not the book.

Columns keep the contract's names; types are Arrow's: dates ``date32``, amounts ``float64``,
ids and categories ``string``, ``founded_year`` ``int64``, ``disputed`` ``bool``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskmodel.data.contract.schema import TABLE_COLUMNS

MANIFEST = "manifest.json"
BOOK_FORMAT = 1
BUCKET_HASH = "md5-64be"  # first 8 bytes of MD5 of the UTF-8 id, big-endian, modulo n
_ARROW_TYPES = {"string": pa.string(), "date": pa.date32(), "float": pa.float64(),
                "int": pa.int64(), "bool": pa.bool_()}


class BookError(ValueError):
    """A folder is not a readable book, or a book cannot be written where asked."""


# --------------------------------------------------------------------------- buckets


def bucket_of(buyer_id: str, n_buckets: int) -> int:
    """The bucket of one buyer (the reference definition)."""
    digest = hashlib.md5(buyer_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % n_buckets


def bucket_sql(column: str, n_buckets: int) -> str:
    """The same bucket as a DuckDB expression over a VARCHAR column."""
    return f"(('0x' || substr(md5({column}), 1, 16))::UBIGINT % {int(n_buckets)})"


def buckets_of(ids: pa.Array | pa.ChunkedArray, n_buckets: int) -> np.ndarray:
    """Buckets of many ids at once; null ids get bucket 0. Each distinct id is hashed once
    (in DuckDB), so a column of invoices costs one hash per buyer, not per invoice."""
    enc = pc.dictionary_encode(ids)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.unify_dictionaries().combine_chunks() if enc.num_chunks else pa.array(
            [], pa.dictionary(pa.int32(), pa.string()))
    con = duckdb.connect(config={"threads": 1})
    try:
        con.register("ids", pa.table({"id": enc.dictionary.cast(pa.string())}))
        per_id = con.sql(f"SELECT {bucket_sql('id', n_buckets)}::INTEGER AS b "
                         "FROM ids").fetchnumpy()["b"]
    finally:
        con.close()
    per_id = np.asarray(per_id, dtype=np.int32)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    valid = ~np.isnan(idx) if idx.dtype.kind == "f" else np.ones(len(idx), dtype=bool)
    out = np.zeros(len(idx), dtype=np.int32)
    out[valid] = per_id[idx[valid].astype(np.int64)]
    return out


def choose_buckets(n_invoices: int, bucket_invoices: int) -> int:
    """Enough buckets that one holds about ``bucket_invoices`` invoices."""
    return max(1, -(-int(n_invoices) // int(bucket_invoices)))


# --------------------------------------------------------------------------- types


def arrow_schema(table: str, columns: Sequence[str] | None = None) -> pa.Schema:
    """The book's Arrow schema of a contract table (optionally only ``columns``)."""
    specs = TABLE_COLUMNS[table]
    keep = set(columns) if columns is not None else None
    return pa.schema([(s.name, _ARROW_TYPES[s.kind]) for s in specs
                      if keep is None or s.name in keep])


def to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    """A validated (typed) pandas table as the book's Arrow table."""
    schema = arrow_schema(table, [c for c in frame.columns if c in _names(table)])
    arrays = []
    for f in schema:
        col = frame[f.name]
        if pa.types.is_date32(f.type):
            values = col.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
            arrays.append(pa.array(values.astype("datetime64[D]"), type=pa.date32(),
                                   from_pandas=True))
        elif pa.types.is_string(f.type):
            arrays.append(pa.array(col, type=pa.string(), from_pandas=True))
        elif pa.types.is_int64(f.type):
            arrays.append(pa.array(col.astype("Int64"), type=pa.int64(), from_pandas=True))
        elif pa.types.is_boolean(f.type):
            arrays.append(pa.array(col.astype("boolean"), type=pa.bool_(), from_pandas=True))
        else:
            arrays.append(pa.array(col.to_numpy(dtype=float, na_value=np.nan), type=f.type,
                                   from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """A book table as pandas with the validated dtypes (dates ``datetime64[s]``, ints
    ``Int64``, bools ``boolean``, text ``str``)."""
    out: dict[str, pd.Series] = {}
    for f in table.schema:
        col = table[f.name]
        if pa.types.is_date32(f.type):
            out[f.name] = pd.Series(col.cast(pa.timestamp("s")).to_numpy(zero_copy_only=False),
                                    dtype="datetime64[s]")
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            s = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
            out[f.name] = s.astype("str").where(s.notna())
        elif pa.types.is_integer(f.type):
            out[f.name] = pd.Series(col.to_pandas(), dtype="Int64")
        elif pa.types.is_boolean(f.type):
            out[f.name] = pd.Series(col.to_pandas(), dtype="boolean")
        else:
            out[f.name] = pd.Series(col.to_numpy(zero_copy_only=False), dtype=float)
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows))


def _names(table: str) -> set[str]:
    return {s.name for s in TABLE_COLUMNS[table]}


# --------------------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """What a book holds and where it came from."""

    contract_version: str
    observed_until: dt.date
    data_start: dt.date | None
    n_buckets: int
    validated_on: dt.date
    raw_fingerprint: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the columns each table had in the raw input (optional ones may be absent)
    columns: dict[str, list[str]] = field(default_factory=dict)
    bucket_hash: str = BUCKET_HASH
    format: int = BOOK_FORMAT

    def has_column(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, [])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("observed_until", "data_start", "validated_on"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        for k in ("observed_until", "data_start", "validated_on"):
            d[k] = dt.date.fromisoformat(d[k]) if d.get(k) else None
        return cls(**d)


def is_book(path: str | Path) -> bool:
    """A folder is a book when it holds a riskmodel book manifest (a JSON object with this
    format's ``bucket_hash`` and ``format`` keys; any other ``manifest.json`` is not one)."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return False
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"bucket_hash", "format", "n_buckets"} <= set(data)


def _only_a_book(path: Path) -> bool:
    """The folder holds nothing but a book: its manifest and table folders of bucket parts
    (so replacing it deletes nothing a user put there)."""
    if not is_book(path):
        return False
    for entry in path.iterdir():
        if entry.name == MANIFEST:
            continue
        if not entry.is_dir() or entry.name not in TABLE_COLUMNS:
            return False
        for sub in entry.iterdir():
            if not (sub.is_dir() and sub.name.startswith("bucket=")
                    and all(f.suffix == ".parquet" for f in sub.iterdir())):
                return False
    return True


# --------------------------------------------------------------------------- writing


def _part(root: Path, table: str, bucket: int) -> Path:
    return root / table / f"bucket={bucket}" / "part-0.parquet"


class BookWriter:
    """Writes a book into a temporary folder beside ``path`` and moves it into place on
    :meth:`commit`, so a failed run leaves no half-written book. Rows are appended per
    table; each goes to its buyer's bucket file, in the order given."""

    def __init__(self, path: str | Path, n_buckets: int) -> None:
        self.path = Path(path)
        if self.path.exists() and not (self.path.is_dir() and (
                _only_a_book(self.path) or not any(self.path.iterdir()))):
            raise BookError(f"{self.path}: exists and holds more than a riskmodel book; give "
                            "a new or empty folder (a book is replaced only when the folder "
                            "holds nothing else)")
        if n_buckets < 1:
            raise BookError(f"n_buckets must be >= 1, got {n_buckets}")
        self.n_buckets = int(n_buckets)
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self._writers: dict[tuple[str, int], pq.ParquetWriter] = {}
        self._schemas: dict[str, pa.Schema] = {}

    def write(self, table: str, rows: pa.Table) -> None:
        schema = self._schemas.setdefault(table, rows.schema)
        if not rows.schema.equals(schema):
            rows = rows.select(schema.names).cast(schema)
        if rows.num_rows == 0:
            return
        bucket = buckets_of(rows["buyer_id"], self.n_buckets)
        order = np.argsort(bucket, kind="stable")
        sorted_b = bucket[order]
        rows = rows.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_b)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(sorted_b)]])
        for s, e in zip(starts, ends, strict=True):
            self._writer(table, int(sorted_b[s])).write_table(rows.slice(s, e - s))

    def write_bucket(self, table: str, bucket: int, rows: pa.Table) -> None:
        """Append rows that all belong to ``bucket`` (the caller has bucketed them)."""
        schema = self._schemas.setdefault(table, rows.schema)
        if not rows.schema.equals(schema):
            rows = rows.select(schema.names).cast(schema)
        if rows.num_rows:
            self._writer(table, bucket).write_table(rows)

    def _writer(self, table: str, bucket: int) -> pq.ParquetWriter:
        key = (table, bucket)
        if key not in self._writers:
            path = _part(self.tmp, table, bucket)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers[key] = pq.ParquetWriter(path, self._schemas[table],
                                                  compression="zstd", compression_level=1)
        return self._writers[key]

    def declare(self, table: str, schema: pa.Schema) -> None:
        """Give a table's schema, so that it gets (empty) bucket files even with no rows."""
        self._schemas.setdefault(table, schema)

    def commit(self, manifest: Manifest) -> Path:
        self.close()
        for table, schema in self._schemas.items():
            for k in range(self.n_buckets):
                path = _part(self.tmp, table, k)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(schema.empty_table(), path, compression="zstd")
        (self.tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n",
                                         encoding="utf-8")
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            self.path.rename(old)
        self.tmp.rename(self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def abort(self) -> None:
        self.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> BookWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()


# --------------------------------------------------------------------------- reading


@dataclass
class Bucket:
    """The rows of one bucket, one Arrow table per contract table."""

    index: int
    invoices: pa.Table
    buyers: pa.Table
    events: pa.Table
    exposures: pa.Table | None = None


class Book:
    """A book opened for reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_book(self.path):
            raise BookError(f"{self.path}: not a book (no {MANIFEST}); write one with "
                            "`riskmodel validate RAW --out BOOK`")
        try:
            self.manifest = Manifest.from_dict(
                json.loads((self.path / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BookError(f"{self.path / MANIFEST}: unreadable manifest: {exc}") from exc
        if self.manifest.bucket_hash != BUCKET_HASH:
            raise BookError(f"{self.path}: bucket hash {self.manifest.bucket_hash!r} is not "
                            f"{BUCKET_HASH!r}; validate the raw data again")

    @property
    def n_buckets(self) -> int:
        return self.manifest.n_buckets

    @property
    def observed_until(self) -> dt.date:
        return self.manifest.observed_until

    def read(self, table: str, bucket: int, columns: Sequence[str] | None = None) -> pa.Table:
        path = _part(self.path, table, bucket)
        if not path.exists():
            raise BookError(f"{path}: missing; the book is incomplete (validate again)")
        return pq.read_table(path, columns=list(columns) if columns is not None else None)

    def bucket(self, k: int, invoice_columns: Sequence[str] | None = None) -> Bucket:
        """Bucket ``k`` (only ``invoice_columns`` of the invoices, when given)."""
        exposures = self.read("exposures", k) if (self.path / "exposures").is_dir() else None
        return Bucket(k, self.read("invoices", k, invoice_columns), self.read("buyers", k),
                      self.read("events", k), exposures)

    def buckets_for(self, buyer_ids: Iterable[str]) -> dict[int, list[str]]:
        """Which bucket holds each of ``buyer_ids``."""
        ids = sorted(set(buyer_ids))
        found = buckets_of(pa.array(ids, type=pa.string()), self.n_buckets)
        out: dict[int, list[str]] = {}
        for b, i in zip(found.tolist(), ids, strict=True):
            out.setdefault(int(b), []).append(i)
        return out

    def count(self, table: str) -> int:
        return int(sum(pq.ParquetFile(_part(self.path, table, k)).metadata.num_rows
                       for k in range(self.n_buckets)))


# --------------------------------------------------------------------------- cuts


def cut_table(table: str, rows: pa.Table, cut: dt.date) -> pa.Table:
    """``rows`` of a book table as they were known at ``cut`` (the contract's point-in-time
    rule applied to the data): invoices issued by then, a payment or a dispute only if dated
    by then, events dated by then; buyers and exposures as they are."""
    day = pa.scalar(cut, type=pa.date32())
    if table == "invoices":
        rows = rows.filter(pc.less_equal(rows["issue_date"], day))
        for col in ("paid_date", "dispute_date"):
            if col in rows.column_names:
                later = pc.fill_null(pc.greater(rows[col], day), False)
                i = rows.schema.get_field_index(col)
                rows = rows.set_column(i, col, pc.if_else(later, pa.scalar(None, pa.date32()),
                                                          rows[col]))
    elif table == "events":
        rows = rows.filter(pc.less_equal(rows["event_date"], day))
    return rows


class CutBook(Book):
    """A book as it stood at ``cut``: every read applies :func:`cut_table`, and
    ``observed_until`` is the cut. Nothing is copied; a backtest trains on it exactly as on
    a book validated that day."""

    def __init__(self, book: Book, cut: dt.date) -> None:
        if cut > book.observed_until:
            raise BookError(f"cut {cut} is after the book's observed_until "
                            f"{book.observed_until}")
        self.path = book.path
        self.base = book
        self.cut = cut
        self.manifest = Manifest.from_dict({**book.manifest.to_dict(),
                                            "observed_until": cut.isoformat()})

    def read(self, table: str, bucket: int, columns: Sequence[str] | None = None) -> pa.Table:
        need = {"invoices": ["issue_date"], "events": ["event_date"]}.get(table, [])
        cols = None if columns is None else list(dict.fromkeys([*columns, *need]))
        rows = cut_table(table, self.base.read(table, bucket, cols), self.cut)
        return rows if columns is None else rows.select(list(columns))
