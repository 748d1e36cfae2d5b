"""``flask smg-history copy`` moves a file backend's data into SQLite and
PostgreSQL: every record, as it was, verified by the command."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..contract.test_owner_data import FULL_RESPONSE, _fill
from ..support.backends_sql import POSTGRES_URL, postgres_schema


@pytest.fixture
def filled(app):
    state = get_state(app)
    _fill(state.store_for("alice"), n_conv=3, n_items=4)
    _fill(state.store_for("bob"), n_conv=1, n_items=2, model="m2")
    alice = state.store_for("alice")
    conv = alice.conversations.list().data[0]
    other = alice.conversations.create()
    alice.items.add(other.id, [{"type": "item_reference", "id": alice.items.list(conv.id).data[0].id}])
    alice.responses.store(FULL_RESPONSE)
    return app


def _target(config):
    app = Flask("target")
    app.config.update(config)
    SmgHistory(app)
    return get_state(app).backend


def _copy_and_compare(filled, tmp_path, args, config):
    result = filled.test_cli_runner().invoke(
        args=["smg-history", "copy", *args, "--checkpoint", str(tmp_path / "cp.json")]
    )
    assert result.exit_code == 0, result.output
    assert "verified: counts match" in result.output
    source = list(get_state(filled).backend.export(None, None))
    target = _target(config)
    try:
        assert list(target.export(None, None)) == source
        assert len(source) > 20
    finally:
        target.close()


def test_copy_into_sqlite(filled, tmp_path):
    path = str(tmp_path / "copied.sqlite3")
    args = ["--to-backend", "sqlite", "--to-url", path, "--set", "SMG_HISTORY_CREATE_TABLES=true"]
    config = {"SMG_HISTORY_BACKEND": "sqlite", "SMG_HISTORY_SQLITE_PATH": path}
    _copy_and_compare(filled, tmp_path, args, config)


def test_copy_into_postgres(filled, tmp_path):
    with postgres_schema() as schema:
        args = ["--to-backend", "postgres", "--to-url", POSTGRES_URL]
        args += ["--set", f"SMG_HISTORY_SQL_SCHEMA={schema}", "--set", "SMG_HISTORY_CREATE_TABLES=true"]
        config = {
            "SMG_HISTORY_BACKEND": "postgres",
            "SMG_HISTORY_POSTGRES_DB_URL": POSTGRES_URL,
            "SMG_HISTORY_SQL_SCHEMA": schema,
        }
        _copy_and_compare(filled, tmp_path, args, config)


def test_copy_into_another_folder_names_it_with_to_url(filled, tmp_path):
    folder = str(tmp_path / "copied")
    config = {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": folder}
    _copy_and_compare(filled, tmp_path, ["--to-backend", "file", "--to-url", folder], config)
    assert (tmp_path / "copied" / ".locks").is_dir()
