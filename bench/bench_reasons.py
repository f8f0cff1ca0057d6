"""Reason codes for a million buyers, end to end: ``riskmodel explain`` (score, exact
contributions, reasons in words, write) on the demo model and a features file of N buyers at
one as-of date.

The rows are the demo's live and defaulted buyers at its latest as-of date, repeated with new
buyer ids up to N (so the feature values, and the model, are the demo's own). Needs the
outputs of ``make demo`` (``models/buyer-risk``, ``data/processed/features.parquet``). Each
run is a fresh ``riskmodel explain`` process; the phase times are the command's own (its
summary line), the wall time and peak RSS are measured from outside.

    .venv/bin/python bench/bench_reasons.py --buyers 1000000 --repeats 3

Saves ``bench/out/results/reasons.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ROOT = common.BENCH_DIR.parent
PHASES = ("score", "contributions", "reasons", "write")


def features_file(n: int) -> Path:
    """The demo's latest as-of date, repeated with new ids up to ``n`` rows (cached)."""
    out = common.DATA_DIR / "reasons" / f"features_{n}.parquet"
    if out.exists():
        return out
    src = pq.read_table(ROOT / "data" / "processed" / "features.parquet")
    latest = pc.max(src["as_of"])
    day = src.filter(pc.equal(src["as_of"], latest))
    parts, have, copy = [], 0, 0
    while have < n:
        take = day.slice(0, min(day.num_rows, n - have))
        ids = pc.binary_join_element_wise(take["buyer_id"], pa.scalar(f"-{copy}"), "")
        parts.append(take.set_column(take.schema.get_field_index("buyer_id"), "buyer_id", ids))
        have += take.num_rows
        copy += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(parts), out)
    return out


def run_once(features: Path, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(ROOT / ".venv" / "bin" / "riskmodel"), "explain", "--model",
           str(ROOT / "models" / "buyer-risk"), "--features", str(features), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    found = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", text) if k in PHASES}
    rss = re.search(r"MAXRSS (\d+)", text)
    found["wall"] = wall
    found["peak_rss_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buyers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    features = features_file(args.buyers)
    out = common.OUT_DIR / "reasons-run"
    runs = [run_once(features, out) for _ in range(args.repeats)]
    shutil.rmtree(out, ignore_errors=True)
    keys = [*PHASES, "wall", "peak_rss_mb"]
    med = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in keys}
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "reasons.json").write_text(
        json.dumps({"buyers": args.buyers, "runs": runs, "median": med}, indent=2) + "\n")
    print("| buyers | " + " | ".join(f"{k} s" if k != "peak_rss_mb" else "peak RSS MB"
                                      for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    print(f"| {args.buyers:,} | " + " | ".join(f"{med[k]:.1f}" for k in keys) + " |")
    print("runs (wall s): " + ", ".join(f"{r['wall']:.1f}" for r in runs))


if __name__ == "__main__":
    main()
