"""The master scale: ten grades by PD band, plus grade D for buyers in default."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEFAULT_GRADE = "D"


class MasterScale:
    """Grade ``k`` (1 best .. 10 worst) holds PDs in ``(upper[k-2], upper[k-1]]``."""

    def __init__(self, upper_bounds: Sequence[float]) -> None:
        bounds = np.asarray(upper_bounds, dtype=float)
        if bounds.ndim != 1 or len(bounds) < 2 or np.any(np.diff(bounds) <= 0):
            raise ValueError("master scale bounds must be strictly increasing")
        if bounds[-1] != 1.0 or bounds[0] <= 0:
            raise ValueError("master scale bounds must be > 0 and end at 1.0")
        self.upper_bounds = bounds

    @property
    def grades(self) -> list[str]:
        return [str(k) for k in range(1, len(self.upper_bounds) + 1)]

    def bands(self) -> pd.DataFrame:
        lower = np.concatenate([[0.0], self.upper_bounds[:-1]])
        return pd.DataFrame({"grade": self.grades, "pd_lower": lower,
                             "pd_upper": self.upper_bounds})

    def grade(self, pd_values: np.ndarray, in_default: np.ndarray | None = None) -> np.ndarray:
        idx = np.searchsorted(self.upper_bounds, np.asarray(pd_values, dtype=float), side="left")
        idx = np.minimum(idx, len(self.upper_bounds) - 1)
        grades = np.array(self.grades, dtype=object)[idx]
        if in_default is not None:
            grades[np.asarray(in_default, dtype=bool)] = DEFAULT_GRADE
        return grades

    def to_dict(self) -> dict[str, list[float]]:
        return {"upper_bounds": self.upper_bounds.tolist()}
