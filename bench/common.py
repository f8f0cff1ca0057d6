"""Shared helpers for the benchmarks: cached synth worlds, fresh-process runs with peak RSS,
medians over repeats.

Every measured variant runs in its own fresh Python process (``python bench/x.py --child
VARIANT ...``), which prints one JSON line of its own phase timings and its own peak
resident set size (``VmHWM`` of that process, so one child's peak is never mixed with
another's or with the parent's); the parent records the wall time. Compared variants are run in turn (A, B, C, A, B, C, ...) so that
noise from other users of the machine hits them alike.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
DATA_DIR = OUT_DIR / "data"
RESULTS_DIR = OUT_DIR / "results"
PYTHON = sys.executable
RESULT_PREFIX = "BENCH_RESULT "

# the book the feature and validation benchmarks use: 6 years, so 2023 quarter ends have a
# full look-back and a full 365-day label horizon
BOOK_START = dt.date(2019, 1, 1)
BOOK_END = dt.date(2024, 12, 31)
# about 85 invoices per buyer over 2019-2024 (measured: 20k buyers -> 1.71M invoices)
INVOICES_PER_BUYER_6Y = 85.3
AS_OF_2023 = (dt.date(2023, 3, 31), dt.date(2023, 6, 30), dt.date(2023, 9, 30),
              dt.date(2023, 12, 31))
FEATURE_INVOICE_COLUMNS = ("buyer_id", "supplier_id", "issue_date", "due_date", "paid_date",
                           "amount", "disputed")


# --------------------------------------------------------------------------- synth cache


@dataclass(frozen=True)
class World:
    """A cached synthetic world under ``bench/out/data/<name>``."""

    name: str
    n_buyers: int
    start: dt.date = BOOK_START
    end: dt.date = BOOK_END
    seed: int = 0

    @property
    def path(self) -> Path:
        return DATA_DIR / self.name

    @property
    def invoices(self) -> Path:
        return self.path / "invoices"


def world_for_invoices(n_invoices: float, label: str | None = None) -> World:
    """The 2019-2024 world whose buyers give about ``n_invoices`` invoices."""
    n_buyers = round(n_invoices / INVOICES_PER_BUYER_6Y / 100) * 100
    return World(label or f"book_{n_buyers}b", n_buyers)


def ensure_world(world: World, verbose: bool = True) -> dict[str, int]:
    """Generate ``world`` once; later calls read its row counts from ``counts.json``."""
    from riskmodel.data.synth import SynthConfig, write_world

    marker = world.path / "counts.json"
    if marker.exists():
        return json.loads(marker.read_text())["counts"]
    if world.path.exists():
        shutil.rmtree(world.path)  # a half-written world from an interrupted run
    cfg = SynthConfig(n_buyers=world.n_buyers, start=world.start, end=world.end, seed=world.seed)
    if verbose:
        print(f"[synth] generating {world.name} ({world.n_buyers:,} buyers) ...", flush=True)
    t0 = time.perf_counter()
    counts = write_world(cfg, world.path)
    secs = time.perf_counter() - t0
    marker.write_text(json.dumps({"counts": counts, "seconds": secs,
                                  "config": {"n_buyers": world.n_buyers,
                                             "start": str(world.start), "end": str(world.end),
                                             "seed": world.seed}}, indent=2))
    if verbose:
        print(f"[synth] {counts['invoices']:,} invoices in {secs:.0f} s", flush=True)
    return counts


# --------------------------------------------------------------------------- child processes


def emit(result: dict[str, Any]) -> None:
    """Called by a child at its end: report its measurements and its own peak RSS to the
    parent (one JSON line)."""
    result = {**result, "peak_rss_mb": child_peak_rss_mb()}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


@dataclass
class Run:
    variant: str
    wall_s: float
    peak_rss_mb: float
    child: dict[str, Any] = field(default_factory=dict)


def run_child(script: Path | str, args: Sequence[str], timeout: float | None = None) -> Run:
    """Run ``python script *args`` in a fresh process; return its wall time, its peak RSS
    and the JSON it emitted."""
    import tempfile

    cmd = [PYTHON, str(script), *map(str, args)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s")
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-4000:]}")
    child: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            child = json.loads(line[len(RESULT_PREFIX):])
    # The child's own high-water mark (VmHWM) is the figure we use: Linux carries the
    # parent's RSS at fork into the child's ru_maxrss across exec, so wait4's number is only a
    # fallback (and an upper bound).
    peak = child.get("peak_rss_mb")
    if peak is None:
        peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    return Run(str(args[0]) if args else "", wall, float(peak), child)


def child_peak_rss_mb() -> float:
    """Called by a child at its end: its own peak RSS (Linux ``VmHWM``, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def run_interleaved(
    variants: Sequence[tuple[str, Path | str, Sequence[str]]],
    repeats: int,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, list[Run]]:
    """Run each variant ``repeats`` times, in turn (A B C A B C ...), each in a fresh process."""
    runs: dict[str, list[Run]] = {name: [] for name, _, _ in variants}
    for rep in range(repeats):
        for name, script, args in variants:
            r = run_child(script, args, timeout)
            r.variant = name
            runs[name].append(r)
            main = r.child.get("seconds", r.wall_s)
            log(f"  [{rep + 1}/{repeats}] {name}: {main:.2f} s measured, "
                f"{r.wall_s:.1f} s wall, peak RSS {r.peak_rss_mb:.0f} MB")
    return runs


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def med(runs: Sequence[Run], key: str) -> float:
    """Median of a child-reported number (or ``wall_s`` / ``peak_rss_mb``) over runs."""
    if key == "wall_s":
        return median([r.wall_s for r in runs])
    if key == "peak_rss_mb":
        return median([r.peak_rss_mb for r in runs])
    return median([float(r.child[key]) for r in runs if key in r.child])


def spread(runs: Sequence[Run], key: str) -> str:
    vals = sorted(float(r.child[key]) if key in r.child else getattr(r, key) for r in runs)
    return "/".join(f"{v:.2f}" for v in vals)


# --------------------------------------------------------------------------- results


def machine() -> dict[str, Any]:
    import psutil

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_save": [round(x, 2) for x in os.getloadavg()],
    }


def save_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"when": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bare_read_seconds(path: Path, columns: Sequence[str] | None = None) -> float:
    """Time one ``pyarrow.parquet.read_table`` of ``path`` (a file or a folder of parts)."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    table = pq.read_table(path, columns=list(columns) if columns else None)
    secs = time.perf_counter() - t0
    del table
    return secs
