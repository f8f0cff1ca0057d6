"""Type the raw tables and check every row against the contract's row rules.

Schema-level problems raise :class:`ContractError`. Row-level problems never drop a row
silently: each broken row is set aside with the first rule it breaks (in the order of
``schema.RULES``), and ``read == accepted + rejected`` holds for every table.

The row rules are pandera checks (:func:`row_checks`), evaluated vectorised over the whole
table; the same checks, with column types, form the pandera schema of accepted data
(:func:`contract_schema`).

The steps are public, so that a caller can also run them batch by batch (for data larger
than memory) and get the same result as :func:`validate_tables`:

1. :func:`type_table` gives every contract column its type. With ``strict=False`` it does not
   raise the whole-column ``wrong type`` error; it records :class:`TypeStats` instead, which
   a caller adds up over the batches of a table (:meth:`TypeStats.add`) and hands to
   :func:`check_wrong_types`, which raises exactly the error that strict typing would.
2. :func:`split_table` splits a typed table into accepted rows and rejected rows with their
   reason, under a :class:`RuleContext` (observation date, run day, known and accepted
   buyers, and optionally the duplicate flags of the rows computed over the whole dataset).
3. :func:`latest_observation` / :func:`infer_observed_until` find the observation date from
   accepted rows: the latest of a batch, then the latest over batches.

How ``observed_until`` is inferred when it is not given (:func:`validate_tables`):

* The tables are split with the ``*_after_observed_until`` rules left out
  (``RuleContext(observed_until=None)``) and with the ``founded_year`` bound at the year of
  the run day. ``future_date`` applies, so nothing after the run day is accepted.
* ``observed_until`` is the latest issue, paid, dispute or event date of the **accepted**
  rows. The ``*_after_observed_until`` rules come last in every table, so a row that reaches
  them breaks no other rule and is dated on or before this date: they cannot fire, and the
  split is the same as with the date given explicitly.
* ``founded_year`` may not be after the year of ``observed_until``. The buyers are split
  again with that bound; if this rejects a buyer that was accepted, its invoices and events
  are rejected too (``buyer_rejected``), the date is inferred again from what remains, and so
  on until the accepted buyers no longer change (each round can only reject more, so this
  ends, in practice after one or two rounds). The result equals validating with the final
  date given explicitly.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

with warnings.catch_warnings():
    # pandera imports pyspark.pandas when PySpark is installed (the Spark engine's extra),
    # which warns that it was not tested with pandas 3: nothing riskmodel uses
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    import pandera.pandas as pa

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping
from riskmodel.data.contract.reader import RawTable
from riskmodel.data.contract.schema import (
    ALL_TABLES,
    CONTRACT_VERSION,
    COUNTRY_CODES,
    CURRENCY_PATTERN,
    EVENT_TYPES,
    MAX_TERMS_DAYS,
    MIN_FOUNDED_YEAR,
    OBSERVATION_DATE_COLUMNS,
    OPTIONAL_TABLES,
    RULES,
    TABLE_COLUMNS,
    TABLES,
    ColumnKind,
    ColumnSpec,
)

DATE_DTYPE = "datetime64[s]"
#: a text column needs at least this many values, none parseable, to be the wrong type
WRONG_TYPE_MIN_VALUES = 3
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


# --------------------------------------------------------------------------- typing columns


@dataclass
class TypeStats:
    """What typing saw in each contract column that the input has (absent columns have no
    entry): how many values were present, how many of those did not parse, the first value
    that did not parse, and the column's type as read.

    The counts of several batches of one table add up (:meth:`add`), so a caller can type a
    table batch by batch and decide on the totals with :func:`check_wrong_types`.
    """

    present_counts: dict[str, int] = field(default_factory=dict)
    bad_counts: dict[str, int] = field(default_factory=dict)
    bad_examples: dict[str, Any] = field(default_factory=dict)
    source_dtypes: dict[str, str] = field(default_factory=dict)

    def add(self, other: TypeStats) -> None:
        """Add the counts of ``other`` (a later batch); keep the first example and dtype."""
        for col, n in other.present_counts.items():
            self.present_counts[col] = self.present_counts.get(col, 0) + n
        for col, n in other.bad_counts.items():
            self.bad_counts[col] = self.bad_counts.get(col, 0) + n
        for col, value in other.bad_examples.items():
            self.bad_examples.setdefault(col, value)
        for col, dtype in other.source_dtypes.items():
            self.source_dtypes.setdefault(col, dtype)


@dataclass
class TypedTable:
    """A table with every contract column typed, and where values were missing or did not
    parse. ``provided`` holds the contract columns that the input (after mapping) had; the
    others are all-null columns of their type in ``typed``."""

    name: str
    source: str
    raw: pd.DataFrame
    typed: pd.DataFrame
    missing: dict[str, pd.Series] = field(default_factory=dict)
    unparseable: dict[str, pd.Series] = field(default_factory=dict)
    stats: TypeStats = field(default_factory=TypeStats)
    provided: frozenset[str] = frozenset()

    @property
    def present_counts(self) -> dict[str, int]:
        return self.stats.present_counts

    @property
    def bad_counts(self) -> dict[str, int]:
        return self.stats.bad_counts


def _wrong_type(source: str, column: str, kind: str, dtype: Any, example: Any = None) -> None:
    detail = f"expected {kind}, found {dtype}"
    if example is not None:
        detail += f" (no value parses, first: {example!r})"
    raise ContractError(source, "wrong type", detail, column=column)


def _check_column_type(source: str, spec: ColumnSpec, stats: TypeStats) -> None:
    # a whole column that fails to parse is the wrong type, not a column of bad rows;
    # a handful of values is too few to tell, so those are rejected row by row
    n_present = stats.present_counts.get(spec.name, 0)
    n_bad = stats.bad_counts.get(spec.name, 0)
    if spec.kind != "string" and n_present >= WRONG_TYPE_MIN_VALUES and n_bad == n_present:
        _wrong_type(source, spec.name, spec.kind, stats.source_dtypes.get(spec.name, "?"),
                    stats.bad_examples.get(spec.name))


def check_wrong_types(source: str, table: str, stats: TypeStats) -> None:
    """Raise the ``wrong type`` :class:`ContractError` that ``type_table(strict=True)`` raises:
    for the first contract column (in contract order) of kind date, float, int or bool with
    at least ``WRONG_TYPE_MIN_VALUES`` present values, none of which parses.

    ``stats`` are the :class:`TypeStats` of ``type_table(..., strict=False)``, added up over
    the batches of the table."""
    for spec in TABLE_COLUMNS[table]:
        _check_column_type(source, spec, stats)


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


def type_table(raw: RawTable, mapping: Mapping | None = None, strict: bool = True) -> TypedTable:
    """Give every contract column its type; note which values were missing or unparseable.

    A column whose storage type cannot hold its kind (a Parquet boolean ``amount``) raises
    :class:`ContractError` at once. A text column in which no value parses is also the wrong
    type (see :func:`check_wrong_types`): with ``strict=True`` that raises here; with
    ``strict=False`` it does not, and the caller decides on the counts in
    :attr:`TypedTable.stats` (for example summed over the batches of a table).
    """
    mapping = mapping or Mapping()
    frame = raw.frame
    typed: dict[str, pd.Series] = {}
    missing: dict[str, pd.Series] = {}
    unparseable: dict[str, pd.Series] = {}
    stats = TypeStats()
    provided: set[str] = set()
    for spec in TABLE_COLUMNS[raw.name]:
        if spec.name not in frame.columns:
            typed[spec.name] = _empty_column(spec.kind, frame.index)
            continue
        provided.add(spec.name)
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
        bad_np = bad.to_numpy(dtype=bool)
        stats.present_counts[spec.name] = int(present.sum())
        stats.bad_counts[spec.name] = int(bad_np.sum())
        stats.source_dtypes[spec.name] = str(col.dtype)
        if bad_np.any():
            stats.bad_examples[spec.name] = col.iloc[int(np.argmax(bad_np))]
        if strict:
            _check_column_type(raw.source, spec, stats)
        typed[spec.name] = values
        missing[spec.name] = ~present
        unparseable[spec.name] = bad
    return TypedTable(raw.name, raw.source, frame, pd.DataFrame(typed), missing, unparseable,
                      stats, frozenset(provided))


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
    """What the row rules of one table need beyond the table itself.

    * ``observed_until``: the observation date; ``None`` while it is being inferred, which
      leaves the ``*_after_observed_until`` rules out and bounds ``founded_year`` by the year
      of the run day instead.
    * ``known_buyers`` / ``accepted_buyers``: every typed ``buyer_id`` of ``buyers`` and the
      accepted ones; needed by invoices, events and exposures.
    * ``today``: the day of the run, for ``future_date`` (default: the system date).
    * ``duplicate_rows``: optional, one bool per row of the table, ``True`` for a repeated
      occurrence of a key that occurred earlier in the dataset. When given, the table's
      duplicate rule (``duplicate_invoice_id``, ``duplicate_buyer_id``,
      ``duplicate_exposure``) uses it instead of looking for duplicates within the frame, so
      a caller that splits a table in batches can flag duplicates across batches.
    """

    observed_until: pd.Timestamp | None
    known_buyers: pd.Index | None = None
    accepted_buyers: pd.Index | None = None
    today: pd.Timestamp | None = None
    duplicate_rows: np.ndarray | None = field(default=None, compare=False)

    @property
    def run_day(self) -> pd.Timestamp:
        return pd.Timestamp(self.today if self.today is not None else dt.date.today())

    @property
    def observation_year(self) -> int:
        """The last year a buyer may have been founded in."""
        return (self.observed_until if self.observed_until is not None else self.run_day).year


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


def _exposure_key(d: pd.DataFrame) -> pd.Series:
    """One text per (buyer_id, supplier_id), distinct for distinct pairs; a missing supplier is
    a value of its own, a missing buyer gives a missing key."""
    text = pyarrow.large_string()
    buyer = pc.cast(_arrow(d["buyer_id"]), text)
    supplier = pc.cast(_arrow(d["supplier_id"]), text)
    length = pc.cast(pc.utf8_length(buyer), text)
    tagged = pc.if_else(pc.is_null(supplier), pyarrow.scalar("-", text),
                        pc.binary_join_element_wise(pyarrow.scalar("+", text), supplier,
                                                    pyarrow.scalar("", text)))
    key = pc.binary_join_element_wise(length, buyer, tagged, pyarrow.scalar(":", text))
    return pd.Series(key.to_pandas(), index=d.index, dtype="str")


def _needs(value: pd.Index | None, table: str, what: str) -> pd.Index:
    if value is None:
        raise ValueError(f"RuleContext.{what} is needed to check the rows of {table}")
    return value


def _matches_currency(d: pd.DataFrame) -> pd.Series:
    hit = pc.match_substring_regex(_arrow(d["currency"]), CURRENCY_PATTERN)
    out = np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)
    return d["currency"].isna() | pd.Series(out, index=d.index)


def row_checks(table: str, ctx: RuleContext) -> list[pa.Check]:
    """The contract's row rules as pandera checks, in rule order; ``True`` marks a row that
    passes.

    Missing and unparseable values are found while typing (the typed value is null), so these
    checks let nulls pass and each looks only at what it is about. With
    ``ctx.observed_until`` ``None`` the ``*_after_observed_until`` checks are left out.
    """
    ou = ctx.observed_until
    today = ctx.run_day
    year = ctx.observation_year
    dup = ctx.duplicate_rows

    def no_duplicate(key: Callable[[pd.DataFrame], pd.Series]) -> Callable[[pd.DataFrame],
                                                                            pd.Series]:
        def check(d: pd.DataFrame) -> pd.Series:
            if dup is None:
                return not_duplicated(key(d))
            flags = np.asarray(dup, dtype=bool)
            if flags.shape != (len(d),):
                raise ValueError(f"RuleContext.duplicate_rows has {flags.shape[0]} flags "
                                 f"for {len(d)} rows of {table}")
            return pd.Series(~flags, index=d.index)

        return check

    def not_after(columns: tuple[str, ...], bound: pd.Timestamp) -> Callable[[pd.DataFrame],
                                                                             pd.Series]:
        def check(d: pd.DataFrame) -> pd.Series:
            late = np.zeros(len(d), dtype=bool)
            for col in columns:
                late |= (d[col] > bound).to_numpy(dtype=bool, na_value=False)
            return pd.Series(~late, index=d.index)

        return check

    checks: list[pa.Check] = []
    if table == "buyers":
        checks = [
            _check(no_duplicate(lambda d: d["buyer_id"]), "duplicate_buyer_id"),
            _check(lambda d: is_in(d["country"], sorted(COUNTRY_CODES)) | d["country"].isna(),
                   "invalid_country"),
            _check(
                lambda d: d["founded_year"].isna()
                | d["founded_year"].between(MIN_FOUNDED_YEAR, year).fillna(False),
                "founded_year_out_of_range",
            ),
            _check(lambda d: ~(d["employees"] < 0), "employees_negative"),
            _check(lambda d: ~(d["annual_revenue"] < 0), "annual_revenue_negative"),
        ]
    elif table == "invoices":
        known = _needs(ctx.known_buyers, table, "known_buyers")
        accepted = _needs(ctx.accepted_buyers, table, "accepted_buyers")
        max_terms = pd.Timedelta(days=MAX_TERMS_DAYS)
        checks = [
            _check(no_duplicate(lambda d: d["invoice_id"]), "duplicate_invoice_id"),
            _check(lambda d: is_in(d["buyer_id"], known), "unknown_buyer_id"),
            _check(lambda d: is_in(d["buyer_id"], accepted), "buyer_rejected"),
            _check(lambda d: ~np.isinf(d["amount"]), "amount_not_finite"),
            _check(lambda d: ~(d["amount"] <= 0), "amount_not_positive"),
            _check(lambda d: ~(d["due_date"] < d["issue_date"]), "due_before_issue"),
            _check(lambda d: ~(d["due_date"] > d["issue_date"] + max_terms),
                   "due_too_far_after_issue"),
            _check(lambda d: ~(d["paid_date"] < d["issue_date"]), "paid_before_issue"),
            _check(lambda d: ~(d["dispute_date"] < d["issue_date"]), "dispute_before_issue"),
            _check(_matches_currency, "invalid_currency"),
            _check(not_after(OBSERVATION_DATE_COLUMNS["invoices"], today), "future_date"),
        ]
        if ou is not None:
            checks += [
                _check(not_after(("issue_date",), ou), "issue_after_observed_until"),
                _check(not_after(("paid_date",), ou), "paid_after_observed_until"),
                _check(not_after(("dispute_date",), ou), "dispute_after_observed_until"),
            ]
    elif table == "events":
        known = _needs(ctx.known_buyers, table, "known_buyers")
        accepted = _needs(ctx.accepted_buyers, table, "accepted_buyers")
        checks = [
            _check(lambda d: is_in(d["buyer_id"], known), "unknown_buyer_id"),
            _check(lambda d: is_in(d["buyer_id"], accepted), "buyer_rejected"),
            _check(lambda d: is_in(d["event_type"], EVENT_TYPES) | d["event_type"].isna(),
                   "unknown_event_type"),
            _check(not_after(OBSERVATION_DATE_COLUMNS["events"], today), "future_date"),
        ]
        if ou is not None:
            checks.append(_check(not_after(("event_date",), ou), "event_after_observed_until"))
    elif table == "exposures":
        known = _needs(ctx.known_buyers, table, "known_buyers")
        accepted = _needs(ctx.accepted_buyers, table, "accepted_buyers")
        checks = [
            _check(no_duplicate(_exposure_key), "duplicate_exposure"),
            _check(lambda d: is_in(d["buyer_id"], known), "unknown_buyer_id"),
            _check(lambda d: is_in(d["buyer_id"], accepted), "buyer_rejected"),
            _check(lambda d: ~np.isinf(d["current_limit"]), "current_limit_not_finite"),
            _check(lambda d: ~(d["current_limit"] < 0), "current_limit_negative"),
            _check(lambda d: ~np.isinf(d["requested_limit"]), "requested_limit_not_finite"),
            _check(lambda d: ~(d["requested_limit"] < 0), "requested_limit_negative"),
            _check(_matches_currency, "invalid_currency"),
        ]
    else:
        raise ValueError(f"unknown table {table!r}")
    return checks


def contract_schema(table: str, ctx: RuleContext) -> pa.DataFrameSchema:
    """The pandera schema of an accepted table: types, nulls and the row rules."""
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
        masks[str(chk.name)] = ~out.fillna(True).astype(bool)
    return masks


# --------------------------------------------------------------------------- results


@dataclass
class TableResult:
    """One table split: accepted rows (typed, every contract column), rejected rows (as read,
    every source column, plus ``reason``), and the count of each reason in rule order.
    ``provided_columns`` are the contract columns that the input had."""

    name: str
    source: str
    read: int
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    reasons: dict[str, int]
    provided_columns: frozenset[str] = frozenset()

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
    """Accepted tables, rejected rows and counts of one dataset.

    ``tables`` holds the three required tables, and ``exposures`` when the dataset has it.
    ``observed_until_inferred`` says whether the observation date was inferred from the
    accepted rows (``True``) or given. ``run_day`` is the day the ``future_date`` rule used.
    """

    observed_until: dt.date
    tables: dict[str, TableResult]
    observed_until_inferred: bool = False
    run_day: dt.date | None = None
    contract_version: str = CONTRACT_VERSION

    @property
    def invoices(self) -> pd.DataFrame:
        return self.tables["invoices"].accepted

    @property
    def buyers(self) -> pd.DataFrame:
        return self.tables["buyers"].accepted

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"].accepted

    @property
    def exposures(self) -> pd.DataFrame | None:
        """The accepted exposures, or ``None`` when the dataset has no exposures table."""
        table = self.tables.get("exposures")
        return None if table is None else table.accepted

    @property
    def has_dispute_date(self) -> bool:
        """Whether the input invoices had a ``dispute_date`` column at all (even if empty).

        Without it, the accepted invoices still carry an all-null ``dispute_date``, and a
        ``disputed`` flag is known only at ``observed_until``."""
        return "dispute_date" in self.tables["invoices"].provided_columns

    def report(self) -> dict[str, Any]:
        names = [n for n in ("invoices", "buyers", "events", *OPTIONAL_TABLES)
                 if n in self.tables]
        return {
            "contract_version": self.contract_version,
            "observed_until": self.observed_until.isoformat(),
            "tables": {n: self.tables[n].summary() for n in names},
        }

    def over_limit(self, max_reject_rate: float) -> list[str]:
        """Tables whose rejected share exceeds ``max_reject_rate``."""
        return [n for n, t in self.tables.items() if t.reject_rate > max_reject_rate]


def split_table(tt: TypedTable, ctx: RuleContext) -> TableResult:
    """Split a typed table into accepted rows and rejected rows with the first rule each
    breaks, in the order of ``schema.RULES``. ``read == accepted + rejected`` always holds.

    Accepted rows keep their order and are typed; rejected rows keep the values as read
    (object columns as text) plus a ``reason`` column."""
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
    return TableResult(tt.name, tt.source, n, accepted, rejected, reasons, tt.provided)


# --------------------------------------------------------------------------- observation date


def latest_observation(table: str, accepted: pd.DataFrame) -> pd.Timestamp | None:
    """The latest issue, paid, dispute or event date of ``accepted`` rows of ``table``
    (``None`` when there is none). For batches: take the max over the batches."""
    latest: pd.Timestamp | None = None
    for col in OBSERVATION_DATE_COLUMNS.get(table, ()):
        if col not in accepted.columns:
            continue
        value = accepted[col].max()
        if pd.notna(value) and (latest is None or value > latest):
            latest = pd.Timestamp(value)
    return latest


def no_dates_error(source: str) -> ContractError:
    """The error when there is no date at all to infer the observation date from."""
    return ContractError(
        source,
        "no dates",
        "no issue, paid, dispute or event date in any accepted row to observe",
        column="issue_date",
        fix="if the export has dates, they did not parse: check the mapping's date_format "
            "(or give --observed-until to see which column fails); otherwise give the "
            "observation date explicitly (--observed-until)",
    )


def infer_observed_until(
    accepted: dict[str, TableResult] | dict[str, pd.DataFrame], source: str | None = None
) -> dt.date:
    """The observation date: the latest issue, paid, dispute or event date among the
    *accepted* rows of the given split results (or accepted frames), keyed by table name.

    Rows rejected for any reason (a typo date of 2099 is a ``future_date``) do not count.
    Raises :class:`ContractError` (``no dates``) when there is none; ``source`` names the
    file in that message (default: the invoices source when ``accepted`` holds results)."""
    latest: pd.Timestamp | None = None
    for name, item in accepted.items():
        frame = item.accepted if isinstance(item, TableResult) else item
        value = latest_observation(name, frame)
        if value is not None and (latest is None or value > latest):
            latest = value
    if latest is None:
        if source is None:
            inv = accepted.get("invoices")
            source = inv.source if isinstance(inv, TableResult) else "invoices"
        raise no_dates_error(source)
    return latest.date()


def check_observed_until(observed_until: dt.date, today: dt.date | None = None) -> None:
    """An observation date after the day of the run is an error: nothing after today can
    have been observed."""
    today = today or dt.date.today()
    if observed_until > today:
        raise ContractError(
            "observed_until",
            "future date",
            f"{observed_until.isoformat()} is after the day of the run, {today.isoformat()}",
            fix="give the extraction date of the export, or leave it out to infer it",
        )


# --------------------------------------------------------------------------- whole datasets


def _split_dependents(
    typed: dict[str, TypedTable], names: Iterable[str], ctx: RuleContext
) -> dict[str, TableResult]:
    return {name: split_table(typed[name], ctx) for name in names}


def _buyer_ids(result: TableResult) -> pd.Index:
    return pd.Index(result.accepted["buyer_id"].unique())


def validate_tables(
    raw: dict[str, RawTable],
    observed_until: dt.date | None = None,
    mapping: Mapping | None = None,
    *,
    today: dt.date | None = None,
) -> ValidationResult:
    """Type and check the raw tables (the three required ones, and ``exposures`` when
    ``raw`` has it); see the module docstring for how ``observed_until`` is inferred when it
    is not given. ``today`` is the day of the run (default: the system date): any observed
    date after it is rejected as ``future_date``, and an ``observed_until`` after it is a
    :class:`ContractError`."""
    run_day = today or dt.date.today()
    if observed_until is not None:
        check_observed_until(observed_until, run_day)
    names = [n for n in ALL_TABLES if n in raw or n in TABLES]
    typed = {name: type_table(raw[name], mapping) for name in names}
    run_ts = pd.Timestamp(run_day)
    known = pd.Index(typed["buyers"].typed["buyer_id"].dropna().unique())
    dated = [n for n in names if n != "buyers" and OBSERVATION_DATE_COLUMNS[n]]
    undated = [n for n in names if n != "buyers" and not OBSERVATION_DATE_COLUMNS[n]]

    if observed_until is not None:
        ou = pd.Timestamp(observed_until)
        buyers = split_table(typed["buyers"], RuleContext(ou, today=run_ts))
        ctx = RuleContext(ou, known, _buyer_ids(buyers), today=run_ts)
        results = {"buyers": buyers, **_split_dependents(typed, dated + undated, ctx)}
        return ValidationResult(observed_until, _ordered(results), False, run_day)

    # inferred: split without the observed_until rules, infer from the accepted rows, then
    # bound founded_year by the inferred year until the accepted buyers no longer change
    founded = typed["buyers"].typed["founded_year"]
    buyers = split_table(typed["buyers"], RuleContext(None, today=run_ts))
    bound_year = run_day.year
    while True:
        accepted_buyers = _buyer_ids(buyers)
        ctx = RuleContext(None, known, accepted_buyers, today=run_ts)
        dependents = _split_dependents(typed, dated, ctx)
        ou_date = infer_observed_until(dependents, typed["invoices"].source)
        ou = pd.Timestamp(ou_date)
        if not bool(((founded > ou.year) & (founded <= bound_year)).fillna(False).any()):
            break  # the lower bound changes no buyer row
        bound_year = ou.year
        buyers = split_table(typed["buyers"], RuleContext(ou, today=run_ts))
        if len(_buyer_ids(buyers)) == len(accepted_buyers):
            break  # reasons may have changed, the accepted buyers have not
    ctx = RuleContext(ou, known, _buyer_ids(buyers), today=run_ts)
    results = {"buyers": buyers, **dependents, **_split_dependents(typed, undated, ctx)}
    return ValidationResult(ou_date, _ordered(results), True, run_day)


def _ordered(results: dict[str, TableResult]) -> dict[str, TableResult]:
    return {n: results[n] for n in ALL_TABLES if n in results}


def load_dataset(
    raw_dir: str,
    mapping: Mapping | None = None,
    observed_until: dt.date | None = None,
    *,
    today: dt.date | None = None,
) -> ValidationResult:
    """Read, map, type and validate a raw dataset folder: what every command calls first.

    ``today`` is the day of the run (default: the system date), injectable for tests."""
    from riskmodel.data.contract.reader import read_tables

    if observed_until is not None:
        check_observed_until(observed_until, today)  # before reading anything
    return validate_tables(read_tables(raw_dir, mapping), observed_until, mapping, today=today)
