"""The book at scale: ``riskmodel validate --out`` and ``riskmodel features`` from the book,
against bare reads and the plain DuckDB feature query, with peak memory.

Usage::

    python bench/bench_book.py --sizes 10m --repeats 3      # about 10M invoices
    python bench/bench_book.py --sizes 100m --repeats 1     # about 100M invoices (disk!)
    python bench/bench_book.py --sizes 1m --repeats 1       # a quick run

Variants, each in a fresh process (peak RSS is that process's own ``VmHWM``), run in turn:

* ``bare_raw``: stream every row group of the raw invoices (all columns) through pyarrow;
* ``validate``: :func:`riskmodel.pipeline.validate` of the raw folder into a book;
* ``bare_book``: stream every bucket of the book's invoices through pyarrow;
* ``features``: :func:`riskmodel.pipeline.features` from the book at 4 as-of dates (2023
  quarter ends), peer context included, written to Parquet;
* ``duckdb_reference`` (sizes up to 10m): one plain DuckDB query over the raw Parquet files
  (``bench/reference_duckdb.py``), the peer the feature engine is measured against.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve()
SIZES = {"1m": 1e6, "10m": 1e7, "50m": 5e7, "100m": 1e8}


def book_path(world: common.World) -> Path:
    return common.OUT_DIR / "books" / world.name


def child(variant: str, world: common.World) -> None:
    import pyarrow.parquet as pq

    from riskmodel import pipeline
    from riskmodel.data.book import Book
    from riskmodel.params import parse_params

    params = parse_params({})
    t0 = time.perf_counter()
    rows = 0
    if variant == "bare_raw":
        for part in sorted(world.invoices.rglob("*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=500_000):
                rows += batch.num_rows
    elif variant == "validate":
        out = book_path(world)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        res = pipeline.validate(world.path, out, params)
        rows = res.report["tables"]["invoices"]["read"]
    elif variant == "bare_book":
        book = Book(book_path(world))
        for k in range(book.n_buckets):
            rows += book.read("invoices", k).num_rows
    elif variant == "features":
        book = Book(book_path(world))
        out = common.OUT_DIR / "features" / f"{world.name}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        res = pipeline.features(book, out, params, dates=list(common.AS_OF_2023))
        rows = book.count("invoices")
    elif variant == "duckdb_reference":
        from reference_duckdb import reference_features_duckdb

        frame = reference_features_duckdb(world.path, list(common.AS_OF_2023), threads=2)
        rows = len(frame)
    else:
        raise SystemExit(f"unknown variant {variant}")
    common.emit({"seconds": time.perf_counter() - t0, "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--world")
    ap.add_argument("--sizes", default="10m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--quick", action="store_true", help="1M invoices, 1 run (book_quick)")
    ap.add_argument("--only", default="",
                    help="comma-separated variants to run (default: all; the book must exist "
                         "when validate is left out)")
    args = ap.parse_args()
    if args.child:
        n = int(args.world.rsplit("_", 1)[1].removesuffix("b"))
        child(args.child, common.World(args.world, n))
        return
    if args.quick:
        args.sizes, args.repeats = "1m", 1
    name = "book_quick" if args.quick else "book"
    results = {}
    for size in args.sizes.split(","):
        world = common.world_for_invoices(SIZES[size])
        counts = common.ensure_world(world)
        print(f"== {size}: {world.name}, {counts['invoices']:,} invoices", flush=True)
        wargs = ["--world", world.name]
        only = set(filter(None, args.only.split(",")))
        if not only or "validate" in only or not book_path(world).exists():
            # the book must exist before its readers run: one validation first
            common.run_interleaved([("validate", HERE, ["--child", "validate", *wargs])], 1,
                                   args.timeout)
        variants = [("bare_raw", HERE, ["--child", "bare_raw", *wargs]),
                    ("validate", HERE, ["--child", "validate", *wargs]),
                    ("bare_book", HERE, ["--child", "bare_book", *wargs]),
                    ("features", HERE, ["--child", "features", *wargs])]
        if SIZES[size] <= 1e7:
            variants.append(("duckdb_reference", HERE,
                             ["--child", "duckdb_reference", *wargs]))
        if only:
            variants = [v for v in variants if v[0] in only]
        runs = common.run_interleaved(variants, args.repeats, args.timeout)
        n = counts["invoices"]
        row = {}
        for name, rs in runs.items():
            secs = common.med(rs, "seconds")
            row[name] = {"seconds": secs, "runs": common.spread(rs, "seconds"),
                         "peak_rss_mb": common.med(rs, "peak_rss_mb"),
                         "invoices_per_s": n / secs if secs else float("nan")}
        if "validate" in row and "bare_raw" in row:
            row["validate"]["bare_read_ratio"] = (row["validate"]["seconds"]
                                                  / row["bare_raw"]["seconds"])
        if "features" in row and "bare_book" in row:
            row["features"]["bare_read_ratio"] = (row["features"]["seconds"]
                                                  / row["bare_book"]["seconds"])
        if "duckdb_reference" in row and "features" in row:
            row["features"]["vs_duckdb_reference"] = (row["features"]["seconds"]
                                                      / row["duckdb_reference"]["seconds"])
        row["invoices"] = n
        row["buyers"] = counts["buyers"]
        row["book_buckets"] = json.loads((book_path(world) / "manifest.json").read_text())[
            "n_buckets"]
        results[size] = row
        print(json.dumps(row, indent=2), flush=True)
    prior = common.RESULTS_DIR / f"{name}.json"
    merged = json.loads(prior.read_text())["results"] if prior.exists() else {}
    for size, row in results.items():
        merged.setdefault(size, {}).update(row)
    common.save_results(name, {"results": merged, "repeats": args.repeats})


if __name__ == "__main__":
    main()
