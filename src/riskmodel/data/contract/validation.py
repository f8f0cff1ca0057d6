"""Type the raw tables and check every row against the contract's row rules.

Schema-level problems raise :class:`ContractError`. Row-level problems never drop a row
silently: each broken row is set aside with the first rule it breaks (in the order of
``schema.RULES``), and ``read == accepted + rejected`` holds for every table.

The row rules are pandera checks (:func:`row_checks`), evaluated vectorised over the whole
table; the same checks, with column types, form the pandera schema that accepted data pass
(:func:`contract_schema`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping
from riskmodel.data.contract.reader import RawTable
from riskmodel.data.contract.schema import (
    COUNTRY_CODES,
    CURRENCY_PATTERN,
    EVENT_TYPES,
    MAX_TERMS_DAYS,
    MIN_FOUNDED_YEAR,
    OBSERVATION_DATE_COLUMNS,
    RULES,
    TABLE_COLUMNS,
    TABLES,
    ColumnKind,
)

DATE_DTYPE = "datetime64[s]"
#: a text column needs at least this many values, none parseable, to be the wrong type
WRONG_TYPE_MIN_VALUES = 3
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


# --------------------------------------------------------------------------- typing columns


@dataclass
class TypedTable:
    name: str
    source: str
    raw: pd.DataFrame
    typed: pd.DataFrame
    missing: dict[str, pd.Series] = field(default_factory=dict)
    unparseable: dict[str, pd.Series] = field(default_factory=dict)


def _wrong_type(source: str, column: str, kind: str, dtype: Any, example: Any = None) -> None:
    detail = f"expected {kind}, found {dtype}"
    if example is not None:
        detail += f" (no value parses, first: {example!r})"
    raise ContractError(source, "wrong type", detail, column=column)


def _coerce(
    series: pd.Series, kind: ColumnKind, source: str, column: str, date_format: str | None
) -> pd.Series:
    dtype = series.dtype
    is_text = pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
    is_bool = pd.api.types.is_bool_dtype(dtype)
    is_num = pd.api.types.is_numeric_dtype(dtype) and not is_bool
    is_dt = pd.api.types.is_datetime64_any_dtype(dtype)

    if kind == "string":
        if is_bool or is_dt:
            _wrong_type(source, column, kind, dtype)
        if is_num:
            values = series.astype("Float64")
            if (values.dropna() % 1 == 0).all():
                return values.astype("Int64").astype("str").where(series.notna())
        return series.astype("str").where(series.notna())
    if kind == "date":
        if is_dt:
            out = series
            if getattr(dtype, "tz", None) is not None:
                out = out.dt.tz_localize(None)
            return out.dt.floor("D").astype(DATE_DTYPE)
        if not is_text:
            _wrong_type(source, column, kind, dtype)
        fmt = date_format or "ISO8601"
        try:
            parsed = pd.to_datetime(series, format=fmt, errors="coerce")
        except (TypeError, ValueError):  # offsets (+05:00): mixed, or not allowed unconverted
            parsed = pd.to_datetime(series, format=fmt, errors="coerce", utc=True)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)  # the calendar date in UTC
        return parsed.dt.floor("D").astype(DATE_DTYPE)
    if kind in ("float", "int"):
        if is_bool or is_dt:
            _wrong_type(source, column, kind, dtype)
        values = series if is_num else pd.to_numeric(series, errors="coerce")
        values = values.astype("float64")
        if kind == "int":
            integral = np.isfinite(values) & (values % 1 == 0)
            return values.where(integral).astype("Int64")
        return values
    # bool
    if is_bool:
        return series.astype("boolean")
    if is_num:
        return series.map({1: True, 0: False}).astype("boolean")
    if is_dt:
        _wrong_type(source, column, kind, dtype)
    text = series.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def type_table(raw: RawTable, mapping: Mapping | None = None) -> TypedTable:
    """Give every contract column its type; note which values were missing or unparseable."""
    mapping = mapping or Mapping()
    frame = raw.frame
    typed: dict[str, pd.Series] = {}
    missing: dict[str, pd.Series] = {}
    unparseable: dict[str, pd.Series] = {}
    for spec in TABLE_COLUMNS[raw.name]:
        if spec.name not in frame.columns:
            typed[spec.name] = _empty_column(spec.kind, frame.index)
            continue
        col = frame[spec.name]
        present = col.notna()
        if pd.api.types.is_string_dtype(col.dtype) or pd.api.types.is_object_dtype(col.dtype):
            # Arrow kernels: pandas' .str methods are several times slower on millions of rows
            text = pc.utf8_trim_whitespace(pyarrow.array(col.astype("str"), from_pandas=True))
            blank = pc.equal(text, "")
            if spec.kind in ("float", "int"):
                # NaN is missing, as it is in a Parquet float column once read
                blank = pc.or_(blank, pc.equal(pc.utf8_lower(text), "nan"))
            present &= ~np.asarray(pc.fill_null(blank, False).to_numpy(zero_copy_only=False),
                                   dtype=bool)
        values = _coerce(
            col, spec.kind, raw.source, spec.name, mapping.date_format_for(raw.name, spec.name)
        )
        values = values.where(present)  # a blank cell is missing, like an empty one
        bad = present & values.isna()
        n_present = int(present.sum())
        # a whole column that fails to parse is the wrong type, not a column of bad rows;
        # a handful of values is too few to tell, so those are rejected row by row
        if (n_present >= WRONG_TYPE_MIN_VALUES and int(bad.sum()) == n_present
                and spec.kind != "string"):
            _wrong_type(raw.source, spec.name, spec.kind, col.dtype, col[present].iloc[0])
        typed[spec.name] = values
        missing[spec.name] = ~present
        unparseable[spec.name] = bad
    return TypedTable(raw.name, raw.source, frame, pd.DataFrame(typed), missing, unparseable)


def _empty_column(kind: ColumnKind, index: pd.Index) -> pd.Series:
    dtype = {
        "string": "str",
        "date": DATE_DTYPE,
        "float": "float64",
        "int": "Int64",
        "bool": "boolean",
    }[kind]
    return pd.Series(pd.NA if kind in ("int", "bool") else None, index=index, dtype=dtype)


# --------------------------------------------------------------------------- row rules


@dataclass(frozen=True)
class RuleContext:
    """What the row rules of one table need beyond the table itself."""

    observed_until: pd.Timestamp
    known_buyers: pd.Index | None = None
    accepted_buyers: pd.Index | None = None


def _arrow(series: pd.Series) -> pyarrow.ChunkedArray | pyarrow.Array:
    return pyarrow.array(series.astype("str"), from_pandas=True)


def not_duplicated(series: pd.Series) -> pd.Series:
    """True for the first occurrence of each value (nulls never count as duplicates).

    Values are hashed to 64 bits by DuckDB, sorted stably, and runs of equal hashes are
    confirmed on the values themselves, so a hash collision can never reject a row: several
    times faster than pandas on millions of strings."""
    n = len(series)
    valid = ~series.isna().to_numpy()
    con = duckdb.connect()
    try:
        con.register("t", pyarrow.table({"v": _arrow(series)}))
        hashes = con.sql("SELECT hash(v) AS h FROM t").fetchnumpy()["h"]
    finally:
        con.close()
    hashes = np.asarray(hashes, dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")
    sorted_h = hashes[order]
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1]) + 1  # sorted positions of repeats
    keep = np.ones(n, dtype=bool)
    if len(same):
        values = series.to_numpy(dtype=object)
        is_start = np.ones(n, dtype=bool)
        is_start[same] = False
        run_start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
        rows = order[same]
        firsts = order[run_start[same]]
        dup = values[rows] == values[firsts]
        keep[rows[dup]] = False
    return pd.Series(keep | ~valid, index=series.index)


def is_in(series: pd.Series, values: Any) -> pd.Series:
    """``series.isin(values)`` computed in Arrow (pandas falls back to Python objects for
    Arrow-backed strings)."""
    value_set = pyarrow.array(pd.Index(values).astype("str").to_numpy(dtype=object),
                              type=pyarrow.string())
    out = pc.is_in(_arrow(series), value_set=value_set)
    return pd.Series(np.asarray(out.to_numpy(zero_copy_only=False), dtype=bool),
                     index=series.index)


def _check(fn: Callable[[pd.DataFrame], pd.Series], name: str) -> pa.Check:
    return pa.Check(fn, name=name, error=name)


def row_checks(table: str, ctx: RuleContext) -> list[pa.Check]:
    """The contract's row rules as pandera checks; ``True`` marks a row that passes.

    Missing and unparseable values are found while typing (the typed value is null), so these
    checks let nulls pass and each looks only at what it is about.
    """
    ou = ctx.observed_until
    checks: list[pa.Check] = []
    if table == "buyers":
        checks = [
            _check(lambda d: not_duplicated(d["buyer_id"]), "duplicate_buyer_id"),
            _check(lambda d: is_in(d["country"], sorted(COUNTRY_CODES)) | d["country"].isna(),
                   "invalid_country"),
            _check(
                lambda d: d["founded_year"].isna()
                | d["founded_year"].between(MIN_FOUNDED_YEAR, ou.year).fillna(False),
                "founded_year_out_of_range",
            ),
            _check(lambda d: ~(d["employees"] < 0), "employees_negative"),
            _check(lambda d: ~(d["annual_revenue"] < 0), "annual_revenue_negative"),
        ]
    elif table == "invoices":
        known, accepted = ctx.known_buyers, ctx.accepted_buyers
        max_terms = pd.Timedelta(days=MAX_TERMS_DAYS)
        checks = [
            _check(lambda d: not_duplicated(d["invoice_id"]), "duplicate_invoice_id"),
            _check(lambda d: is_in(d["buyer_id"], known), "unknown_buyer_id"),
            _check(lambda d: is_in(d["buyer_id"], accepted), "buyer_rejected"),
            _check(lambda d: ~np.isinf(d["amount"]), "amount_not_finite"),
            _check(lambda d: ~(d["amount"] <= 0), "amount_not_positive"),
            _check(lambda d: ~(d["due_date"] < d["issue_date"]), "due_before_issue"),
            _check(lambda d: ~(d["due_date"] > d["issue_date"] + max_terms),
                   "due_too_far_after_issue"),
            _check(lambda d: ~(d["paid_date"] < d["issue_date"]), "paid_before_issue"),
            _check(lambda d: ~(d["issue_date"] > ou), "issue_after_observed_until"),
            _check(lambda d: ~(d["paid_date"] > ou), "paid_after_observed_until"),
            _check(
                lambda d: d["currency"].isna()
                | pd.Series(np.asarray(pc.match_substring_regex(
                    _arrow(d["currency"]), CURRENCY_PATTERN).to_numpy(zero_copy_only=False),
                    dtype=bool), index=d.index),
                "invalid_currency",
            ),
        ]
    elif table == "events":
        known, accepted = ctx.known_buyers, ctx.accepted_buyers
        checks = [
            _check(lambda d: is_in(d["buyer_id"], known), "unknown_buyer_id"),
            _check(lambda d: is_in(d["buyer_id"], accepted), "buyer_rejected"),
            _check(lambda d: is_in(d["event_type"], EVENT_TYPES) | d["event_type"].isna(),
                   "unknown_event_type"),
            _check(lambda d: ~(d["event_date"] > ou), "event_after_observed_until"),
        ]
    return checks


def contract_schema(table: str, ctx: RuleContext) -> pa.DataFrameSchema:
    """The pandera schema that every accepted table satisfies (types, nulls, row rules)."""
    dtypes = {"string": "str", "date": DATE_DTYPE, "float": "float64", "int": "Int64",
              "bool": "boolean"}
    columns = {
        spec.name: pa.Column(dtypes[spec.kind], nullable=not spec.required)
        for spec in TABLE_COLUMNS[table]
    }
    return pa.DataFrameSchema(columns, checks=row_checks(table, ctx), strict=True)


def _rule_masks(tt: TypedTable, ctx: RuleContext) -> dict[str, pd.Series]:
    """Boolean 'row breaks rule' masks, keyed by rule name."""
    masks: dict[str, pd.Series] = {}
    for col, mask in tt.missing.items():
        if f"missing_{col}" in RULES[tt.name]:
            masks[f"missing_{col}"] = mask
    for col, mask in tt.unparseable.items():
        masks[f"unparseable_{col}"] = mask
    for chk in row_checks(tt.name, ctx):
        out = chk(tt.typed).check_output
        masks[chk.name] = ~out.fillna(True).astype(bool)
    return masks


# --------------------------------------------------------------------------- results


@dataclass
class TableResult:
    name: str
    source: str
    read: int
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    reasons: dict[str, int]

    @property
    def reject_rate(self) -> float:
        return len(self.rejected) / self.read if self.read else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "reasons": dict(self.reasons),
        }


@dataclass
class ValidationResult:
    """Accepted tables, rejected rows and counts of one dataset."""

    observed_until: dt.date
    tables: dict[str, TableResult]

    @property
    def invoices(self) -> pd.DataFrame:
        return self.tables["invoices"].accepted

    @property
    def buyers(self) -> pd.DataFrame:
        return self.tables["buyers"].accepted

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"].accepted

    def report(self) -> dict[str, Any]:
        return {
            "observed_until": self.observed_until.isoformat(),
            "tables": {n: self.tables[n].summary() for n in ("invoices", "buyers", "events")},
        }

    def over_limit(self, max_reject_rate: float) -> list[str]:
        """Tables whose rejected share exceeds ``max_reject_rate``."""
        return [n for n, t in self.tables.items() if t.reject_rate > max_reject_rate]


def _split(tt: TypedTable, ctx: RuleContext) -> TableResult:
    n = len(tt.typed)
    reason = np.full(n, None, dtype=object)
    open_ = np.ones(n, dtype=bool)
    masks = _rule_masks(tt, ctx)
    for rule in RULES[tt.name]:
        mask = masks.get(rule)
        if mask is None:
            continue
        hit = open_ & mask.to_numpy(dtype=bool, na_value=False)
        if hit.any():
            reason[hit] = rule
            open_ &= ~hit
    accepted = tt.typed.loc[open_].reset_index(drop=True)
    rejected = tt.raw.loc[~open_].reset_index(drop=True)
    rejected = rejected.astype({c: "str" for c in rejected.columns if rejected[c].dtype == object})
    rejected["reason"] = pd.Series(reason[~open_], dtype="str")
    if len(accepted) + len(rejected) != n:  # the invariant the product promises
        raise RuntimeError(f"{tt.source}: {n} rows read but {len(accepted)}+{len(rejected)}")
    counts = rejected["reason"].value_counts()
    reasons = {r: int(counts[r]) for r in RULES[tt.name] if r in counts.index}
    return TableResult(tt.name, tt.source, n, accepted, rejected, reasons)


def infer_observed_until(typed: dict[str, TypedTable]) -> dt.date:
    """The latest observation date (issue, paid or event date) found in any table."""
    latest: pd.Timestamp | None = None
    for name, cols in OBSERVATION_DATE_COLUMNS.items():
        for col in cols:
            value = typed[name].typed[col].max()
            if pd.notna(value) and (latest is None or value > latest):
                latest = value
    if latest is None:
        raise ContractError(
            typed["invoices"].source,
            "no dates",
            "no issue, paid or event date to observe",
            column="issue_date",
            fix="give the observation date explicitly (--observed-until)",
        )
    return latest.date()


def validate_tables(
    raw: dict[str, RawTable],
    observed_until: dt.date | None = None,
    mapping: Mapping | None = None,
) -> ValidationResult:
    """Type and check the three raw tables; see the module docstring."""
    typed = {name: type_table(raw[name], mapping) for name in TABLES}
    ou_date = observed_until or infer_observed_until(typed)
    ou = pd.Timestamp(ou_date)
    buyers = _split(typed["buyers"], RuleContext(ou))
    known = pd.Index(typed["buyers"].typed["buyer_id"].dropna().unique())
    accepted = pd.Index(buyers.accepted["buyer_id"].unique())
    ctx = RuleContext(ou, known_buyers=known, accepted_buyers=accepted)
    results = {
        "buyers": buyers,
        "invoices": _split(typed["invoices"], ctx),
        "events": _split(typed["events"], ctx),
    }
    return ValidationResult(ou_date, results)


def load_dataset(
    raw_dir: str,
    mapping: Mapping | None = None,
    observed_until: dt.date | None = None,
) -> ValidationResult:
    """Read, map, type and validate a raw dataset folder: what every command calls first."""
    from riskmodel.data.contract.reader import read_tables

    return validate_tables(read_tables(raw_dir, mapping), observed_until, mapping)
