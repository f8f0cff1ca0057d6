"""riskmodel watch on a hand-built book and two hand-written scoring outputs: every trigger at
its boundary, point-in-time overdue invoices at both dates, exposure at risk on open
receivables and on credit limits, the migration matrix, score and feature PSI, and the
errors a user meets (exit 2). Every expected figure is worked out by hand in the comments."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.data.book import Book
from riskmodel.decisions.watch import score_psi
from riskmodel.params import ParamsError, parse_params

runner = CliRunner()
PREV = dt.date(2024, 3, 31)
CUR = dt.date(2024, 6, 30)
OBSERVED = dt.date(2024, 7, 31)  # the book reaches past the current as-of date

# invoice_id, buyer, issue, due, paid ('' = unpaid), amount.  Late at T: open at T (issued by
# T, not paid by T) and due + 30 days <= T.  PREV = 2024-03-31, CUR = 2024-06-30.
INVOICES = [
    ("a0", "A", "2024-01-01", "2024-01-31", "2024-02-10", 700),    # paid before both dates
    ("a1", "A", "2024-06-01", "2024-07-01", "", 1000),             # open at CUR, not late
    ("a2", "A", "2024-07-05", "2024-07-06", "", 10000),            # issued after CUR: ignored
    ("b1", "B", "2024-06-10", "2024-07-10", "", 500),
    ("c1", "C", "2024-05-01", "2024-05-31", "", 2000),             # 30 dpd at CUR exactly: late
    ("d1", "D", "2024-01-01", "2024-02-01", "", 300),              # late at PREV and at CUR
    ("e1", "E", "2024-01-15", "2024-02-15", "2024-04-10", 400),    # late at PREV (paid later)
    ("e2", "E", "2024-04-20", "2024-05-20", "", 600),              # late at CUR
    ("f1", "F", "2024-05-02", "2024-06-01", "", 800),              # 29 dpd at CUR: not late
    ("g1", "G", "2024-06-15", "2024-07-15", "", 100),
    ("h1", "H", "2024-06-15", "2024-07-15", "", 100),
    ("i1", "I", "2024-06-15", "2024-07-15", "", 100),
    ("j1", "J", "2024-06-20", "2024-07-20", "", 50),
    ("k1", "K", "2024-06-01", "2024-07-01", "", 250),
    ("l1", "L", "2024-06-01", "2024-07-01", "2024-06-20", 900),    # paid by CUR: not open
    ("m1", "M", "2022-01-01", "2022-02-01", "2022-02-01", 90),
    ("o1", "O", "2024-04-01", "2024-05-01", "2024-07-10", 1500),   # paid after CUR: late at CUR
]
BUYERS = "ABCDEFGHIJKLMO"

# buyer: (status, grade, pd) of the previous and the current run; None = not in that run
RUNS: dict[str, tuple[Any, Any]] = {
    "A": (("scored", "3", 0.004), ("scored", "5", 0.02)),   # 2 notches; 0.02 >= 2 x 0.004
    "B": (("scored", "4", 0.010), ("scored", "5", 0.020)),  # 1 notch; exactly doubled
    "C": (("scored", "5", 0.02), ("scored", "5", 0.039)),   # 0.039 < 0.04
    "D": (("scored", "6", 0.04), ("scored", "6", 0.05)),
    "E": (("scored", "6", 0.04), ("scored", "6", 0.045)),
    "F": (("scored", "5", 0.02), ("scored", "5", 0.03)),
    "G": (("scored", "2", 0.002), ("scored", "2", 0.003)),
    "H": (("scored", "2", 0.002), ("scored", "2", 0.0025)),
    "I": (("scored", "2", 0.002), ("scored", "2", 0.0025)),
    "J": (None, ("scored", "1", 0.001)),                    # new
    "K": (("scored", "9", 0.30), ("in_default", "D", 1.0)),  # 9 -> D (11): 2 notches
    "L": (("no_recent_history", None, None), ("scored", "2", 0.0025)),
    "M": (("scored", "7", 0.08), ("no_recent_history", None, None)),
    "O": (("scored", "4", 0.010), ("scored", "4", 0.011)),
    "Z": (("scored", "3", 0.005), None),                    # only in the previous run
}
# the delay model at CUR: (status, pd)
DELAY = {"A": ("scored", 0.1), "B": ("scored", 0.02), "C": ("scored", 0.15),
         "D": ("in_default", 1.0), "E": ("in_default", 1.0), "F": ("scored", 0.1),
         "G": ("scored", 0.25), "H": ("scored", 0.2), "I": ("in_default", 1.0),
         "J": ("scored", 0.01), "K": ("in_default", 1.0), "L": ("scored", 0.01),
         "M": ("no_recent_history", None), "O": ("scored", 0.05)}


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Book:
    root = tmp_path_factory.mktemp("watch")
    raw = root / "raw"
    raw.mkdir()
    pd.DataFrame(INVOICES, columns=["invoice_id", "buyer_id", "issue_date", "due_date",
                                    "paid_date", "amount"]).to_csv(raw / "invoices.csv",
                                                                   index=False)
    pd.DataFrame({"buyer_id": list(BUYERS), "country": "DE", "industry": "C"}).to_csv(
        raw / "buyers.csv", index=False)
    pd.DataFrame({"buyer_id": ["K"], "event_date": ["2024-05-15"],
                  "event_type": ["insolvency"]}).to_csv(raw / "events.csv", index=False)
    pipeline.validate(raw, root / "book", parse_params({}), observed_until=OBSERVED)
    return Book(root / "book")


def scoring_output(path: Path, as_of: dt.date, rows: dict[str, tuple[Any, ...]],
                   fingerprint: str, *, version: str = "4",
                   profile: dict[str, list[int]] | None = None) -> Path:
    """A folder as `riskmodel score` writes it: a part, _scoring.json, _profile.parquet."""
    path.mkdir(parents=True)
    ids = sorted(rows)
    rank = {**{str(g): g for g in range(1, 11)}, "D": 11}
    grade = [rows[b][1] if len(rows[b]) > 2 else None for b in ids]
    frame = pd.DataFrame({
        "buyer_id": ids, "as_of": as_of, "status": [rows[b][0] for b in ids],
        "pd": [rows[b][-1] for b in ids], "grade": grade,
        "grade_rank": pd.array([rank.get(g) if g else None for g in grade], dtype="Int8"),
        "reason_1": [f"R0{i % 9 + 1}" for i in range(len(ids))],
        "reason_2": "R90", "reason_3": None,
        "reason_1_text": [f"first reason of {b}" for b in ids],
        "reason_2_text": [f"second reason of {b}" for b in ids], "reason_3_text": None,
        "model_name": "buyer-risk", "model_version": version, "model_run_id": f"run{version}",
        "data_fingerprint": fingerprint,
    })
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                   path / "part-00000.parquet")
    manifest = {"kind": "riskmodel-scores", "as_of": as_of.isoformat(),
                "model_name": "buyer-risk", "model_version": version,
                "model_run_id": f"run{version}", "data_fingerprint": fingerprint,
                "reasons": 3, "model_uri": "models:/buyer-risk@champion",
                "parts": ["part-00000.parquet"]}
    (path / "_scoring.json").write_text(json.dumps(manifest), encoding="utf-8")
    if profile is not None:
        pd.DataFrame([(f, str(i), n) for f, counts in profile.items()
                      for i, n in enumerate(counts)],
                     columns=["feature", "bin", "rows"]).to_parquet(path / "_profile.parquet")
    return path


def runs(book: Book, root: Path, *, prev_fp: str | None = None, cur_fp: str | None = None,
         cur_version: str = "4", delay_as_of: dt.date = CUR,
         delay_fp: str | None = None) -> dict[str, Path]:
    fp = book.manifest.raw_fingerprint
    prev = {b: r[0] for b, r in RUNS.items() if r[0] is not None}
    cur = {b: r[1] for b, r in RUNS.items() if r[1] is not None}
    prev_profile = {"x": [50, 50], "y": [80, 20], "w": [70, 30]}
    cur_profile = {"x": [50, 50], "y": [50, 50], "w": [50, 50]}
    return {
        "previous": scoring_output(root / "prev", PREV, prev, prev_fp or fp,
                                   profile=prev_profile),
        "current": scoring_output(root / "cur", CUR, cur, cur_fp or fp, version=cur_version,
                                  profile=cur_profile),
        "delay": scoring_output(root / "delay", delay_as_of,
                                {b: (s, p) for b, (s, p) in DELAY.items()},
                                delay_fp or cur_fp or fp),
    }


def watch(book: Book, paths: dict[str, Path], out: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["watch", "--previous", str(paths["previous"]),
                              "--current", str(paths["current"]), "--book", str(book.path),
                              "--out", str(out), *extra])
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


# --------------------------------------------------------------------------- the list


def test_the_watch_list_by_trigger_and_exposure_at_risk(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    code, text = watch(book, paths, tmp_path / "w.parquet", "--delay", str(paths["delay"]))
    assert code == 0, text
    got = pd.read_parquet(tmp_path / "w.parquet")
    # exposure at risk = current PD x open receivables at CUR:
    # K 1.0 x 250, C 0.039 x 2000 = 78, A 0.02 x 1000 = 20 (a2 issued after CUR),
    # O 0.011 x 1500 = 16.5, B 0.02 x 500 = 10, G 0.003 x 100 = 0.3
    assert got["buyer_id"].tolist() == ["K", "C", "A", "O", "B", "G"]
    assert got["triggers"].tolist() == ["downgrade", "newly_overdue", "downgrade,pd_doubled",
                                        "newly_overdue", "pd_doubled", "delay_model"]
    assert got["exposure_at_risk"].tolist() == pytest.approx([250, 78, 20, 16.5, 10, 0.3])
    assert got["open_receivables"].tolist() == [250, 2000, 1000, 1500, 500, 100]
    assert got["exposure"].tolist() == [250, 2000, 1000, 1500, 500, 100]
    assert got["overdue_amount"].tolist() == [0, 2000, 0, 1500, 0, 0]
    assert got["notches"].tolist() == [2, 0, 2, 0, 1, 0]
    assert got["previous_grade"].tolist() == ["9", "5", "3", "4", "4", "2"]
    assert got["current_grade"].tolist() == ["D", "5", "5", "4", "5", "2"]
    assert got["previous_pd"].tolist() == [0.30, 0.02, 0.004, 0.010, 0.010, 0.002]
    assert got["current_pd"].tolist() == [1.0, 0.039, 0.02, 0.011, 0.020, 0.003]
    assert got["delay_pd"].tolist() == [1.0, 0.15, 0.1, 0.05, 0.02, 0.25]
    assert got["current_status"].tolist() == ["in_default", *["scored"] * 5]
    # each buyer's own reasons, from the current run
    assert got["reason_1_text"].tolist() == [f"first reason of {b}" for b in "KCAOBG"]
    assert got["reason_2"].tolist() == ["R90"] * 6
    assert "current_limit" not in got.columns
    assert "watch list: 6 buyers (downgrade 2, pd_doubled 2, newly_overdue 2, delay_model 1)" \
        in text


def test_who_stays_off_the_list(book: Book, tmp_path: Path) -> None:
    """D and E were already 30+ days late at PREV (E's invoice was paid only after PREV),
    F is 29 days late, H's delay PD is at the threshold, I is in default for the delay
    model, J is new, L was not scored before, M is not scored now."""
    paths = runs(book, tmp_path)
    code, text = watch(book, paths, tmp_path / "w.parquet", "--delay", str(paths["delay"]))
    assert code == 0, text
    listed = set(pd.read_parquet(tmp_path / "w.parquet")["buyer_id"])
    assert listed.isdisjoint(set("DEFHIJLMZ"))


def test_without_delay_scores_the_delay_trigger_never_fires(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    code, text = watch(book, paths, tmp_path / "w.csv")
    assert code == 0, text
    got = pd.read_csv(tmp_path / "w.csv", dtype={"buyer_id": str})
    assert got["buyer_id"].tolist() == ["K", "C", "A", "O", "B"]
    assert got["delay_pd"].isna().all()


def test_exposure_at_risk_on_credit_limits(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    lines = tmp_path / "lines.csv"
    pd.DataFrame({"buyer_id": ["A", "A", "K", "O", "B", "G", "X"],
                  "supplier_id": ["s1", "s2", "s1", "s1", "s1", "s1", "s1"],
                  "current_limit": [3000, 2000, 50, 1000, 0, 2000, 9999]}).to_csv(lines,
                                                                                 index=False)
    code, text = watch(book, paths, tmp_path / "w.parquet", "--delay", str(paths["delay"]),
                       "--exposures", str(lines))
    assert code == 0, text
    got = pd.read_parquet(tmp_path / "w.parquet")
    # A 0.02 x (3000 + 2000) = 100, K 1.0 x 50, O 0.011 x 1000 = 11, G 0.003 x 2000 = 6,
    # then B (a line of 0) and C (no line): 0, by buyer id
    assert got["buyer_id"].tolist() == ["A", "K", "O", "G", "B", "C"]
    assert got["current_limit"].fillna(-1).tolist() == [5000, 50, 1000, 2000, 0, -1]  # C: none
    assert got["exposure"].tolist() == [5000, 50, 1000, 2000, 0, 0]
    assert got["exposure_at_risk"].tolist() == pytest.approx([100, 50, 11, 6, 0, 0])
    # open receivables are still reported
    assert got["open_receivables"].tolist() == [1000, 250, 1500, 100, 500, 2000]
    assert "PD x current_limit" in text


# --------------------------------------------------------------------------- migration, PSI


def test_the_migration_matrix(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    assert watch(book, paths, tmp_path / "w.parquet")[0] == 0
    m = pd.read_csv(tmp_path / "w.migration.csv", dtype={"previous_grade": str})
    labels = [*(str(g) for g in range(1, 11)), "D", "none"]
    assert m["previous_grade"].tolist() == labels
    assert m.columns.tolist() == ["previous_grade", *labels]
    m = m.set_index("previous_grade")
    moves = {("2", "2"): 3, ("3", "5"): 1, ("3", "none"): 1, ("4", "5"): 1, ("4", "4"): 1,
             ("5", "5"): 2, ("6", "6"): 2, ("7", "none"): 1, ("9", "D"): 1,
             ("none", "1"): 1, ("none", "2"): 1}
    for p in labels:
        for c in labels:
            assert m.loc[p, c] == moves.get((p, c), 0), (p, c)


def test_score_and_feature_psi(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    code, text = watch(book, paths, tmp_path / "w.parquet")
    assert code == 0, text
    psi = pd.read_csv(tmp_path / "w.psi.csv", keep_default_na=False)
    score = psi[psi["kind"] == "score"].iloc[0]
    # scored before: A-I, K, M, O, Z (13); now: A-J, L, O (12)
    assert (score["previous_rows"], score["current_rows"]) == (13, 12)
    assert score["note"] == ""
    feats = psi[psi["kind"] == "feature"]
    # y: 0.8/0.2 -> 0.5/0.5; w: 0.7/0.3 -> 0.5/0.5; x unchanged
    y = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    w = (0.5 - 0.7) * math.log(0.5 / 0.7) + (0.5 - 0.3) * math.log(0.5 / 0.3)
    assert feats["name"].tolist() == ["y", "w", "x"]
    assert feats["psi"].tolist() == pytest.approx([y, w, 0.0], abs=1e-6)
    assert feats["flag"].tolist() == ["act", "watch", "stable"]
    assert feats["previous_rows"].tolist() == [100, 100, 100]
    assert "features flagged: 1 act, 1 watch" in text


def test_score_psi_is_in_deciles_of_the_previous_pds() -> None:
    previous = np.arange(1, 11) / 100          # 0.01 .. 0.10: one in each decile
    # the same PDs: every bin keeps its share
    assert score_psi(previous, previous) == pytest.approx(0.0)
    # every PD now 0.10, in the top decile (its lower edge is 0.091): 9 bins emptied (share
    # floored at 0.0001) and one from 0.1 to 1
    expected = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    assert score_psi(previous, np.full(10, 0.10)) == pytest.approx(expected)
    # the edges are the previous run's (0.019, 0.028, ..., 0.091): PDs that stay inside
    # their deciles change nothing, one that crosses an edge does
    assert score_psi(previous, previous + 0.0005) == pytest.approx(0.0)
    crossed = previous.copy()
    crossed[8] = 0.0915                         # 0.09 -> above 0.091: decile 9 now holds 2
    expected = (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (0.2 - 0.1) * math.log(0.2 / 0.1)
    assert score_psi(previous, crossed) == pytest.approx(expected)


def test_a_run_without_a_profile_has_no_feature_psi(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    (paths["previous"] / "_profile.parquet").unlink()
    code, text = watch(book, paths, tmp_path / "w.parquet")
    assert code == 0, text
    assert f"note: no _profile.parquet in {paths['previous']}" in text
    psi = pd.read_csv(tmp_path / "w.psi.csv", keep_default_na=False)
    assert psi["kind"].tolist() == ["score"]
    assert "features flagged: 0 act, 0 watch" in text


def test_different_model_versions_are_said_and_feature_psi_is_left_out(
        book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path, cur_version="5")
    code, text = watch(book, paths, tmp_path / "w.parquet")
    assert code == 0, text
    assert "note: the runs were made by different models (buyer-risk v4 at 2024-03-31, " \
        "buyer-risk v5 at 2024-06-30)" in text
    psi = pd.read_csv(tmp_path / "w.psi.csv", keep_default_na=False)
    assert psi["kind"].tolist() == ["score"]
    assert "buyer-risk v4" in psi["note"].iloc[0] and "buyer-risk v5" in psi["note"].iloc[0]
    summary = json.loads((tmp_path / "w.summary.json").read_text())
    assert summary["same_model"] is False
    # the list itself does not depend on it
    assert pd.read_parquet(tmp_path / "w.parquet")["buyer_id"].tolist() == \
        ["K", "C", "A", "O", "B"]


# --------------------------------------------------------------------------- data lineage


def test_runs_of_different_data_need_the_current_runs_book(book: Book, tmp_path: Path) -> None:
    fp = book.manifest.raw_fingerprint
    # the previous run was scored on last quarter's book, the current one on this book: fine
    ok = runs(book, tmp_path / "ok", prev_fp="0" * 64, cur_fp=fp)
    code, text = watch(book, ok, tmp_path / "ok.parquet")
    assert code == 0, text
    assert "note:" not in text
    # the current run was scored on other data than the book given: refused
    bad = runs(book, tmp_path / "bad", prev_fp="0" * 64, cur_fp="1" * 64)
    code, text = watch(book, bad, tmp_path / "bad.parquet")
    assert code == 2
    assert text.startswith("error: the runs were scored from different data")
    assert not (tmp_path / "bad.parquet").exists()


def test_both_runs_of_other_data_than_the_book_are_read_with_a_note(
        book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path, prev_fp="2" * 64, cur_fp="2" * 64)
    code, text = watch(book, paths, tmp_path / "w.parquet")
    assert code == 0, text
    assert "is not the book the runs were scored from" in text


# --------------------------------------------------------------------------- errors


def test_a_folder_that_is_not_a_scoring_output(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "part-00000.parquet").write_bytes(b"")
    code, text = watch(book, {**paths, "previous": other}, tmp_path / "w.parquet")
    assert code == 2
    assert text.startswith(f"error: --previous {other}: not a scoring output")
    code, text = watch(book, {**paths, "current": tmp_path / "missing"}, tmp_path / "w.parquet")
    assert code == 2
    assert "--current" in text and "no such folder" in text


def test_the_current_run_must_be_later(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    swapped = {"previous": paths["current"], "current": paths["previous"]}
    code, text = watch(book, swapped, tmp_path / "w.parquet")
    assert code == 2
    assert "is as of 2024-03-31, not after --previous" in text
    same = {"previous": paths["current"], "current": paths["current"]}
    assert watch(book, same, tmp_path / "w.parquet")[0] == 2
    assert not list(tmp_path.glob("w.*"))


def test_delay_scores_of_another_date(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path, delay_as_of=dt.date(2024, 5, 31))
    code, text = watch(book, paths, tmp_path / "w.parquet", "--delay", str(paths["delay"]))
    assert code == 2
    assert "--delay" in text and "not the current as-of date 2024-06-30" in text


def test_delay_scores_of_other_data(book: Book, tmp_path: Path) -> None:
    """docs/cli.md: exit 2 and nothing written when --delay is of other data than
    --current."""
    paths = runs(book, tmp_path, delay_fp="3" * 64)
    fp = book.manifest.raw_fingerprint
    code, text = watch(book, paths, tmp_path / "w.parquet", "--delay", str(paths["delay"]))
    assert code == 2
    assert text.startswith(f"error: --delay {paths['delay']} was scored from other data than "
                           f"--current (fingerprints {'3' * 12} and {fp[:12]}): score both "
                           "on the same book")
    assert not list(tmp_path.glob("w.*"))


@pytest.mark.parametrize("name", ["w.txt", "w"])
def test_the_output_must_be_parquet_or_csv(book: Book, tmp_path: Path, name: str) -> None:
    paths = runs(book, tmp_path)
    code, text = watch(book, paths, tmp_path / name)
    assert code == 2
    assert "name a .parquet or a .csv file" in text


def test_an_exposures_file_without_limits(book: Book, tmp_path: Path) -> None:
    paths = runs(book, tmp_path)
    lines = tmp_path / "lines.csv"
    pd.DataFrame({"buyer_id": ["A"], "limit": [10]}).to_csv(lines, index=False)
    code, text = watch(book, paths, tmp_path / "w.parquet", "--exposures", str(lines))
    assert code == 2
    assert "no column current_limit" in text
    pd.DataFrame({"buyer_id": ["A"], "current_limit": [-5]}).to_csv(lines, index=False)
    code, text = watch(book, paths, tmp_path / "w.parquet", "--exposures", str(lines))
    assert code == 2
    assert "row 1" in text


def test_watch_params_are_checked() -> None:
    with pytest.raises(ParamsError, match="psi_act"):
        parse_params({"watch": {"psi_watch": 0.3, "psi_act": 0.25}})
    with pytest.raises(ParamsError, match="watch.pd_ratio"):
        parse_params({"watch": {"pd_ratio": 1.0}})
    assert parse_params({}).watch.delay_threshold == 0.2
