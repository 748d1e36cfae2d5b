"""Search on the SQL backends beyond the contract: the migration that builds
the index on existing rows and takes it away, the index kept in step by the
database, stems and stop words, the text search configuration, an SQLite
without FTS5, and Oracle's documented 501."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import HistoryUnavailable, NotSupported, SmgHistory, get_state
from flask_smg_history.backends.sql import fulltext
from flask_smg_history.backends.sql import migrate as sql_migrate

from ..support.backends_sql import POSTGRES_URL, postgres_schema


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request) -> str:
    return request.param


@pytest.fixture
def make_sql_app(dialect: str, tmp_path: Path) -> Iterator:
    """Apps on one fresh SQLite file or PostgreSQL schema, tables not created."""
    built: list[Flask] = []
    with postgres_schema() if dialect == "postgres" else nullcontext() as schema:

        def factory(**config) -> Flask:
            app = Flask(f"search{len(built)}")
            if dialect == "sqlite":
                app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
            else:
                app.config.update(
                    SMG_HISTORY_BACKEND="postgres",
                    SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL,
                    SMG_HISTORY_SQL_SCHEMA=schema,
                )
            app.config.update(config)
            SmgHistory(app)
            built.append(app)
            return app

        yield factory
        for app in built:
            get_state(app).backend.close()


def _insert(backend, owner: str, conversation: str, title: str, texts: list[str]) -> None:
    """Rows written straight into the tables, as an older version left them."""
    t = backend.tables
    with backend.engine.begin() as db:
        db.execute(
            sa.insert(t.conversations).values(
                id=conversation,
                owner=owner,
                created_at=1.0,
                updated_at=2.0,
                metadata={"title": title},
                next_position=len(texts),
            )
        )
        for position, text in enumerate(texts):
            item_id = f"msg_{conversation}_{position}"
            payload = {
                "id": item_id,
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }
            db.execute(
                sa.insert(t.items).values(
                    owner=owner, id=item_id, type="message", role="user", payload=payload, created_at=1.0
                )
            )
            db.execute(
                sa.insert(t.links).values(conversation_id=conversation, position=position, owner=owner, item_id=item_id)
            )


def _index_objects(backend) -> set[str]:
    with backend.engine.connect() as db:
        inspector = sa.inspect(db)
        schema = backend.settings.sql_schema
        found = set(inspector.get_table_names(schema=schema))
        found |= {c["name"] for c in inspector.get_columns(backend.tables.items.name, schema=schema)}
        found |= {i["name"] for i in inspector.get_indexes(backend.tables.items.name, schema=schema)}
    return found & ({"search_vector", "smg_history_items_search"} | fulltext.sqlite_tables("smg_history_"))


def test_the_migration_indexes_existing_rows_and_the_downgrade_removes_the_index(make_sql_app, dialect):
    app = make_sql_app()
    backend = get_state(app).backend
    sql_migrate.upgrade(backend, "smgh_0003")
    _insert(backend, "alice", "conv_old", "Gannet survey", ["gannets nest on cliffs", "other birds"])
    _insert(backend, "bob", "conv_bob", "Gannet party", ["gannets everywhere"])
    assert _index_objects(backend) == set()

    sql_migrate.upgrade(backend)
    expected = {"search_vector", "smg_history_items_search"} if dialect == "postgres" else {"smg_history_search"}
    assert expected <= _index_objects(backend)
    alice = get_state(app).store_for("alice")
    page = alice.search("gannets")
    # the title says "Gannet": a stem of "gannets" on both
    assert [(h.conversation_id, h.item_id) for h in page.data] == [("conv_old", None), ("conv_old", "msg_conv_old_0")]
    assert [h.item_id for h in alice.search("survey").data] == [None]
    alice.items.add("conv_old", [{"role": "user", "content": "a gannet dives"}])
    assert len(alice.search("gannet").data) == 3

    sql_migrate.downgrade(backend, "smgh_0003")
    assert _index_objects(backend) == set()
    with backend.engine.connect() as db:  # the rows stay
        assert db.execute(sa.select(sa.func.count()).select_from(backend.tables.items)).scalar() == 4
    sql_migrate.upgrade(backend)  # and a second upgrade indexes them again
    assert len(get_state(app).store_for("alice").search("gannet").data) == 3


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_sqlite_index_follows_every_write(make_sql_app):
    """Inserts, references, unlinks, deletes, metadata updates, import,
    purge and erasure all leave one index row per item and conversation."""
    app = make_sql_app(SMG_HISTORY_CREATE_TABLES=True)
    backend = get_state(app).backend
    alice = get_state(app).store_for("alice")

    def consistent() -> None:
        with backend.engine.connect() as db:
            count = lambda table: db.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar()  # noqa: E731
            records = count("smg_history_items") + count("smg_history_conversations")
            assert count("smg_history_search") == count("smg_history_search_rows") == records

    one = alice.conversations.create(metadata={"title": "t"}, items=[{"role": "user", "content": "egret"}] * 1)
    two = alice.conversations.create(items=[{"role": "user", "content": "egret two"}])
    item = alice.items.list(one.id).data[0]
    alice.items.add(two.id, [{"type": "item_reference", "id": item.id}])
    consistent()
    alice.items.delete(one.id, item.id)
    consistent()
    alice.conversations.update(two.id, {"title": "egret pond"}, mode="replace")
    assert [h.item_id for h in alice.search("pond").data] == [None]
    exported = list(backend.export("alice", None))
    alice.conversations.delete(two.id)
    consistent()
    backend.import_records(exported)
    consistent()
    assert len(alice.search("egret").data) == 3
    backend.purge(before=10**10, dry_run=False)
    consistent()
    alice.conversations.create(items=[{"role": "user", "content": "egret"}])
    alice.erase_owner()
    consistent()
    assert alice.search("egret").data == []


@pytest.mark.parametrize("dialect", ["postgres"])
def test_postgres_metadata_index_follows_every_write(make_sql_app):
    """smgh_0006 indexes the metadata of the conversations already stored;
    then creation, metadata updates, deletes, import, purge and erasure
    leave one row per conversation, holding its metadata; the downgrade
    takes the table, trigger and function away, and the rows stay."""
    app = make_sql_app()
    backend = get_state(app).backend
    sql_migrate.upgrade(backend, "smgh_0005")
    _insert(backend, "alice", "conv_old", "Gannet survey", ["nothing here"])
    sql_migrate.upgrade(backend)
    alice = get_state(app).store_for("alice")
    meta = backend.tables.conversation_search

    def indexed() -> dict[str, str]:
        """Each conversation's indexed metadata words, as text."""
        with backend.engine.connect() as db:
            rows = db.execute(sa.select(meta.c.conversation_id, sa.cast(meta.c.search_vector, sa.Text))).all()
            convs = db.execute(sa.select(sa.func.count()).select_from(backend.tables.conversations)).scalar()
        assert len(rows) == convs
        return dict(rows)

    assert "'survey'" in indexed()["conv_old"]
    assert [h.item_id for h in alice.search("survey").data] == [None]
    conv = alice.conversations.create(metadata={"title": "egret pond"}, items=[{"role": "user", "content": "hi"}])
    assert "'pond'" in indexed()[conv.id]
    alice.items.add(conv.id, [{"role": "user", "content": "more"}])
    alice.conversations.update(conv.id, {"title": "heron lake"}, mode="replace")
    assert "'lake'" in indexed()[conv.id] and "'pond'" not in indexed()[conv.id]
    alice.conversations.update(conv.id, {"mood": "calm"}, mode="patch")
    assert "'calm'" in indexed()[conv.id] and "'lake'" in indexed()[conv.id]
    assert [h.conversation_id for h in alice.search("calm").data] == [conv.id]
    exported = list(backend.export("alice", None))
    alice.conversations.delete(conv.id)
    assert conv.id not in indexed() and alice.search("calm").data == []
    backend.import_records(exported)
    assert "'calm'" in indexed()[conv.id]
    backend.purge(before=10**10, dry_run=False)
    assert indexed() == {}
    alice.conversations.create(metadata={"title": "gone soon"})
    alice.erase_owner()
    assert indexed() == {}

    alice.conversations.create(metadata={"title": "kept"})
    sql_migrate.downgrade(backend, "smgh_0005")
    with backend.engine.connect() as db:
        assert not sa.inspect(db).has_table(meta.name, schema=backend.settings.sql_schema)
        functions = sa.text(
            "SELECT count(*) FROM pg_proc WHERE proname = 'smg_history_conv_search_put' "
            "AND pronamespace = CAST(:schema AS regnamespace)"
        )
        assert db.execute(functions, {"schema": backend.settings.sql_schema}).scalar() == 0
        assert db.execute(sa.select(sa.func.count()).select_from(backend.tables.conversations)).scalar() == 1
    sql_migrate.upgrade(backend)
    assert [h.item_id for h in alice.search("kept").data] == [None]


def test_stems_on_both_and_stop_words_on_postgres(make_sql_app, dialect):
    app = make_sql_app(SMG_HISTORY_CREATE_TABLES=True)
    alice = get_state(app).store_for("alice")
    alice.conversations.create(items=[{"role": "user", "content": "The deploys were deployed while deploying"}])
    for query in ("deploy", "deploys", "deployed"):
        assert len(alice.search(query).data) == 1, query
    # PostgreSQL's english configuration drops stop words; a query of them finds nothing
    assert len(alice.search("the").data) == (0 if dialect == "postgres" else 1)
    assert alice.search("the -deploy").data == []


@pytest.mark.parametrize("dialect", ["postgres"])
def test_postgres_search_config(make_sql_app):
    app = make_sql_app(SMG_HISTORY_CREATE_TABLES=True, SMG_HISTORY_POSTGRES_SEARCH_CONFIG="simple")
    alice = get_state(app).store_for("alice")
    alice.conversations.create(items=[{"role": "user", "content": "The deploys were deployed"}])
    assert len(alice.search("the").data) == 1  # no stop words in 'simple'
    assert alice.search("deploy").data == []  # and no stems
    # The same tables read by an app set to another configuration: a clear 503, not wrong answers.
    other = make_sql_app(SMG_HISTORY_POSTGRES_SEARCH_CONFIG="english")
    with pytest.raises(HistoryUnavailable) as info:
        get_state(other).store_for("alice").search("deploy")
    assert "SMG_HISTORY_POSTGRES_SEARCH_CONFIG='english'" in info.value.message
    assert "flask db downgrade smg_history@smgh_0003" in info.value.message
    assert get_state(other).store_for("alice").conversations.list().data  # everything else works


def test_postgres_config_is_checked_at_start_up():
    app = Flask("bad_config")
    app.config.update(SMG_HISTORY_POSTGRES_SEARCH_CONFIG="english'; DROP TABLE x; --")
    with pytest.raises(Exception) as info:
        SmgHistory(app)
    assert "SMG_HISTORY_POSTGRES_SEARCH_CONFIG" in str(info.value)


def test_sqlite_without_fts5_answers_501_and_the_rest_works(tmp_path: Path, caplog):
    """An SQLite whose FTS5 is missing (here: the probe the migration runs
    says so, as such a build answers it) still gets every other table;
    search then says why it cannot run."""
    app = Flask("no_fts5")
    app.config.update(
        SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"), SMG_HISTORY_ALLOW_ANONYMOUS=True
    )
    SmgHistory(app)
    backend = get_state(app).backend

    @sa.event.listens_for(backend.engine, "connect")
    def without_fts5(dbapi_connection, record):
        dbapi_connection.create_function(
            "sqlite_compileoption_used", 1, lambda option: 0 if option == "ENABLE_FTS5" else 1
        )

    backend.engine.dispose()
    with caplog.at_level(logging.WARNING, logger="flask_smg_history"):
        sql_migrate.upgrade(backend)
    assert "no FTS5" in caplog.text
    store = get_state(app).store_for("anonymous")
    store.conversations.create(items=[{"role": "user", "content": "heron"}])
    with pytest.raises(NotSupported) as info:
        store.search("heron")
    assert "FTS5" in info.value.message and info.value.status == 501
    response = app.test_client().get("/v1/search?q=heron")
    assert response.status_code == 501 and response.get_json()["error"]["code"] == "not_supported"


def test_oracle_answers_501_without_touching_the_server():
    app = Flask("oracle_search")
    app.config.update(
        SMG_HISTORY_BACKEND="oracle",
        SMG_HISTORY_ORACLE_DSN="127.0.0.1:9/nowhere",
        SMG_HISTORY_ORACLE_USER="u",
        SMG_HISTORY_ORACLE_PASSWORD="p",
        SMG_HISTORY_API_KEYS={"sk-o": "alice"},
    )
    SmgHistory(app)
    with pytest.raises(NotSupported) as info:
        get_state(app).store_for("alice").search("anything")
    assert "Oracle Text" in info.value.message
    response = app.test_client().get("/v1/search?q=anything", headers={"Authorization": "Bearer sk-o"})
    body = response.get_json()
    assert response.status_code == 501 and response.headers["x-should-retry"] == "false"
    assert body["error"]["code"] == "not_supported" and body["error"]["type"] == "server_error"
    get_state(app).backend.close()


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite", "oracle"])
def test_offline_upgrade_scripts(tmp_path: Path, dialect_name: str):
    """``flask db upgrade --sql``: the index DDL for PostgreSQL and SQLite,
    nothing but the revision for Oracle."""
    app = Flask("offline")
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
    SmgHistory(app)
    backend = get_state(app).backend
    script = _offline_script(backend, dialect_name)
    assert "SET version_num='smgh_0004' WHERE smg_history_alembic_version.version_num = 'smgh_0003'" in script
    if dialect_name == "postgresql":
        assert "ADD COLUMN search_vector TSVECTOR GENERATED ALWAYS AS (array_to_tsvector(" in script
        assert "to_tsvector('english'::regconfig, (jsonb_path_query_array(payload" in script
        assert "CREATE INDEX smg_history_items_search ON smg_history_items USING gin (search_vector)" in script
    elif dialect_name == "sqlite":
        assert "CREATE VIRTUAL TABLE smg_history_search USING fts5(tag, body" in script
        assert "CREATE TRIGGER smg_history_search_item_gone AFTER DELETE ON smg_history_items" in script
    else:
        assert "CREATE" not in script and "ALTER" not in script
    backend.close()


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite", "oracle"])
def test_offline_metadata_index_scripts(tmp_path: Path, dialect_name: str):
    """``flask db upgrade --sql`` of smgh_0006: PostgreSQL's metadata table,
    trigger, backfill and GIN index (built after the backfill), nothing but
    the revision elsewhere."""
    app = Flask("offline_meta")
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
    SmgHistory(app)
    backend = get_state(app).backend
    script = _offline_script(backend, dialect_name, "smgh_0005:smgh_0006")
    assert "SET version_num='smgh_0006' WHERE smg_history_alembic_version.version_num = 'smgh_0005'" in script
    if dialect_name == "postgresql":
        steps = [
            "CREATE TABLE smg_history_conv_search",
            "REFERENCES smg_history_conversations (id) ON DELETE CASCADE",
            "to_tsvector('english'::regconfig, COALESCE(NEW.metadata, '{}'::jsonb))",
            'CREATE TRIGGER "smg_history_conv_search_put" AFTER INSERT OR UPDATE OF metadata ON',
            'INSERT INTO "smg_history_conv_search" (conversation_id, search_vector) SELECT c.id',
            "CREATE INDEX smg_history_conv_search_gin ON smg_history_conv_search USING gin (search_vector)",
        ]
        at = [script.find(step) for step in steps]
        assert -1 not in at and at == sorted(at), at
    else:
        assert "CREATE" not in script and "INSERT" not in script
    backend.close()


def _offline_script(backend, dialect_name: str, revisions: str = "smgh_0003:smgh_0004") -> str:
    """The SQL that ``upgrade --sql`` prints for ``dialect_name`` over
    ``revisions`` (by default smgh_0004, the search revision)."""
    import io

    from alembic import command

    buffer = io.StringIO()
    config = sql_migrate._config(backend)
    config.attributes["smg_dialect"] = dialect_name
    config.output_buffer = buffer
    command.upgrade(config, revisions, sql=True)
    return buffer.getvalue()


def test_hits_of_a_jsonb_payload_read_back(make_sql_app, dialect):
    """Metadata comes back as a dict on both drivers (JSONB and JSON text)."""
    app = make_sql_app(SMG_HISTORY_CREATE_TABLES=True)
    alice = get_state(app).store_for("alice")
    alice.conversations.create(metadata={"title": "Puffin", "n": "1"}, items=[{"role": "user", "content": "puffin"}])
    hits = alice.search("puffin").data
    assert [json.dumps(h.conversation_metadata, sort_keys=True) for h in hits] == ['{"n": "1", "title": "Puffin"}'] * 2
