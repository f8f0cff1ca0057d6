"""The training domain of a model, and warnings when data are scored outside it.

A :class:`DomainProfile` is fitted on the rows a model was trained on (:func:`fit_profile`)
and saved with the model. For each numeric feature it keeps the quantile bin edges of the
training values (10 bins, fewer where quantiles coincide), the training share of rows in each
bin and the share of missing values; for each categorical feature, the categories seen and
their shares. :func:`check` compares a frame to be scored with it and returns one
:class:`DomainWarning`

* per categorical value never seen in training (``unseen_category``: the model scores it as
  missing), with the number of rows that carry it, and
* per feature whose population stability index between the training rows and the frame is
  above :data:`PSI_LIMIT` (``psi``).

The PSI is the one of :func:`riskmodel.modeling.evaluation.psi` (the same bins, the same
missing bin, the same floor on empty bins), computed from the stored shares instead of the
training rows, so a PSI means the same thing in the evaluation report and here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # model.py imports this module
    from riskmodel.modeling.model import FeatureSpec

#: PSI above which a feature is reported (the usual "significant shift" threshold)
PSI_LIMIT = 0.25
#: quantile bins of a numeric feature
BINS = 10
#: the floor of a bin share in the PSI (as in :func:`riskmodel.modeling.evaluation.psi`)
_EPS = 1e-4
#: the label of missing values among categories (as in the evaluation's PSI)
_MISSING = "<NA>"
VERSION = 1

Kind = Literal["unseen_category", "psi"]


class DomainProfileError(ValueError):
    """A stored profile cannot be read, or a frame lacks a profiled feature."""


@dataclass(frozen=True)
class NumericProfile:
    """Training distribution of one numeric feature: ``edges`` are the inner quantile cut
    points (a value ``v`` falls in bin ``searchsorted(edges, v, side='right')``), ``shares``
    the share of all training rows in each of the ``len(edges) + 1`` bins, ``missing`` the
    share of missing values (``sum(shares) + missing == 1``)."""

    edges: list[float]
    shares: list[float]
    missing: float

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "shares": self.shares, "missing": self.missing}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericProfile:
        edges = [float(x) for x in data["edges"]]
        shares = [float(x) for x in data["shares"]]
        if len(shares) != len(edges) + 1:
            raise DomainProfileError(f"{len(edges)} edges need {len(edges) + 1} shares, "
                                     f"got {len(shares)}")
        return cls(edges, shares, float(data["missing"]))


@dataclass(frozen=True)
class CategoricalProfile:
    """Training distribution of one categorical feature: the share of each category seen
    (missing values not among them) and the share of missing values."""

    shares: dict[str, float]
    missing: float

    def to_dict(self) -> dict[str, Any]:
        return {"shares": self.shares, "missing": self.missing}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalProfile:
        return cls({str(k): float(v) for k, v in data["shares"].items()},
                   float(data["missing"]))


@dataclass(frozen=True)
class DomainProfile:
    """The training distribution of every model feature (see the module docstring)."""

    rows: int
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "bins": BINS, "psi_limit": PSI_LIMIT, "rows": self.rows,
                "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
                "categorical": {k: v.to_dict() for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainProfile:
        try:
            if data.get("version") != VERSION:
                raise DomainProfileError(f"version {data.get('version')!r}, this code reads "
                                         f"version {VERSION}")
            return cls(int(data["rows"]),
                       {k: NumericProfile.from_dict(v) for k, v in data["numeric"].items()},
                       {k: CategoricalProfile.from_dict(v)
                        for k, v in data["categorical"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DomainProfileError):
                raise
            raise DomainProfileError(f"not a domain profile: {exc!r}") from exc


@dataclass(frozen=True)
class DomainWarning:
    """One way in which a scored frame leaves the training domain.

    ``kind`` is ``unseen_category`` (``value`` is the category, ``rows`` the rows carrying
    it) or ``psi`` (``psi`` is the index, ``rows`` the rows compared); ``message`` says it
    in a sentence."""

    feature: str
    kind: Kind
    rows: int
    message: str
    value: str | None = None
    psi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "value": self.value,
                "psi": self.psi, "rows": self.rows, "message": self.message}


def _numeric(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _edges(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Inner cut points of ``bins`` quantile bins of the non-missing values, as the
    evaluation's PSI cuts them."""
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return np.array([])
    return np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float]:
    """Share of all rows in each bin, and the share of missing values."""
    n = max(len(values), 1)
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="right")
    return np.bincount(idx, minlength=len(edges) + 1) / n, float(missing.sum()) / n


def _categories(col: pd.Series) -> pd.Series:
    """Category labels as text; missing values stay missing."""
    return col.astype("str").where(col.notna(), None)


def fit_profile(frame: pd.DataFrame, spec: FeatureSpec) -> DomainProfile:
    """The training domain of ``spec``'s features on ``frame`` (the rows the model was fitted
    on). Features in ``spec.categories`` are categorical, the others numeric. Every feature
    of ``spec`` must be a column of ``frame``; the frame is not changed."""
    missing = [n for n in spec.names if n not in frame.columns]
    if missing:
        raise DomainProfileError(f"the training rows lack feature columns {missing}")
    numeric: dict[str, NumericProfile] = {}
    categorical: dict[str, CategoricalProfile] = {}
    n = max(len(frame), 1)
    for name in spec.names:
        if name in spec.categories:
            cats = _categories(frame[name])
            counts = cats.value_counts(dropna=True)
            categorical[name] = CategoricalProfile(
                {str(k): int(v) / n for k, v in sorted(counts.items())},
                float(cats.isna().sum()) / n)
        else:
            values = _numeric(frame[name])
            edges = _edges(values)
            shares, miss = _bin_shares(values, edges)
            numeric[name] = NumericProfile([float(e) for e in edges],
                                           [float(s) for s in shares], miss)
    return DomainProfile(len(frame), numeric, categorical)


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    pe, pa = np.maximum(expected, _EPS), np.maximum(actual, _EPS)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi_numeric(profile: NumericProfile, col: pd.Series) -> float:
    """PSI of ``col`` against the training bins (missing values a bin of their own)."""
    edges = np.asarray(profile.edges, dtype=float)
    shares, miss = _bin_shares(_numeric(col), edges)
    return _psi(np.array([*profile.shares, profile.missing]), np.array([*shares, miss]))


def psi_categorical(profile: CategoricalProfile, col: pd.Series) -> float:
    """PSI of ``col`` against the training categories; a category not seen in training
    has a training share of 0 (floored as an empty bin)."""
    cats = _categories(col).fillna(_MISSING)
    seen = dict(profile.shares)
    if profile.missing:
        seen[_MISSING] = profile.missing
    labels = sorted(set(seen) | set(cats.unique()))
    actual = cats.value_counts(normalize=True).reindex(labels, fill_value=0.0)
    expected = np.array([seen.get(k, 0.0) for k in labels])
    return _psi(expected, actual.to_numpy(dtype=float))


def check(profile: DomainProfile, frame: pd.DataFrame, *, psi_limit: float = PSI_LIMIT,
          features: Iterable[str] | None = None) -> list[DomainWarning]:
    """The ways ``frame`` leaves the training domain: unseen categories first (per
    feature, most rows first), then features whose PSI is above ``psi_limit`` (highest
    first). ``features`` limits the check to some profiled features (default: all). An empty
    frame is in the domain. The frame is not changed."""
    names = profile.features if features is None else [f for f in profile.features
                                                       if f in set(features)]
    lost = [n for n in names if n not in frame.columns]
    if lost:
        raise DomainProfileError(f"the scored frame lacks profiled feature columns {lost}")
    if len(frame) == 0:
        return []
    n = len(frame)
    unseen: list[DomainWarning] = []
    shifted: list[DomainWarning] = []
    for name in names:
        if name in profile.categorical:
            cp = profile.categorical[name]
            cats = _categories(frame[name]).dropna()
            new = cats[~cats.isin(list(cp.shares))].value_counts()
            for value, rows in sorted(new.items(), key=lambda kv: (-kv[1], str(kv[0]))):
                unseen.append(DomainWarning(
                    name, "unseen_category", int(rows),
                    f"{name} {value!r} was never seen in training ({int(rows):,} of {n:,} "
                    "rows); the model scores it as a missing value",
                    value=str(value)))
            value_psi = psi_categorical(cp, frame[name])
        else:
            value_psi = psi_numeric(profile.numeric[name], frame[name])
        if value_psi > psi_limit:
            shifted.append(DomainWarning(
                name, "psi", n,
                f"{name} has shifted from its training distribution: PSI {value_psi:.2f} "
                f"over {n:,} rows (above {psi_limit:g})",
                psi=value_psi))
    shifted.sort(key=lambda w: -(w.psi or 0.0))
    return unseen + shifted


__all__ = ["BINS", "PSI_LIMIT", "CategoricalProfile", "DomainProfile", "DomainProfileError",
           "DomainWarning", "NumericProfile", "check", "fit_profile", "psi_categorical",
           "psi_numeric"]


def bin_counts(profile: DomainProfile, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` in each training bin of each profiled feature (numeric: the bin
    number ``0..k`` of the training quantile edges; categorical: the category; missing
    values ``<NA>``), as ``feature``, ``bin``, ``rows`` (bins without rows left out). Counts
    of several batches add up, and two sets of counts of the same profile give the PSI
    between them (:func:`psi_between`) without the rows."""
    parts = []
    for name, num in profile.numeric.items():
        values = _numeric(frame[name])
        missing = np.isnan(values)
        idx = np.searchsorted(np.asarray(num.edges, dtype=float), values[~missing],
                              side="right")
        counts = np.bincount(idx, minlength=len(num.edges) + 1)
        labels = [str(i) for i in range(len(counts))] + [_MISSING]
        parts.append(pd.DataFrame({"feature": name, "bin": labels,
                                   "rows": [*counts.tolist(), int(missing.sum())]}))
    for name in profile.categorical:
        cats = _categories(frame[name]).fillna(_MISSING).value_counts()
        parts.append(pd.DataFrame({"feature": name, "bin": cats.index.astype(str),
                                   "rows": cats.to_numpy()}))
    if not parts:
        return pd.DataFrame({"feature": pd.Series(dtype=str), "bin": pd.Series(dtype=str),
                             "rows": pd.Series(dtype=np.int64)})
    out = pd.concat(parts, ignore_index=True)
    out["rows"] = out["rows"].astype(np.int64)
    return out[out["rows"] > 0].reset_index(drop=True)


def psi_between(before: pd.DataFrame, after: pd.DataFrame) -> pd.Series:
    """PSI per feature between two sets of :func:`bin_counts` (of the same profile): the
    shares of each bin, a bin missing on one side a share of 0 (floored as an empty bin, as
    in :func:`riskmodel.modeling.evaluation.psi`). Features on one side only are left out."""
    out: dict[str, float] = {}
    common = sorted(set(before["feature"]) & set(after["feature"]))
    for name in common:
        b = before[before["feature"] == name].groupby("bin")["rows"].sum()
        a = after[after["feature"] == name].groupby("bin")["rows"].sum()
        labels = sorted(set(b.index) | set(a.index))
        pb = b.reindex(labels, fill_value=0).to_numpy(dtype=float)
        pa = a.reindex(labels, fill_value=0).to_numpy(dtype=float)
        if pb.sum() == 0 or pa.sum() == 0:
            continue
        out[name] = _psi(pb / pb.sum(), pa / pa.sum())
    return pd.Series(out, dtype=np.float64)
