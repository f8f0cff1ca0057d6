"""Rows per second of exact per-feature contributions (path-dependent TreeSHAP) of a demo-like
PD model: LightGBM's ``pred_contrib``, shap's ``TreeExplainer``, riskmodel's
``explain.contributions`` (tables of decision patterns + one numba pass), and plain raw-score
prediction for comparison.

The model is demo-shaped: 73 features (2 categorical, codes as ``design_matrix`` writes them,
NaN for missing), a LightGBM binary booster of ``--leaves`` leaves, depth ``--depth``,
``--trees`` trees, trained once on synthetic rows and cached under
``bench/out/data/explain``. Each measured run is a fresh process that loads the model,
generates the rows (seeded, not timed) and times one call on all rows; the fast route's time
is reported in full and split into set-up (building its tables from the booster and loading
numba's compiled kernel from its cache, written by a warm-up process first) and compute. Variants run in turn (A, B, C, D, A, ...);
``pred_contrib`` and ``shap`` only up to ``--slow-max-rows`` rows.

    .venv/bin/python bench/bench_explain.py --rows 100000,1000000 --repeats 3

Saves ``bench/out/results/explain.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

N_FEATURES = 73
CATEGORICAL = (0, 1)  # industry-like (30 codes) and country-like (20 codes)
N_CATS = (30, 20)
VARIANTS = ("predict", "pred_contrib", "shap", "fast")
SLOW = ("pred_contrib", "shap")


def make_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 2:20] = np.round(np.abs(x[:, 2:20]) * 30)  # day-count-like, many ties
    x[:, 20:30] = np.where(rng.random((n, 10)) < 0.4, 0.0, rng.random((n, 10)))  # shares
    for col, k in zip(CATEGORICAL, N_CATS, strict=True):
        x[:, col] = rng.integers(0, k, n)
    x[rng.random((n, N_FEATURES)) < 0.08] = np.nan
    return x


def model_path(leaves: int, depth: int, trees: int) -> Path:
    return common.DATA_DIR / "explain" / f"model_L{leaves}_D{depth}_T{trees}.txt"


def ensure_model(leaves: int, depth: int, trees: int) -> Path:
    import lightgbm as lgb

    path = model_path(leaves, depth, trees)
    if path.exists():
        return path
    x = make_rows(100_000, seed=1)
    rng = np.random.default_rng(2)
    z = (np.nan_to_num(x[:, 2:8]).sum(axis=1) / 60 + np.nan_to_num(x[:, 20:24]).sum(axis=1)
         + 0.5 * (np.nan_to_num(x[:, 0]) % 4 == 0) + 0.4 * np.isnan(x[:, 30])
         + 0.3 * np.nan_to_num(x[:, 40]) + rng.normal(size=len(x)))
    y = (z > np.quantile(z, 0.9)).astype(int)
    params = {"objective": "binary", "num_leaves": leaves, "max_depth": depth,
              "learning_rate": 0.05, "min_data_in_leaf": 100, "bagging_fraction": 0.8,
              "bagging_freq": 1, "feature_fraction": 0.8, "seed": 42, "deterministic": True,
              "num_threads": 2, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=list(CATEGORICAL)),
                        trees)
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))
    return path


def child(variant: str, model: Path, rows: int) -> None:
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(model))
    x = make_rows(rows, seed=3)
    t0 = time.perf_counter()
    if variant == "predict":
        out = booster.predict(x, raw_score=True)
    elif variant == "pred_contrib":
        out = booster.predict(x, pred_contrib=True)
    elif variant == "shap":
        import shap

        explainer = shap.TreeExplainer(booster)
        t0 = time.perf_counter()  # the explainer's set-up (parsing trees) is not counted
        out = explainer.shap_values(x)
    elif variant in ("fast", "warmup"):
        from riskmodel.explain.contributions import Explainer

        explainer = Explainer(booster)
        explainer.contributions(x[:1])  # loads numba's compiled kernel from its cache
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = explainer.contributions(x)
        compute = time.perf_counter() - t1
    else:
        raise SystemExit(f"unknown variant {variant}")
    seconds = time.perf_counter() - t0
    if variant not in ("fast", "warmup"):
        setup, compute = 0.0, seconds
    common.emit({"seconds": seconds, "setup_s": setup, "compute_s": compute, "rows": rows,
                 "checksum": float(np.nansum(out))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=[*VARIANTS, "warmup"])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--leaves", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--trees", type=int, default=250)
    ap.add_argument("--slow-max-rows", type=int, default=100_000,
                    help="run pred_contrib and shap only up to this many rows")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, int(args.rows))
        return
    model = ensure_model(args.leaves, args.depth, args.trees)
    script = Path(__file__).resolve()
    common.run_child(script, ["--child", "warmup", "--model", str(model), "--rows", "1000"])
    results: dict[str, dict[str, list[float]]] = {}
    table = []
    for n in [int(v) for v in args.rows.split(",")]:
        variants = [(v, script, ["--child", v, "--model", str(model), "--rows", str(n)])
                    for v in VARIANTS if v not in SLOW or n <= args.slow_max_rows]
        print(f"{n:,} rows:")
        runs = common.run_interleaved(variants, args.repeats)
        results[str(n)] = {v: [r.child for r in rs] for v, rs in runs.items()}
        for v, rs in runs.items():
            secs = common.med(rs, "seconds")
            comp = common.med(rs, "compute_s")
            table.append([f"{n:,}", v, secs, n / secs, common.med(rs, "setup_s"), comp,
                          n / comp, common.spread(rs, "seconds"),
                          common.med(rs, "peak_rss_mb")])
    meta = {"leaves": args.leaves, "depth": args.depth, "trees": args.trees,
            "features": N_FEATURES, "categorical": len(CATEGORICAL)}
    path = common.save_results("explain", {"model": meta, "seconds": results})
    print(json.dumps(meta))
    print(common.md_table(["rows", "variant", "median s (all)", "rows/s (all)", "set-up s",
                           "compute s", "rows/s (compute)", "runs (s, all)", "peak RSS MB"],
                          table))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
