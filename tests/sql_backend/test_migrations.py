"""``flask db upgrade`` as typed, in real host apps, on SQLite and PostgreSQL.

Each test writes a throwaway host app (Flask-SQLAlchemy + Flask-Migrate, a
``Note`` model of its own, the history tables in the host's database) and
drives the real ``flask`` command in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask

from flask_smg_history import HistoryUnavailable, SmgHistory, get_state
from flask_smg_history.backends.sql import migrate as sql_migrate

from ..support.backends_sql import POSTGRES_URL, postgres_schema
from ..support.errors import envelope, raises

HOST_APP = """
import os
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_smg_history import SmgHistory

db = SQLAlchemy()


class Note(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    text = db.Column(db.String(100))


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["HOST_DB_URL"]
    app.config["SMG_HISTORY_BACKEND"] = os.environ["HOST_SMG_BACKEND"]
    app.config["SMG_HISTORY_SQL_USE_APP_DB"] = True
    db.init_app(app)
    if os.environ.get("HOST_ORDER") == "smg_first":
        SmgHistory(app)
        Migrate(app, db)
    else:
        Migrate(app, db)
        SmgHistory(app)
    return app
"""

HISTORY_TABLES = {f"smg_history_{name}" for name in ("conversations", "items", "responses", "feedback")}


class Host:
    """A host app in a directory, and the ``flask`` command run in it."""

    def __init__(self, path: Path, db_url: str, backend: str) -> None:
        self.path = path
        self.db_url = db_url
        (path / "hostapp.py").write_text(HOST_APP)
        self.env = {
            **os.environ,
            "FLASK_APP": "hostapp",
            "HOST_DB_URL": db_url,
            "HOST_SMG_BACKEND": backend,
            # the host's module first, then whatever the test run imports (a checkout under test)
            "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")])),
        }

    def flask(self, *args: str, order: str = "migrate_first") -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", *args],
            cwd=self.path,
            env={**self.env, "HOST_ORDER": order},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def tables(self) -> set[str]:
        engine = sa.create_engine(self.db_url)
        try:
            return set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def scalar(self, query: str) -> object:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(query)).scalar()
        finally:
            engine.dispose()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A URL whose connections see only a fresh PostgreSQL schema (through
    ``search_path``), dropped afterwards: a database of its own for the host,
    at the cost of a schema."""
    with postgres_schema() as schema:
        url = sa.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg2")
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgres"])
def host(request, tmp_path: Path) -> Host:
    if request.param == "sqlite":
        return Host(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", "sqlite")
    return Host(tmp_path, request.getfixturevalue("postgres_database"), "postgres")


def _history_app(host: Host) -> Flask:
    """An app of our own on the host's database, which must not create tables."""
    app = Flask("reader")
    key = "SMG_HISTORY_SQLITE_PATH" if host.db_url.startswith("sqlite") else "SMG_HISTORY_POSTGRES_DB_URL"
    value = host.db_url.removeprefix("sqlite:///")
    app.config.update(SMG_HISTORY_BACKEND="sqlite" if key.endswith("PATH") else "postgres", **{key: value})
    SmgHistory(app)
    return app


def _schema_diff(app: Flask) -> list[object]:
    """What Alembic's autogenerate sees between the migrated schema and the
    tables the code queries (should be nothing)."""
    backend = get_state(app).backend
    ours = {t.name for t in backend.tables.metadata.tables.values()}
    schema = backend.settings.sql_schema

    def include_name(name, type_, parent_names):
        if type_ == "schema":
            return name == schema
        return type_ != "table" or name in ours

    opts = {"compare_type": True, "include_name": include_name, "include_schemas": schema is not None}
    with backend.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=opts)
        return compare_metadata(context, backend.tables.metadata)


def test_host_with_its_own_migrations(host: Host):
    host.flask("db", "init")
    host.flask("db", "migrate", "-m", "notes")
    out = host.flask("db", "upgrade")
    assert f"history tables at revision {sql_migrate.head_revision()}" in out
    assert {"note", "alembic_version", "smg_history_alembic_version"} | HISTORY_TABLES <= host.tables()
    host_revision = host.scalar("SELECT version_num FROM alembic_version")
    assert host.scalar("SELECT version_num FROM smg_history_alembic_version") == sql_migrate.head_revision()

    # The host's next autogenerate leaves our tables alone.
    assert "No changes in schema detected" in host.flask("db", "migrate", "-m", "nothing")
    assert len(list((host.path / "migrations" / "versions").glob("*.py"))) == 1

    app = _history_app(host)
    assert _schema_diff(app) == []
    store = get_state(app).store_for("alice")
    conv = store.conversations.create(items=[{"role": "user", "content": "Hi"}])
    assert [i.payload["content"][0]["text"] for i in store.items.recent(conv.id)] == ["Hi"]
    get_state(app).backend.close()

    host.flask("db", "downgrade", "smg_history@base")
    assert not HISTORY_TABLES & host.tables()
    assert "note" in host.tables()
    assert host.scalar("SELECT version_num FROM alembic_version") == host_revision

    # SmgHistory initialised before Migrate: the hook still catches `db upgrade`.
    host.flask("db", "upgrade", order="smg_first")
    assert HISTORY_TABLES <= host.tables()


def test_host_without_migrations_of_its_own(tmp_path: Path):
    host = Host(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", "sqlite")
    out = host.flask("db", "upgrade")  # not even `flask db init`
    assert "nothing else to upgrade" in out
    assert HISTORY_TABLES <= host.tables()
    host.flask("db", "init")  # a chain with no revisions yet
    host.flask("db", "upgrade")
    assert host.scalar("SELECT version_num FROM smg_history_alembic_version") == sql_migrate.head_revision()


def test_schema_behind_code_is_detected_and_init_db_fixes_it_without_restart(tmp_path: Path, caplog):
    app = Flask("behind")
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
    with caplog.at_level(logging.WARNING, logger="flask_smg_history"):
        SmgHistory(app)
    assert "run `flask smg-history init-db`" in caplog.text
    store = get_state(app).store_for("alice")
    not_migrated = (  # a plain app has no `flask db`: the command that works here comes first
        "The history tables (smg_history_*) do not exist: run `flask smg-history init-db` "
        "(or `flask db upgrade` if the app uses Flask-Migrate)."
    )
    with raises(HistoryUnavailable, message=not_migrated, param=None):
        store.conversations.list()
    envelope(app.test_client().get("/v1/history/health"), 503, message=not_migrated, param=None)

    result = app.test_cli_runner().invoke(args=["smg-history", "init-db"])
    assert result.exit_code == 0, result.output
    assert store.conversations.list().data == []
    get_state(app).backend.close()


@pytest.mark.parametrize("command", ["db", "migrations"])
def test_missing_tables_in_an_app_with_flask_migrate_name_its_upgrade_command_first(tmp_path: Path, command):
    """With Flask-Migrate registered (under its own command name), its
    upgrade is what the host runs: the message says it first."""
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("migrated")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}",
        SMG_HISTORY_BACKEND="sqlite",
        SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"),
    )
    db = SQLAlchemy(app)
    SmgHistory(app)
    Migrate(app, db, command=command)  # after SmgHistory: the message is built when it is raised
    not_migrated = (
        f"The history tables (smg_history_*) do not exist: run `flask {command} upgrade` "
        "(or `flask smg-history init-db`)."
    )
    with raises(HistoryUnavailable, message=not_migrated, param=None):
        get_state(app).store_for("alice").conversations.list()
    get_state(app).backend.close()


def test_init_db_refuses_non_sql_backends():
    app = Flask("mem")
    SmgHistory(app)
    result = app.test_cli_runner().invoke(args=["smg-history", "init-db"])
    assert result.exit_code != 0 and "SQL backends only" in result.output


def test_oracle_script_from_flask_db_upgrade_sql(tmp_path: Path):
    """`flask db upgrade --sql` on an Oracle history backend prints an Oracle
    script (no server needed: the DSN points at a closed port)."""
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("oracle_host")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}",
        SMG_HISTORY_BACKEND="oracle",
        SMG_HISTORY_ORACLE_DSN="127.0.0.1:9/nowhere",
        SMG_HISTORY_ORACLE_USER="u",
        SMG_HISTORY_ORACLE_PASSWORD="p",
    )
    db = SQLAlchemy(app)
    Migrate(app, db, directory=str(tmp_path / "migrations"))
    SmgHistory(app)
    result = app.test_cli_runner().invoke(args=["db", "upgrade", "--sql"])
    assert result.exit_code == 0, result.output
    script = result.output
    for table in sorted(HISTORY_TABLES):
        assert f"CREATE TABLE {table} (" in script
    assert "payload CLOB NOT NULL" in script
    assert "id VARCHAR2(128 CHAR) NOT NULL" in script
    assert (
        "CREATE UNIQUE INDEX smg_history_items_pos ON smg_history_items (conversation_id, position)"
        in textwrap.dedent(script)
    )
    assert "ON DELETE CASCADE" in script
    assert "INSERT INTO smg_history_alembic_version (version_num) VALUES ('smgh_0001')" in script
    # smgh_0002: the link table, the rows moved through the holding table
    assert "CREATE TABLE smg_history_conv_items (" in script and "DROP TABLE smg_history_items_v1" in script
    assert "CREATE UNIQUE INDEX smg_history_citems_pos ON smg_history_conv_items (conversation_id, position)" in script
    assert "row_number() OVER (PARTITION BY smg_history_conversations.owner, smg_history_items_v1.id" in script
    assert "SET version_num='smgh_0002' WHERE smg_history_alembic_version.version_num = 'smgh_0001'" in script
    # smgh_0003: an owner's conversations by last write
    assert "CREATE INDEX smg_history_conv_updated ON smg_history_conversations (owner, updated_at, id)" in script
    assert "SET version_num='smgh_0003' WHERE smg_history_alembic_version.version_num = 'smgh_0002'" in script
    for foreign in ("JSONB", "LIMIT", "BOOLEAN", "TEXT"):
        assert foreign not in script
    get_state(app).backend.close()


def test_tables_migrated_by_a_newer_version_are_reported(tmp_path: Path):
    app = Flask("ahead")
    app.config.update(
        SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"), SMG_HISTORY_CREATE_TABLES=True
    )
    SmgHistory(app)
    backend = get_state(app).backend
    with backend.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE smg_history_alembic_version SET version_num = 'smgh_9999'")
    backend.schema_changed()  # as if the app restarted (CREATE_TABLES still on)
    newer = (
        "The history tables (smg_history_*) were migrated by a newer flask-smg-history (revision smgh_9999): "
        "install that version, or downgrade the tables with it first."
    )
    with raises(HistoryUnavailable, message=newer, param=None):
        get_state(app).store_for("alice").conversations.list()
    backend.close()


@pytest.fixture(params=["sqlite", "postgres"])
def at_first_revision(request, tmp_path: Path) -> Iterator[Flask]:
    """An app whose history tables are at smgh_0001 (before item links)."""
    app = Flask("upgrading")
    if request.param == "sqlite":
        app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
        SmgHistory(app)
        sql_migrate.upgrade(get_state(app).backend, "smgh_0001")
        yield app
    else:
        with postgres_schema() as schema:
            app.config.update(
                SMG_HISTORY_BACKEND="postgres", SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL, SMG_HISTORY_SQL_SCHEMA=schema
            )
            SmgHistory(app)
            sql_migrate.upgrade(get_state(app).backend, "smgh_0001")
            yield app
            get_state(app).backend.close()
    get_state(app).backend.close()


def test_item_links_migration_moves_rows_and_back(at_first_revision: Flask):
    """smgh_0002 on rows written by smgh_0001: every item keeps its position
    and payload; an ID one owner had in two conversations becomes one item
    linked twice (the oldest copy); the same ID of two owners stays two items.
    The downgrade turns every link back into a row."""
    app = at_first_revision
    backend = get_state(app).backend
    conv, items = backend.tables.conversations.fullname, backend.tables.items.fullname
    rows = [  # conversation, owner, item id, position, text, created_at
        ("conv_a1", "alice", "msg_1", 0, "first", 10.0),
        ("conv_a1", "alice", "msg_2", 1, "second", 11.0),
        ("conv_a2", "alice", "msg_2", 0, "copy of second", 12.0),
        ("conv_a2", "alice", "msg_3", 5, "third", 13.0),
        ("conv_b1", "bob", "msg_1", 0, "bob's own", 14.0),
    ]
    with backend.engine.begin() as db:
        for cid, owner, top in (("conv_a1", "alice", 2), ("conv_a2", "alice", 6), ("conv_b1", "bob", 1)):
            db.execute(
                sa.text(
                    f"INSERT INTO {conv} (id, owner, created_at, updated_at, next_position) VALUES (:c, :o, 1, 1, :n)"
                ),
                {"c": cid, "o": owner, "n": top},
            )
        for cid, _, iid, position, text, created_at in rows:
            db.execute(
                sa.text(
                    f"INSERT INTO {items} (conversation_id, id, position, type, role, payload, created_at) "
                    "VALUES (:c, :i, :p, 'message', 'user', :payload, :t)"
                ),
                {"c": cid, "i": iid, "p": position, "t": created_at, "payload": json.dumps({"id": iid, "text": text})},
            )

    sql_migrate.upgrade(backend)
    alice, bob = (get_state(app).store_for(o) for o in ("alice", "bob"))

    def texts(store, cid):
        return [(i.id, i.position, i.payload.get("text")) for i in store.items.list(cid, order="asc").data]

    assert texts(alice, "conv_a1") == [("msg_1", 0, "first"), ("msg_2", 1, "second")]
    assert texts(alice, "conv_a2") == [("msg_2", 0, "second"), ("msg_3", 5, "third")]
    assert texts(bob, "conv_b1") == [("msg_1", 0, "bob's own")]
    with backend.engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(backend.tables.items)).scalar() == 4
        assert db.execute(sa.select(sa.func.count()).select_from(backend.tables.links)).scalar() == 5
    assert _schema_diff(app) == []
    (added,) = alice.items.add("conv_a2", [{"role": "user", "content": "after upgrade"}])
    assert added.position == 6
    alice.items.delete("conv_a1", "msg_2")
    assert texts(alice, "conv_a2")[0] == ("msg_2", 0, "second")  # still linked there

    sql_migrate.downgrade(backend, "smgh_0001")
    with backend.engine.connect() as db:
        old = db.execute(sa.text(f"SELECT conversation_id, id, position FROM {items} ORDER BY 1, 3")).all()
    assert [tuple(r) for r in old] == [
        ("conv_a1", "msg_1", 0),
        ("conv_a2", "msg_2", 0),
        ("conv_a2", "msg_3", 5),
        ("conv_a2", added.id, 6),
        ("conv_b1", "msg_1", 0),
    ]


@pytest.fixture(params=["sqlite", "postgres"])
def at_second_revision(request, tmp_path: Path) -> Iterator[Flask]:
    """An app whose history tables are at smgh_0002 (before the activity index)."""
    app = Flask("upgrading")
    if request.param == "sqlite":
        app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
        SmgHistory(app)
        sql_migrate.upgrade(get_state(app).backend, "smgh_0002")
        yield app
        get_state(app).backend.close()
    else:
        with postgres_schema() as schema:
            app.config.update(
                SMG_HISTORY_BACKEND="postgres", SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL, SMG_HISTORY_SQL_SCHEMA=schema
            )
            SmgHistory(app)
            sql_migrate.upgrade(get_state(app).backend, "smgh_0002")
            yield app
            get_state(app).backend.close()


def test_activity_index_migration_up_and_down(at_second_revision: Flask):
    """smgh_0003 adds (owner, updated_at, id) on conversations, which the
    listing by last write pages on; rows written before it list by it at
    once; the downgrade drops the index and leaves the rows."""
    app = at_second_revision
    backend = get_state(app).backend
    conv = backend.tables.conversations.fullname
    with backend.engine.begin() as db:
        for cid, created, updated in (("conv_1", 1.0, 30.0), ("conv_2", 2.0, 10.0), ("conv_3", 3.0, 20.0)):
            db.execute(
                sa.text(
                    f"INSERT INTO {conv} (id, owner, created_at, updated_at, next_position) "
                    "VALUES (:c, 'alice', :cr, :up, 0)"
                ),
                {"c": cid, "cr": created, "up": updated},
            )

    def index_names() -> set[str]:
        with backend.engine.connect() as db:
            inspector = sa.inspect(db)
            return {
                i["name"]
                for i in inspector.get_indexes(backend.tables.conversations.name, schema=backend.settings.sql_schema)
            }

    assert "smg_history_conv_updated" not in index_names()
    sql_migrate.upgrade(backend)
    assert "smg_history_conv_updated" in index_names()
    assert _schema_diff(app) == []
    store = get_state(app).store_for("alice")
    assert [c.id for c in store.conversations.list(order_by="updated_at").data] == ["conv_1", "conv_3", "conv_2"]

    sql_migrate.downgrade(backend, "smgh_0002")
    assert "smg_history_conv_updated" not in index_names()
    assert sql_migrate.head_revision() == "smgh_0006"
    with backend.engine.connect() as db:
        assert db.execute(sa.text(f"SELECT COUNT(*) FROM {conv}")).scalar() == 3
