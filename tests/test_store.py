"""The store's own rules, independent of the backend (run on memory): the
defaults of its listings, the chain walk's bounds, what a response's input
items carry, and the log line an erasure leaves."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from flask_smg_history import NotFound, SmgHistory, get_state
from flask_smg_history.store import MAX_CHAIN

from .support.errors import raises


@pytest.fixture
def store():
    app = Flask("store_test")
    SmgHistory(app)
    return get_state(app).store_for("alice")


def test_listings_serve_twenty_by_default(store):
    conv = store.conversations.create()
    for start in range(0, 21, 7):
        store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(start, start + 7)])
    resp = store.responses.store({"model": "m", "input": [{"role": "user", "content": str(n)} for n in range(21)]})
    assert len(store.items.list(conv.id).data) == 20 and store.items.list(conv.id).has_more
    assert len(store.items.recent(conv.id)) == 20
    assert len(store.responses.input_items(resp.id).data) == 20
    for _ in range(20):
        store.feedback.submit(store.responses.store({"model": "m", "input": "q"}).id, "positive")
        store.conversations.create()
    assert len(store.conversations.list().data) == 20 and store.conversations.list().has_more
    assert len(store.responses.list().data) == 20 and store.responses.list().has_more
    assert len(store.feedback.list().data) == 20 and not store.feedback.list().has_more
    store.feedback.submit(resp.id, "negative")
    assert len(store.feedback.list().data) == 20 and store.feedback.list().has_more


def test_input_items_are_the_responses_own_records(store):
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    resp = store.responses.store({"model": "m", "input": [{"role": "user", "content": "q"}, call]})
    items = store.responses.input_items(resp.id, order="asc").data
    assert [(i.type, i.conversation_id, i.created_at) for i in items] == [
        ("message", resp.id, resp.created_at),
        ("function_call", resp.id, resp.created_at),
    ]
    assert items[1].payload == {**call, "id": items[1].id, "status": "completed"}


def test_the_chain_stops_at_a_missing_link(store):
    first = store.responses.store({"model": "m", "input": "1"})
    second = store.responses.store({"model": "m", "input": "2", "previous_response_id": first.id})
    third = store.responses.store({"model": "m", "input": "3", "previous_response_id": second.id})
    store.responses.delete(first.id)
    assert [r.id for r in store.responses.chain(third.id)] == [second.id, third.id]
    with raises(NotFound, message=f"Response with id '{first.id}' not found.", param="response_id"):
        store.responses.chain(first.id)


def test_the_chain_walks_at_most_a_thousand_links(store):
    ids = [store.responses.store({"id": "resp_0", "model": "m", "input": "0"}).id]
    for n in range(1, MAX_CHAIN + 1):
        ids.append(store.responses.store({"id": f"resp_{n}", "model": "m", "previous_response_id": ids[-1]}).id)
    chain = store.responses.chain(ids[-1])
    assert MAX_CHAIN == 1000 and len(chain) == MAX_CHAIN
    assert [r.id for r in chain] == ids[-MAX_CHAIN:]
    assert [r.id for r in store.responses.chain(ids[-2])] == ids[:-1]


def test_an_erasure_is_logged_with_its_counts_and_nothing_else(store, caplog):
    conv = store.conversations.create(items=[{"role": "user", "content": "private words"}])
    store.responses.store({"model": "m", "input": "q", "conversation": conv.id})
    caplog.set_level(logging.INFO, logger="flask_smg_history")
    store.erase_owner()
    (record,) = [r for r in caplog.records if r.getMessage() == "erased the history of one owner"]
    assert record.levelno == logging.INFO
    assert record.operation == "erase_owner"
    assert record.counts == {"conversations": 1, "items": 1, "responses": 1, "feedback": 0}
    assert "private words" not in caplog.text and "alice" not in caplog.text
