"""The watch list: what changed between two scoring runs of a book, and which buyers to look at
first.

Two outputs of ``riskmodel score`` (a *previous* and a *current* run) and the book give:

* the **grade migration matrix**: buyers counted by previous grade (rows) and current grade
  (columns), ``none`` where a run gave no grade (``no_recent_history``, or a buyer that run
  did not have);
* the **watch list**: buyers of the current run on which at least one trigger fires
  (:data:`TRIGGERS`), with their grades, PDs, exposure, exposure at risk and current reasons,
  ordered by exposure at risk;
* **stability**: the PSI of the scored buyers' PDs between the runs (in deciles of the
  previous run's PDs), and of each model feature (from the runs' ``_profile.parquet``).

Everything is columnar: the runs are read and joined by DuckDB, and the book is read a bucket
at a time, each bucket reduced by one DuckDB query to a row per buyer with anything open.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from riskmodel.data.book import Book
    from riskmodel.params import WatchParams

#: what puts a buyer on the watch list, in the order the ``triggers`` column lists them
TRIGGERS = ("downgrade", "pd_doubled", "newly_overdue", "delay_model")
#: the grades of the master scale, best first, and the label of "no grade"
GRADES = (*(str(g) for g in range(1, 11)), "D")
NO_GRADE = "none"
#: the files of a scoring output this module reads
MANIFEST = "_scoring.json"
PROFILE = "_profile.parquet"
KIND = "riskmodel-scores"

Progress = Callable[[str, int, int], None]


class WatchError(ValueError):
    """The runs, the book or the files given cannot be compared; the message says why."""


# --------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Run:
    """A scoring output (``riskmodel score --out``), as its manifest describes it."""

    path: Path
    manifest: dict[str, Any]

    @property
    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.manifest["as_of"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("data_fingerprint", ""))

    @property
    def parts(self) -> list[str]:
        return [str(self.path / p) for p in self.manifest.get("parts", [])]

    @property
    def model(self) -> tuple[str, str, str]:
        m = self.manifest
        return (str(m.get("model_name", "")), str(m.get("model_version", "")),
                str(m.get("model_run_id", "")))

    @property
    def model_label(self) -> str:
        name, version, _ = self.model
        if version:
            return f"{name} v{version}"
        return f"the unregistered model {self.manifest.get('model_uri', '?')}"

    @property
    def reasons(self) -> int:
        return int(self.manifest.get("reasons", 0))


def read_run(path: str | Path, option: str) -> Run:
    """The scoring output at ``path``; ``option`` names it in errors (``--previous``)."""
    path = Path(path)
    if not path.exists():
        raise WatchError(f"{option} {path}: no such folder (give a folder written by "
                         "`riskmodel score --out`)")
    file = path / MANIFEST
    if not path.is_dir() or not file.is_file():
        raise WatchError(f"{option} {path}: not a scoring output (no {MANIFEST}; give a "
                         "folder written by `riskmodel score --out`)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WatchError(f"{option} {file}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND or "as_of" not in manifest:
        raise WatchError(f"{option} {path}: not a scoring output ({MANIFEST} is not the "
                         "manifest of `riskmodel score`)")
    run = Run(path, manifest)
    try:
        run.as_of  # noqa: B018 (checks the date)
    except ValueError as exc:
        raise WatchError(f"{option} {file}: as_of {manifest['as_of']!r} is not a date") from exc
    lost = [p for p in run.parts if not Path(p).is_file()]
    if not run.parts or lost:
        raise WatchError(f"{option} {path}: the scoring output is incomplete (missing "
                         f"{', '.join(Path(p).name for p in lost) or 'every part file'})")
    return run


def same_model(a: Run, b: Run) -> bool:
    """Whether two runs were made by the same model: the same registered name, version and
    run; for unregistered model folders, the same ``--model`` path."""
    if any(a.model) or any(b.model):
        return a.model == b.model
    return bool(a.manifest.get("model_uri")) and (
        a.manifest.get("model_uri") == b.manifest.get("model_uri"))


def check_runs(previous: Run, current: Run, book: Book, delay: Run | None = None) -> list[str]:
    """Errors (:class:`WatchError`) when the runs cannot be compared on this book; notes
    (returned) for what the reader of the output should know.

    * The current as-of date must be after the previous one.
    * The runs' data fingerprints may differ (each month's book is validated anew); the
      book must then be the current run's (same fingerprint), because it is read at both
      dates. When both runs come from the same data and the book is another one, the book
      is read all the same, with a note.
    * The book must reach the current as-of date.
    * The delay scores must be of the current as-of date and of the current run's data.
    """
    notes: list[str] = []
    if current.as_of <= previous.as_of:
        raise WatchError(f"--current {current.path} is as of {current.as_of}, not after "
                         f"--previous {previous.path} ({previous.as_of}): give the earlier "
                         "run as --previous")
    book_fp = book.manifest.raw_fingerprint
    if previous.fingerprint != current.fingerprint and book_fp != current.fingerprint:
        raise WatchError(
            f"the runs were scored from different data (fingerprints "
            f"{previous.fingerprint[:12]} and {current.fingerprint[:12]}) and --book "
            f"{book.path} holds yet other data ({book_fp[:12]}): give the book the current "
            "run was scored from (it is read at both as-of dates)")
    if book_fp != current.fingerprint:
        notes.append(f"--book {book.path} is not the book the runs were scored from "
                     f"(fingerprint {book_fp[:12]}, the runs {current.fingerprint[:12]}): "
                     "overdue invoices and open receivables are read from it")
    if book.observed_until < current.as_of:
        raise WatchError(f"--book {book.path} is observed until {book.observed_until}, "
                         f"before the current as-of date {current.as_of}: give the book the "
                         "current run was scored from")
    if delay is not None:
        if delay.as_of != current.as_of:
            raise WatchError(f"--delay {delay.path} is as of {delay.as_of}, not the current "
                             f"as-of date {current.as_of}: score the delay model at "
                             f"{current.as_of}")
        if delay.fingerprint != current.fingerprint:
            raise WatchError(f"--delay {delay.path} was scored from other data than --current "
                             f"(fingerprints {delay.fingerprint[:12]} and "
                             f"{current.fingerprint[:12]}): score both on the same book")
    if not same_model(previous, current):
        notes.append(f"the runs were made by different models ({previous.model_label} at "
                     f"{previous.as_of}, {current.model_label} at {current.as_of}): grade "
                     "moves mix the change of model with the buyers' own; the score PSI is "
                     "computed, the feature PSI is not (each model bins its own features)")
    return notes


# --------------------------------------------------------------------------- the book

_POSITIONS_SQL = """
SELECT buyer_id,
       coalesce(sum(amount) FILTER (WHERE {open_cur}), 0)::DOUBLE AS open_receivables,
       coalesce(sum(amount) FILTER (WHERE {open_cur} AND {late_cur}), 0)::DOUBLE
           AS overdue_amount,
       coalesce(bool_or({open_prev} AND {late_prev}), false) AS overdue_previous,
       coalesce(bool_or({open_cur} AND {late_cur}), false) AS overdue_current
FROM inv
WHERE issue_date <= DATE '{cur}' AND (paid_date IS NULL OR paid_date > DATE '{prev}')
GROUP BY buyer_id
"""


def _positions_sql(previous: dt.date, current: dt.date, overdue_days: int) -> str:
    def is_open(day: dt.date) -> str:
        return f"(issue_date <= DATE '{day}' AND (paid_date IS NULL OR paid_date > DATE '{day}'))"

    def late(day: dt.date) -> str:
        return f"(due_date + {int(overdue_days)} <= DATE '{day}')"

    return _POSITIONS_SQL.format(open_cur=is_open(current), late_cur=late(current),
                                 open_prev=is_open(previous), late_prev=late(previous),
                                 cur=current, prev=previous)


def book_positions(book: Book, previous: dt.date, current: dt.date, overdue_days: int, *,
                   threads: int = 2, progress: Progress | None = None) -> pa.Table:
    """One row per buyer with an invoice open at either date, point in time (an invoice is
    open at ``T`` when issued by ``T`` and not paid by ``T``: a payment counts only if
    ``paid_date <= T``): ``open_receivables`` (the amounts open at ``current``),
    ``overdue_amount`` (of those, the ones at least ``overdue_days`` past due),
    ``overdue_previous`` and ``overdue_current`` (an open invoice at least ``overdue_days``
    past due at that date). The book is read a bucket at a time."""
    sql = _positions_sql(previous, current, overdue_days)
    columns = ["buyer_id", "issue_date", "due_date", "paid_date", "amount"]
    parts: list[pa.Table] = []
    con = duckdb.connect(config={"threads": threads})
    try:
        for k in range(book.n_buckets):
            con.register("inv", book.read("invoices", k, columns))
            parts.append(con.sql(sql).to_arrow_table())
            con.unregister("inv")
            if progress is not None:
                progress("book", k + 1, book.n_buckets)
    finally:
        con.close()
    schema = pa.schema([("buyer_id", pa.string()), ("open_receivables", pa.float64()),
                        ("overdue_amount", pa.float64()), ("overdue_previous", pa.bool_()),
                        ("overdue_current", pa.bool_())])
    return pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()


def read_lines(path: str | Path) -> pa.Table:
    """Credit limits per buyer from ``--exposures``: a Parquet or CSV file (or a folder of
    Parquet parts) with ``buyer_id`` and ``current_limit`` (the contract's exposures
    table); a buyer's lines are added up."""
    path = Path(path)
    if not path.exists():
        raise WatchError(f"--exposures {path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={"buyer_id": str})
        else:
            frame = pq.read_table(path).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise WatchError(f"--exposures {path}: cannot read it as Parquet or CSV: {exc}") from exc
    lacking = [c for c in ("buyer_id", "current_limit") if c not in frame.columns]
    if lacking:
        raise WatchError(f"--exposures {path}: no column {', '.join(lacking)} (the file needs "
                         "buyer_id and current_limit, as the exposures table of the data "
                         "contract)")
    limit = pd.to_numeric(frame["current_limit"], errors="coerce")
    bad = limit.isna() | ~np.isfinite(limit.to_numpy(dtype=float, na_value=np.nan)) | (limit < 0)
    if frame["buyer_id"].isna().any() or bad.any():
        row = int(np.flatnonzero(bad.to_numpy() | frame["buyer_id"].isna().to_numpy())[0])
        raise WatchError(f"--exposures {path}: row {row + 1} has no buyer_id or a current_limit "
                         f"that is not a number >= 0 ({frame['current_limit'].iloc[row]!r})")
    lines = (pd.DataFrame({"buyer_id": frame["buyer_id"].astype(str), "current_limit": limit})
             .groupby("buyer_id", as_index=False, sort=True)["current_limit"].sum())
    return pa.Table.from_pandas(lines, preserve_index=False)


# --------------------------------------------------------------------------- the outputs


def output_paths(out: str | Path) -> dict[str, Path]:
    """The files ``riskmodel watch --out FILE`` writes: ``FILE`` (``.parquet`` or ``.csv``)
    and, beside it, ``<stem>.migration.csv``, ``<stem>.psi.csv`` and
    ``<stem>.summary.json``."""
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise WatchError(f"--out {out}: name a .parquet or a .csv file (the watch list; the "
                         "migration matrix and the PSI go beside it)")
    stem = out.name[: -len(out.suffix)]
    return {"list": out, "migration": out.with_name(f"{stem}.migration.csv"),
            "psi": out.with_name(f"{stem}.psi.csv"),
            "summary": out.with_name(f"{stem}.summary.json")}


def flag(value: float, params: WatchParams) -> str:
    """``act`` above ``psi_act``, ``watch`` above ``psi_watch``, else ``stable``."""
    if value > params.psi_act:
        return "act"
    if value > params.psi_watch:
        return "watch"
    return "stable"


def score_psi(previous_pd: np.ndarray, current_pd: np.ndarray, bins: int = 10) -> float:
    """PSI of the current PDs against the previous ones, in ``bins`` quantile bins of the
    previous PDs (as the evaluation's PSI: a value on an inner edge goes to the upper bin,
    empty bins floored at 0.0001)."""
    from riskmodel.modeling.evaluation import psi

    return psi(pd.Series(previous_pd, dtype=float), pd.Series(current_pd, dtype=float),
               bins=bins)


def feature_psi(previous: Run, current: Run, same: bool) -> tuple[pd.DataFrame, list[str]]:
    """PSI per feature between the runs' binned profiles (``_profile.parquet``), highest
    first, and notes where it cannot be computed."""
    from riskmodel.modeling.domain import psi_between

    empty = pd.DataFrame({"name": pd.Series(dtype=str), "psi": pd.Series(dtype=float),
                          "previous_rows": pd.Series(dtype=np.int64),
                          "current_rows": pd.Series(dtype=np.int64)})
    if not same:
        return empty, []
    lacking = [r for r in (previous, current) if not (r.path / PROFILE).is_file()]
    if lacking:
        return empty, [f"no {PROFILE} in {', '.join(str(r.path) for r in lacking)} (scored "
                       "without a domain profile): no feature PSI"]
    before = pq.read_table(previous.path / PROFILE).to_pandas()
    after = pq.read_table(current.path / PROFILE).to_pandas()
    values = psi_between(before, after)
    if values.empty:
        return empty, []
    rows_b = before.groupby("feature")["rows"].sum()
    rows_a = after.groupby("feature")["rows"].sum()
    names = list(values.index)
    table = pd.DataFrame({"name": names, "psi": values.to_numpy(dtype=float),
                          "previous_rows": rows_b.reindex(names).to_numpy(dtype=np.int64),
                          "current_rows": rows_a.reindex(names).to_numpy(dtype=np.int64)})
    table = table.sort_values(["psi", "name"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True), []


def migration_matrix(counts: pd.DataFrame) -> pd.DataFrame:
    """``previous_grade, current_grade, buyers`` as a matrix: a row per previous grade
    (1..10, D, none), a column per current grade (the same), zeros where no buyer moved."""
    labels = [*GRADES, NO_GRADE]
    wide = counts.pivot_table(index="previous_grade", columns="current_grade",
                              values="buyers", aggfunc="sum", fill_value=0)
    wide = wide.reindex(index=labels, columns=labels, fill_value=0).astype(np.int64)
    wide.index.name = "previous_grade"
    wide.columns.name = None
    return wide.reset_index()


# --------------------------------------------------------------------------- the run


@dataclass
class WatchResult:
    files: dict[str, Path]
    previous: Run
    current: Run
    buyers: int                      # on the watch list
    by_trigger: dict[str, int]
    exposure_basis: str
    exposure_at_risk: float
    score_psi: float
    score_flag: str
    feature_flags: dict[str, int]    # watch / act: how many features
    same_model: bool
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())


def _parts_sql(parts: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in parts) + "]"


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_table(table: pa.Table, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        _atomic(path, lambda p: pacsv.write_csv(table, p))
    else:
        _atomic(path, lambda p: pq.write_table(table, p, compression="zstd"))


def run(previous: Run, current: Run, book: Book, out: str | Path, params: WatchParams, *,
        delay: Run | None = None, lines: pa.Table | None = None, notes: list[str] | None = None,
        threads: int = 2, progress: Progress | None = None) -> WatchResult:
    """Compare the runs (checked with :func:`check_runs`) and write the watch list, the
    migration matrix, the PSI table and a summary (:func:`output_paths`)."""
    import time

    files = output_paths(out)
    notes = list(notes or [])
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    positions = book_positions(book, previous.as_of, current.as_of, params.overdue_days,
                               threads=threads, progress=progress)
    seconds["book"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    k = min(params.reasons, current.reasons)
    con = duckdb.connect(config={"threads": threads})
    try:
        con.register("positions", positions)
        con.execute(f"""
            CREATE TEMP TABLE prev AS
            SELECT buyer_id, status, pd, CAST(grade AS VARCHAR) AS grade,
                   CAST(grade_rank AS INTEGER) AS grade_rank
            FROM read_parquet({_parts_sql(previous.parts)})""")
        con.execute(f"""
            CREATE TEMP TABLE cur AS
            SELECT buyer_id, status, pd, CAST(grade AS VARCHAR) AS grade,
                   CAST(grade_rank AS INTEGER) AS grade_rank
            FROM read_parquet({_parts_sql(current.parts)})""")
        con.execute("""
            CREATE TEMP TABLE joined AS
            SELECT coalesce(c.buyer_id, p.buyer_id) AS buyer_id,
                   p.status AS previous_status, c.status AS current_status,
                   p.grade AS previous_grade, c.grade AS current_grade,
                   p.grade_rank AS previous_rank, c.grade_rank AS current_rank,
                   p.pd AS previous_pd, c.pd AS current_pd
            FROM cur c FULL OUTER JOIN prev p ON c.buyer_id = p.buyer_id""")
        counts = con.sql(f"""
            SELECT coalesce(previous_grade, '{NO_GRADE}') AS previous_grade,
                   coalesce(current_grade, '{NO_GRADE}') AS current_grade,
                   count(*) AS buyers
            FROM joined GROUP BY ALL""").df()
        if delay is not None:
            con.execute(f"""
                CREATE TEMP TABLE delay AS
                SELECT buyer_id, status AS delay_status, pd AS delay_pd
                FROM read_parquet({_parts_sql(delay.parts)})""")
        else:
            con.execute("CREATE TEMP TABLE delay (buyer_id VARCHAR, delay_status VARCHAR, "
                        "delay_pd DOUBLE)")
        if lines is not None:
            con.register("lines", lines)
        else:
            con.execute("CREATE TEMP TABLE lines (buyer_id VARCHAR, current_limit DOUBLE)")
        basis = "current_limit" if lines is not None else "open_receivables"
        exposure = ("coalesce(l.current_limit, 0)" if lines is not None
                    else "coalesce(b.open_receivables, 0)")
        ratio = f"CAST({float(params.pd_ratio)!r} AS DOUBLE)"
        threshold = f"CAST({float(params.delay_threshold)!r} AS DOUBLE)"
        fired = {
            "downgrade": f"(j.current_rank - j.previous_rank >= {int(params.downgrade_notches)})",
            "pd_doubled": ("(j.previous_status = 'scored' AND j.current_status = 'scored' "
                           f"AND j.current_pd >= {ratio} * j.previous_pd)"),
            "newly_overdue": ("(coalesce(b.overdue_current, false) "
                              "AND NOT coalesce(b.overdue_previous, false))"),
            "delay_model": f"(d.delay_status = 'scored' AND d.delay_pd > {threshold})",
        }
        flags = ",\n".join(f"coalesce({sql}, false) AS t_{name}" for name, sql in fired.items())
        con.execute(f"""
            CREATE TEMP TABLE flagged AS
            SELECT j.*, d.delay_pd,
                   coalesce(b.open_receivables, 0) AS open_receivables,
                   coalesce(b.overdue_amount, 0) AS overdue_amount,
                   l.current_limit, {exposure} AS exposure,
                   {flags}
            FROM joined j
            LEFT JOIN positions b ON b.buyer_id = j.buyer_id
            LEFT JOIN delay d ON d.buyer_id = j.buyer_id
            LEFT JOIN lines l ON l.buyer_id = j.buyer_id
            WHERE j.current_status IS NOT NULL""")
        any_fired = " OR ".join(f"t_{name}" for name in TRIGGERS)
        triggers = ", ".join(f"CASE WHEN t_{name} THEN '{name}' END" for name in TRIGGERS)
        reasons = "".join(f", r.reason_{i}, r.reason_{i}_text" for i in range(1, k + 1))
        limit_col = "f.current_limit, " if lines is not None else ""
        listed = con.sql(f"""
            WITH listed AS (SELECT * FROM flagged WHERE {any_fired}),
                 r AS (SELECT buyer_id{''.join(f', reason_{i}, reason_{i}_text'
                                               for i in range(1, k + 1))}
                       FROM read_parquet({_parts_sql(current.parts)})
                       WHERE buyer_id IN (SELECT buyer_id FROM listed))
            SELECT f.buyer_id, concat_ws(',', {triggers}) AS triggers,
                   f.previous_status, f.current_status,
                   f.previous_grade, f.current_grade,
                   CAST(f.current_rank - f.previous_rank AS INTEGER) AS notches,
                   f.previous_pd, f.current_pd, f.delay_pd,
                   f.open_receivables, f.overdue_amount, {limit_col}
                   f.exposure, f.current_pd * f.exposure AS exposure_at_risk{reasons}
            FROM listed f LEFT JOIN r ON r.buyer_id = f.buyer_id
            ORDER BY exposure_at_risk DESC NULLS LAST, f.buyer_id""").to_arrow_table()
        tally = ", ".join(f"count(*) FILTER (WHERE t_{n}) AS {n}" for n in TRIGGERS)
        fired_counts = con.sql(f"SELECT {tally} FROM flagged").df()
        by_trigger = {n: int(fired_counts[n].iloc[0]) for n in TRIGGERS}
        prev_pd = con.sql("SELECT pd FROM prev WHERE status = 'scored' AND pd IS NOT NULL"
                          ).fetchnumpy()["pd"]
        cur_pd = con.sql("SELECT pd FROM cur WHERE status = 'scored' AND pd IS NOT NULL"
                         ).fetchnumpy()["pd"]
    finally:
        con.close()
    seconds["runs"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    same = same_model(previous, current)
    s_psi = score_psi(np.asarray(prev_pd, dtype=float), np.asarray(cur_pd, dtype=float))
    features, more = feature_psi(previous, current, same)
    notes.extend(more)
    model_note = "" if same else (f"different models: {previous.model_label} at "
                                  f"{previous.as_of}, {current.model_label} at {current.as_of}")
    psi_table = pd.concat([
        pd.DataFrame({"kind": ["score"], "name": ["pd"], "psi": [s_psi],
                      "previous_rows": [len(prev_pd)], "current_rows": [len(cur_pd)],
                      "note": [model_note]}),
        features.assign(kind="feature", note=""),
    ], ignore_index=True)[["kind", "name", "psi", "previous_rows", "current_rows", "note"]]
    psi_table.insert(3, "flag", [flag(float(v), params) for v in psi_table["psi"]])
    seconds["psi"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _write_table(listed, files["list"])
    matrix = migration_matrix(counts)
    _atomic(files["migration"], lambda p: matrix.to_csv(p, index=False))
    _atomic(files["psi"], lambda p: psi_table.to_csv(p, index=False, float_format="%.6f"))
    ear = listed["exposure_at_risk"].to_numpy(zero_copy_only=False)
    total = float(np.nansum(np.asarray(ear, dtype=float))) if len(ear) else 0.0
    feature_flags = {f: int((psi_table["kind"].eq("feature") & psi_table["flag"].eq(f)).sum())
                     for f in ("watch", "act")}
    summary = {
        "previous": {"path": str(previous.path), "as_of": previous.as_of.isoformat(),
                     "model": previous.model_label, "data_fingerprint": previous.fingerprint},
        "current": {"path": str(current.path), "as_of": current.as_of.isoformat(),
                    "model": current.model_label, "data_fingerprint": current.fingerprint},
        "delay": None if delay is None else {"path": str(delay.path),
                                             "model": delay.model_label},
        "book": str(book.path), "same_model": same, "exposure_basis": basis,
        "params": params.model_dump(),
        "watch_list": {"buyers": listed.num_rows, "by_trigger": by_trigger,
                       "exposure_at_risk": total},
        "score_psi": {"psi": s_psi, "flag": flag(s_psi, params)},
        "feature_psi": feature_flags, "notes": notes,
        "files": {k_: str(v) for k_, v in files.items()},
    }
    seconds["write"] = time.perf_counter() - t0
    summary["seconds"] = {k_: round(v, 3) for k_, v in seconds.items()}
    text = json.dumps(summary, indent=2) + "\n"
    _atomic(files["summary"], lambda p: _write_text(p, text))
    return WatchResult(files, previous, current, listed.num_rows, by_trigger, basis, total,
                       s_psi, flag(s_psi, params), feature_flags, same, notes, seconds)
