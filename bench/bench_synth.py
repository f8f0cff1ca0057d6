"""Synthetic-world throughput and peak memory: ``riskmodel.data.synth.write_world`` at growing N.

Each size runs in a fresh process that writes the world (2020-01-01 .. 2024-12-31, seed 0,
``SynthConfig``'s default block of 10,000 buyers unless ``--chunk-buyers``) to a scratch folder
under ``bench/out/`` and deletes it afterwards. Goal: peak RSS does not grow with N (memory is
bounded by one block).

Usage::

    python bench/bench_synth.py                                   # 100k x3, 1M x1
    python bench/bench_synth.py --buyers 100000,1000000 --repeats 3,1
    python bench/bench_synth.py --quick                           # 10k, 50k x1
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve()
START, END = dt.date(2020, 1, 1), dt.date(2024, 12, 31)


def child(n_buyers: int, chunk_buyers: int) -> None:
    from riskmodel.data.synth import SynthConfig, write_world

    out = common.OUT_DIR / f"synth_scratch_{n_buyers}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = SynthConfig(n_buyers=n_buyers, start=START, end=END, seed=0,
                      chunk_buyers=chunk_buyers)
    t0 = time.perf_counter()
    counts = write_world(cfg, out)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    common.emit({"seconds": secs, "counts": counts, "bytes": size})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", type=int, metavar="N_BUYERS")
    ap.add_argument("--buyers", default="100000,1000000")
    ap.add_argument("--repeats", default="3,1", help="per size, comma-separated")
    ap.add_argument("--chunk-buyers", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.chunk_buyers)
        return
    if a.quick:
        a.buyers, a.repeats = "10000,50000", "1,1"
    sizes = [int(float(x)) for x in a.buyers.split(",")]
    reps = [int(x) for x in a.repeats.split(",")]
    reps += [reps[-1]] * (len(sizes) - len(reps))
    out = {}
    # sizes in turn (small, large, small, ...) as long as each still has repeats to do
    runs: dict[int, list[common.Run]] = {n: [] for n in sizes}
    for rep in range(max(reps)):
        for n, r in zip(sizes, reps, strict=True):
            if rep < r:
                got = common.run_interleaved(
                    [(f"{n}", HERE, ["--child", n, "--chunk-buyers", a.chunk_buyers])], 1)
                runs[n] += got[f"{n}"]
    for n, rs in runs.items():
        inv = rs[0].child["counts"]["invoices"]
        secs = common.med(rs, "seconds")
        out[n] = {"buyers": n, "invoices": inv, "repeats": len(rs), "seconds": secs,
                  "seconds_all": [round(float(r.child["seconds"]), 2) for r in rs],
                  "invoices_per_s": inv / secs, "peak_rss_mb": common.med(rs, "peak_rss_mb"),
                  "peak_rss_all": [round(r.peak_rss_mb) for r in rs],
                  "mb_on_disk": rs[0].child["bytes"] / 2**20, "chunk_buyers": a.chunk_buyers}
    path = common.save_results("synth_quick" if a.quick else "synth",
                               {"start": str(START), "end": str(END), "results": out})
    print(report(out))
    print(f"\nsaved {path}")


def report(out: dict) -> str:
    rows = [[f"{m['buyers']:,}", f"{m['invoices'] / 1e6:.1f}M", m["repeats"], m["seconds"],
             m["invoices_per_s"] / 1e6, m["peak_rss_mb"]] for m in out.values()]
    return common.md_table(["buyers", "invoices", "runs", "median s", "M invoices/s",
                            "peak RSS MB"], rows)


if __name__ == "__main__":
    main()
