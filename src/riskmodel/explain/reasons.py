"""Reason codes: the principal reasons that push each buyer's risk up, in words.

Input: per-row contributions (:func:`riskmodel.explain.contributions.contributions_frame`:
``base_value``, one column per feature, ``margin``, in the log-odds of the uncalibrated
model), the features frame they were computed from (same rows, same order) and the
*typical* value of each feature (:func:`typical_values`: the portfolio median over the live
buyers scored in the run).

For each buyer, the contributions of the features of one concept (the windows of a measure:
``dbt_mean_90``, ``dbt_mean_180``, ``dbt_mean_365``) are summed into one reason; the
concepts are ranked by that sum and the ``top`` largest positive ones (those that raise the
risk) are the reasons. Each reason carries the concept's code from the feature catalogue,
the feature of the group with the largest contribution (whose value and typical value fill
the catalogue's template), and the sentence. Special reasons (codes in
:data:`riskmodel.features.catalogue.SPECIAL_REASONS`):

* a buyer **in default** at the as-of date gets one reason, ``in_default``, and no model
  reasons (it is graded D with PD 1; the model does not score it);
* a buyer with **too little history** (``history_days`` below ``min_history_days``, or more
  than ``max_missing_payment`` of its payment features missing) gets ``short_history`` as
  its first reason, then up to ``top - 1`` model reasons.

Everything is vectorised over the rows: grouping is a matrix product, ranking an
``argpartition``; only the final texts are built per output row, per feature from the
template split around the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from riskmodel.features.catalogue import SPECIAL_REASONS, FeatureInfo, describe, fill, sentence

#: contribution columns that are not features
NON_FEATURES = ("base_value", "margin")
#: columns of :func:`reason_codes`
COLUMNS = ("buyer_id", "as_of", "rank", "code", "feature", "value", "typical", "text")
DEFAULT_TOP = 4
MIN_HISTORY_DAYS = 180
MAX_MISSING_PAYMENT = 0.5


# --------------------------------------------------------------------------- values in words


#: a concept must raise the log-odds by more than this to be a reason (0.01: about 1% on the
#: odds of default); smaller pushes are noise an analyst should not be asked to act on
MIN_CONTRIBUTION = 0.01


def _plural(n: float, word: str) -> str:
    return f"{n:,.0f} {word}{'' if abs(n) == 1 else 's'}"


def _late(d: float) -> str:
    return "on time" if d == 0 else _plural(abs(d), "day") + (" late" if d > 0 else " early")


def _dpd(d: float) -> str:
    return _plural(d, "day") + " past due" if d > 0 else ("due today" if d == 0
                                                          else "not yet due")


def _diff(d: float) -> str:
    return "no later" if d == 0 else _plural(abs(d), "day") + (" later" if d > 0
                                                                  else " earlier")


def _pct(x: float) -> str:
    p = x * 100
    return f"{p:.0f}%" if abs(p) >= 10 or p == 0 or abs(p - round(p)) < 1e-9 else f"{p:.1f}%"


#: (rounding of the raw value before formatting, formatter of one rounded value)
_FORMATS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[float], str]]] = {
    "late": (np.rint, _late),
    "dpd": (np.rint, _dpd),
    "days": (np.rint, lambda d: _plural(d, "day")),
    "days_diff": (np.rint, _diff),
    "days_per_month": (lambda v: np.round(v, 1), lambda x: f"{x:+.1f} days a month"),
    "share": (lambda v: np.round(v, 3), _pct),
    "ratio": (lambda v: np.round(v, 3), _pct),
    "pp": (lambda v: np.round(v, 3), lambda x: f"{x * 100:+.1f} percentage points"),
    "amount": (np.rint, lambda x: f"{x:,.0f}"),
    "count": (np.rint, lambda x: f"{x:,.0f}"),
    "score": (np.rint, lambda x: f"{x:.0f}"),
    "years": (np.rint, lambda y: _plural(y, "year")),
}


def render_unique(kind: str, values: np.ndarray, expm1: bool = False
                  ) -> tuple[list[str], np.ndarray]:
    """The distinct words of the finite ``values`` and, per value, the index of its words:
    values are rounded for display first, and each distinct rounded value is formatted
    once."""
    v = np.asarray(values, dtype=np.float64)
    if expm1:
        v = np.expm1(v)
    rounding, fmt = _FORMATS[kind]
    r = rounding(v) + 0.0  # + 0.0: no '-0'
    uniq, inverse = np.unique(r, return_inverse=True)
    return [fmt(float(u)) for u in uniq], inverse.reshape(-1)


def render(kind: str, values: np.ndarray, expm1: bool = False) -> np.ndarray:
    """Each finite value in words (``kind`` as :data:`riskmodel.features.catalogue.
    RENDERINGS`); an object array."""
    words, inverse = render_unique(kind, values, expm1)
    return np.array(words, dtype=object)[inverse]


def render_one(kind: str, value: float, expm1: bool = False) -> str:
    return str(render(kind, np.array([value]), expm1)[0])


# --------------------------------------------------------------------------- typical values


def typical_values(features: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """The portfolio median of each feature over the live rows of ``features`` (``status``
    ``active``, or every row without a ``status`` column), missing values left out; NaN for
    a categorical feature or one missing on every live row. Compute it once per run, over
    every buyer scored (not over a selection)."""
    live = features
    if "status" in features.columns:
        live = features[features["status"].astype("str") != "in_default"]
    out = {}
    for name in names:
        info = describe(name)
        if info.concept.render == "category":
            out[name] = np.nan
            continue
        col = pd.to_numeric(live[name], errors="coerce").to_numpy(dtype=np.float64,
                                                                   na_value=np.nan)
        col = col[np.isfinite(col)]
        out[name] = float(np.median(col)) if len(col) else np.nan
    return pd.Series(out, dtype=np.float64)


# --------------------------------------------------------------------------- reasons


def feature_columns(contributions: pd.DataFrame) -> list[str]:
    return [c for c in contributions.columns if c not in NON_FEATURES]


def concept_groups(names: Sequence[str]) -> tuple[list[FeatureInfo], list[str], np.ndarray]:
    """The catalogue entry of each feature, the concept codes (in first-seen order) and the
    concept index of each feature."""
    infos = [describe(n) for n in names]
    codes: list[str] = []
    group = np.empty(len(names), dtype=np.int64)
    for j, info in enumerate(infos):
        if info.code not in codes:
            codes.append(info.code)
        group[j] = codes.index(info.code)
    return infos, codes, group


def short_history(features: pd.DataFrame, names: Sequence[str], min_history_days: float,
                  max_missing_payment: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows with too little history: ``history_days`` below ``min_history_days`` or more than
    ``max_missing_payment`` of the payment features missing. Also the number of payment
    features missing per row and how many payment features there are."""
    n = len(features)
    flag = np.zeros(n, dtype=bool)
    if "history_days" in features.columns:
        hist = pd.to_numeric(features["history_days"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
        flag |= ~(hist >= min_history_days)
    pay = [n_ for n_ in names if describe(n_).family == "payment" and n_ in features.columns]
    missing = (features[pay].isna().to_numpy().sum(axis=1) if pay
               else np.zeros(n, dtype=np.int64))
    if pay:
        flag |= missing > max_missing_payment * len(pay)
    return flag, missing, len(pay)


def reason_codes(
    contributions: pd.DataFrame,
    features: pd.DataFrame,
    typical: pd.Series,
    *,
    top: int = DEFAULT_TOP,
    min_history_days: float = MIN_HISTORY_DAYS,
    max_missing_payment: float = MAX_MISSING_PAYMENT,
    min_contribution: float = MIN_CONTRIBUTION,
) -> pd.DataFrame:
    """Up to ``top`` reasons per row (see the module's docstring), one output row each:
    ``buyer_id`` and ``as_of`` (when ``features`` has them), ``rank`` (1 = the strongest),
    ``code``, ``feature`` (the feature whose value is quoted; null for ``in_default``),
    ``value`` and ``typical`` (float, in the feature's own unit; NaN for a category or a
    missing value) and ``text``. Rows ordered as the input, then by rank; a row whose
    contributions raise the risk nowhere has no reason; a concept must raise the log-odds
    by more than ``min_contribution`` to be one."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if len(contributions) != len(features):
        raise ValueError(f"contributions ({len(contributions)} rows) and features "
                         f"({len(features)} rows) must be the same rows")
    names = feature_columns(contributions)
    lacking = [n for n in names if n not in features.columns]
    if lacking:
        raise ValueError(f"the features frame lacks {lacking[:5]} (the contributions' features)")
    infos, codes, group = concept_groups(names)
    n, q = len(contributions), len(codes)
    phi = contributions[names].to_numpy(dtype=np.float64)
    onehot = np.zeros((len(names), q))
    onehot[np.arange(len(names)), group] = 1.0
    summed = phi @ onehot
    lead = np.empty((n, q), dtype=np.int64)  # the feature of each concept with most weight
    for g in range(q):
        members = np.flatnonzero(group == g)
        lead[:, g] = (members[0] if len(members) == 1
                      else members[np.argmax(phi[:, members], axis=1)])

    in_default = np.zeros(n, dtype=bool)
    if "status" in features.columns:
        in_default = features["status"].astype("str").eq("in_default").to_numpy()
    short, missing, n_pay = short_history(features, names, min_history_days,
                                          max_missing_payment)
    short &= ~in_default
    allowed = np.where(in_default, 0, np.where(short, top - 1, top))

    score = np.where(summed > min_contribution, summed, -np.inf)
    k = min(top, q)
    part = (np.argpartition(-score, k - 1, axis=1)[:, :k] if k < q
            else np.tile(np.arange(q), (n, 1)))
    order = np.argsort(-np.take_along_axis(score, part, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)  # n x k concepts, strongest first
    best_score = np.take_along_axis(score, best, axis=1)
    keep = np.isfinite(best_score) & (np.arange(k)[None, :] < allowed[:, None])
    row, slot = np.nonzero(keep)
    concept = best[row, slot]
    feat = lead[row, concept]
    rank = slot + 1 + short[row].astype(np.int64)

    value = np.full(len(row), np.nan)
    typ = np.full(len(row), np.nan)
    text = np.empty(len(row), dtype=object)
    for j in np.unique(feat):
        at = np.flatnonzero(feat == j)
        info = infos[j]
        c = info.concept
        raw = features[info.name].to_numpy()[row[at]]
        t = float(typical.get(info.name, np.nan))
        typ[at] = t
        typical_words = render_one(c.render, t, c.expm1) if np.isfinite(t) else None
        full = info.template if typical_words is not None else sentence_without_typical(info)
        full = full.replace("{typical}", typical_words or "")
        pre, _, post = full.partition("{value}")
        if c.render == "category":
            present = np.asarray(pd.notna(raw), dtype=bool)
            uniq, inverse = np.unique(raw[present].astype(str), return_inverse=True)
            words = [str(u) for u in uniq]
        else:
            nums = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
            present = np.isfinite(nums)
            value[at] = np.where(present, nums, np.nan)
            words, inverse = render_unique(c.render, nums[present], c.expm1)
        sentences = np.array([pre + w + post for w in words] or [""], dtype=object)
        text[at[present]] = sentences[inverse]
        text[at[~present]] = info.missing_template

    cols: dict[str, list[np.ndarray]] = {"_row": [row], "rank": [rank], "code": [np.array(codes, dtype=object)[concept]],
            "feature": [np.array(names, dtype=object)[feat]], "value": [value],
            "typical": [typ], "text": [text]}
    specials: list[dict[str, np.ndarray]] = []
    if short.any():
        specials.append(_short_rows(np.flatnonzero(short), features, typical, missing, n_pay))
    if in_default.any():
        code, _, default_text = SPECIAL_REASONS["in_default"]
        at = np.flatnonzero(in_default)
        m = len(at)
        specials.append({"_row": at, "rank": np.ones(m, dtype=np.int64),
                         "code": np.full(m, code, dtype=object),
                         "feature": np.full(m, None, dtype=object), "value": np.full(m, np.nan),
                         "typical": np.full(m, np.nan),
                         "text": np.full(m, default_text, dtype=object)})
    for sp in specials:
        for key, arr in sp.items():
            cols[key].append(arr)
    joined = {key: np.concatenate(parts) for key, parts in cols.items()}
    order = np.lexsort((joined["rank"], joined["_row"]))
    out: dict[str, object] = {}
    for key in ("buyer_id", "as_of"):
        if key in features.columns:
            out[key] = features[key].to_numpy()[joined["_row"][order]]
    out["rank"] = joined["rank"][order].astype(np.int16)
    for key in ("code", "feature", "value", "typical", "text"):
        out[key] = joined[key][order]
    return pd.DataFrame(out)


def sentence_without_typical(info: FeatureInfo) -> str:
    return sentence(fill(info.concept.text, window=info.window), None)


def _short_rows(at: np.ndarray, features: pd.DataFrame, typical: pd.Series,
                missing: np.ndarray, n_pay: int) -> dict[str, np.ndarray]:
    code, _, template = SPECIAL_REASONS["short_history"]
    hist = (pd.to_numeric(features["history_days"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan)[at] if "history_days" in features.columns
        else np.full(len(at), np.nan))
    days = np.where(np.isfinite(hist), np.rint(hist), -1.0)
    # one sentence per distinct (days of history, payment figures missing)
    pairs, inverse = np.unique(np.stack([days, missing[at].astype(np.float64)], axis=1),
                               axis=0, return_inverse=True)
    texts = [template.replace("{value}", render_one("days", d) if d >= 0 else "unknown length")
             .replace("{missing}", f"{int(m)} of {n_pay}" if n_pay else "all")
             for d, m in pairs]
    m = len(at)
    return {"_row": at, "rank": np.ones(m, dtype=np.int64),
            "code": np.full(m, code, dtype=object),
            "feature": np.full(m, "history_days", dtype=object), "value": hist,
            "typical": np.full(m, float(typical.get("history_days", np.nan))),
            "text": np.array(texts, dtype=object)[inverse.reshape(-1)]}


# --------------------------------------------------------------------------- importance


def importance(contributions: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute contribution per feature and per concept (the sum of its features'
    contributions, as reasons group them): columns ``level`` (``feature`` or ``concept``),
    ``name`` (the feature, or the concept in words), ``code``, ``mean_abs_contribution``;
    each level sorted from the largest."""
    names = feature_columns(contributions)
    infos, codes, group = concept_groups(names)
    phi = contributions[names].to_numpy(dtype=np.float64)
    per_feature = np.abs(phi).mean(axis=0) if len(phi) else np.zeros(len(names))
    onehot = np.zeros((len(names), len(codes)))
    onehot[np.arange(len(names)), group] = 1.0
    per_concept = np.abs(phi @ onehot).mean(axis=0) if len(phi) else np.zeros(len(codes))
    concept_name = {i.code: i.concept.concept for i in infos}
    feats = pd.DataFrame({"level": "feature", "name": names, "code": [i.code for i in infos],
                          "mean_abs_contribution": per_feature})
    concepts = pd.DataFrame({"level": "concept", "name": [concept_name[c] for c in codes],
                             "code": codes, "mean_abs_contribution": per_concept})
    return pd.concat([f.sort_values("mean_abs_contribution", ascending=False, kind="stable")
                      for f in (feats, concepts)], ignore_index=True)


__all__ = ["COLUMNS", "DEFAULT_TOP", "MAX_MISSING_PAYMENT", "MIN_HISTORY_DAYS", "importance",
           "reason_codes", "render", "typical_values"]
