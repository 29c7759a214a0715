"""The 想看 / 看过 counts (wish_count, watched_count): stored, merged, exported and imported like the other
counts, and a store written before they existed opens, upgraded in place, with every film kept."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest

from pipeline.cli import main
from pipeline.exchange.importer import read_export
from pipeline.film import store
from pipeline.film.merge import merge_record
from tests.conftest import film, read_jsonl

COMING = film(36100001, rating=None, votes=None, wish_count=12345)
RATED = film(26200002, wish_count=1234, watched_count=5678)


def export(capsys, fmt: str = "jsonl") -> str:
    assert main(["export", "--format", fmt]) == 0
    return capsys.readouterr().out


def test_export_import_round_trip_keeps_the_counts(db_url, capsys, tmp_path):
    store.upsert_records(store.connect(db_url), [COMING, RATED], source="test")
    for fmt in ("jsonl", "csv"):
        path = tmp_path / f"films.{fmt}"
        path.write_text(export(capsys, fmt), encoding="utf-8")
        other = f"sqlite:///{tmp_path / f'{fmt}.sqlite'}"
        assert main(["import", str(path)]) == 0  # into the same store: nothing changes
        assert store.load_records(store.connect(db_url)) == [RATED, COMING]
        capsys.readouterr()
        engine = store.connect(other)
        store.upsert_records(engine, read_export(path)[1], source="import")
        assert store.load_records(engine) == [RATED, COMING]
    capsys.readouterr()
    exported = {r["douban_id"]: r for r in read_jsonl(export(capsys))}
    assert exported[COMING["douban_id"]]["rating"] is None  # unrated: null, never 0
    assert (exported[COMING["douban_id"]]["wish_count"], exported[COMING["douban_id"]]["watched_count"]) == (12345, None)
    assert export(capsys, "csv").splitlines()[0].endswith(",imdb_id,wish_count,watched_count")


def test_an_import_without_the_counts_keeps_the_stored_ones(db_url, capsys, tmp_path):
    store.upsert_records(store.connect(db_url), [RATED], source="crawl", fetched_at=datetime(2026, 1, 1))
    old = {k: v for k, v in RATED.items() if k not in ("wish_count", "watched_count")}
    path = tmp_path / "old_export.jsonl"
    path.write_text(json.dumps({**old, "votes": 4000}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["import", str(path)]) == 0
    (rec,) = store.load_records(store.connect(db_url))
    assert (rec["votes"], rec["wish_count"], rec["watched_count"]) == (4000, 1234, 5678)


def test_a_newer_crawl_replaces_the_counts_and_the_missing_score():
    released = {**COMING, "rating": 7.2, "votes": 900, "wish_count": 15000, "watched_count": 1400}
    merged = merge_record(COMING, released, supersedes=True)
    assert (merged["rating"], merged["votes"], merged["wish_count"], merged["watched_count"]) == (7.2, 900, 15000, 1400)
    # A page that shows no 看过 count keeps the one stored.
    assert merge_record(released, COMING, supersedes=True)["watched_count"] == 1400


@pytest.mark.parametrize("bad", [-1, "many", 2**31, True])
def test_a_bad_count_is_refused_naming_the_field(db_url, capsys, tmp_path, bad):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**RATED, "watched_count": bad}) + "\n", encoding="utf-8")
    assert main(["import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: 'watched_count'" in err and len(err.strip().splitlines()) == 1


def make_version_1(path) -> None:
    """A store as the schema before the counts wrote it: no wish/watched columns, schema version 1."""
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE movies DROP COLUMN wish_count")
        conn.execute("ALTER TABLE movies DROP COLUMN watched_count")
        conn.execute("UPDATE kadn_meta SET value = '1' WHERE key = 'schema_version'")


def test_a_version_1_store_is_upgraded_in_place_keeping_every_film(tmp_path):
    path, plain = tmp_path / "v1.sqlite", {**RATED, "wish_count": None, "watched_count": None}
    store.upsert_records(store.connect(f"sqlite:///{path}"), [plain], source="test")
    make_version_1(path)
    engine = store.connect(f"sqlite:///{path}", create=False)
    assert store.load_records(engine) == [plain]
    store.upsert_records(engine, [RATED], source="crawl")
    assert store.load_records(store.connect(f"sqlite:///{path}")) == [RATED]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM kadn_meta").fetchone() == (store.SCHEMA_VERSION,)


def test_a_store_of_an_unknown_version_is_still_refused(tmp_path):
    path = tmp_path / "v9.sqlite"
    store.connect(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE kadn_meta SET value = '9'")
    with pytest.raises(store.SchemaError, match="schema version 9"):
        store.connect(f"sqlite:///{path}")
