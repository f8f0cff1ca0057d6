"""Walk-forward quality of the shipped training recipe on synthetic worlds it was not tuned
on, against a plain LightGBM on the same features (and, optionally, an earlier version of
riskmodel run on the same raw data).

For each world (seeds, cycles, an industry shock before the last cut) and each of the last
``--cuts`` snapshot dates whose outcome window is observed: the book is cut to what was
known at the cut, features and labels are built there, and

* ``riskmodel``: ``train_model`` with the given params (capacity search, refit, cross-fitted
  calibration), exactly as ``riskmodel backtest`` does;
* ``plain_lgbm``: ``lightgbm.LGBMClassifier()`` with its defaults, fitted on every labelled
  live row of the cut's panel, its probabilities used as PDs;

score every live buyer at the cut and are judged on the outcomes in ``(cut, cut + 365d]``
and on the truth (``pd_true``): AUC over the oracle's, ECE over the truth's own, mean PD
over mean ``pd_true``, the worst decile's mean PD over its mean ``pd_true``.

    python bench/bench_quality.py [--buyers 20000] [--cuts 3] [--old-src /path/to/old/src]

Writes ``bench/out/results/quality.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, RESULTS_DIR
from riskmodel import pipeline
from riskmodel.data.book import CutBook
from riskmodel.data.synth import Shock, SynthConfig, write_world
from riskmodel.features import CATEGORICAL, ID_COLUMNS
from riskmodel.modeling.backtest import cut_figures
from riskmodel.modeling.training import build_panel, train_model, trainable
from riskmodel.params import load_params

START, END = dt.date(2020, 1, 1), dt.date(2024, 12, 31)
KEYS = ("auc", "auc_to_oracle", "ece", "oracle_ece", "ece_excess", "pd_to_true",
        "decile_worst_pd_to_true", "pd_to_observed")


def worlds(buyers: int) -> dict[str, SynthConfig]:
    base = {"n_buyers": buyers, "start": START, "end": END, "cycles": True}
    return {
        "seed11": SynthConfig(seed=11, **base),
        "seed23": SynthConfig(seed=23, **base),
        # a downturn of the largest industry one quarter before the last cut
        "shock7": SynthConfig(seed=7, shocks=(Shock("C", dt.date(2023, 9, 30), 0.6),), **base),
    }


def ensure(name: str, cfg: SynthConfig) -> tuple[Path, Path]:
    raw = DATA_DIR / f"quality-{name}-{cfg.n_buyers}" / "raw"
    if not (raw / "truth.parquet").exists():
        write_world(cfg, raw)
    return raw, raw / "truth.parquet"


def plain_lgbm(feats: pd.DataFrame, labs: pd.DataFrame, live: pd.DataFrame) -> np.ndarray:
    panel = build_panel(feats, labs)
    rows = panel.loc[trainable(panel)]
    cols = [c for c in feats.columns if c not in ID_COLUMNS]

    def matrix(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[cols].copy()
        for c in CATEGORICAL:
            if c in x.columns:
                x[c] = pd.Categorical(x[c].astype("str"),
                                      categories=sorted(rows[c].astype("str").unique()))
        return x

    clf = lgb.LGBMClassifier(random_state=0, verbose=-1, n_jobs=1)
    clf.fit(matrix(rows), rows["bad"].astype(int))
    return np.asarray(clf.predict_proba(matrix(live))[:, 1])


def judge(book: Any, cut: dt.date, params: Any, scored: pd.DataFrame,
          truth: pd.DataFrame) -> dict[str, float]:
    outcomes = pipeline._outcomes(book, cut, params)[["buyer_id", "bad"]]
    j = scored.merge(outcomes, on="buyer_id", how="left", validate="one_to_one")
    j = j[j["bad"].notna()]
    t = truth[truth["as_of"] == pd.Timestamp(cut)][["buyer_id", "pd_true"]]
    j = j.merge(t, on="buyer_id", how="left", validate="one_to_one")
    fig = cut_figures(j["bad"].astype(float).to_numpy(), j["pd"].to_numpy(),
                      j["pd_true"].to_numpy())
    return {k: round(float(fig[k]), 4) for k in KEYS}


def run_world(name: str, cfg: SynthConfig, params_path: Path, cuts: int,
              old_src: Path | None, old_params: Path | None) -> dict[str, Any]:
    params = load_params(params_path)
    raw, truth_path = ensure(name, cfg)
    truth = pd.read_parquet(truth_path)
    truth["as_of"] = pd.to_datetime(truth["as_of"])
    out: dict[str, Any] = {"world": name, "buyers": cfg.n_buyers, "cuts": []}
    with tempfile.TemporaryDirectory() as tmp:
        book_path = Path(tmp) / "book"
        pipeline.validate(raw, book_path, params)
        book = pipeline._open(book_path)
        for cut in pipeline.cut_dates(book, params, cuts):
            cb = CutBook(book, cut)
            f = pipeline.features(cb, Path(tmp) / "f.parquet", params)
            lab = pipeline.labels(cb, Path(tmp) / "l.parquet", params)
            feats, labs = pipeline.read_features(f.path), pipeline.read_labels(lab.path)
            live = feats[(feats["as_of"] == pd.Timestamp(cut)) & (feats["status"] == "active")]
            t0 = time.perf_counter()
            res = train_model(feats, labs, params)
            t_train = time.perf_counter() - t0
            ours = live[["buyer_id"]].assign(pd=res.model.predict(live)["pd"].to_numpy())
            peer = live[["buyer_id"]].assign(pd=plain_lgbm(feats, labs, live))
            row = {"cut": cut.isoformat(), "train_s": round(t_train, 1),
                   "riskmodel": judge(book, cut, params, ours, truth),
                   "plain_lgbm": judge(book, cut, params, peer, truth),
                   "trees": res.best_iteration,
                   "recent_level": (res.refit or {}).get("calibration", {}).get("recent_level"),
                   "capacity": next(c for c in res.search if c["chosen"])}
            out["cuts"].append(row)
            print(name, json.dumps(row), flush=True)
        if old_src is not None and old_params is not None:
            out["old"] = run_old(raw, truth_path, old_src, old_params, cuts, Path(tmp))
    return out


def run_old(raw: Path, truth: Path, old_src: Path, old_params: Path, cuts: int,
            tmp: Path) -> list[dict[str, Any]]:
    """The earlier version's own ``riskmodel backtest`` on the same raw data."""
    env = {**os.environ, "PYTHONPATH": str(old_src)}
    outdir = tmp / "old-backtest"
    run_cli = "import sys; from riskmodel.cli import app; sys.argv[0] = 'riskmodel'; app()"
    subprocess.run([sys.executable, "-c", run_cli, "backtest", str(raw), "--params",
                    str(old_params), "--cuts", str(cuts), "--truth", str(truth),
                    "--out-dir", str(outdir)], env=env, check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL)
    table = pd.read_csv(outdir / "backtest.csv")
    keep = [c for c in ("cut", "auc", "auc_to_oracle", "ece", "oracle_ece", "pd_to_true")
            if c in table.columns]
    return table[keep].round(4).to_dict("records")


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| world | cut | model | AUC / oracle | ECE - truth's ECE (pp) | mean PD / "
             "mean pd_true | worst decile PD / pd_true |", "|---|---|---|---|---|---|---|"]
    for w in results:
        old = {r["cut"]: r for r in w.get("old", [])}
        for c in w["cuts"]:
            for model in ("riskmodel", "plain_lgbm"):
                m = c[model]
                lines.append(f"| {w['world']} | {c['cut']} | {model} | {m['auc_to_oracle']:.3f}"
                             f" | {100 * m['ece_excess']:.2f} | {m['pd_to_true']:.3f} | "
                             f"{m['decile_worst_pd_to_true']:.3f} |")
            if c["cut"] in old:
                o = old[c["cut"]]
                lines.append(f"| {w['world']} | {c['cut']} | earlier version | "
                             f"{o['auc_to_oracle']:.3f} | "
                             f"{100 * (o['ece'] - o['oracle_ece']):.2f} | "
                             f"{o['pd_to_true']:.3f} | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buyers", type=int, default=20_000)
    ap.add_argument("--cuts", type=int, default=3)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--worlds", default="seed11,seed23,shock7")
    ap.add_argument("--old-src", type=Path, default=None,
                    help="src/ folder of an earlier riskmodel checkout to compare with")
    ap.add_argument("--old-params", type=Path, default=None)
    args = ap.parse_args()
    all_worlds = worlds(args.buyers)
    results = []
    for name in args.worlds.split(","):
        results.append(run_world(name, all_worlds[name], args.params, args.cuts,
                                 args.old_src, args.old_params))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
