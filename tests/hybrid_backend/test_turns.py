"""``store_turn`` on the hybrid backends: SQL's one transaction, and the
cache kept as an append keeps it (extended with the turn's items when it was
current, else invalidated; invalidated after a SQL failure too)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_smg_history import InvalidRequest

from ..support.errors import raises
from ..support.turns import build_turn, same_response, state_of, store_turn, texts_of
from ..support.writers import all_items
from .conftest import backend_of, counted_statements, settle, store_of


def _chat(store, n: int):
    return store.conversations.create(items=[{"role": "user", "content": f"m{j}"} for j in range(n)])


def test_a_turn_extends_the_warm_entry_and_other_apps_read_it_at_once(make_app):
    writer_app, reader_app = make_app(), make_app()
    writer, reader = store_of(writer_app), store_of(reader_app)
    conv = _chat(writer, 3)
    assert texts_of(writer.items.recent(conv.id, limit=20)) == ["m0", "m1", "m2"]  # a miss: SQL, then the fill
    assert texts_of(reader.items.recent(conv.id, limit=20)) == ["m0", "m1", "m2"]
    settle(writer_app, reader_app)
    response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(60)], ["r", "a"])
    store_turn(writer_app, response, items)
    expected = ["m0", "m1", "m2", *(f"q{n}" for n in range(60)), "r", "a"]
    hits = backend_of(writer_app).hits
    with counted_statements(writer_app) as sql:
        assert texts_of(writer.items.recent(conv.id, limit=20)) == expected[-20:]  # written through: no SQL
        assert writer.conversations.get(conv.id).updated_at == pytest.approx(response.created_at, abs=1e-3)
    assert sql == [] and backend_of(writer_app).hits == hits + 2
    assert texts_of(reader.items.recent(conv.id, limit=20)) == expected[-20:]
    assert texts_of(all_items(reader, conv.id)) == expected
    same_response(reader.responses.get(response.id), response)


def test_a_refused_turn_leaves_the_entry_and_a_turn_without_a_conversation_touches_none(make_app):
    app = make_app()
    store = store_of(app)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    settle(app)
    before = state_of(store, conv.id)
    response, items = build_turn("alice", conv.id, ["q"], ["a"])
    items.append(items[0])
    message = f"Item with id '{items[0].id}' is already in conversation '{conv.id}'."
    with raises(InvalidRequest, message=message, param="items", code="item_already_in_conversation"):
        store_turn(app, response, items)
    alone, _ = build_turn("alice", None, ["q"], ["a"])
    store_turn(app, alone, [])
    with counted_statements(app) as sql:
        assert texts_of(store.items.recent(conv.id, limit=5)) == ["m0", "m1"]
    assert sql == []
    assert state_of(store, conv.id) == before
    assert [r.id for r in store.responses.list().data] == [alone.id]


def test_a_sql_failure_in_the_middle_of_a_turn_keeps_nothing_and_drops_the_entry(make_app):
    app = make_app()
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    settle(app)  # warm
    before = state_of(store, conv.id)
    response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(30)], ["a"])
    dbapi = backend.sql.engine.dialect.loaded_dbapi
    responses = backend.sql.tables.responses.name

    def fail(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT") and responses in statement.split("(")[0]:
            raise dbapi.OperationalError("simulated: the database failed in the middle of the turn")

    sa.event.listen(backend.sql.engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(backend.unavailable_errors):
            store_turn(app, response, items, at=response.created_at + 5)
    finally:
        sa.event.remove(backend.sql.engine, "before_cursor_execute", fail)
    misses = backend.misses
    assert texts_of(store.items.recent(conv.id, limit=5)) == ["m0", "m1"]
    assert backend.misses == misses + 1  # the entry was invalidated: a commit that failed may have happened
    assert state_of(store, conv.id) == before
    assert store.responses.list().data == []
