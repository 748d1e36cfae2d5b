"""Oracle without a server: the schema and every query the backend runs compile
on SQLAlchemy's Oracle dialect, and each SMG_HISTORY_ORACLE_* form becomes the
right python-oracledb options (or a ConfigError naming the keys).

The queries are captured by running the backend on SQLite with a statement
listener, then recompiled for Oracle, so a query added later is covered
without editing this file.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.dialects import oracle as oracle_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from flask_smg_history import ConfigError, SmgHistory, get_state
from flask_smg_history.backends.sql import oracle
from flask_smg_history.backends.sql.tables import build_tables
from flask_smg_history.config import load_settings

from ..support.backends_sql import sqlite_statements
from ..support.errors import raises
from ..support.turns import build_turn, reference, store_turn

DIALECT = oracle_dialect.dialect()


def test_ddl_compiles_for_oracle_within_identifier_limits():
    tables = build_tables()
    ddl = []
    for table in tables.metadata.sorted_tables:
        ddl.append(str(CreateTable(table).compile(dialect=DIALECT)))
        ddl += [str(CreateIndex(index).compile(dialect=DIALECT)) for index in table.indexes]
    script = "\n".join(ddl)
    assert "JSON" not in script.replace("JSONB", "") and "TEXT" not in script
    assert "payload CLOB NOT NULL" in script
    names = [t.name for t in tables.metadata.sorted_tables]
    for table in tables.metadata.sorted_tables:
        names += [c.name for c in table.columns]
        names += [i.name for i in table.indexes] + [c.name for c in table.constraints if c.name]
    assert max(len(n) for n in names) <= 30, sorted(names, key=len)[-1]


@pytest.fixture
def captured(tmp_path: Path) -> list[sa.sql.ClauseElement]:
    """Run every backend operation on SQLite and keep each statement object."""
    with sqlite_statements(tmp_path) as (app, statements):
        _every_operation(app)
    return statements


def _every_operation(app: Flask) -> None:
    backend = get_state(app).backend
    store = get_state(app).store_for("alice")
    conv = store.conversations.create(metadata={"a": "b"}, items=[{"role": "user", "content": "hi"}])
    items = store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(3)])
    store.items.list(conv.id, after=items[0].id, order="asc")
    store.items.list(conv.id, after=items[2].id, order="desc")
    store.items.get(conv.id, items[1].id)
    store.items.recent(conv.id, limit=2)
    store.items.delete(conv.id, items[1].id)
    store.conversations.update(conv.id, {"c": "d"})
    store.conversations.update(conv.id, {"c": None, "e": "f"}, mode="patch")
    store.conversations.update(conv.id, {"g": "h"}, mode="replace")
    other = store.conversations.create()
    store.conversations.list(after=other.id, order="desc")
    store.conversations.list(after=conv.id, order="asc")
    store.conversations.list(after=other.id, order="desc", order_by="updated_at")
    store.conversations.list(after=conv.id, order="asc", order_by="updated_at")
    first = store.responses.store({"model": "m", "input": "x", "output": []})
    store.responses.store({"id": first.id, "model": "m2", "input": "y", "output": []})
    store.responses.get(first.id)
    store.feedback.submit(first.id, "positive")
    store.feedback.submit(first.id, "negative")
    store.feedback.get(first.id)
    page = store.feedback.list(rating="negative", model="m2", since=0)
    store.feedback.list(after=page.last_id)
    store.conversations.create(items=[{"type": "item_reference", "id": items[0].id}])
    store.responses.list(model="m2", conversation=conv.id, since=0)
    store.responses.list(after=first.id)
    turn, turn_items = build_turn("alice", other.id, ["q", reference(items[0].id, other.id, time.time())], ["a"])
    store_turn(app, turn, turn_items)
    store_turn(app, *build_turn("alice", None, ["q"], ["a"]))
    backend.import_records(list(backend.export(None, None)))
    backend.stats(None)
    list(backend.owners())
    backend.purge(before=0, dry_run=True)
    backend.purge(before=0, dry_run=False)
    store.responses.delete(first.id)
    store.conversations.delete(other.id)
    store.erase_owner()


def test_every_query_compiles_for_oracle_without_limit(captured):
    kinds = {type(s).__name__ for s in captured}
    assert {"Select", "Insert", "Update", "Delete"} <= kinds
    for statement in captured:
        sql = str(statement.compile(dialect=DIALECT))
        assert not re.search(r"\bLIMIT\b|\bOFFSET\b", sql), sql
        if isinstance(statement, sa.Select) and statement._limit_clause is not None:
            assert "FETCH FIRST" in sql, sql


def _settings(**config):
    return load_settings({"SMG_HISTORY_BACKEND": "oracle", **config}, environ={})


def test_dsn_form():
    options = oracle.connect_options(
        _settings(SMG_HISTORY_ORACLE_DSN="db:1521/svc", SMG_HISTORY_ORACLE_USER="u", SMG_HISTORY_ORACLE_PASSWORD="p")
    )
    assert options.thick_mode is False
    assert options.pool_args == {
        "dsn": "db:1521/svc",
        "user": "u",
        "password": "p",
        "min": 1,
        "max": 16,
        "increment": 1,
        "wait_timeout": 30000,
    }


def test_wallet_form_from_atp_environment():
    settings = load_settings(
        {"SMG_HISTORY_BACKEND": "oracle"},
        environ={
            "ATP_WALLET_PATH": "/w",
            "ATP_TNS_ALIAS": "db_high",
            "ATP_USER": "admin",
            "ATP_PASSWORD": "pw",
            "ATP_POOL_MIN": "2",
            "ATP_POOL_MAX": "4",
            "ATP_POOL_TIMEOUT_SECS": "5",
        },
    )
    args = oracle.connect_options(settings).pool_args
    assert args["dsn"] == "db_high"
    assert (args["config_dir"], args["wallet_location"], args["wallet_password"]) == ("/w", "/w", "pw")
    assert (args["min"], args["max"], args["wait_timeout"]) == (2, 4, 5000)


def test_external_auth_needs_thick_mode():
    options = oracle.connect_options(
        _settings(
            SMG_HISTORY_ORACLE_WALLET_PATH="/w",
            SMG_HISTORY_ORACLE_TNS_ALIAS="db",
            SMG_HISTORY_ORACLE_EXTERNAL_AUTH=True,
        )
    )
    assert options.thick_mode is True
    assert options.pool_args["externalauth"] is True and "user" not in options.pool_args
    import oracledb

    if oracledb.is_thin_mode():
        message = re.compile(
            r"SMG_HISTORY_ORACLE_EXTERNAL_AUTH=true needs python-oracledb thick mode, but the Oracle client "
            r"libraries could not be loaded \(.+\)\. Install Oracle Instant Client and put it on the library path "
            r"\(LD_LIBRARY_PATH\)\.",
            re.S,  # the driver's first refusal adds a "Help:" line
        )
        with raises(ConfigError, message=message, param="SMG_HISTORY_ORACLE_EXTERNAL_AUTH"):
            oracle.enable_thick_mode()  # no Oracle client libraries on this machine


_WHERE = (
    ": a connect string like 'host:1521/service', or the directory of an Autonomous Database wallet and a TNS "
    "alias from its tnsnames.ora (env: ATP_DSN, ATP_WALLET_PATH, ATP_TNS_ALIAS)."
)
NO_DSN = (
    "The oracle backend needs SMG_HISTORY_ORACLE_DSN "
    "(or SMG_HISTORY_ORACLE_WALLET_PATH with SMG_HISTORY_ORACLE_TNS_ALIAS)" + _WHERE
)
NO_CREDENTIALS = (
    "The oracle backend needs SMG_HISTORY_ORACLE_USER and SMG_HISTORY_ORACLE_PASSWORD (env: ATP_USER, "
    "ATP_PASSWORD), or SMG_HISTORY_ORACLE_EXTERNAL_AUTH=true for external authentication."
)


@pytest.mark.parametrize(
    ("config", "param", "message"),
    [
        ({}, "SMG_HISTORY_ORACLE_DSN", NO_DSN),
        (
            {"SMG_HISTORY_ORACLE_WALLET_PATH": "/w"},
            "SMG_HISTORY_ORACLE_TNS_ALIAS",
            "The oracle backend needs SMG_HISTORY_ORACLE_TNS_ALIAS" + _WHERE,
        ),
        (
            {"SMG_HISTORY_ORACLE_TNS_ALIAS": "db"},
            "SMG_HISTORY_ORACLE_WALLET_PATH",
            "The oracle backend needs SMG_HISTORY_ORACLE_WALLET_PATH" + _WHERE,
        ),
        (
            {"SMG_HISTORY_ORACLE_DSN": "d", "SMG_HISTORY_ORACLE_TNS_ALIAS": "db"},
            "SMG_HISTORY_ORACLE_DSN",
            "Give either SMG_HISTORY_ORACLE_DSN or SMG_HISTORY_ORACLE_WALLET_PATH with SMG_HISTORY_ORACLE_TNS_ALIAS, "
            "not both (env: ATP_DSN, ATP_WALLET_PATH, ATP_TNS_ALIAS).",
        ),
        (
            {"SMG_HISTORY_ORACLE_DSN": "d", "SMG_HISTORY_ORACLE_USER": "u"},
            "SMG_HISTORY_ORACLE_PASSWORD",
            NO_CREDENTIALS,
        ),
        ({"SMG_HISTORY_ORACLE_DSN": "d"}, "SMG_HISTORY_ORACLE_USER", NO_CREDENTIALS),
        (
            {"SMG_HISTORY_ORACLE_DSN": "d", "SMG_HISTORY_ORACLE_EXTERNAL_AUTH": True, "SMG_HISTORY_ORACLE_USER": "u"},
            "SMG_HISTORY_ORACLE_EXTERNAL_AUTH",
            "SMG_HISTORY_ORACLE_EXTERNAL_AUTH is true: leave SMG_HISTORY_ORACLE_USER and SMG_HISTORY_ORACLE_PASSWORD "
            "unset (the credentials come from the wallet or the operating system).",
        ),
        (
            {
                "SMG_HISTORY_ORACLE_DSN": "d",
                "SMG_HISTORY_ORACLE_USER": "u",
                "SMG_HISTORY_ORACLE_PASSWORD": "p",
                "SMG_HISTORY_ORACLE_POOL_MIN": 5,
                "SMG_HISTORY_ORACLE_POOL_MAX": 2,
            },
            "SMG_HISTORY_ORACLE_POOL_MIN",
            "SMG_HISTORY_ORACLE_POOL_MIN must not exceed SMG_HISTORY_ORACLE_POOL_MAX "
            "(env: ATP_POOL_MIN, ATP_POOL_MAX).",
        ),
    ],
)
def test_wrong_combinations_name_the_keys(config, param, message):
    with raises(ConfigError, message=message, param=param):
        oracle.connect_options(_settings(**config))


def test_bad_oracle_config_fails_at_init_app():
    app = Flask("bad")
    app.config.update(SMG_HISTORY_BACKEND="oracle")
    with raises(ConfigError, message=NO_DSN, param="SMG_HISTORY_ORACLE_DSN"):
        SmgHistory(app)
