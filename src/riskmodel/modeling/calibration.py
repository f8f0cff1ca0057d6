"""Probability calibration of the raw LightGBM margin: isotonic or Platt, fit on a window the
model was not trained on. Both are monotone non-decreasing in the margin, so the order of
buyers (and any monotone constraint of the model) survives calibration."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

PD_FLOOR = 1e-5  # the lowest PD the model gives a live buyer (a 0.001% probability)


class Calibrator:
    """Maps a raw margin (log-odds) to a probability of default.

    scikit-learn contract: ``__init__`` stores, ``fit`` learns ``params_``, ``predict``
    checks it is fitted. Serialises to plain JSON-able dicts (no pickles in model files).
    """

    def __init__(self, method: Literal["isotonic", "platt"] = "isotonic") -> None:
        self.method = method

    def fit(self, margin: np.ndarray, y: np.ndarray) -> Calibrator:
        margin = np.asarray(margin, dtype=float)
        y = np.asarray(y, dtype=float)
        if len(margin) != len(y) or len(y) == 0:
            raise ValueError("calibration needs as many labels as margins, and at least one")
        if not (0 < y.sum() < len(y)):
            raise ValueError("calibration needs both good and bad outcomes in its window")
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=PD_FLOOR, y_max=1.0 - PD_FLOOR, out_of_bounds="clip",
                                     increasing=True)
            iso.fit(margin, y)
            self.params_: dict[str, Any] = {
                "method": "isotonic",
                "x": iso.X_thresholds_.tolist(),
                "y": iso.y_thresholds_.tolist(),
            }
        elif self.method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000)
            lr.fit(margin.reshape(-1, 1), y)
            self.params_ = {"method": "platt", "a": float(lr.coef_[0, 0]),
                            "b": float(lr.intercept_[0])}
        else:
            raise ValueError(f"unknown calibration method {self.method!r}: isotonic or platt")
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise RuntimeError("Calibrator is not fitted: call fit() first")
        margin = np.asarray(margin, dtype=float)
        p = self.params_
        if p["method"] == "isotonic":
            out = np.interp(margin, p["x"], p["y"])
        else:
            out = 1.0 / (1.0 + np.exp(-(p["a"] * margin + p["b"])))
        shift = float(p.get("shift", 0.0))
        if shift:
            out = np.clip(out, PD_FLOOR, 1.0 - PD_FLOOR)
            out = 1.0 / (1.0 + np.exp(-(np.log(out / (1.0 - out)) + shift)))
        return np.clip(out, PD_FLOOR, 1.0 - PD_FLOOR)  # PD 1 is for buyers in default

    def shifted(self, shift: float) -> Calibrator:
        """This calibration with ``shift`` added to the log-odds of every PD (a level
        adjustment; monotone, so the order of buyers is unchanged)."""
        cal = Calibrator(self.method)
        cal.params_ = {**self.to_dict(), "shift": float(shift)}
        return cal

    def to_dict(self) -> dict[str, Any]:
        if not hasattr(self, "params_"):
            raise RuntimeError("Calibrator is not fitted")
        return dict(self.params_)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        cal = cls(data["method"])
        cal.params_ = dict(data)
        return cal
