"""Reachability of the optional servers (PostgreSQL, Redis) that scripts/services.sh starts on loopback."""

from __future__ import annotations

import socket
import uuid

import pytest

from crawler.mocksite.harness import POSTGRES_URL, REDIS_URL


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """A fresh PostgreSQL database for one test (dropped at exit), or skip saying why.

    A database per test, not a shared one emptied: two test runs on one machine never collide.
    """
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[dev]')")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    if not _port_open(url.host or "127.0.0.1", url.port or 5432):
        pytest.skip(f"no PostgreSQL at {url.host}:{url.port or 5432} (run scripts/services.sh to start one)")
    name = f"kadn_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable server"
        pytest.skip(f"PostgreSQL at {url.host} not usable: {exc.__class__.__name__}")
    finally:
        admin.dispose()
    _CREATED.append((url, name))
    return url.set(database=name).render_as_string(hide_password=False)


def drop_test_databases() -> None:
    from sqlalchemy import create_engine, text

    while _CREATED:
        url, name = _CREATED.pop()
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


_CREATED: list = []


def redis_url() -> tuple[str, str]:
    """(Redis URL, a key prefix of this test's own), or skip saying why."""
    pytest.importorskip("redis", reason="redis client not installed")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL} (run scripts/services.sh to start one)")
    return REDIS_URL, f"kadn-test-{uuid.uuid4().hex[:12]}"
