"""What the contract suite does not reach: configuration forms, the host's own
database, both append paths on PostgreSQL, and the query plan of ``recent``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import ConfigError, Conversation, InvalidRequest, Item, SmgHistory, get_state
from flask_smg_history.backends.sql.engine import postgres_url

from ..support.apps import build_app
from ..support.backends_sql import postgres
from ..support.errors import raises


def test_postgres_url_forms():
    url = postgres_url("postgres://app:pw@db:5433/history?sslmode=require")
    assert (url.drivername, url.host, url.port, url.database) == ("postgresql+psycopg", "db", 5433, "history")
    assert url.query == {"sslmode": "require", "connect_timeout": "10"}
    assert postgres_url("postgresql://db/h?connect_timeout=3").query["connect_timeout"] == "3"
    message = "SMG_HISTORY_POSTGRES_DB_URL must start with postgres:// or postgresql://, not mysql://."
    with raises(ConfigError, message=message, param="SMG_HISTORY_POSTGRES_DB_URL"):
        postgres_url("mysql://db/h")


def test_missing_postgres_url_says_how_to_give_one():
    app = Flask("no_url")
    app.config["SMG_HISTORY_BACKEND"] = "postgres"
    message = (
        "The postgres backend needs SMG_HISTORY_POSTGRES_DB_URL, e.g. "
        "'postgresql://user:password@localhost:5432/app?sslmode=prefer' (or the environment variable of the same "
        "name), or SMG_HISTORY_SQL_USE_APP_DB=true to use the app's SQLALCHEMY_DATABASE_URI."
    )
    with raises(ConfigError, message=message, param="SMG_HISTORY_POSTGRES_DB_URL"):
        SmgHistory(app)


def test_sqlite_defaults_to_the_instance_folder(tmp_path: Path):
    app = Flask("inst", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    backend = get_state(app).backend
    assert backend.engine.url.database == str(tmp_path / "instance" / "smg_history.sqlite3")
    with backend.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    backend.close()


def test_tables_in_the_hosts_database_leave_its_session_alone(tmp_path: Path):
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("host")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.db'}",
        SMG_HISTORY_BACKEND="sqlite",
        SMG_HISTORY_SQL_USE_APP_DB=True,
        SMG_HISTORY_CREATE_TABLES=True,
    )
    db = SQLAlchemy(app)

    class Note(db.Model):
        id = db.Column(db.Integer, primary_key=True)

    SmgHistory(app)
    store = get_state(app).store_for("alice")
    with app.app_context():
        assert get_state(app).backend.engine is db.engine
        db.create_all()
        db.session.add(Note(id=1))  # pending in the host's session
        conv = store.conversations.create(items=[{"role": "user", "content": "x"}])
        db.session.rollback()  # the host changes its mind: our write stays
        assert store.conversations.get(conv.id).id == conv.id
        assert db.session.get(Note, 1) is None


@pytest.fixture(params=["one-statement", "core"])
def pg_app(request, tmp_path):
    """A PostgreSQL app on its hot paths (append and recent as driver SQL),
    or forced onto the Core path that SQLite and Oracle use."""
    with postgres(tmp_path) as config:
        app = build_app(config)
        backend = get_state(app).backend
        if request.param == "core":
            backend._append_sql = backend._recent_sql = None
        yield app
        backend.close()


@pytest.fixture
def pg_store(pg_app):
    return get_state(pg_app).store_for("alice")


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_writes_are_transactions_and_reads_are_single_statements(tmp_path, driver):
    """On both drivers a write of several statements runs in one transaction
    (one transaction ID throughout, rolled back whole on an error), while a
    read sends no BEGIN: each statement is its own transaction."""
    with postgres(tmp_path) as config:
        config["SMG_HISTORY_POSTGRES_DB_URL"] = config["SMG_HISTORY_POSTGRES_DB_URL"].replace(
            "postgresql://", f"postgresql+{driver}://"
        )
        app = build_app(config)
        backend = get_state(app).backend
        assert backend.engine.driver == driver
        xid = "SELECT txid_current()"

        def twice(conn):
            return conn.exec_driver_sql(xid).scalar(), conn.exec_driver_sql(xid).scalar()

        first, second = backend._run(twice)
        assert first == second
        first, second = backend._run(twice, write=False)
        assert first != second
        schema = config["SMG_HISTORY_SQL_SCHEMA"]

        def write_then_fail(conn):
            conn.exec_driver_sql(f"CREATE TABLE {schema}.tx_probe (n int)")
            raise RuntimeError("fails after writing")

        with pytest.raises(RuntimeError):
            backend._run(write_then_fail)
        assert not sa.inspect(backend.engine).has_table("tx_probe", schema=schema)
        backend._run(lambda conn: conn.exec_driver_sql(f"CREATE TABLE {schema}.tx_probe (n int)"))
        assert sa.inspect(backend.engine).has_table("tx_probe", schema=schema)
        backend.close()


def test_single_item_appends_on_both_paths(pg_store):
    conv = pg_store.conversations.create(items=[{"role": "user", "content": "0"}])
    for n in range(1, 4):
        (added,) = pg_store.items.add(conv.id, [{"id": f"msg_{n}", "role": "user", "content": str(n)}])
        assert (added.position, added.conversation_id) == (n, conv.id)
    with raises(
        InvalidRequest,
        message=f"Item with id 'msg_2' is already in conversation '{conv.id}'.",
        param="items",
        code="item_already_in_conversation",
    ):
        pg_store.items.add(conv.id, [{"id": "msg_2", "role": "user", "content": "again"}])
    listed = pg_store.items.list(conv.id, order="asc").data
    assert [i.position for i in listed] == [0, 1, 2, 3]
    assert pg_store.conversations.get(conv.id).updated_at >= listed[-1].created_at


def test_hot_statements_reach_cursor_event_listeners(pg_app, pg_store):
    """Driver SQL skips SQLAlchemy only while nobody listens: a tracer or a
    statement log hooked on the engine sees the append and the read, with the
    same results as without it."""
    conv = pg_store.conversations.create()
    pg_store.items.add(conv.id, [{"role": "user", "content": "unheard"}])
    before = [i.payload for i in pg_store.items.recent(conv.id, 20)]
    backend = get_state(pg_app).backend
    seen: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(backend.engine, "after_cursor_execute", keep)
    try:
        added = pg_store.items.add(conv.id, [{"role": "user", "content": "heard"}])
        after = [i.payload for i in pg_store.items.recent(conv.id, 20)]
    finally:
        sa.event.remove(backend.engine, "after_cursor_execute", keep)
    assert after == [*before, added[0].payload]
    assert any(backend.tables.links.name in s and "INSERT" in s for s in seen), seen
    assert any(s.startswith("SELECT") and "ORDER BY" in s for s in seen), seen
    assert [i.payload for i in pg_store.items.recent(conv.id, 20)] == after


def test_recent_is_an_index_range_scan_on_postgres(pg_app, pg_store):
    conv = pg_store.conversations.create()
    for start in range(0, 2000, 20):
        pg_store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(start, start + 20)])
    backend = get_state(pg_app).backend
    statements = []

    @sa.event.listens_for(backend.engine, "before_cursor_execute")
    def keep(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    assert len(pg_store.items.recent(conv.id, 20)) == 20
    statement, parameters = statements[-1]
    with backend.engine.connect() as conn:
        for table in (backend.tables.items, backend.tables.links):
            conn.exec_driver_sql(f"ANALYZE {table.fullname}")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    # a backward range scan of the links by position, each item by primary key
    assert "Index Scan Backward using smg_history_citems_pos" in plan, plan
    assert "Index Scan using smg_history_items_pk" in plan, plan
    assert "Sort" not in plan, plan


def _rows_on(plan: dict, table: str) -> int:
    """Rows that the plan's nodes on ``table`` produced, over all their loops."""
    total, stack = 0, [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == table:
            total += node["Actual Rows"] * node["Actual Loops"]
        stack.extend(node.get("Plans", []))
    return total


def _conversation_of(owner: str, cid: str, n: int) -> list:
    items = [
        Item(f"msg_{n}", cid, "message", {"id": f"msg_{n}", "type": "message", "role": "user", "content": []}, 1e9 + n)
        for n in range(n)
    ]
    for position, item in enumerate(items):
        item.position = position
    return [Conversation(cid, owner, 1e9, 1e9 + n), *items]


def test_reads_stay_bounded_on_tables_without_statistics(tmp_path):
    """Right after a bulk load, before any ANALYZE (autovacuum is off for
    these tables), recent() and every page of a 10,000-item conversation read
    a bounded number of rows: without the position window PostgreSQL planned
    a bitmap scan of all 10,000 links and a sort."""
    with postgres(tmp_path) as config:
        app = build_app(config)
        backend = get_state(app).backend
        t = backend.tables
        with backend.engine.begin() as conn:
            for table in t.metadata.tables.values():
                conn.exec_driver_sql(f"ALTER TABLE {table.fullname} SET (autovacuum_enabled = false)")
        records = _conversation_of("alice", "conv_long", 10_000) + _conversation_of("bob", "conv_other", 3_000)
        for start in range(0, len(records), 1000):
            backend.import_records(records[start : start + 1000])
        with backend.engine.connect() as conn:
            analyzed = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = %(s)s "
                "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
                {"s": config["SMG_HISTORY_SQL_SCHEMA"]},
            ).scalar()
        assert analyzed == 0  # the state the test is about: no statistics at all

        store = get_state(app).store_for("alice")
        statements: list = []

        @sa.event.listens_for(backend.engine, "before_cursor_execute")
        def keep(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement, parameters))

        calls = {
            "recent": lambda: [i.position for i in store.items.recent("conv_long", 20)],
            "first page, desc": lambda: [i.position for i in store.items.list("conv_long", limit=20).data],
            "first page, asc": lambda: [i.position for i in store.items.list("conv_long", limit=20, order="asc").data],
            "middle page, desc": lambda: [
                i.position for i in store.items.list("conv_long", after="msg_5000", limit=20).data
            ],
            "middle page, asc": lambda: [
                i.position for i in store.items.list("conv_long", after="msg_5000", limit=20, order="asc").data
            ],
        }
        expected = {
            "recent": list(range(9980, 10_000)),
            "first page, desc": list(range(9999, 9979, -1)),
            "first page, asc": list(range(20)),
            "middle page, desc": list(range(4999, 4979, -1)),
            "middle page, asc": list(range(5001, 5021)),
        }
        for name, call in calls.items():
            statements.clear()
            assert call() == expected[name], name
            read = {"links": 0, "items": 0}
            with backend.engine.connect() as conn:
                for statement, parameters in list(statements):
                    if not statement.lstrip().upper().startswith("SELECT"):
                        continue
                    (plan,) = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).one()
                    read["links"] += _rows_on(plan[0]["Plan"], t.links.name)
                    read["items"] += _rows_on(plan[0]["Plan"], t.items.name)
            assert read["links"] <= 2 * 21 and read["items"] <= 21, (name, read)
        backend.close()


def test_concurrent_first_feedback_submissions_end_in_one_record(pg_store):
    response = pg_store.responses.store({"model": "m", "input": "hi", "output": []})
    barrier = threading.Barrier(8)
    results, errors = [], []

    def submit(n: int) -> None:
        barrier.wait()
        try:
            results.append(pg_store.feedback.submit(response.id, "positive" if n % 2 else "negative").id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pg_store.feedback.list(limit=100).data) == 1
    assert set(results) == {pg_store.feedback.get(response.id).id}


def test_responses_list_is_an_index_range_scan_on_postgres(pg_app, pg_store):
    """Newest first, after a cursor: a backward range of the (owner,
    created_at, id) index, not a sort of the owner's responses."""
    from flask_smg_history import Response

    backend = get_state(pg_app).backend
    for owner in ("alice", "bob"):
        backend.import_records([Response(f"resp_{owner}_{n}", owner, 1000.0 + n, model="m") for n in range(1000)])
    statements = []

    @sa.event.listens_for(backend.engine, "before_cursor_execute")
    def keep(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    page = pg_store.responses.list(limit=20, after="resp_alice_800")
    assert [r.id for r in page.data][:2] == ["resp_alice_799", "resp_alice_798"] and page.has_more
    statement, parameters = statements[-1]
    with backend.engine.connect() as conn:
        conn.exec_driver_sql(f"ANALYZE {backend.tables.responses.fullname}")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "Index Scan Backward using smg_history_resp_owner" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("prepared", [True, False])
def test_hot_statements_are_prepared_on_the_server_unless_turned_off(tmp_path, prepared):
    """psycopg prepares a statement a connection has run five times; with
    SMG_HISTORY_POSTGRES_PREPARED_STATEMENTS off (for PgBouncer) it never does."""
    with postgres(tmp_path) as config:
        config["SMG_HISTORY_POSTGRES_PREPARED_STATEMENTS"] = prepared
        config["SMG_HISTORY_POSTGRES_POOL_MAX_SIZE"] = 1  # every call on the same connection
        app = build_app(config)
        store = get_state(app).store_for("alice")
        conv = store.conversations.create(items=[{"role": "user", "content": "hi"}])
        for _ in range(6):
            assert len(store.items.recent(conv.id, 20)) == 1
        backend = get_state(app).backend
        found = backend._run(
            lambda conn: conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all(),
            write=False,
        )
        assert any("next_position" in sql for sql in found) is prepared
        backend.close()
