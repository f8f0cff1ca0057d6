"""Run every benchmark, one after the other, and print one markdown table of the figures.

Usage::

    python bench/run_all.py            # full sizes (about 20-30 minutes on 2 cores)
    python bench/run_all.py --quick    # small sizes, 1 repeat (about 1-2 minutes)
    python bench/run_all.py --report   # only print the table of the last saved results
    python bench/run_all.py --report --quick   # ... of the last quick results

Each benchmark saves its medians to ``bench/out/results/<name>.json``; the table is built
from those files, so ``--report`` reprints the last figures without measuring again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
BENCHES = ("bench_validate", "bench_synth", "bench_features", "bench_book")


def load(name: str) -> dict | None:
    path = common.RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(quick: bool = False) -> str:
    """The figures of the last full runs (or of the last ``--quick`` runs)."""
    sfx = "_quick" if quick else ""
    rows: list[list[object]] = []
    v = load(f"validate{sfx}")
    if v:
        res = v["results"]
        for name, m in res.items():
            rows.append(["validate", name, f"{m['invoices'] / 1e6:.1f}M", m["repeats"],
                         m["seconds"], m["invoices_per_s"] / 1e6, m["bare_reads"],
                         m["peak_rss_mb"]])
        ld = res["load_dataset"]
        rows.append(["validate", "load_dataset: invoices part", "", "",
                     ld["invoices_part_s"], "", ld["invoices_part_bare_reads"], ""])
    s = load(f"synth{sfx}")
    if s:
        for m in s["results"].values():
            rows.append(["synth", f"{m['buyers']:,} buyers, 5 y", f"{m['invoices'] / 1e6:.1f}M",
                         m["repeats"], m["seconds"], m["invoices_per_s"] / 1e6, "",
                         m["peak_rss_mb"]])
    for path in sorted(common.RESULTS_DIR.glob("features*.json")):
        if path.stem.endswith("_quick") != quick:
            continue
        f = json.loads(path.read_text())
        groups = list(f["sizes"].values())
        if f.get("naive"):
            groups.append(f["naive"])
        for g in groups:
            for name, m in g.items():
                rows.append([f"features x{len(f['dates'])} dates", name,
                             f"{m['invoices'] / 1e6:.1f}M", m["repeats"], m["seconds"],
                             m["invoices_per_s"] / 1e6, m["bare_reads"], m["peak_rss_mb"]])
    b = load(f"book{sfx}")
    if b:
        for size, row in b["results"].items():
            for variant in ("bare_raw", "validate", "bare_book", "features", "duckdb_reference"):
                m = row.get(variant)
                if m is None:
                    continue
                rows.append([f"book {size}", variant, f"{row['invoices'] / 1e6:.1f}M",
                             len(str(m["runs"]).split("/")), m["seconds"],
                             m["invoices_per_s"] / 1e6, m.get("bare_read_ratio", ""),
                             m["peak_rss_mb"]])
    return common.md_table(["bench", "variant", "invoices", "runs", "median s",
                            "M invoices/s", "bare reads", "peak RSS MB"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if not a.report:
        for bench in BENCHES:
            cmd = [sys.executable, str(HERE / f"{bench}.py")] + (["--quick"] if a.quick else [])
            print(f"$ {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True)
    print()
    print(table(a.quick))


if __name__ == "__main__":
    main()
