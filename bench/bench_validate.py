"""Validation throughput: ``riskmodel.data.contract.load_dataset`` against a bare Parquet read.

On a synthetic 2019-2024 book of about 10M invoices (``bench/out/data``, generated once),
each in a fresh process, run in turn:

* ``read``: ``pyarrow.parquet.read_table`` of the invoices folder (all columns): the yardstick;
* ``read_pandas``: the same read plus ``to_pandas()`` (what any pandas-based check pays);
* ``load_dataset``: the full contract check of the three tables. Its phases are timed by
  wrapping ``reader.read_file``, ``validation.type_table`` and ``validation._split`` (the
  library's own functions, called by the real ``load_dataset``), so the invoices part (read +
  type + row rules of the invoices table) is reported apart.

Goal: validation costs at most 3 bare reads.

Usage::

    python bench/bench_validate.py                # ~10M invoices, 3 repeats
    python bench/bench_validate.py --quick        # ~0.5M invoices, 1 repeat
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import common

HERE = Path(__file__).resolve()


def child(variant: str, raw: Path) -> None:
    t0 = time.perf_counter()
    result: dict[str, object] = {}
    if variant == "read":
        import pyarrow.parquet as pq

        result["rows"] = pq.read_table(raw / "invoices").num_rows
    elif variant == "read_pandas":
        import pyarrow.parquet as pq

        result["rows"] = len(pq.read_table(raw / "invoices").to_pandas(date_as_object=False))
    elif variant == "load_dataset":
        from riskmodel.data.contract import reader, validation

        phases: dict[str, float] = defaultdict(float)

        def timed(fn, key):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    phases[key(args)] += time.perf_counter() - t
            return wrapper

        reader.read_file = timed(reader.read_file, lambda a: f"read:{Path(a[0]).stem}")
        validation.type_table = timed(validation.type_table, lambda a: f"type:{a[0].name}")
        validation._split = timed(validation._split, lambda a: f"rules:{a[0].name}")
        data = validation.load_dataset(str(raw))
        result["rows"] = len(data.invoices)
        result["rejected"] = {n: len(t.rejected) for n, t in data.tables.items()}
        result["phases"] = dict(phases)
        result["invoices_s"] = sum(v for k, v in phases.items() if k.endswith(":invoices"))
    else:
        raise SystemExit(f"unknown variant {variant}")
    result["seconds"] = time.perf_counter() - t0
    common.emit(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "RAW_DIR"))
    ap.add_argument("--invoices", type=float, default=10e6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(a.child[0], Path(a.child[1]))
        return
    if a.quick:
        a.invoices, a.repeats = 0.5e6, 1
    world = common.world_for_invoices(a.invoices)
    n = common.ensure_world(world)["invoices"]
    variants = ["read", "read_pandas", "load_dataset"]
    print(f"[validate] {world.name}: {n:,} invoices x {a.repeats}", flush=True)
    runs = common.run_interleaved(
        [(v, HERE, ["--child", v, str(world.path)]) for v in variants], a.repeats)
    read_s = common.med(runs["read"], "seconds")
    out = {}
    for v, rs in runs.items():
        secs = common.med(rs, "seconds")
        out[v] = {"invoices": n, "repeats": len(rs), "seconds": secs,
                  "seconds_all": [round(float(r.child["seconds"]), 3) for r in rs],
                  "invoices_per_s": n / secs, "bare_reads": secs / read_s,
                  "peak_rss_mb": common.med(rs, "peak_rss_mb")}
    ld = runs["load_dataset"]
    inv_s = common.med(ld, "invoices_s")
    out["load_dataset"].update({
        "invoices_part_s": inv_s, "invoices_part_bare_reads": inv_s / read_s,
        "phases_median": {k: common.median([r.child["phases"][k] for r in ld])
                          for k in ld[0].child["phases"]},
        "rejected": ld[0].child["rejected"],
    })
    path = common.save_results("validate_quick" if a.quick else "validate",
                               {"world": world.name, "results": out})
    print(report(out))
    print(f"\nsaved {path}")


def report(out: dict) -> str:
    rows = [[v, f"{m['invoices'] / 1e6:.1f}M", m["repeats"], m["seconds"],
             m["invoices_per_s"] / 1e6, m["bare_reads"], m["peak_rss_mb"]]
            for v, m in out.items()]
    ld = out["load_dataset"]
    rows.append(["load_dataset: invoices part", "", "", ld["invoices_part_s"], "",
                 ld["invoices_part_bare_reads"], ""])
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in ld["phases_median"].items())
    return common.md_table(["variant", "invoices", "runs", "median s", "M invoices/s",
                            "bare reads", "peak RSS MB"], rows) + f"\n\nphases: {phases}"


if __name__ == "__main__":
    main()
