"""Exact per-feature contributions of the PD model (path-dependent TreeSHAP) in the raw
log-odds of the uncalibrated LightGBM booster, fast for shallow trees.

:func:`contributions` returns exactly LightGBM's ``booster.predict(x, pred_contrib=True)``
(which is also what ``shap.TreeExplainer(booster).shap_values`` returns for LightGBM): one
column per feature in booster order, the last column the base value (the cover-weighted
expected raw score); each row sums to ``booster.predict(x, raw_score=True)``.
:func:`contributions_frame` gives the same for a :class:`RiskModel` and a features frame.

How it is fast
--------------
Path-dependent TreeSHAP is linear in the leaves: a tree's value for a subset ``S`` of
features is ``sum_l v_l * prod_j g_lj(S)`` over the leaves ``l``, where, for each distinct
feature ``j`` on the path to ``l``, ``g_lj = o_lj`` (1 when the row takes the path's direction
at every node of ``j`` on it, else 0) if ``j`` is in ``S`` and ``g_lj = z_lj`` (the product of
the path's cover ratios ``count(child) / count(node)`` at the nodes of ``j``) otherwise. The
Shapley value of such a product game has a closed form,
``phi_i = (o_i - z_i) * sum_{S <= D - {i}} |S|! (d - |S| - 1)! / d! * prod_{j in S} o_j *
prod_{j in D - S - {i}} z_j``, and depends on the row only through its decisions (which child
it goes to) at the path's nodes. So, once per booster, each tree gets a table of the exact
Shapley values of every decision pattern of its internal nodes (``2**K`` patterns for ``K``
internal nodes; for larger trees one table per leaf over the decisions of its path), and each
row then costs one decision per internal node and one table look-up per tree: a single pass
over the rows in numba (shipped with ``shap``), rows split over the cores. Decisions follow
LightGBM's own rules exactly (``Tree::NumericalDecision`` / ``CategoricalDecision`` of
LightGBM 4): numeric ``x <= threshold``; NaN is 0 unless the node's ``missing_type`` is NaN;
with ``missing_type`` Zero (NaN) a zero (NaN) goes the ``default_left`` way; values with
``|x| <= 1e-35`` are 0 (the predictor drops them); categorical splits send NaN, negative
values (``x <= -1``) and codes ``>= 2**31`` right and otherwise the truncated integer left
exactly when it is in the node's category set (unseen categories go right). Every row is
accumulated in float64 in a fixed order (trees, then features), so results are
deterministic and independent of the other rows; they equal LightGBM's to rounding
(about 1e-15 relative: the same sum in another order).

Falls back to LightGBM's own ``pred_contrib`` for a tree whose path has more than
:data:`MAX_PATH_NODES` nodes (tables of ``2**nodes`` patterns), for boosters with several
outputs per iteration (multiclass), linear trees or averaged output (random forest), and
when numba is not importable; :attr:`Explainer.fallback_trees` lists the trees concerned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskmodel.modeling.model import RiskModel, check_columns, design_matrix

try:  # numba ships with shap, a dependency of riskmodel
    import numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - the fallback is LightGBM's pred_contrib
    numba = None  # type: ignore[assignment]
    _HAVE_NUMBA = False

#: LightGBM's kZeroThreshold (``1e-35f``): the predictor stores values this small as 0
K_ZERO = float(np.float32(1e-35))
#: a tree gets one table over all decision patterns of its K internal nodes when K is at
#: most this (and the table is small), else one table per leaf
MAX_TREE_NODES = 10
MAX_TREE_TABLE = 1 << 14
#: trees with a longer path (in nodes) than this fall back to LightGBM's pred_contrib
MAX_PATH_NODES = 12

_NUMERIC, _CATEGORICAL = 0, 1
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


# ----------------------------------------------------------------------- tree tables


@dataclass
class _Node:
    feature: int
    kind: int
    threshold: float
    missing: int
    default_left: bool
    categories: list[int]
    count: float
    left: int  # index in the tree's node list, or ~leaf
    right: int


@dataclass
class _Tree:
    nodes: list[_Node] = field(default_factory=list)
    leaf_values: list[float] = field(default_factory=list)
    leaf_counts: list[float] = field(default_factory=list)


def _parse(structure: dict[str, Any]) -> _Tree:
    tree = _Tree()

    def walk(node: dict[str, Any]) -> int:
        if "leaf_value" in node or "split_feature" not in node:
            tree.leaf_values.append(float(node["leaf_value"]))
            tree.leaf_counts.append(float(node.get("leaf_count", 0)))
            return ~(len(tree.leaf_values) - 1)
        k = len(tree.nodes)
        categorical = node["decision_type"] == "=="
        if categorical:
            cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
            thr = 0.0
        elif node["decision_type"] == "<=":
            cats, thr = [], float(node["threshold"])
        else:  # pragma: no cover - LightGBM has only these two
            raise ValueError(f"unknown decision_type {node['decision_type']!r}")
        tree.nodes.append(_Node(int(node["split_feature"]),
                                _CATEGORICAL if categorical else _NUMERIC, thr,
                                _MISSING[node["missing_type"]], bool(node["default_left"]),
                                cats, float(node["internal_count"]), 0, 0))
        left = walk(node["left_child"])
        right = walk(node["right_child"])
        tree.nodes[k].left, tree.nodes[k].right = left, right
        return k

    walk(structure)
    return tree


def _expected_value(tree: _Tree) -> float:
    """``Tree::ExpectedValue`` of LightGBM: leaf values weighted by leaf count / root count."""
    if not tree.nodes:
        return tree.leaf_values[0]
    total = tree.nodes[0].count
    ev = 0.0
    for value, count in zip(tree.leaf_values, tree.leaf_counts, strict=True):
        ev += (count / total) * value
    return ev


def _paths(tree: _Tree) -> list[list[tuple[int, int, float]]]:
    """Per leaf (in leaf order): its path as (node, 1 if the path goes left, cover ratio)."""
    out: list[list[tuple[int, int, float]]] = [[] for _ in tree.leaf_values]

    def count(child: int) -> float:
        return tree.nodes[child].count if child >= 0 else tree.leaf_counts[~child]

    def walk(k: int, path: list[tuple[int, int, float]]) -> None:
        node = tree.nodes[k]
        for child, goes_left in ((node.left, 1), (node.right, 0)):
            step = [*path, (k, goes_left, count(child) / node.count)]
            if child >= 0:
                walk(child, step)
            else:
                out[~child] = step

    if tree.nodes:
        walk(0, [])
    return out


def _shapley_weights(d: int) -> np.ndarray:
    return np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                     for s in range(d)])


def _leaf_table(tree: _Tree, path: list[tuple[int, int, float]]
                ) -> tuple[list[int], np.ndarray]:
    """The distinct features of a leaf's path and the Shapley values (for leaf value 1) of
    every decision pattern of the path's nodes: shape ``(2**len(path), d)``; bit ``q`` of a
    pattern is 1 when the row goes left at the path's ``q``-th node."""
    m = len(path)
    codes = np.arange(1 << m, dtype=np.int64)
    feats: list[int] = []
    o: list[np.ndarray] = []
    z: list[float] = []
    for q, (k, goes_left, ratio) in enumerate(path):
        match = ((codes >> q) & 1) == goes_left
        f = tree.nodes[k].feature
        if f in feats:
            j = feats.index(f)
            o[j] = o[j] & match
            z[j] = z[j] * ratio
        else:
            feats.append(f)
            o.append(match)
            z.append(ratio)
    d = len(feats)
    w = _shapley_weights(d)
    of = [oj.astype(np.float64) for oj in o]
    table = np.zeros((1 << m, d))
    for i in range(d):
        # coefficients of prod_{j != i} (z_j + o_j t): coef[s] = sum over |S| = s
        coef = [np.ones(1 << m)] + [np.zeros(1 << m) for _ in range(d - 1)]
        for j in range(d):
            if j == i:
                continue
            for s in range(d - 1, 0, -1):
                coef[s] = coef[s] * z[j] + coef[s - 1] * of[j]
            coef[0] = coef[0] * z[j]
        total = np.zeros(1 << m)
        for s in range(d):
            total = total + w[s] * coef[s]
        table[:, i] = (of[i] - z[i]) * total
    return feats, table


@dataclass
class _Unit:
    nodes: list[int]  # tree-local internal nodes whose decisions make the pattern
    features: list[int]  # booster feature index of each table column
    table: np.ndarray  # (2**len(nodes), len(features))


def _units(tree: _Tree) -> list[_Unit] | None:
    """The tables of a tree, or None when it must fall back to pred_contrib."""
    if not tree.nodes:
        return []
    paths = _paths(tree)
    if max(len(p) for p in paths) > MAX_PATH_NODES:
        return None
    leaves = [(_leaf_table(tree, p), p) for p in paths]
    k_nodes = len(tree.nodes)
    tree_feats = sorted({n.feature for n in tree.nodes})
    if k_nodes <= MAX_TREE_NODES and (len(tree_feats) << k_nodes) <= MAX_TREE_TABLE:
        codes = np.arange(1 << k_nodes, dtype=np.int64)
        table = np.zeros((1 << k_nodes, len(tree_feats)))
        for ((feats, leaf_tab), path), value in zip(leaves, tree.leaf_values, strict=True):
            path_code = np.zeros(1 << k_nodes, dtype=np.int64)
            for q, (k, _, _) in enumerate(path):
                path_code |= ((codes >> k) & 1) << q
            part = leaf_tab[path_code] * value
            for c, f in enumerate(feats):
                col = tree_feats.index(f)
                table[:, col] = table[:, col] + part[:, c]
        return [_Unit(list(range(k_nodes)), tree_feats, table)]
    return [_Unit([k for k, _, _ in path], feats, leaf_tab * value)
            for ((feats, leaf_tab), path), value in zip(leaves, tree.leaf_values, strict=True)]


# ----------------------------------------------------------------------- kernel


def _kernel_impl(x: np.ndarray, out: np.ndarray, base: float, node_start: np.ndarray,
                 node_feat: np.ndarray, node_thr: np.ndarray, node_kind: np.ndarray,
                 node_nan: np.ndarray, node_zero: np.ndarray, cat_start: np.ndarray,
                 cat_len: np.ndarray, cat_bits: np.ndarray, unit_start: np.ndarray,
                 unit_node_start: np.ndarray, unit_nodes: np.ndarray,
                 unit_feat_start: np.ndarray, unit_feats: np.ndarray, unit_tab: np.ndarray,
                 tables: np.ndarray, tree_whole: np.ndarray, max_nodes: int,
                 n_blocks: int) -> None:
    """Rows in ``n_blocks`` blocks over the threads; per row, trees in order: the decision
    at each internal node (1 = left), the pattern code of each table, its values added."""
    n, nf = x.shape
    n_trees = node_start.shape[0] - 1
    block = (n + n_blocks - 1) // n_blocks
    for b in numba.prange(n_blocks):
        dec = np.zeros(max(max_nodes, 1), dtype=np.int64)
        lo = b * block
        hi = min(n, lo + block)
        for i in range(lo, hi):
            for f in range(nf):
                out[i, f] = 0.0
            out[i, nf] = base
            for t in range(n_trees):
                k0 = node_start[t]
                code = 0
                for k in range(k0, node_start[t + 1]):
                    v = x[i, node_feat[k]]
                    left = 0
                    if np.isnan(v):
                        left = node_nan[k]
                    elif node_kind[k] == 0:
                        if abs(v) <= K_ZERO:
                            left = node_zero[k]
                        else:
                            left = 1 if v <= node_thr[k] else 0
                    elif v > -1.0 and v < 2147483648.0:
                        iv = np.int64(v)
                        word = iv >> 5
                        if word < cat_len[k]:
                            left = (cat_bits[cat_start[k] + word] >> (iv & 31)) & 1
                    dec[k - k0] = left
                    code |= left << (k - k0)
                for u in range(unit_start[t], unit_start[t + 1]):
                    if tree_whole[t] == 0:
                        code = 0
                        q = 0
                        for p in range(unit_node_start[u], unit_node_start[u + 1]):
                            code |= dec[unit_nodes[p]] << q
                            q += 1
                    f0 = unit_feat_start[u]
                    nfu = unit_feat_start[u + 1] - f0
                    off = unit_tab[u] + code * nfu
                    for c in range(nfu):
                        out[i, unit_feats[f0 + c]] += tables[off + c]


_kernel = (numba.njit(parallel=True, cache=True, nogil=True)(_kernel_impl)
           if _HAVE_NUMBA else None)


# ----------------------------------------------------------------------- explainer


def _nan_left(node: _Node) -> int:
    """Where NaN goes: categorical always right; numeric with missing_type NaN the default
    way, otherwise as 0 does."""
    if node.kind == _CATEGORICAL:
        return 0
    if node.missing == _MISSING["NaN"]:
        return int(node.default_left)
    return _zero_left(node)


def _zero_left(node: _Node) -> int:
    """Where a numeric 0 (any ``|x| <= 1e-35``) goes: missing_type Zero the default way."""
    if node.missing == _MISSING["Zero"]:
        return int(node.default_left)
    return int(0.0 <= node.threshold)


def _n_iterations(booster: lgb.Booster) -> int:
    """The iterations ``booster.predict`` uses by default: ``best_iteration`` when set."""
    best = int(getattr(booster, "best_iteration", 0) or 0)
    return best if best > 0 else int(booster.current_iteration())


class Explainer:
    """The tables of one booster (build once, explain many row batches)."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self.n_features = int(booster.num_feature())
        self.n_iterations = _n_iterations(booster)
        dump = booster.dump_model(num_iteration=self.n_iterations)
        trees = dump["tree_info"]
        model_text = booster.model_to_string(num_iteration=self.n_iterations)
        #: why the whole booster goes to pred_contrib (None: the fast route)
        self.whole_fallback: str | None = None
        if int(dump.get("num_tree_per_iteration", 1)) != 1:
            self.whole_fallback = "several trees per iteration (multiclass)"
        elif dump.get("average_output"):
            self.whole_fallback = "averaged output (random forest)"
        elif "is_linear=1" in model_text:
            self.whole_fallback = "linear trees"
        elif not _HAVE_NUMBA:  # pragma: no cover
            self.whole_fallback = "numba is not installed"
        #: trees (iteration indices) whose contributions come from pred_contrib
        self.fallback_trees: list[int] = []
        if self.whole_fallback is not None:
            return
        parsed = [_parse(t["tree_structure"]) for t in trees]
        base = 0.0
        node_start, unit_start, unit_node_start, unit_feat_start, unit_tab = [0], [0], [0], [0], []
        feat, thr, kind, nan_left, zero_left, cstart, clen = [], [], [], [], [], [], []
        whole: list[int] = []
        bits: list[int] = []
        unodes: list[int] = []
        ufeats: list[int] = []
        tabs: list[np.ndarray] = []
        n_tab = 0
        max_nodes = 0
        for t, tree in enumerate(parsed):
            units = _units(tree)
            if units is None:
                self.fallback_trees.append(t)
                node_start.append(node_start[-1])
                unit_start.append(unit_start[-1])
                whole.append(1)
                continue
            base += _expected_value(tree)
            max_nodes = max(max_nodes, len(tree.nodes))
            for node in tree.nodes:
                feat.append(node.feature)
                thr.append(node.threshold)
                kind.append(node.kind)
                nan_left.append(_nan_left(node))
                zero_left.append(_zero_left(node))
                words = (max(node.categories) // 32 + 1) if node.categories else 0
                wbits = [0] * words
                for c in node.categories:
                    if c >= 0:
                        wbits[c // 32] |= 1 << (c % 32)
                cstart.append(len(bits))
                clen.append(words)
                bits.extend(wbits)
            node_start.append(len(feat))
            whole.append(int(len(units) == 1 and units[0].nodes == list(range(len(tree.nodes)))))
            for unit in units:
                unodes.extend(unit.nodes)
                unit_node_start.append(len(unodes))
                ufeats.extend(unit.features)
                unit_feat_start.append(len(ufeats))
                unit_tab.append(n_tab)
                flat = np.ascontiguousarray(unit.table, dtype=np.float64).ravel()
                tabs.append(flat)
                n_tab += flat.size
            unit_start.append(len(unit_tab))
        i64 = np.int64
        self._base = base
        self._arrays = (
            np.asarray(node_start, dtype=i64), np.asarray(feat, dtype=i64),
            np.asarray(thr, dtype=np.float64), np.asarray(kind, dtype=i64),
            np.asarray(nan_left, dtype=i64), np.asarray(zero_left, dtype=i64),
            np.asarray(cstart, dtype=i64), np.asarray(clen, dtype=i64),
            np.asarray(bits, dtype=i64), np.asarray(unit_start, dtype=i64),
            np.asarray(unit_node_start, dtype=i64), np.asarray(unodes, dtype=i64),
            np.asarray(unit_feat_start, dtype=i64), np.asarray(ufeats, dtype=i64),
            np.asarray(unit_tab, dtype=i64),
            np.concatenate(tabs) if tabs else np.zeros(0), np.asarray(whole, dtype=i64),
        )
        self._max_nodes = max_nodes

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """See :func:`contributions`."""
        x = _as_float64(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (n, {self.n_features}), got {x.shape}")
        if self.whole_fallback is not None:
            return np.asarray(self.booster.predict(x, pred_contrib=True,
                                                   num_iteration=self.n_iterations),
                              dtype=np.float64)
        n = x.shape[0]
        out = np.empty((n, self.n_features + 1), dtype=np.float64)
        if n == 0:
            return out
        assert _kernel is not None
        n_blocks = max(1, min(n, 8 * int(numba.get_num_threads())))
        _kernel(x, out, self._base, *self._arrays, self._max_nodes, n_blocks)
        for lo, hi in _runs(self.fallback_trees):
            out += np.asarray(self.booster.predict(x, pred_contrib=True, start_iteration=lo,
                                                   num_iteration=hi - lo), dtype=np.float64)
        return out


def _runs(trees: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``[lo, hi)`` of tree indices."""
    runs: list[tuple[int, int]] = []
    for t in trees:
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1)
        else:
            runs.append((t, t + 1))
    return runs


def _as_float64(x: Any) -> np.ndarray:
    """The values LightGBM predicts on: float32/float64 as they are, other numbers through
    float32 (as the LightGBM Python package converts them); C-contiguous float64."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float64)


def contributions(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Exact path-dependent TreeSHAP values of ``booster`` on the rows of ``x`` (features in
    booster order), in raw log-odds: shape ``(n, n_features + 1)`` float64, the last column
    the base value, each row summing to ``booster.predict(x, raw_score=True)``; exactly the
    layout and values (to rounding) of ``booster.predict(x, pred_contrib=True)``, with the
    same iterations (``best_iteration`` when the booster has one). Build an
    :class:`Explainer` once to explain many batches with one booster."""
    return Explainer(booster).contributions(x)


def contributions_frame(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Columns ``base_value``, one per model feature (in the model's order) and ``margin``
    (their sum, the raw booster score, :meth:`RiskModel.margin`), indexed like ``frame``."""
    check_columns(frame, model.spec)
    phi = contributions(model.booster, design_matrix(frame, model.spec))
    names = list(model.spec.names)
    out = pd.DataFrame(phi[:, :-1], columns=names, index=frame.index)
    out.insert(0, "base_value", phi[:, -1])
    out["margin"] = phi.sum(axis=1)
    return out


__all__ = ["Explainer", "contributions", "contributions_frame"]
