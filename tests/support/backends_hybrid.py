"""Contract-suite registrations of the hybrid backends (SQL + Redis cache).

Each test gets the SQL store of its SQL half (a PostgreSQL schema of its own,
or an SQLite file) and a Redis key prefix of its own on the machine's Redis,
both removed afterwards (never the whole Redis database).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from .backends import register
from .backends_redis import STANDALONE_URL, delete_prefix, unique_prefix
from .backends_sql import BATCHES, POSTGRES_URL, postgres_schema


@contextmanager
def redis_prefix() -> Iterator[dict[str, Any]]:
    """A fresh Redis key prefix on the machine's Redis, its keys deleted on exit."""
    prefix = unique_prefix()
    try:
        yield {"SMG_HISTORY_REDIS_URL": STANDALONE_URL, "SMG_HISTORY_REDIS_KEY_PREFIX": prefix}
    finally:
        client = redis.Redis.from_url(STANDALONE_URL)
        try:
            delete_prefix(client, prefix)
        finally:
            client.close()


@register("sqlite+redis", BATCHES)
@contextmanager
def sqlite_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with redis_prefix() as cache:
        yield {
            "SMG_HISTORY_BACKEND": "sqlite+redis",
            "SMG_HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
            "SMG_HISTORY_CREATE_TABLES": True,
            **cache,
        }


@register("postgres+redis", BATCHES)
@contextmanager
def postgres_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with postgres_schema() as schema, redis_prefix() as cache:
        yield {
            "SMG_HISTORY_BACKEND": "postgres+redis",
            "SMG_HISTORY_POSTGRES_DB_URL": POSTGRES_URL,
            "SMG_HISTORY_SQL_SCHEMA": schema,
            "SMG_HISTORY_POSTGRES_POOL_MAX_SIZE": 12,
            "SMG_HISTORY_CREATE_TABLES": True,
            **cache,
        }
