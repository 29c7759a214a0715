"""The shipped snapshot: what it holds, and that `make snapshot` rebuilds it exactly."""

import sqlite3
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.film import store
from tests.conftest import SHARED

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "douban.sqlite"
SOURCE = Path(__file__).resolve().parents[1] / "data" / "source" / "douban_movies_cc0_facts.csv"
CC0 = SHARED / "data" / "douban_movies_cc0.csv"


def test_snapshot_holds_the_cc0_films_as_facts_only():
    engine = store.connect(f"sqlite:///{SNAPSHOT}", create=False)
    records = store.load_records(engine)
    assert len(records) == 2065
    assert all(r["title"] and r["rating"] is not None for r in records)
    # Facts only: the schema has no room for summaries, tags or poster links, and no text cell holds one.
    with sqlite3.connect(SNAPSHOT) as conn:
        for table, column in [("movies", "title"), ("attributes", "value"), ("people", "name")]:
            assert conn.execute(f"select count(*) from {table} where {column} like '%doubanio%' "
                                f"or length({column}) > 200").fetchone()[0] == 0


def test_rebuilding_from_the_source_in_the_repository_gives_the_shipped_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    assert main(["import", str(SOURCE)]) == 0
    assert (tmp_path / "rebuilt.sqlite").read_bytes() == SNAPSHOT.read_bytes()


def test_the_source_in_the_repository_holds_facts_only():
    header = SOURCE.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert not {"summary", "tags", "poster", "link"} & set(header)
    assert {"movie_id", "title", "rating", "total_ratings", "directors", "actors"} <= set(header)


@pytest.mark.skipif(not CC0.exists(), reason="../shared/data absent")
def test_the_full_cc0_export_gives_the_same_store_as_its_facts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    assert main(["import", str(CC0)]) == 0
    assert (tmp_path / "rebuilt.sqlite").read_bytes() == SNAPSHOT.read_bytes()
