"""The fitted PD model as one object: LightGBM booster, calibrator, master scale and the
feature specification. Pure Python and files; MLflow wraps it in ``registry``.

``predict`` takes the frame that ``riskmodel features`` writes and returns ``pd``, ``grade``
and ``margin`` row for row. Its ``status`` column is required (``active`` or ``in_default``;
rows in default get grade D and PD 1, and without the column a defaulted buyer would be
scored as live); ``buyer_id`` and ``as_of`` are optional; any other column must be a model
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
from riskmodel.modeling.domain import DomainProfile
from riskmodel.modeling.masterscale import DEFAULT_GRADE, MasterScale

#: the folder, inside an MLflow pyfunc model directory, that holds the model files
ARTIFACT_KEY = "riskmodel"
FILES = {
    "booster": "booster.txt",
    "calibration": "calibration.json",
    "master_scale": "master_scale.json",
    "features": "features.json",
}
#: model files that a model folder may lack: written when the model has them, read when
#: present (a folder saved before the domain profile existed still loads, without one)
OPTIONAL_FILES = {
    "profile": "domain_profile.json",
}


#: the values of the ``status`` column that ``riskmodel features`` writes
STATUSES = ("active", "in_default")
IN_DEFAULT = "in_default"


class DamagedModelError(ValueError):
    """A model file exists but cannot be read (corrupt or from something else)."""


class FeatureMismatchError(ValueError):
    """The frame's columns do not match the model's features, or its ``status`` column is
    missing or holds a value other than :data:`STATUSES`."""


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


def default_flags(frame: pd.DataFrame) -> np.ndarray:
    """Boolean array: which rows are of buyers in default (``status == 'in_default'``).

    Raises :class:`FeatureMismatchError` when ``status`` is missing, empty or unknown: a
    defaulted buyer must never be scored as a live one because its status was lost."""
    expected = " or ".join(repr(s) for s in STATUSES)
    if "status" not in frame.columns:
        raise FeatureMismatchError(
            f"missing column 'status' ({expected}, as `riskmodel features` writes it): the "
            "model grades buyers in default D and cannot tell them apart without it"
        )
    status = frame["status"]
    empty = int(status.isna().sum())
    if empty:
        raise FeatureMismatchError(
            f"column 'status' is empty in {empty} of {len(frame)} rows: expected {expected}"
        )
    text = status.astype("str")
    unknown = sorted(set(text.unique()) - set(STATUSES))
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise FeatureMismatchError(
            f"column 'status' has unknown value(s) {shown}: expected {expected}"
        )
    return text.eq(IN_DEFAULT).to_numpy(dtype=bool)


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
    """A calibrated, graded PD model; ``profile`` is the training domain of its features
    (:mod:`riskmodel.modeling.domain`), None for a model saved without one."""

    def __init__(self, booster: lgb.Booster, calibrator: Calibrator, scale: MasterScale,
                 spec: FeatureSpec, profile: DomainProfile | None = None) -> None:
        self.booster = booster
        self.calibrator = calibrator
        self.scale = scale
        self.spec = spec
        self.profile = profile

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw booster score of each row (before calibration); ``status`` is not needed."""
        check_columns(frame, self.spec)
        raw = self.booster.predict(design_matrix(frame, self.spec), raw_score=True)
        return np.asarray(raw, dtype=np.float64)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``pd``, ``grade`` and ``margin`` per row; needs ``status`` (see
        :func:`default_flags`) and every model feature."""
        in_default = default_flags(frame)
        margin = self.margin(frame)
        pdv = self.calibrator.predict(margin)
        pdv = np.where(in_default, 1.0, pdv)
        grades = self.scale.grade(pdv, in_default)
        return pd.DataFrame({"pd": pdv, "grade": pd.Series(grades, dtype="str").to_numpy(),
                             "margin": margin}, index=frame.index)

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> dict[str, str]:
        """Write the four files (and the domain profile, when the model has one); returns
        their SHA-256, the model's fingerprint."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / FILES["booster"]))
        _write_json(directory / FILES["calibration"], self.calibrator.to_dict())
        _write_json(directory / FILES["master_scale"], self.scale.to_dict())
        _write_json(directory / FILES["features"], self.spec.to_dict())
        written = dict(FILES)
        if self.profile is not None:
            _write_json(directory / OPTIONAL_FILES["profile"], self.profile.to_dict())
            written["profile"] = OPTIONAL_FILES["profile"]
        return {k: sha256(directory / f) for k, f in written.items()}

    @classmethod
    def load(cls, directory: str | Path) -> RiskModel:
        directory = Path(directory)
        missing = [f for f in FILES.values() if not (directory / f).exists()]
        if missing:
            raise FileNotFoundError(f"{directory}: not a riskmodel model folder (no {missing})")
        def damaged(name: str, exc: Exception) -> DamagedModelError:
            return DamagedModelError(f"{directory / name}: damaged model file ({exc}); train "
                                     "the model again or restore the folder")

        try:
            booster = lgb.Booster(model_file=str(directory / FILES["booster"]))
        except lgb.basic.LightGBMError as exc:
            raise damaged(FILES["booster"], exc) from exc
        parts: dict[str, Any] = {}
        for key, build in (("calibration", Calibrator.from_dict),
                           ("master_scale", lambda d: MasterScale(d["upper_bounds"])),
                           ("features", FeatureSpec.from_dict)):
            try:
                parts[key] = build(_read_json(directory / FILES[key]))
            except (ValueError, KeyError, TypeError) as exc:
                raise damaged(FILES[key], exc) from exc
        profile = None
        if (directory / OPTIONAL_FILES["profile"]).exists():
            try:
                profile = DomainProfile.from_dict(
                    _read_json(directory / OPTIONAL_FILES["profile"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise damaged(OPTIONAL_FILES["profile"], exc) from exc
        return cls(booster, parts["calibration"], parts["master_scale"], parts["features"],
                   profile)


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


def content_hash(directory: str | Path) -> str:
    """SHA-256 over the names and bytes of the model files (:data:`FILES`, then those of
    :data:`OPTIONAL_FILES` that are present, in a fixed order) in ``directory``: equal exactly
    when the saved models are identical (a folder without the optional files hashes as it did
    before they existed). Other files beside them (``training.json``, which holds the
    training date) do not count."""
    directory = Path(directory)
    h = hashlib.sha256()
    names = [FILES[k] for k in sorted(FILES)]
    names += [OPTIONAL_FILES[k] for k in sorted(OPTIONAL_FILES)
              if (directory / OPTIONAL_FILES[k]).exists()]
    for name in names:
        h.update(f"{name}\0{sha256(directory / name)}\n".encode())
    return h.hexdigest()


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


__all__ = ["DEFAULT_GRADE", "OPTIONAL_FILES", "STATUSES", "FeatureMismatchError", "FeatureSpec", "RiskModel",
           "content_hash", "default_flags", "load_model_dir", "model_files"]
