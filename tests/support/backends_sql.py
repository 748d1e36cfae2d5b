"""Contract-suite registrations of the SQL backends (sqlite, postgres, oracle).

Each yields the config of a fresh, empty store whose tables are created by our
own migration chain (``SMG_HISTORY_CREATE_TABLES``), so every contract test also
runs on exactly the schema that ``flask db upgrade`` builds. PostgreSQL gets a
schema of its own per test, dropped afterwards (cheaper than a database).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flask_smg_history import get_state
from flask_smg_history.backends.sql import admin

from .backends import register

#: The machine's PostgreSQL (trust auth); override to test elsewhere.
POSTGRES_URL = os.environ.get("SMG_HISTORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ORACLE_DSN = os.environ.get("SMG_HISTORY_TEST_ORACLE_DSN")
#: Erasure is one transaction (no chunks); export and purge read in batches.
BATCHES = {
    "conversations": admin.CONVERSATION_BATCH,
    "items": admin.EXPORT_BATCH,
    "responses": admin.EXPORT_BATCH,
    "purge": admin.PURGE_BATCH,
}


@register("sqlite", BATCHES)
@contextmanager
def sqlite(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {
        "SMG_HISTORY_BACKEND": "sqlite",
        "SMG_HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
        "SMG_HISTORY_CREATE_TABLES": True,
    }


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema, dropped with everything in it on exit."""
    import psycopg2

    name = f"smgt_{secrets.token_hex(6)}"
    conn = psycopg2.connect(POSTGRES_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {name}")
        yield name
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        conn.close()


@register("postgres", BATCHES)
@contextmanager
def postgres(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with postgres_schema() as schema:
        yield {
            "SMG_HISTORY_BACKEND": "postgres",
            "SMG_HISTORY_POSTGRES_DB_URL": POSTGRES_URL,
            "SMG_HISTORY_SQL_SCHEMA": schema,
            "SMG_HISTORY_POSTGRES_POOL_MAX_SIZE": 12,
            "SMG_HISTORY_CREATE_TABLES": True,
        }


@register("oracle", BATCHES)
@contextmanager
def oracle(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Live Oracle runs only with a server: set SMG_HISTORY_TEST_ORACLE_DSN,
    SMG_HISTORY_TEST_ORACLE_USER and SMG_HISTORY_TEST_ORACLE_PASSWORD. Each test
    gets its own table prefix, whose tables are dropped afterwards."""
    if not ORACLE_DSN:
        pytest.skip("no Oracle server: set SMG_HISTORY_TEST_ORACLE_DSN (with _USER and _PASSWORD) to run it")
    prefix = f"smgt{secrets.token_hex(3)}_"
    config = {
        "SMG_HISTORY_BACKEND": "oracle",
        "SMG_HISTORY_ORACLE_DSN": ORACLE_DSN,
        "SMG_HISTORY_ORACLE_USER": os.environ.get("SMG_HISTORY_TEST_ORACLE_USER"),
        "SMG_HISTORY_ORACLE_PASSWORD": os.environ.get("SMG_HISTORY_TEST_ORACLE_PASSWORD"),
        "SMG_HISTORY_TABLE_PREFIX": prefix,
        "SMG_HISTORY_CREATE_TABLES": True,
    }
    yield config
    from flask import Flask

    from flask_smg_history import SmgHistory
    from flask_smg_history.backends.sql import migrate as sql_migrate

    app = Flask("oracle_cleanup")
    app.config.update(config)
    SmgHistory(app)
    backend = get_state(app).backend
    sql_migrate.downgrade(backend, "smg_history@base")
    backend.close()


@contextmanager
def sqlite_statements(tmp_path: Path) -> Iterator[tuple[Any, list[Any]]]:
    """An app on a SQLite backend whose executed statement objects (not driver text)
    are kept, for compiling them offline for another dialect (Oracle); the
    backend is closed on exit."""
    import sqlalchemy as sa

    from .apps import build_app

    app = build_app(
        {
            "SMG_HISTORY_BACKEND": "sqlite",
            "SMG_HISTORY_SQLITE_PATH": str(tmp_path / "c.db"),
            "SMG_HISTORY_CREATE_TABLES": True,
        },
        tmp_path / "instance",
    )
    backend = get_state(app).backend
    statements: list[Any] = []

    @sa.event.listens_for(backend.engine, "before_execute")
    def keep(conn, clause, multiparams, params, execution_options):
        if isinstance(clause, sa.sql.ClauseElement) and not isinstance(clause, sa.sql.elements.TextClause):
            statements.append(clause)

    try:
        yield app, statements
    finally:
        backend.close()
