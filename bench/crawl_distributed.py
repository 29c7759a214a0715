"""Does the Redis frontier scale? N `scrapy crawl douban` workers against the mock site, one Redis frontier
and one PostgreSQL store, each worker held to a per-IP politeness budget.

    scripts/services.sh    # PostgreSQL and Redis on 127.0.0.1
    .venv/bin/python bench/crawl_distributed.py [--movies 800] [--workers 1 2 3] [--latency-ms 150] [--per-worker 4]

Douban limits each IP, so one machine's crawl is bound by its politeness budget, not its CPU: here every
page answers after `--latency-ms` (the mock's slow knob on every page) and each worker may keep only
`--per-worker` requests in flight. The figure that matters is how pages/s grows with workers, and what
the shared frontier and store cost per page against the single-machine crawl (SQLite, no Redis) under the
same budget. Every run must store exactly the catalogue; duplicate fetches are counted. Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crawler.mocksite.harness import POSTGRES_URL, REDIS_URL
from crawler.mocksite.site import MockDouban
from pipeline.film import store

ROOT = Path(__file__).resolve().parents[1]

SCRAPY = str(Path(sys.executable).with_name("scrapy"))


def worker_cmd(site: MockDouban, per_worker: int, prefix: str | None) -> list[str]:
    settings = {"DOUBAN_BASE_URL": site.base_url, "AUTOTHROTTLE_ENABLED": "0", "DOWNLOAD_DELAY": "0",
                "CONCURRENT_REQUESTS": per_worker, "CONCURRENT_REQUESTS_PER_DOMAIN": per_worker,
                "LOG_LEVEL": "WARNING"}
    if prefix:
        settings["DOUBAN_REDIS_PREFIX"] = prefix
    cmd = [SCRAPY, "crawl", "douban"]
    for key, value in settings.items():
        cmd += ["-s", f"{key}={value}"]
    return cmd


def run(site: MockDouban, workers: int, per_worker: int, db_url: str, redis_url: str | None) -> dict:
    prefix = f"kadn-bench-{uuid.uuid4().hex[:8]}" if redis_url else None
    env = {**os.environ, "DATABASE_URL": db_url}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    site.hits.clear()
    started = time.perf_counter()
    procs = [subprocess.Popen(worker_cmd(site, per_worker, prefix), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - started
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed:\n{next(e for p, e in zip(procs, errors) if p.returncode)[-3000:]}")
    engine = store.connect(db_url)
    got = store.load_records(engine)
    engine.dispose()
    subjects = {path: n for path, n in site.hits.items() if path.startswith("/subject/")}
    return {"workers": workers, "wall_s": wall, "pages": sum(site.hits.values()),
            "subject_pages": len(subjects), "refetched": sum(subjects.values()) - len(subjects),
            "exact": got == site.expected_films()}


def postgres_database() -> tuple[str, Callable[[], None]]:
    url = make_url(POSTGRES_URL)
    name = f"kadn_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=int, default=800)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--latency-ms", type=int, default=150, help="every page answers after this long")
    ap.add_argument("--per-worker", type=int, default=4, help="requests in flight per worker (per IP)")
    args = ap.parse_args()
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        raise SystemExit(f"no Redis at {REDIS_URL}: run scripts/services.sh") from None

    site = MockDouban(args.movies, args.seed, slow_rate=1.0, slow_ms=args.latency_ms)
    site.serve(0)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("single machine (SQLite, no Redis)",
                         run(site, 1, args.per_worker, f"sqlite:///{tmp}/bench.sqlite", None)))
        for n in args.workers:
            db_url, drop = postgres_database()
            try:
                rows.append((f"Redis frontier + PostgreSQL, {n} worker(s)", run(site, n, args.per_worker, db_url,
                                                                                 REDIS_URL)))
            finally:
                drop()
    finally:
        site.close()
    base = rows[0][1]["pages"] / rows[0][1]["wall_s"]
    print(f"{args.movies} mock subjects, every page {args.latency_ms} ms, {args.per_worker} requests in flight per "
          f"worker; wall time from start to the last worker's exit (process start-up included)\n")
    print("| setup | pages | wall (s) | pages/s | x single machine | subject pages refetched | store exact |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, r in rows:
        rate = r["pages"] / r["wall_s"]
        print(f"| {label} | {r['pages']} | {r['wall_s']:.1f} | {rate:.1f} | {rate / base:.2f} | {r['refetched']} | "
              f"{r['exact']} |")
    return 0 if all(r["exact"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
