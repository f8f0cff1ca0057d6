"""Training cost of the current recipe against the earlier single fit: wall time and peak RSS
of ``train_model`` at several world sizes.

*new*: the current ``riskmodel.modeling.training.train_model`` with the current params.yaml
(capacity search over ``train.search`` on ``train.search_folds`` walk-forward folds, the
winner refit on every labelled as-of date, cross-fitted calibration);
*old*: the same function of an earlier checkout (``--old-src``, its own ``--old-params``):
one LightGBM fit with early stopping, calibrated on the validation dates.

Each world is ``riskmodel synth --buyers N --start 2020-01-01 --end 2024-12-31 --seed 7``
(business cycles on, the command line's default), validated to a book and turned into
features and labels once, with the current code, and cached under
``bench/out/data/training_<N>b``. Every measured run is a fresh process that reads those two
Parquet files with its own version's readers and calls its own version's ``train_model``;
the variants run in turn (old, new, old, new, ...).

    .venv/bin/python bench/bench_training.py --buyers 50000,500000 --repeats 3,1 \\
        --old-src /path/to/old/src --old-params /path/to/old/params.yaml

The new recipe peaks at about 3 GB at 50k buyers and 14 GB at 250k (about linear in the
panel): 500k buyers need about 27 GB free. Saves ``bench/out/results/<tag>.json`` after
every run (each run's stage timings included) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ROOT = common.BENCH_DIR.parent
BIN = Path(sys.executable).parent
START, END, SEED = "2020-01-01", "2024-12-31", 7


# --------------------------------------------------------------------------- the worlds


def world_dir(buyers: int) -> Path:
    return common.DATA_DIR / f"training_{buyers}b"


def ensure_inputs(buyers: int, params: Path, log: Any = print) -> dict[str, Any]:
    """Synth, validate, features and labels of the ``buyers`` world, once (the current code,
    through the command line); later calls read ``prepared.json``."""
    import psutil

    d = world_dir(buyers)
    marker = d / "prepared.json"
    if marker.exists():
        return json.loads(marker.read_text())
    d.mkdir(parents=True, exist_ok=True)
    cli = str(BIN / "riskmodel")
    steps = [
        ("synth", [cli, "synth", "--out", "raw", "--buyers", str(buyers), "--start", START,
                   "--end", END, "--seed", str(SEED)]),
        ("validate", [cli, "validate", "raw", "--out", "book", "--params", str(params)]),
        ("features", [cli, "features", "book", "--out", "features.parquet", "--params",
                      str(params)]),
        ("labels", [cli, "labels", "book", "--out", "labels.parquet", "--params",
                    str(params)]),
    ]
    seconds: dict[str, float] = {}
    for name, cmd in steps:
        done = {"synth": d / "raw" / "truth.parquet", "validate": d / "book",
                "features": d / "features.parquet", "labels": d / "labels.parquet"}[name]
        if done.exists() or (name == "validate" and (d / "features.parquet").exists()):
            continue
        log(f"[prepare {buyers:,}] {name} ...  (available memory "
            f"{psutil.virtual_memory().available / 2**30:.1f} GiB)")
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=d, check=True, stdout=subprocess.DEVNULL)
        seconds[name] = round(time.perf_counter() - t0, 1)
        log(f"[prepare {buyers:,}] {name}: {seconds[name]:.0f} s")
    # counted in a fresh process, so the parent does not keep the panel's memory
    counts = subprocess.run([sys.executable, __file__, "--counts", str(d)], check=True,
                            capture_output=True, text=True).stdout.splitlines()[-1]
    info = {"buyers": buyers, "seconds": seconds, **json.loads(counts)}
    marker.write_text(json.dumps(info, indent=2))
    return info


def panel_counts(d: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from riskmodel.modeling.training import build_panel, trainable
    from riskmodel.pipeline import read_features, read_labels

    feats = read_features(d / "features.parquet")
    panel = build_panel(feats, read_labels(d / "labels.parquet"))
    return {"panel_rows": len(panel), "labelled_rows": int(trainable(panel).sum()),
            "as_of_dates": int(panel["as_of"].nunique()),
            "feature_columns": pq.read_schema(d / "features.parquet").names.__len__(),
            "invoices": pq.ParquetDataset(d / "raw" / "invoices").read(["amount"]).num_rows}


# --------------------------------------------------------------------------- the child


def child(variant: str, d: Path, params_path: Path) -> None:
    """One measured run: read the features and labels, ``train_model``, report."""
    t_start = time.perf_counter()
    import lightgbm as lgb

    import riskmodel.modeling.training as training
    from riskmodel.params import load_params
    from riskmodel.pipeline import read_features, read_labels

    t_imported = time.perf_counter()
    params = load_params(params_path)
    feats = read_features(d / "features.parquet")
    labels = read_labels(d / "labels.parquet")
    t_read = time.perf_counter()

    # where the time goes: every LightGBM fit, and the stages of the recipe where this
    # version has them (module attributes, looked up by train_model at call time)
    phases: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases.setdefault(name, []).append(time.perf_counter() - t0)
        return wrapper

    lgb_train = lgb.train
    lgb.train = timed("lgb.train", lgb_train)
    for name in ("build_panel", "split_panel", "feature_stability", "capacity_search",
                 "crossfit_calibration", "_fit_early", "_fit_fixed", "design_matrix"):
        if hasattr(training, name):
            setattr(training, name, timed(name, getattr(training, name)))
    t0 = time.perf_counter()
    res = training.train_model(feats, labels, params)
    t_train = time.perf_counter() - t0
    lgb.train = lgb_train

    search = getattr(res, "search", None) or []
    refit = getattr(res, "refit", None)
    by_meta = 1
    if search:
        by_meta = sum(len(r["fold_auc"]) for r in search)
        if refit:
            by_meta += 1 + int(refit["calibration"]["folds"])
    common.emit({
        "variant": variant,
        "riskmodel": str(Path(training.__file__).resolve().parents[2]),
        "seconds": round(t_train, 3),
        "import_s": round(t_imported - t_start, 3),
        "read_s": round(t_read - t_imported, 3),
        "child_s": round(time.perf_counter() - t_start, 3),
        "fits": len(phases.get("lgb.train", [])),
        "fits_by_metadata": by_meta,
        "phases": {k: {"calls": len(v), "seconds": round(sum(v), 3),
                       "each": [round(x, 3) for x in v]} for k, v in phases.items()},
        "candidates": len(search) or 1,
        "folds": len(search[0]["fold_auc"]) if search else 1,
        "crossfit_folds": int(refit["calibration"]["folds"]) if refit else 0,
        "trees": int(res.best_iteration),
        "train_rows": len(res.split.train), "valid_rows": len(res.split.valid),
        "refit_rows": int(refit["rows"]) if refit else 0,
    })


# --------------------------------------------------------------------------- the parent


@contextlib.contextmanager
def pythonpath(src: Path) -> Iterator[None]:
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def summarise(runs: list[common.Run]) -> dict[str, Any]:
    c = runs[0].child
    phase_names = sorted({k for r in runs for k in r.child.get("phases", {})})
    return {
        "runs": len(runs),
        "train_model_s": common.med(runs, "seconds"),
        "train_model_s_runs": common.spread(runs, "seconds"),
        "child_wall_s": common.med(runs, "wall_s"),
        "read_s": common.med(runs, "read_s"),
        "peak_rss_mb": common.med(runs, "peak_rss_mb"),
        "peak_rss_mb_runs": sorted(round(r.peak_rss_mb) for r in runs),
        "fits": c.get("fits"), "fits_by_metadata": c.get("fits_by_metadata"),
        "candidates": c.get("candidates"), "folds": c.get("folds"),
        "crossfit_folds": c.get("crossfit_folds"), "trees": c.get("trees"),
        "train_rows": c.get("train_rows"), "refit_rows": c.get("refit_rows"),
        "riskmodel": c.get("riskmodel"),
        "phases_s": {p: common.median([r.child["phases"][p]["seconds"] for r in runs
                                       if p in r.child.get("phases", {})])
                     for p in phase_names},
        "all": [{"wall_s": round(r.wall_s, 2), **r.child} for r in runs],
    }


def table(results: dict[str, Any]) -> str:
    rows = []
    for size, res in results.items():
        for variant in ("old", "new"):
            m = res["variants"].get(variant)
            if not m:
                continue
            rows.append([f"{int(size):,}", f"{res['world']['panel_rows']:,}", variant,
                         m["fits"], m["runs"], m["train_model_s"], m["child_wall_s"],
                         m["peak_rss_mb"]])
    return common.md_table(["buyers", "panel rows", "variant", "fits", "runs",
                            "train_model s (median)", "child s (median)", "peak RSS MB"],
                           rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buyers", default="50000,500000")
    ap.add_argument("--repeats", default="3,1", help="per size, comma-separated")
    ap.add_argument("--variants", default="old,new")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--old-src", type=Path, default=None,
                    help="src/ folder of the earlier riskmodel checkout")
    ap.add_argument("--old-params", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--tag", default="training")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-params", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--counts", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.counts:
        print(json.dumps(panel_counts(a.counts)))
        return
    if a.child:
        child(a.child, a.dir, a.child_params)
        return

    import psutil

    sizes = [int(float(s)) for s in a.buyers.split(",")]
    reps = [int(r) for r in a.repeats.split(",")]
    reps += [reps[-1]] * (len(sizes) - len(reps))
    variants = a.variants.split(",")
    if "old" in variants and (a.old_src is None or a.old_params is None):
        raise SystemExit("the old variant needs --old-src and --old-params")
    src = {"new": ROOT / "src", "old": a.old_src}
    prm = {"new": a.params.resolve(), "old": a.old_params.resolve() if a.old_params else None}
    results: dict[str, Any] = {}
    for size, repeats in zip(sizes, reps, strict=True):
        world = ensure_inputs(size, a.params.resolve())
        print(f"[{size:,} buyers] {world['invoices']:,} invoices, {world['panel_rows']:,} "
              f"panel rows ({world['labelled_rows']:,} labelled, {world['as_of_dates']} "
              "as-of dates)", flush=True)
        runs: dict[str, list[common.Run]] = {v: [] for v in variants}
        entry: dict[str, Any] = {"world": world, "variants": {}, "available_gb_before": []}
        results[str(size)] = entry
        for rep in range(repeats):
            for v in variants:
                avail = psutil.virtual_memory().available / 2**30
                entry["available_gb_before"].append(round(avail, 1))
                with pythonpath(Path(src[v]).resolve()):
                    r = common.run_child(__file__, ["--child", v, "--dir", world_dir(size),
                                                    "--child-params", prm[v]], a.timeout)
                r.variant = v
                runs[v].append(r)
                print(f"  [{rep + 1}/{repeats}] {v}: train_model {r.child['seconds']:.1f} s, "
                      f"child {r.wall_s:.1f} s, peak RSS {r.peak_rss_mb:,.0f} MB, "
                      f"{r.child['fits']} fits (available before: {avail:.1f} GiB)",
                      flush=True)
                entry["variants"][v] = summarise(runs[v])
                common.save_results(a.tag, {"params": str(a.params), "old_src": str(a.old_src),
                                            "old_params": str(a.old_params),
                                            "results": results})
    print()
    print(table(results))


if __name__ == "__main__":
    main()
