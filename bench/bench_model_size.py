"""AUC against model size on the demo pipeline's features and labels.

Explaining a buyer with exact TreeSHAP costs about trees x leaves x depth^2, so the smallest
model that holds the quality targets is the one to ship. This trains the model of params.yaml
with several tree shapes on ``data/processed`` (run ``make demo`` first) and prints a table.

    .venv/bin/python bench/bench_model_size.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from riskmodel.modeling.evaluation import evaluate
from riskmodel.modeling.training import train_model
from riskmodel.params import parse_params
from riskmodel.pipeline import read_features, read_labels

SHAPES = [  # (num_leaves, max_depth, min_child_samples)
    (4, 2, 100),
    (7, 3, 100),
    (15, 5, 100),
    (31, -1, 50),
]


def main(root: Path = Path(".")) -> None:
    feats = read_features(root / "data/processed/features.parquet")
    labels = read_labels(root / "data/processed/labels.parquet")
    truth = pd.read_parquet(root / "data/raw/truth.parquet")
    truth["as_of"] = pd.to_datetime(truth["as_of"]).astype("datetime64[s]")
    base = yaml.safe_load((root / "params.yaml").read_text())
    rows = []
    for leaves, depth, min_child in SHAPES:
        raw = json.loads(json.dumps(base))
        raw["train"].update(num_leaves=leaves, max_depth=depth, min_child_samples=min_child)
        params = parse_params(raw)
        t0 = time.perf_counter()
        res = train_model(feats, labels, params)
        seconds = time.perf_counter() - t0
        split, model = res.split, res.model
        drop = ["bad", "in_default"]
        test_pred = model.predict(split.test.drop(columns=drop))
        train_pred = model.predict(split.train.drop(columns=drop))
        oracle = split.test[["buyer_id", "as_of"]].merge(
            truth, on=["buyer_id", "as_of"], how="left")["pd_true"].to_numpy()
        ev = evaluate(split.test, test_pred, split.train, train_pred, model.spec.names,
                      model.scale, oracle_pd=oracle,
                      asset_correlation=params.evaluate.asset_correlation)
        trees = model.booster.num_trees()
        total_leaves = sum(t["num_leaves"] for t in model.booster.dump_model()["tree_info"])
        rows.append({"num_leaves": leaves, "max_depth": depth, "trees": trees,
                     "total_leaves": total_leaves, "test_auc": ev.metrics["test_auc"],
                     "auc_to_oracle": ev.metrics["auc_to_oracle"],
                     "test_ece": ev.metrics["test_ece"], "train_seconds": seconds})
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
