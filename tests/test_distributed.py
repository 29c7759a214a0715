"""Several crawlers, one Redis frontier, one PostgreSQL store (real servers on loopback; skip without them).

Two `scrapy crawl douban` processes crawl the mock site together: every film is stored exactly once and
fetched about once; killing one mid-crawl loses nothing, because its leased requests return to the queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis

from pipeline.film import store
from tests.services import postgres_url, redis_url
from tests.test_spider import ROOT, crawl_cmd, mock  # noqa: F401 (the mock fixture)

# Short leases let the kill test finish quickly; the sharing test uses long ones, so a worker slowed by a
# busy machine never has its leases expire (which would fetch pages twice, by design).
SHORT_LEASE, LONG_LEASE = "3", "120"


@pytest.fixture
def servers():
    url, prefix = redis_url()
    yield postgres_url(), url, prefix
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def start_worker(site, servers, lease: str) -> subprocess.Popen:
    pg, rds, prefix = servers
    env = {**os.environ, "DATABASE_URL": pg, "REDIS_URL": rds}
    cmd = crawl_cmd(site.base_url, DOUBAN_LEASE_SECONDS=lease, DOUBAN_REDIS_PREFIX=prefix)
    return subprocess.Popen(cmd, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def stored_ids(pg: str) -> list[int]:
    engine = store.connect(pg)
    try:
        return [r["douban_id"] for r in store.load_records(engine)]
    finally:
        engine.dispose()


def assert_exactly_the_catalogue(site, pg: str) -> None:
    expected = {r["douban_id"]: r for r in site.expected_films()}
    engine = store.connect(pg)
    got = store.load_records(engine)
    engine.dispose()
    ids = [r["douban_id"] for r in got]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(expected)
    assert all(r == expected[r["douban_id"]] for r in got)


@pytest.mark.slow
def test_two_workers_share_one_frontier(mock, servers):  # noqa: F811
    pg, rds, prefix = servers
    site = mock(400, seed=31)
    a, b = start_worker(site, servers, LONG_LEASE), start_worker(site, servers, LONG_LEASE)
    logs = finish(a) + finish(b)
    assert_exactly_the_catalogue(site, pg)
    assert "douban/frontier" in logs and "redis" in logs
    # One frontier: together the two fetched each subject page once; two separate crawls would fetch each twice.
    subject_hits = [n for path, n in site.hits.items() if path.startswith("/subject/")]
    assert len(subject_hits) > 300 and sum(subject_hits) <= 1.05 * len(subject_hits)
    assert redis.Redis.from_url(rds).hlen(f"{prefix}:leases") == 0


@pytest.mark.slow
def test_killing_a_worker_loses_nothing(mock, servers):  # noqa: F811
    pg, rds, prefix = servers
    site = mock(400, seed=32, slow_rate=0.3, slow_ms=300)
    # Slow pages keep requests in flight, so the kill lands on leased requests.
    victim = start_worker(site, servers, SHORT_LEASE)
    deadline = time.monotonic() + 60
    while len(stored_ids(pg)) < 40 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)
    survivor = start_worker(site, servers, SHORT_LEASE)
    time.sleep(1.0)
    assert victim.poll() is None, "the first worker finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    log = finish(survivor)
    missing = {r["douban_id"] for r in site.expected_films()} - set(stored_ids(pg))
    assert not missing, f"{len(missing)} films lost, e.g. {sorted(missing)[:5]}; survivor's log:\n{log[-4000:]}"
    assert_exactly_the_catalogue(site, pg)
    assert "douban/lease_requeued" in log
