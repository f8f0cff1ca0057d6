"""The fitted PD model as one object: LightGBM booster, calibrator, master scale and the
feature specification. Pure Python and files; MLflow wraps it in ``registry``.

``predict`` takes the frame that ``riskmodel features`` writes and returns ``pd``, ``grade``
and ``margin`` row for row. Its ``buyer_id``, ``as_of`` and ``status`` columns are recognised
(rows with status ``in_default`` get grade D and PD 1); any other column must be a model
feature, and every model feature must be there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskmodel.features import ID_COLUMNS
from riskmodel.modeling.calibration import Calibrator
from riskmodel.modeling.masterscale import DEFAULT_GRADE, MasterScale

#: the folder, inside an MLflow pyfunc model directory, that holds the model files
ARTIFACT_KEY = "riskmodel"
FILES = {
    "booster": "booster.txt",
    "calibration": "calibration.json",
    "master_scale": "master_scale.json",
    "features": "features.json",
}


class FeatureMismatchError(ValueError):
    """The frame's columns do not match the model's features."""


@dataclass(frozen=True)
class FeatureSpec:
    names: list[str]
    categories: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "categories": self.categories}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(list(data["names"]), {k: list(v) for k, v in data["categories"].items()})


def check_columns(frame: pd.DataFrame, spec: FeatureSpec) -> None:
    cols = set(frame.columns)
    missing = [c for c in spec.names if c not in cols]
    unknown = sorted(cols - set(spec.names) - set(ID_COLUMNS))
    problems = []
    if missing:
        problems.append(f"missing feature columns {missing}")
    if unknown:
        problems.append(f"columns the model does not know {unknown}")
    if problems:
        raise FeatureMismatchError("; ".join(problems))


def design_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Float matrix in the model's feature order; categoricals become their code in the
    training categories, and an unseen or missing category becomes NaN (LightGBM's missing)."""
    out = np.empty((len(frame), len(spec.names)), dtype=np.float64)
    for j, name in enumerate(spec.names):
        col = frame[name]
        if name in spec.categories:
            cats = pd.Index(spec.categories[name])
            codes = cats.get_indexer(col.astype("str").where(col.notna(), None))
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            out[:, j] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64,
                                                                   na_value=np.nan)
    return out


class RiskModel:
    """A calibrated, graded PD model."""

    def __init__(self, booster: lgb.Booster, calibrator: Calibrator, scale: MasterScale,
                 spec: FeatureSpec) -> None:
        self.booster = booster
        self.calibrator = calibrator
        self.scale = scale
        self.spec = spec

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        check_columns(frame, self.spec)
        return self.booster.predict(design_matrix(frame, self.spec), raw_score=True)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        margin = self.margin(frame)
        pdv = self.calibrator.predict(margin)
        in_default = (
            frame["status"].astype("str").eq("in_default").to_numpy()
            if "status" in frame.columns else np.zeros(len(frame), dtype=bool)
        )
        pdv = np.where(in_default, 1.0, pdv)
        grades = self.scale.grade(pdv, in_default)
        return pd.DataFrame({"pd": pdv, "grade": pd.Series(grades, dtype="str").to_numpy(),
                             "margin": margin}, index=frame.index)

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> dict[str, str]:
        """Write the four files; returns their SHA-256, the model's fingerprint."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / FILES["booster"]))
        _write_json(directory / FILES["calibration"], self.calibrator.to_dict())
        _write_json(directory / FILES["master_scale"], self.scale.to_dict())
        _write_json(directory / FILES["features"], self.spec.to_dict())
        return {k: sha256(directory / f) for k, f in FILES.items()}

    @classmethod
    def load(cls, directory: str | Path) -> RiskModel:
        directory = Path(directory)
        missing = [f for f in FILES.values() if not (directory / f).exists()]
        if missing:
            raise FileNotFoundError(f"{directory}: not a riskmodel model folder (no {missing})")
        booster = lgb.Booster(model_file=str(directory / FILES["booster"]))
        cal = Calibrator.from_dict(_read_json(directory / FILES["calibration"]))
        scale = MasterScale(_read_json(directory / FILES["master_scale"])["upper_bounds"])
        spec = FeatureSpec.from_dict(_read_json(directory / FILES["features"]))
        return cls(booster, cal, scale, spec)


def model_files(model_dir: str | Path) -> Path:
    """The model files of an MLflow pyfunc model directory (or the files folder itself)."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / "artifacts" / ARTIFACT_KEY, model_dir):
        if (candidate / FILES["booster"]).exists():
            return candidate
    raise FileNotFoundError(
        f"{model_dir}: not a riskmodel model directory (no artifacts/{ARTIFACT_KEY}/"
        f"{FILES['booster']})"
    )


def load_model_dir(model_dir: str | Path) -> RiskModel:
    """Load the model from a ``riskmodel train`` output without importing MLflow."""
    return RiskModel.load(model_files(model_dir))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["DEFAULT_GRADE", "FeatureMismatchError", "FeatureSpec", "RiskModel"]
