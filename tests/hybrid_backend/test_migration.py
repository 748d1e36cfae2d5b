"""Revision smgh_0005 (the cache epoch row): printed as SQL for every
dialect (``flask db upgrade --sql``), and run up and down on SQLite."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.backends.sql import epoch
from flask_smg_history.backends.sql import migrate as sql_migrate


@pytest.fixture
def sqlite_backend(tmp_path: Path):
    app = Flask("migration")
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
    SmgHistory(app)
    backend = get_state(app).backend
    yield backend
    backend.close()


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite", "oracle"])
def test_offline_script_creates_and_fills_the_table(sqlite_backend, dialect_name: str):
    buffer = io.StringIO()
    config = sql_migrate._config(sqlite_backend)
    config.attributes["smg_dialect"] = dialect_name
    config.output_buffer = buffer
    command.upgrade(config, "smgh_0004:smgh_0005", sql=True)
    script = buffer.getvalue()
    assert "CREATE TABLE smg_history_cache_epoch (" in script
    assert "CONSTRAINT smg_history_cepoch_pk PRIMARY KEY (id)" in script
    assert "INSERT INTO smg_history_cache_epoch (id, epoch, synced, untrusted_at) VALUES (1, 0, 0, NULL)" in script
    assert "SET version_num='smgh_0005'" in script


def test_upgrade_and_downgrade_on_sqlite(sqlite_backend):
    sql_migrate.upgrade(sqlite_backend)
    assert epoch.read(sqlite_backend) == epoch.Epoch(0, 0, None)
    raised = epoch.raise_epoch(sqlite_backend, 123.5)
    assert raised == epoch.Epoch(1, 0, 123.5) and not raised.trusted
    assert epoch.raise_epoch(sqlite_backend, 999.0) == epoch.Epoch(2, 0, 123.5)  # untrusted since the first
    assert not epoch.mark_synced(sqlite_backend, 1)  # moved on meanwhile
    assert epoch.mark_synced(sqlite_backend, 2) and epoch.read(sqlite_backend).trusted

    sql_migrate.downgrade(sqlite_backend, "smgh_0004")
    with sqlite_backend.engine.connect() as conn:
        assert "smg_history_cache_epoch" not in sa.inspect(conn).get_table_names()
    sql_migrate.upgrade(sqlite_backend)
    sqlite_backend.schema_changed()
    assert epoch.read(sqlite_backend) == epoch.Epoch(0, 0, None)


def test_init_db_creates_a_hybrid_backends_tables(tmp_path: Path):
    from ..support.backends_hybrid import redis_prefix

    with redis_prefix() as cache:
        app = Flask("init_db")
        app.config.update(cache, SMG_HISTORY_BACKEND="sqlite+redis", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
        SmgHistory(app)
        result = app.test_cli_runner().invoke(args=["smg-history", "init-db"])
        assert result.exit_code == 0 and f"revision {sql_migrate.head_revision()}" in result.output
        backend = get_state(app).backend
        assert epoch.read(backend.sql) == epoch.Epoch(0, 0, None)
        store = get_state(app).store_for("alice")
        conv = store.conversations.create(items=[{"role": "user", "content": "hi"}])
        assert store.items.recent(conv.id, limit=5)[0].payload["content"][0]["text"] == "hi"
        backend.close()
