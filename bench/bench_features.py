"""Feature throughput and peak memory: riskmodel against a plain DuckDB query and naive pandas.

The same full feature set (every column of ``riskmodel.features.build_features``, status and
``dbt_vs_industry`` included) at the four 2023 quarter ends, on a synthetic 2019-2024 book,
computed four ways, each in a fresh process, run in turn:

* ``read``: a bare ``pyarrow.parquet.read_table`` of the invoice columns the features use
  (the yardstick: "feature time = k bare reads");
* ``riskmodel``: read the three tables into pandas (typed as ``load_dataset`` types them, but
  without the validation, which ``bench_validate.py`` measures) + ``build_features``;
* ``duckdb``: ``reference_duckdb.reference_features_duckdb`` (one SQL query over the files);
* ``pandas``: ``reference_pandas`` (``groupby("buyer_id").apply``); slow, so it runs on a
  separate ~1M-invoice world and its rate is extrapolated (it is linear in buyers);
* ``streaming``: ``riskmodel.streaming.build_features_from_parquet``, if that module exists.

Usage::

    python bench/bench_features.py                 # 10M invoices, 3 repeats (+ 1M for pandas)
    python bench/bench_features.py --sizes 10e6,30e6 --repeats 3
    python bench/bench_features.py --quick         # 0.5M invoices, 1 repeat
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve()
ENGINES = ("riskmodel", "duckdb")


def has_streaming() -> bool:
    if importlib.util.find_spec("riskmodel.streaming") is None:
        return False
    import riskmodel.streaming as streaming

    return hasattr(streaming, "build_features_from_parquet")


# --------------------------------------------------------------------------- child side


def read_typed(raw: Path):
    """The three tables as pandas frames, typed as ``load_dataset`` types them."""
    import pyarrow.parquet as pq

    def frame(path: Path, columns=None):
        df = pq.read_table(path, columns=columns).to_pandas(date_as_object=False)
        for c in df.columns:
            if c.endswith("_date"):
                df[c] = df[c].astype("datetime64[s]")
        return df

    inv = frame(raw / "invoices", list(common.FEATURE_INVOICE_COLUMNS))
    inv["disputed"] = inv["disputed"].astype("boolean")
    buyers = frame(raw / "buyers.parquet")
    buyers["founded_year"] = buyers["founded_year"].astype("Int64")
    events = frame(raw / "events.parquet")
    return inv, buyers, events


def child(variant: str, raw: Path, dates: list[dt.date]) -> None:
    t0 = time.perf_counter()
    result: dict[str, object] = {}
    if variant == "read":
        import pyarrow.parquet as pq

        table = pq.read_table(raw / "invoices", columns=list(common.FEATURE_INVOICE_COLUMNS))
        result["rows"] = table.num_rows
    elif variant == "riskmodel":
        from riskmodel.features import build_features

        inv, buyers, events = read_typed(raw)
        result["read_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = build_features(inv, buyers, events, dates)
        result["features_s"] = time.perf_counter() - t1
        result["rows"] = len(out)
    elif variant == "streaming":
        from riskmodel.streaming import build_features_from_parquet

        out = build_features_from_parquet(raw, dates)
        result["rows"] = len(out) if hasattr(out, "__len__") else None
    elif variant == "duckdb":
        from reference_duckdb import reference_features_duckdb

        out = reference_features_duckdb(raw, dates, threads=2)
        result["rows"] = len(out)
    elif variant == "pandas":
        from reference_pandas import read_raw, reference_features_pandas

        inv, buyers, events = read_raw(raw)
        result["read_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = reference_features_pandas(inv, buyers, events, dates)
        result["features_s"] = time.perf_counter() - t1
        result["rows"] = len(out)
    else:
        raise SystemExit(f"unknown variant {variant}")
    result["seconds"] = time.perf_counter() - t0
    common.emit(result)


# --------------------------------------------------------------------------- parent side


def measure(world: common.World, variants: list[str], repeats: int, dates: list[dt.date],
            ) -> dict[str, dict[str, float]]:
    counts = common.ensure_world(world)
    n = counts["invoices"]
    args = ["--dates", ",".join(d.isoformat() for d in dates)]
    specs = [(v, HERE, ["--child", v, str(world.path), *args]) for v in variants]
    print(f"[features] {world.name}: {n:,} invoices, {', '.join(variants)} x {repeats}",
          flush=True)
    runs = common.run_interleaved(specs, repeats)
    read_s = common.med(runs["read"], "seconds") if "read" in runs else float("nan")
    rows = {v: {r.child.get("rows") for r in rs} for v, rs in runs.items() if v != "read"}
    out: dict[str, dict[str, float]] = {}
    for v, rs in runs.items():
        secs = common.med(rs, "seconds")
        out[v] = {
            "invoices": n, "buyers": world.n_buyers, "repeats": len(rs), "seconds": secs,
            "seconds_all": [round(float(r.child["seconds"]), 3) for r in rs],
            "features_s": common.med(rs, "features_s"), "read_s": common.med(rs, "read_s"),
            "invoices_per_s": n / secs, "peak_rss_mb": common.med(rs, "peak_rss_mb"),
            "bare_reads": secs / read_s,
            "rows": sorted(x for x in rows.get(v, set()) if x is not None),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "RAW_DIR"))
    ap.add_argument("--dates", default=",".join(d.isoformat() for d in common.AS_OF_2023))
    ap.add_argument("--sizes", default="10e6", help="invoice counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-invoices", type=float, default=1e6,
                    help="size of the world the naive pandas version runs on (0: skip)")
    ap.add_argument("--naive-repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="features",
                    help="results file name under bench/out/results (default: features)")
    a = ap.parse_args()
    dates = [dt.date.fromisoformat(d) for d in a.dates.split(",")]
    if a.child:
        child(a.child[0], Path(a.child[1]), dates)
        return

    if a.quick:
        a.sizes, a.repeats, a.naive_invoices = "0.5e6", 1, 0.1e6
        a.tag = f"{a.tag}_quick"
    engines = list(ENGINES) + (["streaming"] if has_streaming() else [])
    results: dict[str, object] = {"dates": [str(d) for d in dates], "sizes": {}}
    for size in (float(s) for s in a.sizes.split(",")):
        world = common.world_for_invoices(size)
        results["sizes"][world.name] = measure(world, ["read", *engines], a.repeats, dates)
    if a.naive_invoices:
        world = common.world_for_invoices(a.naive_invoices)
        results["naive"] = measure(world, ["read", "riskmodel", "pandas"], a.naive_repeats,
                                   dates)
    results["streaming_available"] = "streaming" in engines
    path = common.save_results(a.tag, results)
    print(report(results))
    print(f"\nsaved {path}")


def report(results: dict) -> str:
    rows = []
    for group in [*results["sizes"].values(), results.get("naive", {})]:
        for v, m in group.items():
            rows.append([v, f"{m['invoices'] / 1e6:.1f}M", m["repeats"], m["seconds"],
                         m["invoices_per_s"] / 1e6, m["bare_reads"], m["peak_rss_mb"]])
    return common.md_table(["variant", "invoices", "runs", "median s", "M invoices/s",
                            "bare reads", "peak RSS MB"], rows)


if __name__ == "__main__":
    main()
