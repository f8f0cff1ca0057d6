"""Portfolio and bank views of the recommended limits (``riskmodel limits --views DIR``).

The insurer's exposure on a line is the **limit in force** after the review: the recommended
limit where the decision is approve, reduce or decline, and the current limit where the line
is referred (it stays as it is until a credit manager decides). Expected loss is PD x LGD x
that limit (every limit fully drawn: the most the insurer can lose on the line in a year);
the book's open receivables at the as-of date give the second measure, PD x LGD x the
receivables the limit covers (min(open receivables, limit)). Lines without a PD (a buyer not
in the scores, or without recent history) have no expected loss; their limits are counted
apart (``limit_without_pd``).

Everything here adds up over the buckets of a run (:class:`Portfolio`), so the views of a
book of any size are built from one bucket's lines at a time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from riskmodel.params import Params

#: the columns of el_by_industry.csv, el_by_country.csv and el_by_grade.csv (after the key)
SUM_COLUMNS = ("lines", "buyers", "limit", "open_receivables", "covered_receivables",
               "expected_loss", "expected_loss_open", "limit_without_pd")
GROUPS = {"industry": "el_by_industry.csv", "country": "el_by_country.csv",
          "grade": "el_by_grade.csv"}
#: the bank coverage export, column by column (docs/decisions.md)
BANK_COLUMNS = ("buyer_id", "supplier_id", "limit", "exposure", "insured_share",
                "insured_amount", "grade", "model_name", "model_version", "as_of", "currency")
BANK_SCHEMA = pa.schema([
    ("buyer_id", pa.string()), ("supplier_id", pa.string()), ("limit", pa.float64()),
    ("exposure", pa.float64()), ("insured_share", pa.float64()),
    ("insured_amount", pa.float64()), ("grade", pa.string()), ("model_name", pa.string()),
    ("model_version", pa.string()), ("as_of", pa.string()), ("currency", pa.string()),
])
GRADE_ORDER = (*[str(g) for g in range(1, 11)], "D", "none")


def limit_in_force(decision: np.ndarray, current: np.ndarray,
                   recommended: np.ndarray) -> np.ndarray:
    """The recommended limit, or the current one where the line is referred."""
    return np.where(decision == "refer", current, recommended)


@dataclass
class Portfolio:
    """Sums over the lines of every bucket, finished into the views by :meth:`finish`."""

    params: Params
    as_of: dt.date
    lineage: dict[str, str]
    groups: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    top: list[pd.DataFrame] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def add(self, lines: pd.DataFrame) -> pa.Table:
        """Add one bucket's decided lines (with ``industry`` and ``country``); returns their
        rows of the bank coverage export."""
        lgd = self.params.limits.lgd
        share = self.params.portfolio.insured_share
        dec = lines["decision"].to_numpy(dtype=object)
        limit = limit_in_force(dec, lines["current_limit"].to_numpy(dtype=float),
                               lines["recommended_limit"].to_numpy(dtype=float))
        pdv = lines["pd"].to_numpy(dtype=float, na_value=np.nan)
        open_amt = np.nan_to_num(lines["open_receivables"].to_numpy(dtype=float,
                                                                     na_value=np.nan))
        covered = np.minimum(open_amt, limit)
        has_pd = ~np.isnan(pdv)
        lines = lines.reset_index(drop=True)
        frame = pd.DataFrame({
            "buyer_id": lines["buyer_id"],
            "industry": lines["industry"].fillna("none"),
            "country": lines["country"].fillna("none"),
            "grade": lines["grade"].fillna("none"),
            "lines": 1,
            "limit": limit,
            "open_receivables": open_amt,
            "covered_receivables": covered,
            "expected_loss": np.where(has_pd, pdv * lgd * limit, 0.0),
            "expected_loss_open": np.where(has_pd, pdv * lgd * covered, 0.0),
            "limit_without_pd": np.where(has_pd, 0.0, limit),
        })
        sums = ["lines", "limit", "open_receivables", "covered_receivables", "expected_loss",
                "expected_loss_open", "limit_without_pd"]
        for key in GROUPS:
            g = frame.groupby(key, sort=True)
            part = g[sums].sum()
            part["buyers"] = g["buyer_id"].nunique()
            self.groups.setdefault(key, []).append(part.reset_index())
        per_buyer = frame.groupby("buyer_id", sort=True).agg(
            limit=("limit", "sum"), industry=("industry", "first"),
            country=("country", "first"), grade=("grade", "first"),
            expected_loss=("expected_loss", "sum")).reset_index()
        n_top = self.params.portfolio.top
        self.top.append(per_buyer.sort_values(["limit", "buyer_id"], ascending=[False, True],
                                              kind="stable").head(n_top))
        for name, value in (("limit", float(limit.sum())),
                            ("limit_squares", float((per_buyer["limit"] ** 2).sum())),
                            ("buyers", float(len(per_buyer))), ("lines", float(len(frame))),
                            ("open_receivables", float(open_amt.sum())),
                            ("covered_receivables", float(covered.sum())),
                            ("expected_loss", float(frame["expected_loss"].sum())),
                            ("expected_loss_open", float(frame["expected_loss_open"].sum())),
                            ("limit_without_pd", float(frame["limit_without_pd"].sum())),
                            ("requested", float(np.nansum(
                                lines["requested_limit"].to_numpy(dtype=float)))),
                            ("current", float(lines["current_limit"].sum()))):
            self.totals[name] = self.totals.get(name, 0.0) + value
        for d, count in zip(*np.unique(dec.astype(str), return_counts=True), strict=True):
            self.decisions[str(d)] = self.decisions.get(str(d), 0) + int(count)
        n = len(lines)

        def same(value: object) -> pa.Array:
            return pa.array(np.full(n, value, dtype=object), pa.string())

        return pa.Table.from_arrays([
            pa.array(lines["buyer_id"], pa.string(), from_pandas=True),
            pa.array(lines["supplier_id"], pa.string(), from_pandas=True),
            pa.array(limit, pa.float64()), pa.array(open_amt, pa.float64()),
            pa.array(np.full(n, share), pa.float64()),
            pa.array(np.round(covered * share, 2), pa.float64()),
            pa.array(lines["grade"], pa.string(), from_pandas=True),
            same(self.lineage.get("model_name", "")),
            same(self.lineage.get("model_version", "")), same(self.as_of.isoformat()),
            pa.array(lines["currency"], pa.string(), from_pandas=True),
        ], schema=BANK_SCHEMA)

    def finish(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """The views (file name -> table) and ``portfolio.json``."""
        views: dict[str, pd.DataFrame] = {}
        for key, name in GROUPS.items():
            parts = self.groups.get(key, [])
            if parts:
                table = pd.concat(parts, ignore_index=True).groupby(key, sort=True).sum()
                table = table.reset_index()
            else:
                table = pd.DataFrame({key: pd.Series(dtype=object),
                                      **{c: pd.Series(dtype=float) for c in SUM_COLUMNS}})
            if key == "grade":
                order = {g: i for i, g in enumerate(GRADE_ORDER)}
                table = table.sort_values(key, key=lambda s: s.map(order), kind="stable")
            table["lines"] = table["lines"].astype(np.int64)
            table["buyers"] = table["buyers"].astype(np.int64)
            total_el = table["expected_loss"].sum()
            table["el_share"] = (table["expected_loss"] / total_el if total_el > 0
                                 else np.nan)
            table["el_rate"] = np.where(table["limit"] > 0,
                                        table["expected_loss"] / table["limit"].where(
                                            table["limit"] > 0, 1.0), np.nan)
            money = ["limit", "open_receivables", "covered_receivables", "expected_loss",
                     "expected_loss_open", "limit_without_pd"]
            table[money] = table[money].round(2)
            table[["el_share", "el_rate"]] = table[["el_share", "el_rate"]].round(6)
            views[name] = table[[key, *SUM_COLUMNS, "el_share", "el_rate"]].reset_index(
                drop=True)

        total = self.totals.get("limit", 0.0)
        top = (pd.concat(self.top, ignore_index=True) if self.top else
               pd.DataFrame(columns=["buyer_id", "limit", "industry", "country", "grade",
                                     "expected_loss"]))
        top = top.sort_values(["limit", "buyer_id"], ascending=[False, True],
                              kind="stable").head(self.params.portfolio.top)
        top = top.reset_index(drop=True)
        share = top["limit"] / total if total > 0 else pd.Series(np.nan, index=top.index)
        views["concentration.csv"] = pd.DataFrame({
            "rank": np.arange(1, len(top) + 1),
            "buyer_id": top["buyer_id"], "industry": top["industry"],
            "country": top["country"], "grade": top["grade"],
            "limit": top["limit"].round(2), "expected_loss": top["expected_loss"].round(2),
            "share": share.round(6), "cumulative_share": share.cumsum().round(6),
        })
        hhi = self.totals.get("limit_squares", 0.0) / total**2 if total > 0 else None
        prm = self.params.portfolio
        premium = prm.premium_rate * total
        el = self.totals.get("expected_loss", 0.0)
        covered_el = el * prm.insured_share
        summary: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "model_name": self.lineage.get("model_name", ""),
            "model_version": self.lineage.get("model_version", ""),
            "lines": int(self.totals.get("lines", 0)),
            "buyers": int(self.totals.get("buyers", 0)),
            "decisions": {d: int(self.decisions.get(d, 0))
                          for d in ("approve", "reduce", "decline", "refer")},
            "requested_limits": round(self.totals.get("requested", 0.0), 2),
            "current_limits": round(self.totals.get("current", 0.0), 2),
            "insured_exposure": round(total, 2),
            "limit_without_pd": round(self.totals.get("limit_without_pd", 0.0), 2),
            "open_receivables": round(self.totals.get("open_receivables", 0.0), 2),
            "covered_receivables": round(self.totals.get("covered_receivables", 0.0), 2),
            "expected_loss": round(el, 2),
            "expected_loss_open": round(self.totals.get("expected_loss_open", 0.0), 2),
            "herfindahl": None if hhi is None else round(hhi, 8),
            "effective_buyers": None if not hhi else round(1.0 / hhi, 2),
            "top_share": (round(float(share.sum()), 6) if total > 0 else None),
            "economics": {
                "premium_rate": prm.premium_rate,
                "insured_share": prm.insured_share,
                "lgd": self.params.limits.lgd,
                "premium": round(premium, 2),
                "expected_loss_covered": round(covered_el, 2),
                "loss_ratio": round(covered_el / premium, 6) if premium > 0 else None,
            },
        }
        return views, summary
