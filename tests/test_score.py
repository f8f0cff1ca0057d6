"""``riskmodel score`` (local engine) end to end on a small trained and registered model: one
row per buyer with its status (checked against the raw files: the contract's default, the
365-day cut-off and ``score.recent_days``), PD, grade and reasons, the same numbers as
``riskmodel explain`` and the features stage, the column types of docs/scoring.md, the
feature profile, the ``score.typical_buyers`` sample of the medians the reasons quote,
lineage that matches the registry and the book, reruns that replace the output, a killed or
failed run that leaves no output, registry URIs and the messages of bad input.

The world, the book, the features and two registered models (version 1, alias champion;
version 2, alias challenger) are built once by :func:`build_project` and shared with
``test_score_spark.py``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.data.book import bucket_of
from riskmodel.explain.reasons import render_one, sentence_without_typical
from riskmodel.features.catalogue import SPECIAL_REASONS, describe
from riskmodel.modeling.model import OPTIONAL_FILES, load_model_dir
from riskmodel.pipeline import read_features
from riskmodel.registry import ARTIFACT_KEY
from training_helpers import write_params

pytestmark = pytest.mark.slow

runner = CliRunner()

NAME = "buyer-risk"
OBSERVED = dt.date(2023, 12, 31)
EARLIER = dt.date(2022, 6, 30)  # a quarterly snapshot date of the features file
#: a master scale that is not the default one, so grades must follow params
BOUNDS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0]
GRADES = [*(str(k) for k in range(1, 11)), "D"]
STATUSES = {"scored", "in_default", "no_recent_history"}
LINEAGE = ["model_name", "model_version", "model_run_id", "data_fingerprint", "scored_at"]
TRAIN = {"n_estimators": 60, "search": [{}]}
#: label.dpd_threshold and score.recent_days of the params (their defaults)
DPD = 90
RECENT = 365


def columns(k: int) -> list[str]:
    return ["buyer_id", "as_of", "status", "pd", "grade", "grade_rank",
            *(f"reason_{i}" for i in range(1, k + 1)),
            *(f"reason_{i}_text" for i in range(1, k + 1)), *LINEAGE]


def cli(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Project:
    root: Path
    params: Path
    raw: Path
    book: Path
    features: Path
    model: Path  # version 1, alias champion
    model2: Path  # version 2, alias challenger
    run1: str
    run2: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root.resolve() / 'mlflow.db'}"


@dataclass(frozen=True)
class Scoring:
    out: Path
    started: dt.datetime
    ended: dt.datetime
    stdout: str

    def frame(self) -> pd.DataFrame:
        return read_scores(self.out)


_CACHE: dict[str, Any] = {}


def _no_tracking_env(mp: pytest.MonkeyPatch) -> None:
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)


def build_project(factory: pytest.TempPathFactory) -> Project:
    """A 1,500-buyer world in a 3-bucket book, its features and labels, and two models
    trained and registered into ``sqlite:///<root>/mlflow.db`` (once per session)."""
    if "project" in _CACHE:
        return _CACHE["project"]
    root = factory.mktemp("score")
    params = write_params(root / "params.yaml", train=TRAIN, book={"buckets": 3},
                          master_scale={"upper_bounds": BOUNDS})
    # a second model, different from the first, registered into the same store
    params2 = write_params(root / "params2.yaml", train={**TRAIN, "n_estimators": 40,
                                                         "num_leaves": 7},
                           book={"buckets": 3}, master_scale={"upper_bounds": BOUNDS})
    raw, book = root / "raw", root / "book"
    feats, labs = root / "features.parquet", root / "labels.parquet"
    model, model2 = root / "model", root / "model2"
    steps = [
        ("synth", "--out", raw, "--buyers", "1500", "--start", "2020-01-01", "--end",
         OBSERVED.isoformat(), "--seed", "8"),
        ("validate", raw, "--params", params, "--out", book),
        ("features", book, "--params", params, "--out", feats),
        ("labels", book, "--params", params, "--out", labs),
        ("train", book, "--params", params, "--features", feats, "--labels", labs, "--out",
         model),
        ("train", book, "--params", params2, "--features", feats, "--labels", labs, "--out",
         model2),
    ]
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        outputs = []
        for step in steps:
            res = cli(*step)
            assert res.exit_code == 0, (step[0], res.output)
            outputs.append(res.stdout)
    assert "registered buyer-risk version 1, alias challenger" in outputs[4]
    assert "registered buyer-risk version 2, alias challenger" in outputs[5]
    run1 = json.loads((model / "registry.json").read_text())["run_id"]
    run2 = json.loads((model2 / "registry.json").read_text())["run_id"]
    project = Project(root, params, raw, book, feats, model, model2, run1, run2)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=project.tracking_uri, registry_uri=project.tracking_uri)
    client.set_registered_model_alias(NAME, "champion", "1")
    _CACHE["project"] = project
    return project


def run_score(data: Path, out: Path, params: Path, *extra: str | Path,
              ok: bool = True) -> tuple[Any, Scoring]:
    """``riskmodel score DATA --params P --out OUT EXTRA``, timed by the wall clock."""
    started = dt.datetime.now(dt.UTC)
    res = cli("score", data, "--params", params, "--out", out, *extra)
    ended = dt.datetime.now(dt.UTC)
    if ok:
        assert res.exit_code == 0, res.output
    return res, Scoring(out, started, ended, res.stdout if ok else "")


def base_scoring(factory: pytest.TempPathFactory) -> Scoring:
    """The book scored at observed_until with the model folder of version 1 (once)."""
    if "base" not in _CACHE:
        project = build_project(factory)
        with pytest.MonkeyPatch.context() as mp:
            _no_tracking_env(mp)
            _, done = run_score(project.book, project.root / "scores", project.params,
                                "--model", project.model)
        _CACHE["base"] = done
    return _CACHE["base"]


def read_scores(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values("buyer_id", ignore_index=True)


def parts(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("part-*.parquet"))


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Every column but scored_at equal, the PDs bit for bit."""
    a, b = a.drop(columns="scored_at"), b.drop(columns="scored_at")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    bits_a = a["pd"].to_numpy(dtype=np.float64).view(np.uint64)
    bits_b = b["pd"].to_numpy(dtype=np.float64).view(np.uint64)
    assert np.array_equal(bits_a, bits_b)


def assert_same_parts(a: Path, b: Path) -> None:
    """The output parts of two runs, part file for part file, equal but for scored_at: the
    same rows and the same Parquet layout."""
    assert parts(a) == parts(b) and parts(a)
    stamps = {read_manifest(a)["scored_at"], read_manifest(b)["scored_at"]}
    for name in parts(a):
        ta = pq.read_table(a / name).drop_columns(["scored_at"])
        tb = pq.read_table(b / name).drop_columns(["scored_at"])
        assert ta.schema.equals(tb.schema), name
        assert ta.equals(tb), name
        assert_same_layout(a / name, b / name, stamps)


def read_manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "_scoring.json").read_text())


def _key_values(meta: pq.FileMetaData, stamps: set[str]) -> dict[bytes, bytes]:
    """The schema's key-value metadata but for anything holding scored_at (by name, or a
    value that holds the run's scored_at)."""
    return {k: v for k, v in (meta.metadata or {}).items()
            if b"scored_at" not in k and not any(s.encode() in v for s in stamps)}


def assert_same_layout(a: Path, b: Path, stamps: set[str]) -> None:
    """Two part files written the same way: writer, row groups and rows in each, every
    column chunk's type, compression and encodings, the key-value metadata."""
    ma, mb = pq.read_metadata(a), pq.read_metadata(b)
    assert (ma.created_by, ma.format_version) == (mb.created_by, mb.format_version), a.name
    assert (ma.num_rows, ma.num_columns) == (mb.num_rows, mb.num_columns), a.name
    assert ma.num_row_groups == mb.num_row_groups, a.name
    for i in range(ma.num_row_groups):
        ga, gb = ma.row_group(i), mb.row_group(i)
        assert ga.num_rows == gb.num_rows, (a.name, i)
        for j in range(ga.num_columns):
            ca, cb = ga.column(j), gb.column(j)
            where = (a.name, i, ca.path_in_schema)
            assert ca.path_in_schema == cb.path_in_schema, where
            assert ca.physical_type == cb.physical_type, where
            assert ca.compression == cb.compression, where
            assert sorted(ca.encodings) == sorted(cb.encodings), where
            assert ca.has_dictionary_page == cb.has_dictionary_page, where
    kv = _key_values(ma, stamps)
    assert b"ARROW:schema" in kv, a.name  # the Arrow schema (ordered grade) travels along
    assert kv == _key_values(mb, stamps), a.name


def staging_beside(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.scoring-*"))


def expected_grade(pd_value: float) -> str:
    """Grade k holds PDs in (bounds[k-2], bounds[k-1]]."""
    for k, upper in enumerate(BOUNDS, start=1):
        if pd_value <= upper:
            return str(k)
    raise AssertionError(pd_value)


def activity(raw: Path, as_of: dt.date, days: int = 365) -> tuple[set[str], set[str]]:
    """From the raw invoices: the buyers with an invoice issued in the ``days`` days up to
    ``as_of`` or one open at ``as_of``; and the buyers with any invoice issued by then."""
    inv = pd.read_parquet(raw / "invoices", columns=["buyer_id", "issue_date", "paid_date"])
    at = pd.Timestamp(as_of)
    issue = pd.to_datetime(inv["issue_date"])
    paid = pd.to_datetime(inv["paid_date"])
    issued = issue <= at
    recent = issued & (issue > at - pd.Timedelta(days=days))
    still_open = issued & (paid.isna() | (paid > at))
    return set(inv.loc[recent | still_open, "buyer_id"]), set(inv.loc[issued, "buyer_id"])


def raw_invoices(raw: Path) -> pd.DataFrame:
    """The raw invoices (buyer, issue, due and paid dates as timestamps), read once."""
    key = ("invoices", str(raw))
    if key not in _CACHE:
        inv = pd.read_parquet(raw / "invoices",
                              columns=["buyer_id", "issue_date", "due_date", "paid_date"])
        for col in ("issue_date", "due_date", "paid_date"):
            inv[col] = pd.to_datetime(inv[col])
        _CACHE[key] = inv
    return _CACHE[key]


def raw_events(raw: Path) -> pd.DataFrame:
    key = ("events", str(raw))
    if key not in _CACHE:
        ev = pd.read_parquet(raw / "events.parquet", columns=["buyer_id", "event_date"])
        ev["event_date"] = pd.to_datetime(ev["event_date"])
        _CACHE[key] = ev
    return _CACHE[key]


def in_default_at(raw: Path, as_of: dt.date) -> set[str]:
    """The buyers in default at ``as_of`` by the raw data contract ("Outcome"), from the raw
    files: an event dated on or before ``as_of``, or an invoice unpaid at ``as_of`` (no
    ``paid_date <= as_of``) that is at least :data:`DPD` days past due then. An invoice that
    was 90 days past due earlier but is paid by ``as_of`` does not count (the contract's
    "at A"; the code reads it so too: ``dpd_now`` in ``riskmodel.features.labels``)."""
    at = pd.Timestamp(as_of)
    inv, ev = raw_invoices(raw), raw_events(raw)
    unpaid = (inv["issue_date"] <= at) & (inv["paid_date"].isna() | (inv["paid_date"] > at))
    late = unpaid & ((at - inv["due_date"]).dt.days >= DPD)
    return set(ev.loc[ev["event_date"] <= at, "buyer_id"]) | set(inv.loc[late, "buyer_id"])


def open_at(raw: Path, as_of: dt.date) -> set[str]:
    """Buyers with an invoice issued by ``as_of`` and not paid by then."""
    at = pd.Timestamp(as_of)
    inv = raw_invoices(raw)
    still = (inv["issue_date"] <= at) & (inv["paid_date"].isna() | (inv["paid_date"] > at))
    return set(inv.loc[still, "buyer_id"])


def days_since_last_invoice(raw: Path, as_of: dt.date) -> pd.Series:
    """Days from each buyer's last invoice issued by ``as_of`` to ``as_of``."""
    at = pd.Timestamp(as_of)
    inv = raw_invoices(raw)
    last = inv[inv["issue_date"] <= at].groupby("buyer_id")["issue_date"].max()
    return (at - last).dt.days


def expected_statuses(raw: Path, as_of: dt.date, recent_days: int = RECENT) -> pd.Series:
    """Each buyer's status by docs/scoring.md, from the raw files: ``in_default`` (the
    contract's, first), else ``no_recent_history`` (no invoice issued in the
    ``recent_days`` days up to ``as_of`` and nothing open, or no invoice by then), else
    ``scored``."""
    buyers = pd.read_parquet(raw / "buyers.parquet", columns=["buyer_id"])["buyer_id"]
    days = days_since_last_invoice(raw, as_of)
    recent = set(days.index[days < recent_days]) | open_at(raw, as_of)
    index = pd.Index(sorted(buyers.astype(str)), name="buyer_id")
    status = pd.Series("no_recent_history", index=index, dtype=object)
    status[index.isin(sorted(recent))] = "scored"
    status[index.isin(sorted(in_default_at(raw, as_of)))] = "in_default"
    return status


def assert_statuses(frame: pd.DataFrame, expected: pd.Series, buyers: set[str]) -> None:
    """The output's status of each of ``buyers`` is the expected one."""
    got = frame.set_index("buyer_id")["status"].astype(str)
    wrong = {b: (got[b], expected[b]) for b in sorted(buyers) if got[b] != expected[b]}
    assert not wrong, f"(output, expected) status of {len(wrong)} buyer(s): {wrong}"


def features_at(project: Project, when: dt.date) -> pd.DataFrame:
    feats = read_features(project.features)
    return feats[feats["as_of"] == pd.Timestamp(when)].reset_index(drop=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_process_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tracking_env(monkeypatch)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return build_project(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scoring:
    return base_scoring(tmp_path_factory)


@pytest.fixture(scope="module")
def earlier(project: Project) -> Scoring:
    """The book scored at an earlier snapshot date, when some buyers had no invoice yet."""
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        _, done = run_score(project.book, project.root / "scores_earlier", project.params,
                            "--model", project.model, "--as-of", EARLIER.isoformat())
    return done


@pytest.fixture(scope="module")
def twelve(project: Project) -> dict[str, Path]:
    """The same raw data in a 12-bucket book (its own params file), and a clean scoring."""
    folder = project.root / "twelve"
    folder.mkdir()
    params = write_params(folder / "params.yaml", train=TRAIN, book={"buckets": 12},
                          master_scale={"upper_bounds": BOUNDS})
    book = folder / "book"
    res = cli("validate", project.raw, "--params", params, "--out", book)
    assert res.exit_code == 0, res.output
    assert "12 buckets" in res.stdout
    clean = folder / "clean"
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking_env(mp)
        run_score(book, clean, params, "--model", project.model)
    return {"params": params, "book": book, "clean": clean}


# --------------------------------------------------------------------------- output


def test_one_row_per_buyer_with_status_pd_grade_and_reasons(
        base: Scoring, project: Project) -> None:
    frame = base.frame()
    assert list(frame.columns) == columns(3)  # score.reasons defaults to 3
    buyers = pd.read_parquet(project.raw / "buyers.parquet", columns=["buyer_id"])
    assert len(frame) == len(buyers) == 1500
    assert not frame["buyer_id"].duplicated().any()
    assert set(frame["buyer_id"]) == set(buyers["buyer_id"])
    assert (frame["as_of"] == OBSERVED).all()
    assert set(frame["status"]) == STATUSES  # the small world has every status

    d = frame[frame["status"] == "in_default"]
    assert (d["pd"] == 1.0).all() and (d["grade"] == "D").all() and (d["grade_rank"] == 11).all()
    assert (d["reason_1"] == "R91").all()

    n = frame[frame["status"] == "no_recent_history"]
    for col in ("pd", "grade", "grade_rank", "reason_1", "reason_1_text"):
        assert n[col].isna().all(), col

    s = frame[frame["status"] == "scored"]
    assert ((s["pd"] > 0) & (s["pd"] < 1)).all()
    assert s["grade"].astype(str).tolist() == [expected_grade(p) for p in s["pd"]]
    assert (s["grade_rank"] == s["grade"].astype(str).astype(int)).all()
    assert s["grade"].astype(str).nunique() >= 4
    # model reasons: codes with their sentences, no code twice for a buyer
    assert s["reason_1"].notna().mean() > 0.95
    assert s["reason_1"].dropna().str.fullmatch(r"R\d\d").all()
    for i in (1, 2, 3):
        assert (s[f"reason_{i}"].isna() == s[f"reason_{i}_text"].isna()).all()
        assert (s[f"reason_{i}_text"].dropna().str.len() > 10).all()
    codes = s[["reason_1", "reason_2", "reason_3"]]
    assert (codes.nunique(axis=1) == codes.notna().sum(axis=1)).all()


def test_grade_sorts_in_master_scale_order(base: Scoring) -> None:
    frame = base.frame()
    grade = frame["grade"]
    assert isinstance(grade.dtype, pd.CategoricalDtype) and grade.dtype.ordered
    assert list(grade.cat.categories) == GRADES
    graded = frame.dropna(subset=["grade"]).sort_values("grade", kind="stable")
    assert graded["grade_rank"].is_monotonic_increasing
    assert graded["grade"].iloc[-1] == "D"
    assert set(graded["grade_rank"].astype(int)) <= set(range(1, 12))
    assert (frame.loc[frame["grade"] > "9", "grade"].astype(str).isin(["10", "D"])).all()
    # a better grade has the lower PD
    s = frame[frame["status"] == "scored"]
    by = s.groupby("grade", observed=True)["pd"]
    assert (by.max().shift(1).dropna() < by.min().iloc[1:]).all()


def test_in_default_and_no_recent_history_follow_the_data(base: Scoring, project: Project,
                                                          earlier: Scoring) -> None:
    """Every buyer with an invoice by the as-of date has the status the raw files give
    (:func:`expected_statuses`: in default by the contract, computed here and not by the
    features stage; no_recent_history exactly the live buyers with no invoice issued in the
    365 days up to the as-of date and nothing open); a buyer with no invoice yet is never
    scored."""
    for run, when in ((base, OBSERVED), (earlier, EARLIER)):
        frame = run.frame()
        assert (frame["as_of"] == when).all()
        expected = expected_statuses(project.raw, when)
        active, issued = activity(project.raw, when)
        assert_statuses(frame, expected, issued)
        none = set(frame.loc[frame["status"] == "no_recent_history", "buyer_id"])
        defaulted = set(frame.loc[frame["status"] == "in_default", "buyer_id"])
        scored = set(frame.loc[frame["status"] == "scored", "buyer_id"])
        assert none and defaulted and not none & active
        assert scored == active - in_default_at(project.raw, when)
        assert not (set(frame["buyer_id"]) - issued) & scored  # no invoice yet: not scored
    # a lapsed buyer (invoices once, none for a year) at observed_until
    frame = base.frame()
    _, issued = activity(project.raw, OBSERVED)
    lapsed = set(frame.loc[frame["status"] == "no_recent_history", "buyer_id"]) & issued
    assert lapsed
    # at the earlier date some buyers had no invoice yet, and they are in the output
    frame = earlier.frame()
    _, issued = activity(project.raw, EARLIER)
    assert len(frame) == 1500 and set(frame["buyer_id"]) - issued


def test_in_default_is_the_contracts_for_every_buyer(base: Scoring, project: Project,
                                                      earlier: Scoring) -> None:
    """``in_default`` is exactly the buyers in default at the as-of date by the raw data
    contract, computed here from the raw files: a credit event dated on or before it, or an
    invoice unpaid then and 90 or more days past due. That includes a buyer with a credit
    event and no invoice at all by then (the small world has some): docs/scoring.md puts
    ``in_default`` before ``no_recent_history``, so an insolvent buyer is graded D with
    PD 1 and R91, not sent for a "fresh review"."""
    for run, when in ((base, OBSERVED), (earlier, EARLIER)):
        frame = run.frame().set_index("buyer_id")
        expected = in_default_at(project.raw, when)
        _, issued = activity(project.raw, when)
        assert expected & issued and expected - issued  # both kinds are in the data
        got = set(frame.index[frame["status"] == "in_default"])
        missing, extra = sorted(expected - got), sorted(got - expected)
        shown = {b: frame.loc[b, "status"] for b in missing}
        assert not missing and not extra, (
            f"at {when}: in default by the contract, not in the output: {shown} (of them "
            f"with no invoice by then: {sorted(set(missing) - issued)}); in_default in the "
            f"output only: {extra}")
        d = frame.loc[sorted(expected)]
        assert (d["pd"] == 1.0).all() and (d["grade"] == "D").all()
        assert (d["grade_rank"] == 11).all() and (d["reason_1"] == "R91").all()
        assert (d["reason_1_text"] == SPECIAL_REASONS["in_default"][2]).all()


def lapsed_buyer(raw: Path) -> tuple[str, dt.date]:
    """A buyer and the day of its last invoice ``L``: ``L + 365`` within the book, every
    invoice paid by ``L + 364`` and no event by ``L + 365`` (nothing open and not in default
    at either date); the one with the most invoices (then the smallest id)."""
    inv, ev = raw_invoices(raw), raw_events(raw)
    by = inv.groupby("buyer_id")
    g = pd.DataFrame({"last": by["issue_date"].max(), "paid": by["paid_date"].max(),
                      "unpaid": inv["paid_date"].isna().groupby(inv["buyer_id"]).sum(),
                      "n": by.size()})
    first_event = ev.groupby("buyer_id")["event_date"].min().reindex(g.index)
    end = g["last"] + pd.Timedelta(days=RECENT)
    ok = ((end <= pd.Timestamp(OBSERVED)) & (g["unpaid"] == 0) & (g["paid"] < end)
          & ~(first_event <= end))
    pick = g[ok].sort_index().sort_values("n", ascending=False, kind="stable")
    assert len(pick), "a buyer that lapsed a year before observed_until with nothing open"
    return str(pick.index[0]), pick["last"].iloc[0].date()


def test_no_recent_history_starts_365_days_after_the_last_invoice(
        project: Project, tmp_path: Path) -> None:
    """A lapsed buyer with nothing open is scored 364 days after its last invoice and is
    no_recent_history 365 days after it; every buyer with an invoice by then has the status
    the raw files give at both dates."""
    buyer, last = lapsed_buyer(project.raw)
    for days, status in ((RECENT - 1, "scored"), (RECENT, "no_recent_history")):
        when = last + dt.timedelta(days=days)
        assert days_since_last_invoice(project.raw, when)[buyer] == days
        assert buyer not in open_at(project.raw, when)
        assert buyer not in in_default_at(project.raw, when)
        _, done = run_score(project.book, tmp_path / f"at{days}", project.params, "--model",
                            project.model, "--as-of", when.isoformat(), "--explain", "0")
        frame = done.frame()
        assert (frame["as_of"] == when).all()
        row = frame.set_index("buyer_id").loc[buyer]
        assert row["status"] == status, (buyer, when)
        if status == "scored":
            assert 0 < row["pd"] < 1 and row["grade"] == expected_grade(row["pd"])
        else:
            assert pd.isna(row["pd"]) and pd.isna(row["grade"]) and pd.isna(row["grade_rank"])
        _, issued = activity(project.raw, when)
        assert_statuses(frame, expected_statuses(project.raw, when), issued)


def test_recent_days_moves_the_cut_off(base: Scoring, project: Project,
                                       tmp_path: Path) -> None:
    """With ``score.recent_days: 400`` exactly the buyers 365 to 399 days past their last
    invoice, with nothing open and not in default, go from no_recent_history to scored
    (with the model's PD of their features); every other row is as it was."""
    params = write_params(tmp_path / "params.yaml", train=TRAIN, book={"buckets": 3},
                          master_scale={"upper_bounds": BOUNDS}, score={"recent_days": 400})
    _, done = run_score(project.book, tmp_path / "scores", params, "--model", project.model,
                        "--explain", "0")
    before = base.frame()
    before = before.drop(columns=[c for c in before.columns if c.startswith("reason")])
    after = done.frame()
    assert list(after["buyer_id"]) == list(before["buyer_id"])
    days = days_since_last_invoice(project.raw, OBSERVED)
    expected = (set(days.index[(days >= RECENT) & (days < 400)])
                - open_at(project.raw, OBSERVED) - in_default_at(project.raw, OBSERVED))
    changed = after["status"] != before["status"]
    assert set(after.loc[changed, "buyer_id"]) == expected and expected
    assert (before.loc[changed, "status"] == "no_recent_history").all()
    moved = after[changed].set_index("buyer_id")
    assert (moved["status"] == "scored").all()
    assert ((moved["pd"] > 0) & (moved["pd"] < 1)).all()
    assert moved["grade"].astype(str).tolist() == [expected_grade(p) for p in moved["pd"]]
    model = load_model_dir(project.model)
    feats = features_at(project, OBSERVED).set_index("buyer_id").loc[moved.index].reset_index()
    pred = model.predict(feats[["buyer_id", "as_of", "status", *model.spec.names]])
    assert (moved["pd"].to_numpy() == pred["pd"].to_numpy()).all()
    assert_same_rows(before[~changed].reset_index(drop=True),
                     after[~changed].reset_index(drop=True))
    manifest = read_manifest(done.out)
    counts = before["status"].value_counts()
    assert manifest["by_status"]["scored"] == counts["scored"] + len(expected)
    assert manifest["by_status"]["no_recent_history"] == (counts["no_recent_history"]
                                                          - len(expected))


# --------------------------------------------------------------------------- consistency


def test_pd_and_reasons_are_those_of_explain(base: Scoring, project: Project) -> None:
    out = project.root / "explain"
    res = cli("explain", "--model", project.model, "--features", project.features, "--out",
              out, "--as-of", OBSERVED.isoformat(), "--top", "3")
    assert res.exit_code == 0, res.output
    frame = base.frame().set_index("buyer_id")
    _, issued = activity(project.raw, OBSERVED)  # explain rates the buyers with features
    rated = frame[(frame["status"] != "no_recent_history") & frame.index.isin(sorted(issued))]
    ex = pd.read_parquet(out / "scores.parquet").set_index("buyer_id")
    assert set(rated.index) <= set(ex.index)
    ex = ex.loc[rated.index]
    assert (rated["pd"].to_numpy() == ex["pd"].to_numpy()).all()
    assert (rated["grade"].astype(str).to_numpy() == ex["grade"].astype(str).to_numpy()).all()
    reasons = pd.read_parquet(out / "reasons.parquet")
    for k in (1, 2, 3):
        at = reasons[reasons["rank"] == k].set_index("buyer_id")
        code = at["code"].reindex(rated.index)
        text = at["text"].reindex(rated.index)
        assert rated[f"reason_{k}"].fillna("-").equals(code.fillna("-")), k
        assert rated[f"reason_{k}_text"].fillna("-").equals(text.fillna("-")), k
    assert rated["reason_1"].notna().sum() > 1000


def test_pd_at_an_earlier_date_is_the_models_pd_of_the_features(
        earlier: Scoring, project: Project) -> None:
    frame = earlier.frame().set_index("buyer_id")
    feats = features_at(project, EARLIER)
    model = load_model_dir(project.model)
    pred = model.predict(feats[["buyer_id", "as_of", "status", *model.spec.names]])
    pred.index = feats["buyer_id"]
    rated = frame[(frame["status"] != "no_recent_history") & frame.index.isin(pred.index)]
    assert len(rated) > 1000
    assert (rated["pd"].to_numpy() == pred.loc[rated.index, "pd"].to_numpy()).all()
    assert (rated["grade"].astype(str).to_numpy()
            == pred.loc[rated.index, "grade"].astype(str).to_numpy()).all()


# --------------------------------------------------------------------------- lineage


def test_lineage_and_manifest(base: Scoring, project: Project) -> None:
    from mlflow import MlflowClient

    frame = base.frame()
    reg = json.loads((project.model / "registry.json").read_text())
    mv = MlflowClient(tracking_uri=project.tracking_uri,
                      registry_uri=project.tracking_uri).get_model_version(NAME, "1")
    assert reg["version"] == "1" and mv.run_id == reg["run_id"] == project.run1
    book = json.loads((project.book / "manifest.json").read_text())
    assert len(book["raw_fingerprint"]) == 64
    assert (frame["model_name"] == NAME).all()
    assert (frame["model_version"] == "1").all()
    assert (frame["model_run_id"] == project.run1).all()
    assert (frame["data_fingerprint"] == book["raw_fingerprint"]).all()
    assert frame["scored_at"].nunique() == 1
    stamp = frame["scored_at"].iloc[0].to_pydatetime()
    assert stamp.utcoffset() == dt.timedelta(0)
    assert base.started.replace(microsecond=0) <= stamp <= base.ended

    manifest = json.loads((base.out / "_scoring.json").read_text())
    assert manifest["kind"] == "riskmodel-scores"
    assert manifest["as_of"] == OBSERVED.isoformat()
    assert manifest["buyers"] == len(frame) == 1500
    assert manifest["by_status"] == frame["status"].value_counts().to_dict()
    grades = frame["grade"].astype(str)[frame["grade"].notna()].value_counts().to_dict()
    assert manifest["by_grade"] == grades
    assert manifest["reasons"] == 3 and manifest["engine"] == "local"
    assert manifest["model_uri"] == str(project.model)
    for name in LINEAGE[:-1]:
        assert manifest[name] == frame[name].iloc[0], name
    assert dt.datetime.fromisoformat(manifest["scored_at"]) == stamp
    assert manifest["parts"] == parts(base.out) == [f"part-{k:05d}.parquet" for k in range(3)]
    # beside the parts only files that Parquet readers skip (names starting with "_")
    data = sorted(p.name for p in base.out.iterdir() if not p.name.startswith("_"))
    assert data == manifest["parts"]
    for name in manifest["parts"]:  # each part sorted by buyer id
        ids = pq.read_table(base.out / name, columns=["buyer_id"])["buyer_id"].to_pylist()
        assert ids == sorted(ids) and ids
    by = frame["status"].value_counts()
    assert (f"scored {by['scored']:,}, in_default {by['in_default']:,}, no_recent_history "
            f"{by['no_recent_history']:,}") in base.stdout
    assert f"with {NAME} v1 (local)" in base.stdout


def test_column_types_are_those_of_the_docs(base: Scoring) -> None:
    """docs/scoring.md "The output": the Parquet types of every part."""
    strings = ["buyer_id", "status", *(f"reason_{i}" for i in (1, 2, 3)),
               *(f"reason_{i}_text" for i in (1, 2, 3)), *LINEAGE[:-1]]
    for name in parts(base.out):
        schema = pq.read_schema(base.out / name)
        assert schema.names == columns(3), name
        assert schema.field("as_of").type == pa.date32()
        assert schema.field("pd").type == pa.float64()
        grade = schema.field("grade").type
        assert pa.types.is_dictionary(grade) and grade.ordered, grade
        assert grade.value_type == pa.string()
        assert schema.field("grade_rank").type == pa.int8()
        assert schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
        for col in strings:
            assert schema.field(col).type == pa.string(), col


def model_profile(model: Path) -> dict[str, Any]:
    """The domain profile file of a model folder."""
    path = model / "artifacts" / ARTIFACT_KEY / OPTIONAL_FILES["profile"]
    return json.loads(path.read_text())


def test_the_profile_counts_the_scored_buyers_in_the_training_bins(
        base: Scoring, project: Project) -> None:
    """``_profile.parquet``: for every profiled feature the scored buyers once each, in the
    bins of the model's training profile (recomputed here from the features stage's
    features at the as-of date)."""
    path = base.out / "_profile.parquet"
    assert path.is_file()
    prof = pd.read_parquet(path)
    assert list(prof.columns) == ["feature", "bin", "rows"]
    frame = base.frame()
    scored = sorted(frame.loc[frame["status"] == "scored", "buyer_id"])
    profile = model_profile(project.model)
    assert set(prof["feature"]) == set(profile["numeric"]) | set(profile["categorical"])
    sums = prof.groupby("feature")["rows"].sum()
    assert (sums == len(scored)).all(), sums[sums != len(scored)]
    assert (prof["rows"] > 0).all()
    feats = features_at(project, OBSERVED).set_index("buyer_id").loc[scored]
    checked = []
    for name, num in profile["numeric"].items():
        edges = np.asarray(num["edges"], dtype=float)
        values = pd.to_numeric(feats[name]).to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(values)
        counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"),
                             minlength=len(edges) + 1)
        expected = {str(i): int(c) for i, c in enumerate(counts) if c}
        if missing.any():
            expected["<NA>"] = int(missing.sum())
        got = prof[prof["feature"] == name].set_index("bin")["rows"].astype(int).to_dict()
        assert got == expected, name
        if len(expected) > 5 and missing.any():
            checked.append(name)
    assert len(checked) >= 2  # features with many bins and missing values among them
    for name in profile["categorical"]:
        got = prof[prof["feature"] == name].set_index("bin")["rows"].astype(int).to_dict()
        expected = feats[name].astype(object).fillna("<NA>").astype(str).value_counts()
        assert got == expected.astype(int).to_dict(), name


def typical_words(names: list[str], typical: pd.Series) -> dict[str, tuple[str, str]]:
    """Each feature's reason sentence around its ``{value}`` with ``typical`` quoted, as
    :func:`riskmodel.explain.reasons.reason_codes` fills it: (before, after)."""
    out = {}
    for name in names:
        info = describe(name)
        t = float(typical.get(name, np.nan))
        words = render_one(info.concept.render, t, info.concept.expm1) if np.isfinite(t) else None
        text = info.template if words is not None else sentence_without_typical(info)
        pre, _, post = text.replace("{typical}", words or "").partition("{value}")
        out[name] = (pre, post)
    return out


def test_typical_buyers_takes_the_medians_of_the_first_buckets(
        base: Scoring, project: Project, tmp_path: Path) -> None:
    """With ``score.typical_buyers: 300`` the reason sentences quote the medians over the
    live buyers of the first buckets that hold 300 buyers (here bucket 0), computed here from
    the features at the as-of date; every sentence of the default run (the whole book) is the
    same sentence with the other median, and only where the two medians read differently."""
    from riskmodel.explain.reasons import typical_values

    params = write_params(tmp_path / "params.yaml", train=TRAIN, book={"buckets": 3},
                          master_scale={"upper_bounds": BOUNDS}, score={"typical_buyers": 300})
    _, done = run_score(project.book, tmp_path / "scores", params, "--model", project.model)
    small, full = done.frame(), base.frame()
    texts = [f"reason_{i}_text" for i in (1, 2, 3)]
    # the medians move the sentences only: the same statuses, PDs and codes
    assert_same_rows(full.drop(columns=texts), small.drop(columns=texts))

    feats = features_at(project, OBSERVED)
    feats["bucket"] = [bucket_of(b, 3) for b in feats["buyer_id"]]
    sample, seen = [], 0
    for k in range(3):
        sample.append(k)
        seen += int((feats["bucket"] == k).sum())
        if seen >= 300:
            break
    assert sample == [0]  # bucket 0 alone holds 300 buyers with an invoice
    names = list(load_model_dir(project.model).spec.names)
    live = feats[feats["status"].astype(str) != "in_default"]
    assert len(live) < len(feats)
    medians = {"full": typical_values(live, names),
               "small": typical_values(live[live["bucket"].isin(sample)], names)}
    # spelled out for one feature: the median of bucket 0's live buyers
    col = pd.to_numeric(live.loc[live["bucket"] == 0, "dbt_mean_180"]).dropna()
    assert medians["small"]["dbt_mean_180"] == float(np.median(col))
    around = {k: typical_words(names, v) for k, v in medians.items()}
    differ = {n for n in names if around["full"][n] != around["small"][n]}
    assert len(differ) >= 5

    changed = 0
    special = {code for code, _, _ in SPECIAL_REASONS.values()}
    for i in (1, 2, 3):
        code, a, b = full[f"reason_{i}"], full[f"reason_{i}_text"], small[f"reason_{i}_text"]
        for row in np.flatnonzero(a.notna().to_numpy()):
            text, c = a.iloc[row], code.iloc[row]
            options = set()
            for n in names:
                pre, post = around["full"][n]
                if (describe(n).code == c and len(text) >= len(pre) + len(post)
                        and text.startswith(pre) and text.endswith(post)):
                    value = text[len(pre):len(text) - len(post)]
                    options.add(around["small"][n][0] + value + around["small"][n][1])
            if not options:  # no median quoted: a special reason, or a missing value
                assert c in special or any(describe(n).code == c
                                           and text == describe(n).missing_template
                                           for n in names), (c, text)
                options = {text}
            assert len(options) == 1, (c, text, options)
            assert b.iloc[row] == options.pop(), (c, text)
            changed += b.iloc[row] != text
    assert changed > 50


# --------------------------------------------------------------------------- reruns


def test_a_rerun_gives_the_same_rows_and_replaces_the_output(project: Project,
                                                             tmp_path: Path) -> None:
    """The second run replaces the whole folder: a file of the user's and a stray part put
    into the first output are gone, and the manifest is the second run's."""
    out = tmp_path / "scores"
    _, first = run_score(project.book, out, project.params, "--model", project.model)
    before = first.frame()
    saved = tmp_path / "first"
    shutil.copytree(out, saved)
    # still a scoring output (its _scoring.json is there), with two files no run writes
    (out / "_marker").write_text("left by hand")
    shutil.copyfile(out / "part-00000.parquet", out / "part-99999.parquet")
    _, second = run_score(project.book, out, project.params, "--model", project.model)
    assert not (out / "_marker").exists()
    assert not (out / "part-99999.parquet").exists()
    after = second.frame()
    assert_same_rows(before, after)
    assert_same_parts(saved, out)
    assert read_manifest(out)["parts"] == parts(out) == parts(saved)
    stamp = dt.datetime.fromisoformat(read_manifest(out)["scored_at"])
    assert stamp >= second.started.replace(microsecond=0)
    assert stamp > dt.datetime.fromisoformat(read_manifest(saved)["scored_at"])
    assert (after["scored_at"] == pd.Timestamp(stamp)).all()
    assert not staging_beside(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "scores"]


def test_the_bucket_count_changes_no_row(base: Scoring, twelve: dict[str, Path]) -> None:
    assert len(parts(twelve["clean"])) == 12
    assert_same_rows(base.frame(), read_scores(twelve["clean"]))


def test_a_raw_folder_scores_like_its_book(base: Scoring, project: Project,
                                           tmp_path: Path) -> None:
    _, done = run_score(project.raw, tmp_path / "scores", project.params, "--model",
                        project.model)
    assert_same_rows(base.frame(), done.frame())
    assert_same_parts(base.out, done.out)


RISKMODEL = Path(sys.executable).parent / "riskmodel"


def start_and_kill(book: Path, params: Path, out: Path, model: Path) -> Path:
    """Start ``riskmodel score`` in a subprocess and SIGKILL it once its staging folder holds
    a finished part under features/ or data/; returns the staging folder it left."""
    exe = str(RISKMODEL) if RISKMODEL.exists() else shutil.which("riskmodel")
    assert exe, "the riskmodel script of this environment"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_ROOT")}
    proc = subprocess.Popen([exe, "score", str(book), "--params", str(params), "--out",
                             str(out), "--model", str(model)], env=env, cwd=out.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging: Path | None = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = sorted(out.parent.glob(f".{out.name}.scoring-{proc.pid}-*"))
            if found and [*found[0].glob("features/part-*"), *found[0].glob("data/part-*")]:
                staging = found[0]
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()  # reaped: its pid is no longer alive
    assert staging is not None, "the run ended before writing a part"
    assert proc.returncode == -signal.SIGKILL
    return staging


def test_a_killed_run_leaves_no_output_and_a_rerun_cleans_up(
        project: Project, twelve: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores"
    staging = start_and_kill(twelve["book"], twelve["params"], out, project.model)
    assert not out.exists()
    assert staging.is_dir() and staging_beside(out) == [staging]
    _, done = run_score(twelve["book"], out, twelve["params"], "--model", project.model)
    assert not staging.exists() and not staging_beside(out)
    assert_same_rows(read_scores(twelve["clean"]), done.frame())
    assert_same_parts(twelve["clean"], out)


def test_a_killed_run_leaves_the_earlier_output_as_it_was(
        project: Project, twelve: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores"
    shutil.copytree(twelve["clean"], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    staging = start_and_kill(twelve["book"], twelve["params"], out, project.model)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert staging.is_dir()
    _, done = run_score(twelve["book"], out, twelve["params"], "--model", project.model)
    assert not staging.exists() and not staging_beside(out)
    assert_same_rows(read_scores(twelve["clean"]), done.frame())
    assert_same_parts(twelve["clean"], out)
    stamp = pd.Timestamp(json.loads((out / "_scoring.json").read_text())["scored_at"])
    assert (done.frame()["scored_at"] == stamp).all()


class LastBucketFailed(RuntimeError):
    """The error the patched scoring of the last bucket raises."""


def fail_the_last_bucket(monkeypatch: pytest.MonkeyPatch, n_buckets: int) -> list[int]:
    """Make the local engine's scoring of bucket ``n_buckets - 1`` (the last, scored after
    every other bucket's part is written into the staging folder) raise; returns the buckets
    whose scoring was started."""
    import riskmodel.scoring.local as local_engine

    real = local_engine.score_bucket
    started: list[int] = []

    def failing(job: Any, k: int, *args: Any, **kwargs: Any) -> Any:
        started.append(k)
        if k == n_buckets - 1:
            written = sorted(p.name for p in Path(job.workdir, "data").glob("part-*.parquet"))
            assert written == [f"part-{i:05d}.parquet" for i in range(k)]
            raise LastBucketFailed(f"bucket {k} failed")
        return real(job, k, *args, **kwargs)

    monkeypatch.setattr(local_engine, "score_bucket", failing)
    return started


def test_a_failure_in_the_last_bucket_leaves_no_output(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = fail_the_last_bucket(monkeypatch, 3)
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--explain", "0", ok=False)
    assert isinstance(res.exception, LastBucketFailed), res.output
    assert res.exit_code != 0
    assert started == [0, 1, 2]
    assert not out.exists() and not staging_beside(out)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_last_bucket_leaves_the_earlier_output_and_a_rerun_replaces_it(
        base: Scoring, project: Project, twelve: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier 12-part output at --out stays byte for byte as it was when the 3-bucket
    book's last bucket fails; the next (whole) run leaves exactly the 3 parts of its
    manifest, those of a clean run."""
    out = tmp_path / "scores"
    shutil.copytree(twelve["clean"], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(parts(out)) == 12
    started = fail_the_last_bucket(monkeypatch, 3)
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--explain", "0", ok=False)
    assert isinstance(res.exception, LastBucketFailed), res.output
    assert started == [0, 1, 2]
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not staging_beside(out)
    monkeypatch.undo()
    _, done = run_score(project.book, out, project.params, "--model", project.model)
    assert parts(out) == read_manifest(out)["parts"] == [f"part-{k:05d}.parquet"
                                                        for k in range(3)]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("_")) == parts(out)
    assert_same_rows(base.frame(), done.frame())
    assert_same_parts(base.out, out)
    assert not staging_beside(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


# --------------------------------------------------------------------------- registry URIs


def lineage_of(frame: pd.DataFrame) -> tuple[str, str, str]:
    values = frame[["model_name", "model_version", "model_run_id"]].drop_duplicates()
    assert len(values) == 1
    return tuple(values.iloc[0])  # type: ignore[return-value]


def test_the_champion_is_the_default_model(base: Scoring, project: Project,
                                           tmp_path: Path) -> None:
    _, done = run_score(project.book, tmp_path / "scores", project.params)
    frame = done.frame()
    assert lineage_of(frame) == (NAME, "1", project.run1)
    assert_same_rows(base.frame(), frame)
    manifest = json.loads((done.out / "_scoring.json").read_text())
    assert manifest["model_uri"] == f"models:/{NAME}@champion"
    assert not staging_beside(done.out)


def test_models_and_runs_uris(base: Scoring, project: Project, tmp_path: Path) -> None:
    _, folder = run_score(project.book, tmp_path / "folder2", project.params, "--model",
                          project.model2)
    v2 = folder.frame()
    assert lineage_of(v2) == (NAME, "2", project.run2)
    # a different model: the same statuses, and most scored buyers' PDs differ
    v1 = base.frame()
    assert v2["status"].equals(v1["status"])
    scored = v1["status"] == "scored"
    assert scored.sum() > 1000
    assert (v2.loc[scored, "pd"] != v1.loc[scored, "pd"]).mean() > 0.5

    _, alias = run_score(project.book, tmp_path / "alias", project.params, "--model",
                         f"models:/{NAME}@challenger")
    assert_same_rows(v2, alias.frame())
    _, run = run_score(project.book, tmp_path / "run", project.params, "--model",
                       f"runs:/{project.run2}/model")
    assert_same_rows(v2, run.frame())
    _, version = run_score(project.book, tmp_path / "version", project.params, "--model",
                           f"models:/{NAME}/1", "--explain", "0")
    frame = version.frame()
    assert lineage_of(frame) == (NAME, "1", project.run1)
    assert (frame["pd"].fillna(-1) == base.frame()["pd"].fillna(-1)).all()
    for out, uri in ((alias.out, f"models:/{NAME}@challenger"),
                     (run.out, f"runs:/{project.run2}/model")):
        assert json.loads((out / "_scoring.json").read_text())["model_uri"] == uri
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_model_folder_that_was_never_registered(base: Scoring, project: Project,
                                                   tmp_path: Path) -> None:
    """A trained folder without registry.json: the same PDs, empty model name, version and
    run id, and the summary says so."""
    model = tmp_path / "model"
    shutil.copytree(project.model, model, ignore=shutil.ignore_patterns("registry.json"))
    assert not (model / "registry.json").exists()
    _, done = run_score(project.book, tmp_path / "scores", project.params, "--model", model,
                        "--explain", "0")
    frame = done.frame()
    for name in ("model_name", "model_version", "model_run_id"):
        assert (frame[name] == "").all(), name
        assert read_manifest(done.out)[name] == "", name
    ref = base.frame()
    assert (frame["data_fingerprint"] == ref["data_fingerprint"]).all()
    assert (frame["pd"].fillna(-1) == ref["pd"].fillna(-1)).all()
    assert read_manifest(done.out)["model_uri"] == str(model)
    assert "with an unregistered model (local)" in done.stdout
    assert f"{NAME} v" not in done.stdout


def test_explain_sets_the_reason_columns(base: Scoring, project: Project,
                                         tmp_path: Path) -> None:
    _, none = run_score(project.book, tmp_path / "none", project.params, "--model",
                        project.model, "--explain", "0")
    frame = none.frame()
    assert list(frame.columns) == columns(0)
    assert not [c for c in pq.read_schema(next(none.out.glob("part-*.parquet"))).names
                if c.startswith("reason")]
    full = base.frame()
    assert_same_rows(full.drop(columns=[c for c in full.columns if c.startswith("reason")]),
                     frame)
    assert json.loads((none.out / "_scoring.json").read_text())["reasons"] == 0
    _, one = run_score(project.book, tmp_path / "one", project.params, "--model",
                       project.model, "--explain", "1")
    frame = one.frame()
    assert list(frame.columns) == columns(1)
    assert frame["reason_1"].equals(full["reason_1"])
    assert frame["reason_1_text"].equals(full["reason_1_text"])


# --------------------------------------------------------------------------- errors


def assert_refused(res: Any, *words: str) -> None:
    assert res.exit_code == 2, res.output
    for word in words:
        assert word in res.stderr, (word, res.stderr)


def test_as_of_outside_the_book_is_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--as-of", "2024-01-01", ok=False)
    assert_refused(res, "--as-of 2024-01-01", "after the book's observed_until 2023-12-31")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--as-of", "2019-12-31", ok=False)
    assert_refused(res, "--as-of 2019-12-31", "before the book's first invoice (2020-01-01)")
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_be_found_is_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", tmp_path / "nomodel",
                       ok=False)
    assert_refused(res, "no such model folder", str(tmp_path / "nomodel"))
    res, _ = run_score(project.book, out, project.params, "--model",
                       f"models:/{NAME}@nosuchalias", ok=False)
    assert_refused(res, f"models:/{NAME}@nosuchalias", "'nosuchalias'")
    res, _ = run_score(project.book, out, project.params, "--model", f"models:/{NAME}/9",
                       ok=False)
    assert_refused(res, f"models:/{NAME}/9", "version 9")
    res, _ = run_score(project.book, out, project.params, "--model", "models:/nosuchmodel@x",
                       ok=False)
    assert_refused(res, "models:/nosuchmodel@x", "'nosuchmodel'")
    res, _ = run_score(project.book, out, project.params, "--model", f"runs:/{'0' * 32}/model",
                       ok=False)
    assert_refused(res, f"runs:/{'0' * 32}/model", "not found")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_model_folder_is_refused(project: Project,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "scores"
    for folder in (tmp_path / "notamodel", project.book):
        if not folder.exists():
            folder.mkdir()
            (folder / "booster.txt").write_text("not a model")
        res, _ = run_score(project.book, out, project.params, "--model", folder, ok=False)
        assert_refused(res, f"--model {folder}", "not a model folder")
    assert not out.exists() and not staging_beside(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notamodel"]


def test_the_default_model_without_a_store_is_refused_and_creates_no_store(
        project: Project, tmp_path: Path) -> None:
    """Scoring only reads the registry: a project with no MLflow store is told so, and is
    left without one (as ``promote`` does)."""
    params = tmp_path / "params.yaml"
    shutil.copyfile(project.params, params)
    res, _ = run_score(project.book, tmp_path / "scores", params, ok=False)
    assert_refused(res, f"models:/{NAME}@champion")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_model_needing_features_the_data_cannot_give_is_refused(
        project: Project, tmp_path: Path) -> None:
    names = load_model_dir(project.model).spec.names
    assert "disputed_share_365" in names and "dbt_mean_180" in names
    # a book without dispute dates (contract 1.0 invoices)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("buyers.parquet", "events.parquet"):
        shutil.copyfile(project.raw / name, raw / name)
    inv = pq.read_table(project.raw / "invoices")
    assert "dispute_date" in inv.column_names
    (raw / "invoices").mkdir()
    pq.write_table(inv.drop_columns(["dispute_date"]), raw / "invoices" / "part-0.parquet")
    out = tmp_path / "scores"
    res, _ = run_score(raw, out, project.params, "--model", project.model, ok=False)
    assert_refused(res, "disputed_share_365", "no dispute_date column")
    # params whose windows do not make the model's features
    params = write_params(tmp_path / "params.yaml", train=TRAIN, book={"buckets": 3},
                          features={"windows": [90, 365]},
                          master_scale={"upper_bounds": BOUNDS})
    res, _ = run_score(project.book, out, params, "--model", project.model, ok=False)
    assert_refused(res, "_180", "features.windows")
    assert not out.exists() and not staging_beside(out)


def test_an_out_folder_that_is_not_a_scoring_output_is_left_alone(
        project: Project, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "sub" / "part-00000.parquet").write_bytes(b"not scores")
    res, _ = run_score(project.book, out, project.params, "--model", project.model, ok=False)
    assert_refused(res, str(out), "not a scoring output")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "keep.txt", "sub", "sub/part-00000.parquet"]
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "sub" / "part-00000.parquet").read_bytes() == b"not scores"
    afile = tmp_path / "afile"
    afile.write_text("x")
    res, _ = run_score(project.book, afile, project.params, "--model", project.model, ok=False)
    assert_refused(res, "afile")
    assert afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]


def test_bad_engine_options_are_refused(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--engine", "foo", ok=False)
    assert_refused(res, "--engine 'foo'", "'local' or 'spark'")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--spark-master", "local[2]", ok=False)
    assert_refused(res, "--spark-master needs --engine spark")
    res, _ = run_score(project.book, out, project.params, "--model", project.model,
                       "--explain", "-1", ok=False)
    assert_refused(res, "--explain")
    assert list(tmp_path.iterdir()) == []
