import sqlite3

import pytest
from sqlalchemy import func, select

from pipeline.errors import KadnError, RecordError, SchemaError
from pipeline.film import store
from pipeline.film.records import FIELDS


def test_upsert_is_idempotent(stored, make_film):
    films = [make_film(i) for i in range(1, 6)]
    engine = stored(films)
    store.upsert_records(engine, films, source="test")
    assert store.count_movies(engine) == 5
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(store.Credit)) == 5 * 4
        assert conn.scalar(select(func.count()).select_from(store.ReleaseDate)) == 5
    assert store.load_records(engine) == films


def test_upsert_updates_a_changed_rating(stored, make_film):
    engine = stored([make_film(7, rating=6.1, votes=100)])
    store.upsert_records(engine, [make_film(7, rating=6.8, votes=250)], source="crawl")
    (rec,) = store.load_records(engine)
    assert (rec["rating"], rec["votes"]) == (6.8, 250)


def test_unknown_values_never_erase_stored_ones(stored, make_film):
    engine = stored([make_film(8, imdb_id="tt0000008", review_count=33)])
    partial = make_film(8, imdb_id=None, review_count=None, genres=[], actors=[], actor_ids=None)
    store.upsert_records(engine, [partial], source="import:cc0")
    (rec,) = store.load_records(engine)
    assert rec["imdb_id"] == "tt0000008" and rec["review_count"] == 33
    assert rec["genres"] == ["剧情"] and len(rec["actors"]) == 2


def test_people_keyed_by_id_else_name(stored, make_film):
    a = make_film(1, directors=["同名"], director_ids=["501"])
    b = make_film(2, directors=["同名"], director_ids=["502"])   # a namesake with another id
    c = make_film(3, directors=["同名"], director_ids=[None])    # known by name only
    d = make_film(4, directors=["同名 "], director_ids=["501"])  # same id again
    engine = stored([a, b, c, d])
    with engine.connect() as conn:
        keys = set(conn.scalars(select(store.Person.person_key).where(store.Person.name == "同名")))
    assert keys == {"id:501", "id:502", "name:同名"}


def test_billing_order_kept(stored, make_film):
    cast = [f"演员{i}" for i in range(12)]
    engine = stored([make_film(1, actors=cast, actor_ids=None)])
    assert store.load_records(engine)[0]["actors"] == cast


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("create table movies (id integer primary key, name text)")
    with pytest.raises(SchemaError, match="not written by douban-kadn"):
        store.connect(f"sqlite:///{path}")


def test_other_schema_version_is_refused(db_url):
    engine = store.connect(db_url)
    with engine.begin() as conn:
        conn.execute(store.Meta.__table__.update().values(value="0"))
    with pytest.raises(SchemaError, match="schema version 0"):
        store.connect(db_url)


def test_empty_database_is_not_created_for_readers(tmp_path):
    with pytest.raises(KadnError, match="does not exist"):
        store.connect(f"sqlite:///{tmp_path / 'none.sqlite'}", create=False)
    assert not (tmp_path / "none.sqlite").exists()


def test_password_never_shown_in_errors():
    with pytest.raises(KadnError) as exc:
        store.connect("postgresql+nosuchdriver://user:hunter2@db.invalid/kadn")
    assert "hunter2" not in str(exc.value) and "***" in str(exc.value)


def test_values_longer_than_the_store_keeps_are_refused(make_film):
    with pytest.raises(RecordError) as exc:
        make_film(1, title="长" * 513)
    assert exc.value.field == "title"
    with pytest.raises(RecordError) as exc:
        make_film(2, actors=["名" * 257], actor_ids=None)
    assert exc.value.field == "actors"


def test_an_older_fetch_never_overwrites_a_newer_one(stored, make_film):
    from datetime import datetime, timedelta, timezone

    new = datetime(2026, 5, 2, 12, 0, tzinfo=timezone.utc)
    engine = stored([])
    store.upsert_records(engine, [make_film(9, rating=8.0, actors=["新"], actor_ids=None)], source="crawl",
                         fetched_at=new)
    # A slower crawler commits its older page afterwards.
    store.upsert_records(engine, [make_film(9, rating=6.0, actors=["旧"], actor_ids=None)], source="crawl",
                         fetched_at=new - timedelta(hours=1))
    (rec,) = store.load_records(engine)
    assert rec["rating"] == 8.0 and rec["actors"] == ["新"]
    store.upsert_records(engine, [make_film(9, rating=8.2)], source="crawl", fetched_at=new + timedelta(days=1))
    assert store.load_records(engine)[0]["rating"] == 8.2
    with engine.connect() as conn:
        first, last = conn.execute(select(store.Movie.first_fetched, store.Movie.last_fetched)).one()
    assert first == new.replace(tzinfo=None) and last == (new + timedelta(days=1)).replace(tzinfo=None)


def test_load_records_cuts_each_films_rows_in_billing_order_whatever_the_write_order(stored, make_film):
    # Films written out of id order, then one re-cast (its credits rewritten after every other row), one
    # without any credit or date, and people shared between films: every film gets its own rows, in order.
    films = [make_film(i, actors=[f"演员{i}-{k}" for k in range(4)], actor_ids=[str(900 + i * 10 + k) for k in range(4)])
             for i in (9, 2, 5)]
    films.append(make_film(7, directors=[], director_ids=[], writers=[], writer_ids=[], actors=[], actor_ids=[],
                           genres=[], countries=[], languages=[], release_dates=[], release_date=None))
    engine = stored(films)
    # The cast again, newcomer first and the rest in reverse billing: a superset, so it replaces the stored one.
    recast = {**films[1], "actors": ["新演员", *films[1]["actors"][::-1]], "actor_ids": [None, *films[1]["actor_ids"][::-1]]}
    store.upsert_records(engine, [recast], source="test")
    got = store.load_records(engine)
    assert [r["douban_id"] for r in got] == [2, 5, 7, 9]
    assert got == sorted([recast, films[0], films[2], films[3]], key=lambda r: r["douban_id"])
    assert all(list(r) == list(FIELDS) for r in got)  # the order the snapshot and export write
