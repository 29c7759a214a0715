"""The same store on PostgreSQL: idempotent upserts, concurrent writers, export and clean from it."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import re
import time
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from pipeline.cli import main
from pipeline.film import store
from tests.conftest import film, read_jsonl
from tests.services import postgres_url


@pytest.fixture
def pg_url(monkeypatch):
    url = postgres_url()
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def test_upsert_and_round_trip_on_postgres(pg_url):
    films = [film(i) for i in range(1, 30)]
    engine = store.connect(pg_url)
    store.upsert_records(engine, films, source="test")
    store.upsert_records(engine, films, source="test")
    assert store.load_records(engine) == films
    engine.dispose()


def _writer(url: str, barrier, rating: float, fetched_at: datetime, rounds: int, lag: float) -> None:
    engine = store.connect(url)
    films = [film(i, rating=rating, actors=[f"演员{rating}", "共同"], actor_ids=None) for i in range(1, 41)]
    for r in range(rounds):
        barrier.wait(timeout=30)
        # Both writers store the same films at about the same moment; the one with the older page lags a
        # little, so without the newer-wins rule its stale values would land last.
        time.sleep(lag)
        store.upsert_records(engine, films, source="crawl", fetched_at=fetched_at + timedelta(seconds=r))
    engine.dispose()


def test_two_concurrent_writers_store_each_film_once_with_the_newer_values(pg_url):
    store.connect(pg_url).dispose()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    t0 = datetime(2026, 1, 1)
    older = ctx.Process(target=_writer, args=(pg_url, barrier, 6.0, t0, 5, 0.05))
    newer = ctx.Process(target=_writer, args=(pg_url, barrier, 8.0, t0 + timedelta(hours=1), 5, 0.0))
    for p in (older, newer):
        p.start()
    for p in (older, newer):
        p.join(timeout=120)
        assert p.exitcode == 0
    engine = store.connect(pg_url)
    recs = store.load_records(engine)
    assert len(recs) == 40
    assert all(r["rating"] == 8.0 and r["actors"] == ["演员8.0", "共同"] for r in recs)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(store.Credit).where(store.Credit.role == "actor")) == 80
        assert conn.scalar(select(func.count()).select_from(store.Person).where(store.Person.name == "共同")) == 1
    engine.dispose()


def test_export_and_clean_read_postgres(pg_url, tmp_path, capsys):
    films = [film(i) for i in range(1, 12)] + [film(99, votes=3)]
    engine = store.connect(pg_url)
    store.upsert_records(engine, films, source="test")
    engine.dispose()
    assert main(["export"]) == 0
    assert len(read_jsonl(capsys.readouterr().out)) == 12
    out = tmp_path / "movies.parquet"
    assert main(["clean", "--out", str(out), "--report", str(tmp_path / "r.json")]) == 0
    assert "removed" in capsys.readouterr().out and out.exists()


def _import(url: str, path: str, barrier, queue) -> None:
    barrier.wait(timeout=30)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["import", path, "--database-url", url])
    queue.put((path, code, err.getvalue()))


def test_two_imports_at_once_on_postgres_print_exact_counts(pg_url, tmp_path):
    paths = {}
    for tag, ids in (("a", range(1, 1501)), ("b", range(1001, 2501))):
        paths[tag] = tmp_path / f"{tag}.jsonl"
        paths[tag].write_text("".join(json.dumps({"douban_id": i, "title": f"{tag}{i}"}) + "\n" for i in ids),
                              encoding="utf-8")
    store.connect(pg_url).dispose()
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_import, args=(pg_url, str(p), barrier, queue)) for p in paths.values()]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    counts = {}
    for _, code, err in results:
        assert code == 0, err
        new, updated, total = map(int, re.search(r"(\d+) new, (\d+) updated; (\d+) movies stored", err).groups())
        counts[total] = (new, updated)
    # Whichever went first found an empty store; the second found the 500 films both files hold.
    assert counts == {1500: (1500, 0), 2500: (1000, 500)}
    assert store.count_movies(store.connect(pg_url)) == 2500


def test_forecast_ledger_upserts_on_postgres(pg_url):
    engine = store.connect(pg_url)
    store.upsert_records(engine, [film(1, rating=7.5)], source="test")
    row = {"douban_id": 1, "made_on": date(2026, 3, 1), "model": "kadn", "digest": "d" * 64, "score": 7.0,
           "low": 6.0, "high": 8.0, "level": 0.8, "known_share": 0.5}
    store.record_forecasts(engine, [row])
    store.record_forecasts(engine, [{**row, "score": 7.2}])
    (got,) = store.load_forecasts(engine)
    assert (got["score"], got["rating"], got["wish_count"]) == (7.2, 7.5, None)
    engine.dispose()
