"""The book: out-of-core validation into buyer buckets, and what stages read back from it.

The streaming validation (:func:`riskmodel.data.ingest.build_book`) is checked against the
in-memory one (:func:`riskmodel.data.contract.load_dataset`), an independent path through the
same rules: on a world with broken rows of every kind, split in small batches and several
buckets, both must accept the same rows and reject the same rows for the same reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskmodel.data.book import Book, BookError, BookWriter, bucket_of, buckets_of
from riskmodel.data.contract import ContractError, load_dataset
from riskmodel.data.ingest import build_book
from riskmodel.data.synth import SynthConfig, write_world

TODAY = dt.date(2026, 11, 30)


# --------------------------------------------------------------------------- the hash


def test_bucket_is_md5_first_eight_bytes_big_endian() -> None:
    # md5("B1") = c9512565ef6194ca664dc41ec0de7a53 (RFC 1321; any md5 tool gives it)
    assert int("c9512565ef6194ca", 16) == 14506416994475152586
    assert bucket_of("B1", 1000) == 14506416994475152586 % 1000 == 586
    assert bucket_of("B1", 7) == 0


def test_duckdb_and_python_agree_on_every_bucket() -> None:
    rng = np.random.default_rng(0)
    ids = [f"buyer-{i}" for i in rng.integers(0, 10**9, 2000)]
    ids += ["", "ü-ñ-日本", "a'b\"c", "<img src=x>", " lead space", "x" * 300]
    for n in (1, 7, 64, 1000):
        got = buckets_of(pa.array(ids, type=pa.string()), n)
        assert got.tolist() == [bucket_of(i, n) for i in ids]


# --------------------------------------------------------------------------- a broken world


@pytest.fixture(scope="module")
def broken_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic world with rows broken on purpose, written as CSV (all text) so every
    kind of bad value can be injected."""
    src = tmp_path_factory.mktemp("broken") / "synth"
    write_world(SynthConfig(n_buyers=400, start=dt.date(2021, 1, 1), end=dt.date(2022, 12, 31),
                            seed=5, chunk_buyers=400), src)
    out = src.parent / "raw"
    out.mkdir()
    inv = _read(src, "invoices").astype(str).replace({"None": "", "NaT": "",
                                                                 "nan": "", "<NA>": ""})
    buyers = _read(src, "buyers").astype(str).replace({"None": "", "nan": "",
                                                                  "<NA>": ""})
    events = _read(src, "events").astype(str)
    # buyers: a duplicate id, an invalid country, a missing industry
    buyers = pd.concat([buyers, buyers.iloc[[3]]], ignore_index=True)
    buyers.loc[5, "country"] = "XX1"
    buyers.loc[7, "industry"] = ""
    # invoices: duplicate ids across buyers (so across buckets), unknown buyer, bad amount,
    # due before issue, unparseable date, a typo date in 2099, a rejected buyer's invoice
    n = len(inv)
    dup = inv.iloc[[10, 20]].copy()
    dup["buyer_id"] = inv.iloc[[n - 1, n - 2]]["buyer_id"].to_numpy()
    inv = pd.concat([inv, dup], ignore_index=True)
    inv.loc[30, "buyer_id"] = "NOT-A-BUYER"
    inv.loc[31, "amount"] = "-5"
    inv.loc[32, "due_date"] = "2000-01-01"
    inv.loc[33, "issue_date"] = "2022-02-30"
    inv.loc[34, ["issue_date", "due_date", "paid_date"]] = ["2099-01-01", "2099-01-31", ""]
    inv.loc[35, "paid_date"] = "2099-03-01"
    bad_buyer = buyers.loc[5, "buyer_id"]
    first_of_bad = inv.index[inv["buyer_id"] == bad_buyer]
    assert len(first_of_bad)
    events = pd.concat([events, pd.DataFrame([{"buyer_id": buyers.loc[0, "buyer_id"],
                                               "event_date": "2022-05-01",
                                               "event_type": "bankruptcy"}])],
                       ignore_index=True)
    inv.to_csv(out / "invoices.csv", index=False)
    buyers.to_csv(out / "buyers.csv", index=False)
    events.to_csv(out / "events.csv", index=False)
    return out


@pytest.fixture(scope="module")
def broken_book(broken_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("book")
    built = build_book(broken_raw, root / "book", n_buckets=4, rejects=root / "rejects",
                       today=TODAY, batch_rows=5000)
    return built, Book(root / "book"), root / "rejects"


def _read(src: Path, name: str) -> pd.DataFrame:
    path = src / name if (src / name).is_dir() else src / f"{name}.parquet"
    return pd.read_parquet(path)


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.sort_values(key, ignore_index=True)


def test_streaming_validation_equals_in_memory(broken_raw: Path, broken_book) -> None:
    built, book, rejects = broken_book
    mem = load_dataset(str(broken_raw), today=TODAY)
    assert built.report["observed_until"] == mem.observed_until.isoformat()
    for name in ("invoices", "buyers", "events"):
        ours = built.report["tables"][name]
        theirs = mem.tables[name].summary()
        assert ours == theirs, name
        # read = accepted + rejected, and the book holds exactly the accepted rows
        assert ours["read"] == ours["accepted"] + ours["rejected"]
        assert book.count(name) == ours["accepted"]
    keys = {"invoices": ["invoice_id", "buyer_id"], "buyers": ["buyer_id"],
            "events": ["buyer_id", "event_date", "event_type"]}
    from riskmodel.data.book import to_pandas

    for name, key in keys.items():
        got = pd.concat([to_pandas(book.read(name, k)) for k in range(book.n_buckets)])
        want = mem.tables[name].accepted
        pd.testing.assert_frame_equal(_sorted(got, key), _sorted(want[got.columns], key),
                                      check_dtype=False)
        rej = pd.read_parquet(rejects / f"{name}.parquet")
        assert sorted(rej["reason"]) == sorted(mem.tables[name].rejected["reason"])


def test_broken_rows_are_rejected_for_their_rule(broken_book) -> None:
    built, _, rejects = broken_book
    reasons = built.report["tables"]["invoices"]["reasons"]
    assert reasons["duplicate_invoice_id"] == 2  # across buckets, found exactly
    assert reasons["unknown_buyer_id"] == 1
    assert reasons["amount_not_positive"] == 1
    assert reasons["due_before_issue"] == 1
    assert reasons["unparseable_issue_date"] == 1
    assert reasons["future_date"] == 2
    assert reasons["buyer_rejected"] >= 1
    assert built.report["tables"]["buyers"]["reasons"] == {
        "missing_industry": 1, "duplicate_buyer_id": 1, "invalid_country": 1}
    assert built.report["tables"]["events"]["reasons"] == {"unknown_event_type": 1}
    inv = pd.read_parquet(rejects / "invoices.parquet")
    # rejects keep the values as read
    assert "2099-01-01" in set(inv["issue_date"])


def test_a_typo_date_does_not_move_observed_until(broken_book) -> None:
    built, book, _ = broken_book
    assert book.observed_until == dt.date(2022, 12, 31)
    assert built.manifest.observed_until == dt.date(2022, 12, 31)


def test_every_row_of_a_buyer_is_in_its_bucket(broken_book) -> None:
    _, book, _ = broken_book
    seen: dict[str, int] = {}
    for k in range(book.n_buckets):
        for name in ("invoices", "buyers", "events"):
            for b in book.read(name, k, ["buyer_id"])["buyer_id"].to_pylist():
                assert bucket_of(b, book.n_buckets) == k
                assert seen.setdefault(b, k) == k


def test_manifest_says_what_the_book_holds(broken_raw: Path, broken_book) -> None:
    from riskmodel.provenance import fingerprint

    built, book, _ = broken_book
    m = json.loads((book.path / "manifest.json").read_text())
    assert m["contract_version"] == "1.1"
    assert m["n_buckets"] == 4 and m["bucket_hash"] == "md5-64be"
    assert m["observed_until"] == "2022-12-31"
    assert m["data_start"] == "2021-01-01"
    assert m["validated_on"] == TODAY.isoformat()
    assert m["raw_fingerprint"] == fingerprint(broken_raw)
    assert m["tables"]["invoices"]["rejected"] == sum(
        m["tables"]["invoices"]["reasons"].values())
    assert set(m["columns"]) == {"invoices", "buyers", "events"}


def test_schema_error_writes_nothing(tmp_path: Path, broken_raw: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in broken_raw.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    inv = pd.read_csv(raw / "invoices.csv", dtype=str)
    inv["amount"] = "lots"  # a whole column that never parses: the wrong type
    inv.to_csv(raw / "invoices.csv", index=False)
    with pytest.raises(ContractError, match=r"invoices.csv: column amount: wrong type"):
        build_book(raw, tmp_path / "book", n_buckets=3, rejects=tmp_path / "rej", today=TODAY,
                   batch_rows=4000)
    assert not (tmp_path / "book").exists()
    assert not (tmp_path / "rej").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no staging left behind


def test_missing_column_names_file_and_column(tmp_path: Path, broken_raw: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in broken_raw.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    pd.read_csv(raw / "buyers.csv", dtype=str).drop(columns=["country"]).to_csv(
        raw / "buyers.csv", index=False)
    with pytest.raises(ContractError, match=r"buyers.csv.*country"):
        build_book(raw, tmp_path / "book", today=TODAY)
    assert not (tmp_path / "book").exists()


def test_a_book_replaces_only_a_book(tmp_path: Path, broken_raw: Path) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not delete")
    with pytest.raises(BookError, match="holds more than a riskmodel book"):
        BookWriter(folder, 2)
    assert (folder / "thesis.txt").read_text() == "do not delete"
    # another program's manifest.json does not make a folder a book
    web = tmp_path / "webapp"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my extension"}')
    (web / "app.js").write_text("console.log(1)")
    with pytest.raises(BookError, match="holds more than a riskmodel book"):
        build_book(broken_raw, web, today=TODAY)
    assert (web / "app.js").exists()
    # a book is replaced by a book, but not when the user put files into it
    build_book(broken_raw, tmp_path / "book", n_buckets=2, today=TODAY)
    build_book(broken_raw, tmp_path / "book", n_buckets=3, today=TODAY)
    assert Book(tmp_path / "book").n_buckets == 3
    (tmp_path / "book" / "notes.txt").write_text("mine")
    with pytest.raises(BookError, match="holds more than a riskmodel book"):
        build_book(broken_raw, tmp_path / "book", n_buckets=2, today=TODAY)
    assert (tmp_path / "book" / "notes.txt").read_text() == "mine"


def test_a_column_named_twice_in_a_csv_header_is_an_error(tmp_path: Path,
                                                          broken_raw: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in broken_raw.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    text = (raw / "invoices.csv").read_text().split("\n", 1)
    (raw / "invoices.csv").write_text(text[0].replace(",paid_date,", ",due_date,") + "\n"
                                      + text[1])
    with pytest.raises(ContractError, match="invoices.csv: column due_date: duplicate column"):
        build_book(raw, tmp_path / "book", today=TODAY)
    with pytest.raises(ContractError, match="invoices.csv: column due_date: duplicate column"):
        load_dataset(str(raw), today=TODAY)


def test_not_a_book_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BookError, match="not a book"):
        Book(tmp_path)


def test_parquet_parts_and_csv_give_the_same_book(tmp_path: Path, broken_raw: Path) -> None:
    """The same rows as Parquet parts (typed) validate like the CSV (text)."""
    src = tmp_path / "synth"
    write_world(SynthConfig(n_buyers=150, start=dt.date(2021, 1, 1), end=dt.date(2022, 6, 30),
                            seed=9, chunk_buyers=50), src)
    a = build_book(src, tmp_path / "a", n_buckets=3, today=TODAY, batch_rows=2000)
    csv = tmp_path / "csv"
    csv.mkdir()
    for name in ("invoices", "buyers", "events", "exposures"):
        _read(src, name).to_csv(csv / f"{name}.csv", index=False)
    b = build_book(csv, tmp_path / "b", n_buckets=3, today=TODAY, batch_rows=100_000)
    assert a.report == b.report
    for name in ("invoices", "buyers", "events"):
        for k in range(3):
            ta = pq.read_table(tmp_path / "a" / name / f"bucket={k}" / "part-0.parquet")
            tb = pq.read_table(tmp_path / "b" / name / f"bucket={k}" / "part-0.parquet")
            assert ta.equals(tb), (name, k)


def test_book_bytes_are_reproducible(tmp_path: Path, broken_raw: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.parquet"))}

    build_book(broken_raw, tmp_path / "x", n_buckets=3, today=TODAY, batch_rows=3000)
    build_book(broken_raw, tmp_path / "y", n_buckets=3, today=TODAY, batch_rows=3000)
    assert digest(tmp_path / "x") == digest(tmp_path / "y")


def _copy(raw: Path, to: Path) -> Path:
    to.mkdir()
    for f in raw.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def test_the_run_day_decides_what_is_in_the_future(tmp_path: Path, broken_raw: Path) -> None:
    """A run on 2022-06-30: everything dated after it is a future date, in the book as in
    memory, and observed_until is the latest accepted date before it."""
    day = dt.date(2022, 6, 30)
    built = build_book(broken_raw, tmp_path / "book", n_buckets=3, today=day, batch_rows=4000)
    mem = load_dataset(str(broken_raw), today=day)
    assert built.report["tables"] == {n: mem.tables[n].summary() for n in built.report["tables"]}
    assert built.report["tables"]["invoices"]["reasons"]["future_date"] > 1000
    assert dt.date.fromisoformat(built.report["observed_until"]) == mem.observed_until <= day


def test_a_buyer_founded_after_the_inferred_year_is_rejected_with_its_rows(
        tmp_path: Path, broken_raw: Path) -> None:
    raw = _copy(broken_raw, tmp_path / "raw")
    buyers = pd.read_csv(raw / "buyers.csv", dtype=str, keep_default_na=False)
    inv = pd.read_csv(raw / "invoices.csv", dtype=str, keep_default_na=False)
    # a buyer with invoices, founded in 2023: after the data (observed until 2022-12-31) but
    # before the run day, so only the inferred observation year can reject it
    target = inv["buyer_id"].value_counts().index[0]
    buyers.loc[buyers["buyer_id"] == target, "founded_year"] = "2023"
    buyers.to_csv(raw / "buyers.csv", index=False)
    built = build_book(raw, tmp_path / "book", n_buckets=3, today=TODAY, batch_rows=4000)
    mem = load_dataset(str(raw), today=TODAY)
    assert built.report["tables"] == {n: mem.tables[n].summary() for n in built.report["tables"]}
    assert built.report["tables"]["buyers"]["reasons"]["founded_year_out_of_range"] == 1
    assert built.report["tables"]["invoices"]["reasons"]["buyer_rejected"] >= (
        inv["buyer_id"] == target).sum()
    book = Book(tmp_path / "book")
    ids = {b for k in range(book.n_buckets)
           for b in book.read("invoices", k, ["buyer_id"])["buyer_id"].to_pylist()}
    assert target not in ids
