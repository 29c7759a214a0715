"""Shared fixtures: a temporary store and a factory for canonical records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.film import store
from pipeline.film.records import normalise_record

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'test.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def film(douban_id: int, title: str = "", **fields) -> dict:
    """A complete, valid film record; keyword arguments override any field."""
    base = {
        "douban_id": douban_id,
        "title": title or f"电影{douban_id}",
        "directors": [f"导演{douban_id % 7}"],
        "director_ids": [str(1000 + douban_id % 7)],
        "writers": [f"编剧{douban_id % 5}"],
        "actors": [f"演员{douban_id % 11}", f"演员{douban_id % 13 + 20}"],
        "genres": ["剧情"],
        "countries": ["中国大陆"],
        "languages": ["汉语普通话"],
        "runtime_min": 100,
        "release_dates": [{"date": "2012-05-01", "region": "中国大陆", "rerelease": False}],
        "rating": 7.0,
        "votes": 1000,
        "review_count": 10,
        "comment_count": 100,
        "imdb_id": None,
    }
    base.update(fields)
    return normalise_record(base)


@pytest.fixture
def make_film():
    return film


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def stored(db_url):
    """Store the given records and return the engine."""

    def _store(records, source="test"):
        engine = store.connect(db_url)
        store.upsert_records(engine, records, source=source)
        return engine

    return _store


@pytest.fixture(autouse=True)
def _drop_postgres_test_databases():
    yield
    from tests.services import drop_test_databases

    drop_test_databases()
