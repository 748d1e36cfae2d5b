"""``store_turn`` on SQL: one transaction, whatever fails in it.

A statement of the turn fails (as a lost or failing database makes it fail)
after the earlier ones ran in the transaction: nothing of the turn is kept.
On PostgreSQL the server also really goes away in the middle of the turn (a
proxy in front of it is stopped just before the response's INSERT)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import InvalidRequest, Response, get_state
from flask_smg_history.records import now

from ..support import backends
from ..support.apps import build_app
from ..support.errors import raises
from ..support.turns import build_turn, reference, same_response, state_of, store_turn, texts_of
from ..support.writers import all_items
from .test_faults import _app, _proxy, _url


@pytest.fixture(params=["sqlite", "postgres"])
def app(request, tmp_path: Path) -> Iterator[Flask]:
    with backends.FACTORIES[request.param](tmp_path) as config:
        app = build_app(config, tmp_path / "instance")
        yield app
        get_state(app).backend.close()


def _failing_insert(app: Flask, table: str, fault):
    """A cursor listener that calls ``fault`` on the turn's INSERT into
    ``table`` (``items``, ``links`` or ``responses``): when the statements
    before it have run in the transaction."""
    backend = get_state(app).backend
    name = getattr(backend.tables, table).name

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT") and f"{name} " in statement.split("(")[0] + " ":
            fault()

    return listener


@pytest.mark.parametrize("table", ["items", "links", "responses"])
def test_a_statement_failing_in_the_middle_of_a_turn_leaves_nothing(app, table):
    store = get_state(app).store_for("alice")
    backend = get_state(app).backend
    conv = store.conversations.create(items=[{"role": "user", "content": "before"}])
    before = state_of(store, conv.id)
    response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(30)], ["a"])
    dbapi = backend.engine.dialect.loaded_dbapi

    def fault():
        raise dbapi.OperationalError("simulated: the database failed in the middle of the turn")

    listener = _failing_insert(app, table, fault)
    sa.event.listen(backend.engine, "before_cursor_execute", listener)
    try:
        with pytest.raises(backend.unavailable_errors):
            store_turn(app, response, items, at=response.created_at + 5)
    finally:
        sa.event.remove(backend.engine, "before_cursor_execute", listener)
    assert state_of(store, conv.id) == before
    assert store.responses.list().data == []
    store_turn(app, response, items)  # its IDs are all free: the same turn is kept whole now
    assert texts_of(all_items(store, conv.id)) == ["before", *(f"q{n}" for n in range(30)), "a"]
    same_response(store.responses.get(response.id), response)


def test_postgres_lost_in_the_middle_of_a_turn_keeps_nothing(tmp_path):
    """The server goes away after the append's statements and before the
    response's INSERT: the call fails as an outage (its one retry finds no
    server), PostgreSQL rolls the transaction back, and once the server is
    back the conversation is as it was and the same turn can be kept."""
    from ..support.backends_sql import postgres_schema

    with postgres_schema() as schema:
        proxy = _proxy()
        app = _app(_url(proxy.port), schema)
        backend = get_state(app).backend
        store = get_state(app).store_for("anonymous")
        listener = None
        try:
            conv = store.conversations.create(items=[{"role": "user", "content": "before"}])
            before = state_of(store, conv.id)
            response, items = build_turn("anonymous", conv.id, [f"q{n}" for n in range(30)], ["a"])
            listener = _failing_insert(app, "responses", proxy.stop)
            sa.event.listen(backend.engine, "before_cursor_execute", listener)
            with pytest.raises(backend.unavailable_errors):
                store_turn(app, response, items, at=response.created_at + 5)
            sa.event.remove(backend.engine, "before_cursor_execute", listener)
            proxy = _proxy(proxy.port)
            assert state_of(store, conv.id) == before
            assert store.responses.list().data == []
            store_turn(app, response, items)
            assert texts_of(all_items(store, conv.id)) == ["before", *(f"q{n}" for n in range(30)), "a"]
            same_response(store.responses.get(response.id), response)
        finally:
            proxy.stop()
            backend.close()


def test_a_turn_with_a_conversation_is_one_transaction_of_four_statements_on_postgres(tmp_path):
    """BEGIN, the reserving UPDATE, one INSERT of the items, one of the
    links, the response's INSERT, COMMIT, whatever the number of items; a
    turn without a conversation is its INSERT alone."""
    with backends.FACTORIES["postgres"](tmp_path) as config:
        app = build_app(config, tmp_path / "instance")
        backend = get_state(app).backend
        store = get_state(app).store_for("alice")
        conv = store.conversations.create()
        statements: list[str] = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement.split()[0].upper())

        sa.event.listen(backend.engine, "before_cursor_execute", keep)
        try:
            store_turn(app, *build_turn("alice", conv.id, [f"q{n}" for n in range(40)], ["r", "a"]))
            kept_with_items = list(statements)
            statements.clear()
            store_turn(app, *build_turn("alice", None, ["q"], ["a"]))
        finally:
            sa.event.remove(backend.engine, "before_cursor_execute", keep)
            backend.close()
    assert [s for s in kept_with_items if s not in ("BEGIN", "COMMIT")] == ["UPDATE", "INSERT", "INSERT", "INSERT"]
    assert statements == ["INSERT"]


def test_a_turn_of_new_items_is_one_statement_on_postgres(tmp_path, monkeypatch):
    """Without listeners on the engine, a turn of new items is the one
    driver statement of ``_append_statement``; a reference takes the general
    path (its target is read first). Both keep the same things."""
    with backends.FACTORIES["postgres"](tmp_path) as config:
        app = build_app(config, tmp_path / "instance")
        backend = get_state(app).backend
        store = get_state(app).store_for("alice")
        try:
            conv = store.conversations.create(items=[{"id": "msg_first", "role": "user", "content": "first"}])
            driver, general = [], []
            original_rows, original_append = backend._driver_rows, backend._append
            monkeypatch.setattr(backend, "_driver_rows", lambda *a: driver.append(a[1]) or original_rows(*a))
            monkeypatch.setattr(backend, "_append", lambda *a: general.append(1) or original_append(*a))
            response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(40)], ["r", "a"])
            added = store_turn(app, response, items)
            assert driver == [backend._turn_sql] and general == []
            assert [i.position for i in added] == list(range(1, 43))
            referring, more = build_turn("alice", conv.id, [reference("msg_first", conv.id, now())], ["again"])
            with raises(
                InvalidRequest,
                message=f"Item with id 'msg_first' is already in conversation '{conv.id}'.",
                param="items",
                code="item_already_in_conversation",
            ):
                store_turn(app, referring, more)
            assert general == [1]
            other = store.conversations.create()
            more[0].conversation_id = more[1].conversation_id = other.id
            store_turn(app, Response(**{**vars(referring), "conversation_id": other.id}), more)
            assert general == [1, 1]
            monkeypatch.undo()
            assert texts_of(all_items(store, conv.id)) == ["first", *(f"q{n}" for n in range(40)), "r", "a"]
            assert texts_of(all_items(store, other.id)) == ["first", "again"]
            same_response(store.responses.get(response.id), response)
        finally:
            backend.close()


def test_a_turn_statement_terminated_by_the_server_keeps_nothing(tmp_path):
    """The turn's one statement waits (another transaction is inserting a
    response under the same ID) when the server terminates its connection:
    the call is retried once on a fresh connection (nothing was committed),
    and that attempt is refused whole once the other transaction commits.
    Nothing of the turn is kept, and nothing was visible meanwhile."""
    import psycopg

    from ..support.backends_sql import POSTGRES_URL

    with backends.FACTORIES["postgres"](tmp_path) as config:
        app = build_app(config, tmp_path / "instance")
        backend = get_state(app).backend
        store = get_state(app).store_for("alice")
        other = psycopg.connect(POSTGRES_URL)
        watcher = psycopg.connect(POSTGRES_URL, autocommit=True)
        try:
            conv = store.conversations.create(items=[{"role": "user", "content": "before"}])
            before = state_of(store, conv.id)
            response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(30)], ["a"])
            responses = backend.tables.responses
            other.execute(
                f"INSERT INTO {config['SMG_HISTORY_SQL_SCHEMA']}.{responses.name} (id, owner, created_at) "
                "VALUES (%s, 'zed', 0)",
                (response.id,),
            )
            outcome: list[BaseException | list] = []

            def turn() -> None:
                try:
                    outcome.append(store_turn(app, response, items))
                except BaseException as exc:  # reported below
                    outcome.append(exc)

            thread = threading.Thread(target=turn)
            thread.start()
            first = _waiting_turn(watcher, set())
            assert state_of(store, conv.id) == before  # nothing of it visible while it runs
            watcher.execute("SELECT pg_terminate_backend(%s)", (first,))
            _waiting_turn(watcher, {first})  # the retry, on a new connection, waits in its turn
            other.commit()
            thread.join(30)
            (result,) = outcome
            assert (
                isinstance(result, InvalidRequest)
                and result.message == f"Response id '{response.id}' is not available."
            )
            assert state_of(store, conv.id) == before
            assert store.responses.list().data == []
        finally:
            other.close()
            watcher.close()
            backend.close()


def _waiting_turn(watcher, known: set[int]) -> int:
    """The server process of a turn statement waiting on a lock, other than ``known``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH reserved AS%%'"
        ).fetchall()
        fresh = [pid for (pid,) in found if pid not in known]
        if fresh:
            return fresh[0]
        time.sleep(0.02)
    raise AssertionError("no turn statement came to wait on the lock")
