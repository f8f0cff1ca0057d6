"""Stages over a book: batch-independent features, reproducible files, point-in-time
disputes, the reject limit, and raw folders validated on the fly."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel import pipeline
from riskmodel.cli import app
from riskmodel.data.book import Book, bucket_of
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.params import parse_params

runner = CliRunner()
AS_OF = [dt.date(2021, 12, 31), dt.date(2022, 6, 30), dt.date(2022, 12, 31)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipe") / "raw"
    write_world(SynthConfig(n_buyers=900, start=dt.date(2020, 1, 1), end=dt.date(2022, 12, 31),
                            seed=21, chunk_buyers=300), out)
    return out


@pytest.fixture(scope="module")
def params():
    return parse_params({"book": {"buckets": 5}})


@pytest.fixture(scope="module")
def book(world: Path, params, tmp_path_factory: pytest.TempPathFactory) -> Book:
    root = tmp_path_factory.mktemp("pipebook")
    pipeline.validate(world, root / "book", params)
    return Book(root / "book")


@pytest.fixture(scope="module")
def full(book: Book, params, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("full") / "features.parquet"
    pipeline.features(book, out, params, dates=AS_OF)
    return pq.read_table(out).to_pandas()


def _subset(book: Book, params, ids: list[str], tmp: Path, **kw) -> pd.DataFrame:
    out = tmp / "sub.parquet"
    pipeline.features(book, out, params, dates=AS_OF, buyers=ids, **kw)
    return pq.read_table(out).to_pandas()


def _rows_of(full: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    return full[full["buyer_id"].isin(ids)].reset_index(drop=True)


def test_one_buyer_alone_equals_the_full_run(book, params, full, tmp_path) -> None:
    # a buyer with a payment history, so its peer columns are not missing
    have = full.dropna(subset=["dbt_vs_industry", "dbt_vs_country"])
    one = [str(have["buyer_id"].iloc[len(have) // 2])]
    got = _subset(book, params, one, tmp_path)
    assert len(got) >= 2
    pd.testing.assert_frame_equal(got, _rows_of(full, one), check_exact=True)
    # the peer feature is not 0: it compares with the whole book, not with itself
    assert (got["dbt_vs_industry"].abs() > 0).any()


def test_one_bucket_alone_equals_the_full_run(book, params, full, tmp_path) -> None:
    ids = sorted(b for b in full["buyer_id"].unique() if bucket_of(b, book.n_buckets) == 2)
    got = _subset(book, params, ids, tmp_path)
    pd.testing.assert_frame_equal(got, _rows_of(full, ids), check_exact=True)


def test_a_random_third_equals_the_full_run(book, params, full, tmp_path) -> None:
    rng = np.random.default_rng(3)
    everyone = np.array(sorted(full["buyer_id"].unique()))
    ids = sorted(rng.choice(everyone, size=len(everyone) // 3, replace=False).tolist())
    got = _subset(book, params, ids, tmp_path)
    pd.testing.assert_frame_equal(got, _rows_of(full, ids), check_exact=True)


def test_stored_peer_context_gives_the_same_rows(book, params, full, tmp_path,
                                                 tmp_path_factory) -> None:
    first = tmp_path / "first.parquet"
    pipeline.features(book, first, params, dates=AS_OF)
    ids = sorted(full["buyer_id"].unique())[:7]
    got = _subset(book, params, ids, tmp_path, peers=pipeline.peers_path_for(first))
    pd.testing.assert_frame_equal(got, _rows_of(full, ids), check_exact=True)


def test_a_peer_context_that_does_not_fit_is_an_error(book, params, tmp_path) -> None:
    first = tmp_path / "first.parquet"
    pipeline.features(book, first, params, dates=AS_OF[:2])
    with pytest.raises(pipeline.PipelineError, match="has no as-of date 2022-12-31"):
        pipeline.features(book, tmp_path / "x.parquet", params, dates=AS_OF, buyers=["B0000001"],
                          peers=pipeline.peers_path_for(first))
    longer = parse_params({"book": {"buckets": 5}, "features": {"windows": [90, 730]}})
    with pytest.raises(pipeline.PipelineError, match="dbt_wmean_365.*needs dbt_wmean_730"):
        pipeline.features(book, tmp_path / "y.parquet", longer, dates=AS_OF[:2],
                          peers=pipeline.peers_path_for(first))


def test_bucket_count_does_not_change_features(world, full, tmp_path) -> None:
    one = parse_params({"book": {"buckets": 1}})
    pipeline.validate(world, tmp_path / "b1", one)
    out = tmp_path / "f.parquet"
    pipeline.features(Book(tmp_path / "b1"), out, one, dates=AS_OF)
    # rows come bucket by bucket: the same rows, in another order
    key = ["as_of", "buyer_id"]
    pd.testing.assert_frame_equal(pq.read_table(out).to_pandas().sort_values(
        key, ignore_index=True), full.sort_values(key, ignore_index=True), check_exact=True)


def test_unknown_buyer_in_the_subset_is_an_error(book, params, tmp_path) -> None:
    with pytest.raises(pipeline.PipelineError, match=r"not in the book.*'nobody'"):
        pipeline.features(book, tmp_path / "x.parquet", params, dates=AS_OF,
                          buyers=["nobody"])


def _rechunked(table: pa.Table, rows: int) -> pa.Table:
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows))


def test_features_are_identical_when_duckdb_runs_in_parallel(book, params, tmp_path) -> None:
    """The invoices of the book cut into many small Arrow chunks: DuckDB's two threads then
    each add up part of a buyer's rows, in an order that changes from run to run. A float sum
    does change (the control); the features, summed in integer cents, do not."""
    from riskmodel.features.engine import bucket_features

    tables = [book.bucket(k) for k in range(book.n_buckets)]
    inv = _rechunked(pa.concat_tables([b.invoices for b in tables]), 2000)
    buyers = pa.concat_tables([b.buyers for b in tables])
    events = pa.concat_tables([b.events for b in tables])
    assert inv["amount"].num_chunks > 20
    control = set()
    for _ in range(40):
        con = duckdb.connect(config={"threads": 2})
        con.register("t", inv)
        control.add(con.sql("SELECT buyer_id, sum(amount * 1.000001) AS s FROM t "
                            "GROUP BY buyer_id ORDER BY buyer_id").fetchnumpy()["s"].tobytes())
        con.close()
        if len(control) > 1:
            break
    assert len(control) > 1, "DuckDB did not run in parallel: the test proves nothing"
    cfg = pipeline.feature_config(params, book)
    first = bucket_features(inv, buyers, events, AS_OF, cfg)
    for _ in range(6):  # exact equality of every value, not a rounded text
        assert bucket_features(inv, buyers, events, AS_OF, cfg).equals(first)


def test_two_runs_write_identical_files(book, params, tmp_path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pipeline.features(book, a, params, dates=AS_OF)
    pipeline.features(book, b, params, dates=AS_OF)
    assert sha(a) == sha(b)
    assert sha(pipeline.peers_path_for(a)) == sha(pipeline.peers_path_for(b))


@pytest.mark.parametrize(("horizon", "dpd"), [(365, 90), (180, 30)])
def test_labels_from_the_book_equal_in_memory_labels(world, book, tmp_path, horizon,
                                                     dpd) -> None:
    from riskmodel.data.contract import load_dataset
    from riskmodel.features.labels import compute_labels

    params = parse_params({"book": {"buckets": 5},
                           "label": {"horizon_days": horizon, "dpd_threshold": dpd}})
    res = pipeline.labels(book, tmp_path / "l.parquet", params, dates=AS_OF)
    data = load_dataset(str(world))
    want = compute_labels(data.invoices, data.events, AS_OF, data.observed_until,
                          horizon_days=horizon, dpd_threshold=dpd)
    got = pipeline.read_labels(res.path)
    pd.testing.assert_frame_equal(got, want)
    assert res.labelled == int(want["bad"].notna().sum())


def test_raw_folder_and_book_give_the_same_features(world, book, params, full,
                                                    tmp_path) -> None:
    with pipeline.open_book(world, params) as tmp_book:
        out = tmp_path / "raw.parquet"
        pipeline.features(tmp_book, out, params, dates=AS_OF)
        kept = tmp_book.path
    pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(), full, check_exact=True)
    assert not kept.exists()  # the temporary book is removed


def test_as_of_after_observed_until_is_an_error(book, params, tmp_path) -> None:
    with pytest.raises(pipeline.PipelineError, match="after observed_until 2022-12-31"):
        pipeline.features(book, tmp_path / "x.parquet", params, dates=[dt.date(2023, 1, 31)])


# --------------------------------------------------------------------------- disputes


def _tiny_raw(root: Path, with_dispute_date: bool) -> Path:
    raw = root / ("with" if with_dispute_date else "without")
    raw.mkdir(parents=True)
    inv = pd.DataFrame({
        "invoice_id": ["a", "b", "c"], "buyer_id": ["B1", "B1", "B1"],
        "issue_date": ["2023-01-10", "2023-03-01", "2023-05-01"],
        "due_date": ["2023-02-10", "2023-04-01", "2023-06-01"],
        "paid_date": ["2023-02-15", "2023-04-20", ""],
        "amount": ["100", "300", "600"],
        "disputed": ["false", "true", "true"],
    })
    if with_dispute_date:
        # b disputed before mid-year, c only after it
        inv["dispute_date"] = ["", "2023-04-05", "2023-08-01"]
    inv.to_csv(raw / "invoices.csv", index=False)
    pd.DataFrame({"buyer_id": ["B1"], "country": ["DE"], "industry": ["C"]}).to_csv(
        raw / "buyers.csv", index=False)
    pd.DataFrame({"buyer_id": [], "event_date": [], "event_type": []}).to_csv(
        raw / "events.csv", index=False)
    return raw


def test_a_dispute_counts_only_from_its_dispute_date(tmp_path) -> None:
    prm = parse_params({})
    raw = _tiny_raw(tmp_path, with_dispute_date=True)
    pipeline.validate(raw, tmp_path / "book", prm, observed_until=dt.date(2023, 9, 30))
    out = tmp_path / "f.parquet"
    pipeline.features(Book(tmp_path / "book"), out, prm,
                      dates=[dt.date(2023, 6, 30), dt.date(2023, 9, 30)])
    f = pq.read_table(out).to_pandas().set_index("as_of")["disputed_share_365"]
    assert f[dt.date(2023, 6, 30)] == pytest.approx(300 / 1000)  # b only
    assert f[dt.date(2023, 9, 30)] == pytest.approx(900 / 1000)  # b and c


def test_without_dispute_dates_dispute_features_are_left_out(tmp_path) -> None:
    prm = parse_params({})
    raw = _tiny_raw(tmp_path, with_dispute_date=False)
    pipeline.validate(raw, tmp_path / "book", prm, observed_until=dt.date(2023, 9, 30))
    out = tmp_path / "f.parquet"
    pipeline.features(Book(tmp_path / "book"), out, prm, dates=[dt.date(2023, 6, 30)])
    cols = pq.read_schema(out).names
    assert not [c for c in cols if "disput" in c]


# --------------------------------------------------------------------------- the reject limit


def test_every_command_fails_above_the_reject_limit(tmp_path) -> None:
    raw = _tiny_raw(tmp_path, with_dispute_date=True)
    inv = pd.read_csv(raw / "invoices.csv", dtype=str, keep_default_na=False)
    inv.loc[0, "amount"] = "-1"  # 1 of 3 rejected: 33%
    inv.to_csv(raw / "invoices.csv", index=False)
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  observed_until: 2023-09-30\n")
    res = runner.invoke(app, ["validate", str(raw), "--out", str(tmp_path / "book"),
                              "--params", str(params)])
    assert res.exit_code == 1, res.output
    assert "invoices 33.33%" in res.output
    manifest = json.loads((tmp_path / "book" / "manifest.json").read_text())
    assert manifest["tables"]["invoices"]["rejected"] == 1  # written, to be inspected
    for cmd in (["features", str(tmp_path / "book"), "--out", str(tmp_path / "f.parquet")],
                ["labels", str(tmp_path / "book"), "--out", str(tmp_path / "l.parquet")],
                ["features", str(raw), "--out", str(tmp_path / "f2.parquet")],
                ["train", str(tmp_path / "book"), "--out", str(tmp_path / "m"), "--no-register",
                 "--features", str(tmp_path / "f.parquet"), "--labels",
                 str(tmp_path / "l.parquet")]):
        res = runner.invoke(app, [*cmd, "--params", str(params)])
        assert res.exit_code == 1, (cmd, res.output)
        assert "max_reject_rate" in res.output
    assert not (tmp_path / "f.parquet").exists()


def test_cli_features_for_a_buyers_file(book, full, tmp_path) -> None:
    ids = sorted(full["buyer_id"].unique())[5:9]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n\n")
    params = tmp_path / "params.yaml"
    params.write_text("book:\n  buckets: 5\n")
    out = tmp_path / "sub.parquet"
    res = runner.invoke(app, ["features", str(book.path), "--out", str(out), "--buyers",
                              str(tmp_path / "ids.txt"), "--params", str(params), "--as-of",
                              ",".join(d.isoformat() for d in AS_OF)])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(), _rows_of(full, ids),
                                  check_exact=True)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    res = runner.invoke(app, ["features", str(book.path), "--out", str(out), "--buyers",
                              str(empty)])
    assert res.exit_code == 2
    assert "no buyer ids" in res.output


# --------------------------------------------------------------------------- bad outputs


def test_output_paths_that_cannot_be_written_exit_2_before_any_work(book, tmp_path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["features", str(book.path), "--out", str(tmp_path / "adir")], "is a folder"),
        (["labels", str(book.path), "--out", str(tmp_path / "adir")], "is a folder"),
        (["features", str(book.path), "--out", str(tmp_path / "afile" / "f.parquet")],
         "is a file"),
        (["validate", str(book.path), "--out", str(tmp_path / "b"), "--report",
          str(tmp_path / "adir")], "is a folder"),
        (["validate", str(book.path), "--out", str(tmp_path / "b"), "--rejects",
          str(tmp_path / "afile")], "is a file"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_a_labels_file_given_as_features_is_a_clear_error(book, params, tmp_path) -> None:
    lab = pipeline.labels(book, tmp_path / "l.parquet", params, dates=AS_OF)
    with pytest.raises(pipeline.PipelineError, match="not a features file.*'status'"):
        pipeline.read_features(lab.path)
    feats = tmp_path / "f.parquet"
    pipeline.features(book, feats, params, dates=AS_OF[:1])
    with pytest.raises(pipeline.PipelineError, match="not a labels file.*'in_default'"):
        pipeline.read_labels(feats)


def test_a_buyer_id_is_taken_exactly_as_written(tmp_path) -> None:
    (tmp_path / "ids.txt").write_text(" B 1 \n\nB2\r\n   \n")
    assert pipeline.read_buyer_ids(tmp_path / "ids.txt") == [" B 1 ", "B2"]
