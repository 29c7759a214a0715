"""Reachability of the optional servers (PostgreSQL, Redis) that scripts/services.sh starts on loopback."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL = os.environ.get("KADN_TEST_POSTGRES_URL", "postgresql+psycopg://kadn:kadn@127.0.0.1:5432/kadn")
REDIS_URL = os.environ.get("KADN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """A clean PostgreSQL database for one test, or skip saying why."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[dev]')")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    if not _port_open(url.host or "127.0.0.1", url.port or 5432):
        pytest.skip(f"no PostgreSQL at {url.host}:{url.port or 5432} (run scripts/services.sh to start one)")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            # Each test starts from an empty public schema.
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable server"
        pytest.skip(f"PostgreSQL at {url.host} not usable: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


def redis_url() -> str:
    pytest.importorskip("redis", reason="redis client not installed")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL} (run scripts/services.sh to start one)")
    client.flushdb()
    return REDIS_URL
