"""Batch scoring of a whole book, end to end: ``riskmodel score BOOK --out OUT --model
models/buyer-risk --explain 3`` (features at the book's ``observed_until``, PD, grade, 3
reasons, Parquet write), on the local engine and on Spark ``local[2]``, at three book sizes.

Usage::

    .venv/bin/python bench/bench_score.py --sizes 117k,1m --repeats 3
    .venv/bin/python bench/bench_score.py --build 5m   # the 5.86M-buyer book (needs ~75 GB free)
    .venv/bin/python bench/bench_score.py --sizes 5m --repeats 1
    .venv/bin/python bench/bench_score.py --quick      # 117k, 1 run of each

Each run is a fresh process that opens the book and calls :func:`riskmodel.pipeline.score`
as the command does (``open_book`` then ``score``, the model folder ``models/buyer-risk``
given as ``--model``, so no registry lookup; a copy of it under ``bench/out/models``, as
``dvc repro`` rewrites the original), and reports the stage split the library
returns (``ScoreResult.seconds``). The parent records:

* the wall time of the whole process (interpreter start, imports, Spark's JVM included);
* the peak RSS of the whole process tree (the process, and for Spark its JVM and the Python
  workers), the sum of the RSS of every process of the tree sampled with psutil every 0.2 s,
  and the child's own ``VmHWM``;
* the CPU time of the tree: each process's own user + system seconds at its last sample,
  summed over every process seen (a process's last 0.2 s before it ends can be missed;
  ``wait4``'s figure, which misses the JVM, is kept as ``cpu_reaped_s``);
* the load average just before the run (the machine is shared).

The engines run in turn (local, spark, local, spark, ...); before each size the book's
files are read once so every run finds them in the page cache. A warm-up run (local, the
smallest book there is, not counted) loads numba's compiled kernels into their cache first.

Books: ``bench/out/books/book_<N>b``, validated from the synth worlds of
``bench/out/data/book_<N>b`` (seed 0, 2019-2024, as ``bench_book.py`` makes them);
``--build`` makes a missing one (synth world, then ``riskmodel.pipeline.validate``; with
``--drop-raw`` the raw world is removed once the book is validated).

Saves ``bench/out/results/<tag>.json`` (``--tag``, default ``score``; every run, merged with
the sizes of earlier invocations) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
SOURCE_MODEL = REPO / "models" / "buyer-risk"
# the demo's model folder is rewritten by ``dvc repro``: the benchmark scores with a copy
MODEL = common.OUT_DIR / "models" / "buyer-risk"
SCORES_DIR = common.OUT_DIR / "scores"
# 117,200 and 1,172,300 buyers are the 10M and 100M invoice worlds of bench_book.py; the
# third is 5x the second (about 500M invoices)
SIZES = {"117k": 117_200, "1m": 1_172_300, "5m": 5_861_500}
ENGINES = ("local", "spark")
SAMPLE_S = 0.2


def world_of(size: str) -> common.World:
    n = SIZES[size]
    return common.World(f"book_{n}b", n)


def book_path(world: common.World) -> Path:
    return common.OUT_DIR / "books" / world.name


# --------------------------------------------------------------------------- child


def child(engine: str, book_dir: Path, out: Path, master: str | None, top: int) -> None:
    t_start = time.perf_counter()
    from riskmodel import pipeline
    from riskmodel.params import load_params

    params = load_params(REPO / "params.yaml")
    t_imports = time.perf_counter() - t_start
    t0 = time.perf_counter()
    with pipeline.open_book(book_dir, params) as book:
        t_open = time.perf_counter() - t0
        res = pipeline.score(book, out, params, model_uri=str(MODEL), top=top, engine=engine,
                             spark_master=master if engine == "spark" else None,
                             project_dir=REPO)
    library_s = time.perf_counter() - t0
    if engine == "spark":
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        t1 = time.perf_counter()
        if spark is not None:
            spark.stop()
        stop_s = time.perf_counter() - t1
    else:
        stop_s = 0.0
    manifest = json.loads((out / "_scoring.json").read_text())
    common.emit({"seconds": library_s, "stages": res.seconds, "imports_s": t_imports,
                 "open_s": t_open, "spark_stop_s": stop_s, "buyers": res.buyers,
                 "manifest_buyers": manifest["buyers"], "parts": len(manifest["parts"]),
                 "by_status": manifest["by_status"], "warnings": len(res.warnings),
                 "model_version": res.lineage.get("model_version"),
                 "model_run_id": res.lineage.get("model_run_id")})


# --------------------------------------------------------------------------- parent


def tree_rss(proc: Any, cpu: dict[int, tuple[str, float]]) -> tuple[float, dict[str, float]]:
    """Sum of the RSS (MB) of ``proc`` and all its descendants, and that sum by kind
    (python driver, java, python workers); records each process's own CPU seconds so far
    (user + system) in ``cpu``."""
    import psutil

    by = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0, by
    for p in procs:
        try:
            with p.oneshot():
                rss = p.memory_info().rss / 2**20
                name = p.name()
                times = p.cpu_times()
        except psutil.Error:
            continue
        kind = "driver" if p.pid == proc.pid else "jvm" if "java" in name else "workers"
        by[kind] += rss
        cpu[p.pid] = (kind, times.user + times.system)
    return sum(by.values()), by


def run_measured(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run the child; its wall time, the tree's peak summed RSS (sampled), CPU time and
    the JSON line it emitted."""
    import psutil

    load = os.getloadavg()
    started = dt.datetime.now().isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    cmd = [common.PYTHON, str(HERE), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        proc = psutil.Process(popen.pid)
        peak, peak_by, max_by = 0.0, {}, {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
        samples = 0
        cpu: dict[int, tuple[str, float]] = {}
        while True:
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            total, by = tree_rss(proc, cpu)
            samples += 1
            if total > peak:
                peak, peak_by = total, by
            for k, v in by.items():
                max_by[k] = max(max_by[k], v)
            if time.perf_counter() - t0 > timeout:
                for p in proc.children(recursive=True):
                    p.kill()
                popen.kill()
                os.wait4(popen.pid, 0)
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s")
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{stderr[-4000:]}")
    reported: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(common.RESULT_PREFIX):
            reported = json.loads(line[len(common.RESULT_PREFIX):])
    return {"wall_s": wall, "tree_peak_rss_mb": peak, "tree_peak_split_mb": peak_by,
            "max_rss_by_kind_mb": max_by, "samples": samples,
            "cpu_s": sum(c for _, c in cpu.values()),
            "cpu_by_kind_s": {k: sum(c for kk, c in cpu.values() if kk == k)
                              for k in ("driver", "jvm", "workers")},
            "processes": len(cpu), "cpu_reaped_s": usage.ru_utime + usage.ru_stime,
            "load_before": [round(x, 2) for x in load], "started": started,
            "commit": commit, "child": reported}


def fix_model() -> dict[str, Any]:
    """Copy the demo's model folder to :data:`MODEL` (replacing an older copy when the
    source is another model); returns its ``registry.json``."""
    src = json.loads((SOURCE_MODEL / "registry.json").read_text())
    if (MODEL / "registry.json").exists():
        have = json.loads((MODEL / "registry.json").read_text())
        if have.get("model_sha256") == src.get("model_sha256"):
            return have
        shutil.rmtree(MODEL)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SOURCE_MODEL, MODEL)
    return src


def warm_page_cache(path: Path) -> float:
    t0 = time.perf_counter()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass
    return time.perf_counter() - t0


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", common.PYTHON)
    env.setdefault("PYSPARK_DRIVER_PYTHON", common.PYTHON)
    return env


def build(size: str, drop_raw: bool) -> None:
    """The synth world and its validated book (skipped when the book exists)."""
    from riskmodel import pipeline
    from riskmodel.params import parse_params

    world = world_of(size)
    book = book_path(world)
    book.parent.mkdir(parents=True, exist_ok=True)
    if (book / "manifest.json").exists():
        print(f"{book} exists", flush=True)
        return
    # measured: raw 17 bytes an invoice, the book 11, and validation's staging (Arrow IPC,
    # removed at the end) at least 92 (it had passed 47 GB at 510M invoices)
    per_invoice = 120 if not (world.path / "counts.json").exists() else 103
    need = world.n_buyers * common.INVOICES_PER_BUYER_6Y * per_invoice * 1.2
    free = shutil.disk_usage(book.parent if book.parent.exists() else common.OUT_DIR).free
    if free < need:
        raise SystemExit(f"{world.name}: about {need / 1e9:.0f} GB of disk needed while "
                         f"validating, {free / 1e9:.0f} GB free")
    counts = common.ensure_world(world)
    print(f"[validate] {world.name}: {counts['invoices']:,} invoices ...", flush=True)
    if book.exists():
        shutil.rmtree(book)
    book.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = pipeline.validate(world.path, book, parse_params({}))
    print(f"[validate] {time.perf_counter() - t0:.0f} s: "
          f"{json.dumps(res.report['tables'], default=str)}", flush=True)
    if drop_raw:
        shutil.rmtree(world.path)
        print(f"removed {world.path}", flush=True)


def summarise(size: str, engine: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    buyers = runs[0]["child"]["buyers"]
    walls = [r["wall_s"] for r in runs]
    lib = [r["child"]["seconds"] for r in runs]
    stages: dict[str, float] = {}
    for name in runs[0]["child"]["stages"]:
        stages[name] = common.median([r["child"]["stages"].get(name, float("nan"))
                                      for r in runs])
    wall = common.median(walls)
    return {
        "size": size, "engine": engine, "buyers": buyers, "runs": len(runs),
        "wall_s": wall, "wall_runs": walls, "library_s": common.median(lib),
        "library_runs": lib, "buyers_per_s": buyers / wall,
        "buyers_per_s_library": buyers / common.median(lib),
        "stages_s": stages,
        "tree_peak_rss_mb": common.median([r["tree_peak_rss_mb"] for r in runs]),
        "tree_peak_rss_runs": [r["tree_peak_rss_mb"] for r in runs],
        "vmhwm_mb": common.median([r["child"]["peak_rss_mb"] for r in runs]),
        "cpu_s": common.median([r["cpu_s"] for r in runs]),
        "buyers_per_cpu_s": buyers / common.median([r["cpu_s"] for r in runs]),
        "load_before": [r["load_before"][0] for r in runs],
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for s in rows:
        st = s["stages_s"]
        split = ", ".join(f"{k} {v:.1f}" for k, v in st.items())
        out.append([f"{s['buyers']:,}", s["engine"],
                    "/".join(f"{v:.1f}" for v in s["wall_runs"]), s["wall_s"],
                    s["buyers_per_s"], s["library_s"], split, s["tree_peak_rss_mb"],
                    s["vmhwm_mb"], s["cpu_s"],
                    "/".join(f"{v:.1f}" for v in s["load_before"])])
    return common.md_table(["buyers", "engine", "wall s (runs)", "wall s (median)",
                            "buyers/s", "library s", "stages s (median)",
                            "tree peak RSS MB", "own VmHWM MB", "CPU s", "load avg before"],
                           out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=ENGINES)
    ap.add_argument("--book", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sizes", default="117k,1m")
    ap.add_argument("--repeats", default="3", help="one number, or one per size")
    ap.add_argument("--engines", default="local,spark")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--explain", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--build", help="make the book of this size (117k, 1m, 5m) and stop")
    ap.add_argument("--drop-raw", action="store_true",
                    help="with --build: remove the raw world once the book is validated")
    ap.add_argument("--quick", action="store_true", help="117k, 1 run of each engine")
    ap.add_argument("--tag", default="score")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.book, args.out, args.spark_master, args.explain)
        return
    if args.build:
        build(args.build, args.drop_raw)
        return
    if args.quick:
        args.sizes, args.repeats, args.tag = "117k", "1", "score_quick"
    sizes = args.sizes.split(",")
    reps = [int(r) for r in args.repeats.split(",")]
    reps = reps * len(sizes) if len(reps) == 1 else reps
    engines = args.engines.split(",")
    env = child_env()
    model_info = fix_model()
    for size in sizes:
        if not (book_path(world_of(size)) / "manifest.json").exists():
            raise SystemExit(f"no book for {size}: run --build {size} first")

    def variant_args(engine: str, size: str) -> list[str]:
        book = book_path(world_of(size))
        out = SCORES_DIR / f"{book.name}_{engine}"
        return ["--child", engine, "--book", str(book), "--out", str(out),
                "--spark-master", args.spark_master, "--explain", str(args.explain)]

    def clean(engine: str, size: str) -> None:
        out = SCORES_DIR / f"{book_path(world_of(size)).name}_{engine}"
        if out.exists():
            shutil.rmtree(out)

    if not args.no_warmup:
        small = min((s for s in SIZES if (book_path(world_of(s)) / "manifest.json").exists()),
                    key=SIZES.get)
        clean("local", small)
        r = run_measured(variant_args("local", small), env, args.timeout)
        print(f"warm-up (local, {small}): {r['wall_s']:.1f} s", flush=True)
    prior = common.RESULTS_DIR / f"{args.tag}.json"
    merged = json.loads(prior.read_text())["results"] if prior.exists() else {}
    for size, n_rep in zip(sizes, reps, strict=True):
        book = book_path(world_of(size))
        print(f"== {size}: {book.name} (page cache warmed in "
              f"{warm_page_cache(book):.1f} s)", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        for rep in range(n_rep):
            for engine in engines:
                clean(engine, size)
                r = run_measured(variant_args(engine, size), env, args.timeout)
                clean(engine, size)
                runs[engine].append(r)
                c = r["child"]
                split = ", ".join(f"{k} {v:.1f}" for k, v in c["stages"].items())
                print(f"  [{rep + 1}/{n_rep}] {engine}: wall {r['wall_s']:.1f} s, library "
                      f"{c['seconds']:.1f} s ({split}), "
                      f"{c['buyers']:,} buyers, tree peak RSS {r['tree_peak_rss_mb']:.0f} MB "
                      f"(own {c['peak_rss_mb']:.0f}), CPU {r['cpu_s']:.0f} s, "
                      f"load before {r['load_before'][0]:.2f}", flush=True)
        merged[size] = {e: {"summary": summarise(size, e, rs), "runs": rs}
                        for e, rs in runs.items()}
        common.save_results(args.tag, {"results": merged, "spark_master": args.spark_master,
                                       "explain": args.explain, "model": model_info})
    rows = [merged[s][e]["summary"] for s in SIZES if s in merged for e in ENGINES
            if e in merged[s]]
    print(table(rows))
    print(f"saved {common.RESULTS_DIR / (args.tag + '.json')}")


if __name__ == "__main__":
    main()
