"""The store's own rules, independent of the backend (run on memory): the
defaults of its listings, the chain walk's bounds, what a response's input
items carry, and the log line an erasure leaves."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from flask_smg_history import HistoryUnavailable, InvalidRequest, NotFound, SmgHistory, get_state
from flask_smg_history.backends.memory import MemoryBackend
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


def test_a_responses_input_and_output_items_are_checked_and_named_by_where_they_are(store):
    with raises(InvalidRequest, message="Invalid 'input[1]': expected an object.", param="input[1]"):
        store.responses.store({"model": "m", "input": [{"role": "user", "content": "q"}, "not an item"]})
    with raises(
        InvalidRequest,
        message="Invalid 'output[0].role': Must be one of: user, assistant, system, developer.",
        param="output[0].role",
    ):
        store.responses.store({"model": "m", "output": [{"type": "message", "role": "robot", "content": "a"}]})
    with raises(InvalidRequest, message="Expected a JSON object.", param=None):
        store.responses.store(["not", "a", "response"])  # type: ignore[arg-type]
    assert store.responses.list().data == []


def test_a_response_keeps_what_it_was_given_and_only_that(store):
    resp = store.responses.store({"object": "response", "model": "m", "input": "q", "user": "u-1", "top_p": 0.5})
    got = store.responses.get(resp.id)
    assert got.safety_identifier == "u-1"  # OpenAI's older name for it
    assert got.extra == {"user": "u-1", "top_p": 0.5}  # "object" is the record's kind, not an extra
    named = store.responses.store({"model": "m", "user": "u-1", "safety_identifier": "s-2"})
    assert store.responses.get(named.id).safety_identifier == "s-2"


def test_item_ids_of_the_wrong_kind_are_shown_as_given(store):
    for bad, shown in ((123, "123"), (None, "None"), ("x" * 200, "x" * 128 + "…")):
        message = f"Invalid 'conversation_id': '{shown}'. Expected an ID that begins with 'conv'."
        with raises(InvalidRequest, message=message, param="conversation_id"):
            store.conversations.get(bad)  # type: ignore[arg-type]


def test_items_carry_their_conversation_time_role_and_status(store):
    conv = store.conversations.create(items=[{"role": "user", "content": "q", "status": "incomplete"}])
    (first,) = store.items.list(conv.id).data
    assert (first.conversation_id, first.created_at, first.role, first.status) == (
        conv.id,
        conv.created_at,
        "user",
        "incomplete",
    )
    (added,) = store.items.add(conv.id, [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}])
    assert (added.conversation_id, added.role, added.status, added.position) == (conv.id, None, "completed", 1)
    assert added.created_at == store.conversations.get(conv.id).updated_at


def test_an_unknown_field_of_an_item_reference_is_named(store):
    conv = store.conversations.create(items=[{"id": "msg_1", "role": "user", "content": "q"}])
    other = store.conversations.create()
    with raises(InvalidRequest, message="Unknown parameter: 'items[0].extra'.", param="items[0].extra"):
        store.items.add(other.id, [{"type": "item_reference", "id": "msg_1", "extra": 1}])
    assert store.items.list(other.id).data == [] and len(store.items.list(conv.id).data) == 1


@pytest.mark.parametrize("part", ["text", 3, {"text": "no type"}, {"type": 3}])
def test_a_content_part_must_be_an_object_with_a_type(store, part):
    conv = store.conversations.create()
    with raises(
        InvalidRequest,
        message=(
            "Invalid 'items[0].content': must be a string or a list of content parts, each an object with a 'type'."
        ),
        param="items[0].content",
    ):
        store.items.add(conv.id, [{"role": "user", "content": [{"type": "input_text", "text": "ok"}, part]}])


def _nested(levels: int, kind: str):
    """An item payload whose JSON nests ``levels`` deep (the item is level 1)."""
    value: object = "leaf"
    for _ in range(levels - 2):
        value = [value] if kind == "list" else {"x": value}
    return {"type": "function_call_output", "call_id": "c", "output": value}


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_is_refused_past_sixty_four_levels_exactly(store, kind):
    conv = store.conversations.create()
    store.items.add(conv.id, [_nested(64, kind)])
    with raises(InvalidRequest, message="Invalid 'items[0]': nested more than 64 levels deep.", param="items[0]"):
        store.items.add(conv.id, [_nested(65, kind)])
    assert len(store.items.list(conv.id).data) == 1


def test_an_item_of_exactly_the_size_limit_is_accepted():
    app = Flask("size")
    app.config["SMG_HISTORY_MAX_ITEM_BYTES"] = 200
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    base = {"id": "msg_1", "type": "message", "role": "user", "status": "completed"}
    overhead = len(json.dumps({**base, "content": [{"type": "input_text", "text": ""}]}, separators=(",", ":")))
    item = {**base, "content": "x" * (200 - overhead)}
    assert store.items.add(conv.id, [item])[0].payload["content"][0]["text"] == "x" * (200 - overhead)
    with raises(InvalidRequest, message="Invalid 'items[0]': the item is larger than 200 bytes.", param="items[0]"):
        store.items.add(conv.id, [{**item, "id": "msg_2", "content": "x" * (201 - overhead)}])


class Down(ConnectionError):
    """A driver's "cannot reach the database"."""


class FlakyMemory(MemoryBackend):
    """A memory backend whose conversation listing is down, and which names
    ``hint`` as what to fix (``Backend.outage_hint``)."""

    unavailable_errors = (Down,)
    hint: str | None = None

    def list_conversations(self, owner, **kwargs):
        raise Down("host db.internal password=hunter2")

    def outage_hint(self, exc):
        return self.hint if isinstance(exc, Down) else "not this outage"


FLAKY = f"{__name__}.FlakyMemory"


@pytest.mark.parametrize(
    ("hint", "detail"),
    [(None, "; try again later."), ("check SMG_HISTORY_X.", ": check SMG_HISTORY_X.")],
)
def test_an_outage_is_a_503_ending_with_the_backends_hint(monkeypatch, hint, detail):
    monkeypatch.setattr(FlakyMemory, "hint", hint)
    app = Flask("outage")
    app.config["SMG_HISTORY_BACKEND"] = FLAKY
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    with raises(HistoryUnavailable, message=f"The history backend ({FLAKY}) is unavailable (Down){detail}", param=None):
        store.conversations.list()
    assert get_state(app).metrics.snapshot()["operations"] == {("conversations.list", FLAKY, "unavailable"): 1}
    body = get_state(app).metrics.exposition().decode()
    assert f'smg_history_errors_total{{backend="{FLAKY}",kind="Down"}} 1.0' in body


def test_each_outcome_is_counted_timed_and_logged(store, caplog):
    app_state = get_state(store._sender)
    caplog.set_level(logging.DEBUG, logger="flask_smg_history")
    conv = store.conversations.create()
    with raises(InvalidRequest, message="No record with id 'conv_unknown' to list after.", param="after"):
        store.conversations.list(after="conv_unknown")  # refused by the backend
    with raises(NotFound, message="Conversation with id 'conv_missing' not found.", param="conversation_id"):
        store.conversations.get("conv_missing")
    store.conversations.get(conv.id)
    snapshot = app_state.metrics.snapshot()
    assert snapshot["operations"] == {
        ("conversations.create", "memory", "ok"): 1,
        ("conversations.list", "memory", "invalid_request"): 1,
        ("conversations.get", "memory", "not_found"): 1,
        ("conversations.get", "memory", "ok"): 1,
    }
    assert 0 < snapshot["seconds"][("conversations.get", "memory")] < 5
    lines = [r for r in caplog.records if r.getMessage().startswith("history ")]
    assert [(r.operation, r.backend, r.outcome) for r in lines] == [
        ("conversations.create", "memory", "ok"),
        ("conversations.list", "memory", "invalid_request"),
        ("conversations.get", "memory", "not_found"),
        ("conversations.get", "memory", "ok"),
    ]
    last = lines[-1]
    assert last.levelno == logging.DEBUG
    assert last.getMessage() == f"history conversations.get on memory: ok in {last.duration_ms:.2f} ms"
    assert 0 < last.duration_ms < 5000
    timed = snapshot["seconds"][("conversations.create", "memory")]  # one call: its time is the total
    assert lines[0].duration_ms == pytest.approx(timed * 1000, rel=1e-9)
    assert conv.id not in caplog.text  # what is logged is the operation, never the content


def test_an_unexpected_failure_is_counted_as_an_error_of_its_kind(store):
    app_state = get_state(store._sender)
    app_state.backend.get_conversation = lambda owner, cid: 1 / 0
    with pytest.raises(ZeroDivisionError):
        store.conversations.get("conv_x")
    assert app_state.metrics.snapshot()["operations"] == {("conversations.get", "memory", "error"): 1}
    body = app_state.metrics.exposition().decode()
    assert 'smg_history_errors_total{backend="memory",kind="ZeroDivisionError"} 1.0' in body


def test_messages_cut_a_long_id_they_echo(alice):
    """A 5,000-character ID is shown as its first 128 characters and "…", in
    every not-found and refused-ID message, on every backend."""
    conv = alice.conversations.create(items=[{"type": "message", "role": "user", "content": "hi"}])
    tail = "x" * 5000
    shown = lambda prefix: (prefix + tail)[:128] + "…"  # noqa: E731
    with raises(NotFound, message=f"Conversation with id '{shown('conv_')}' not found.", param="conversation_id"):
        alice.conversations.get("conv_" + tail)
    with raises(NotFound, message=f"Item with id '{shown('msg_')}' not found.", param="item_id"):
        alice.items.get(conv.id, "msg_" + tail)
    with raises(NotFound, message=f"Response with id '{shown('resp_')}' not found.", param="response_id"):
        alice.responses.get("resp_" + tail)
    with raises(NotFound, message=f"No feedback for response with id '{shown('resp_')}'.", param="response_id"):
        alice.feedback.get("resp_" + tail)
    with raises(InvalidRequest, message=f"No record with id '{shown('conv_')}' to list after.", param="after"):
        alice.conversations.list(after="conv_" + tail)
    with raises(InvalidRequest, message=f"No record with id '{shown('msg_')}' to list after.", param="after"):
        alice.items.list(conv.id, after="msg_" + tail)
    refused = f"Invalid 'conversation_id': '{shown('c_')}'. Expected an ID that begins with 'conv'."
    with raises(InvalidRequest, message=refused, param="conversation_id"):
        alice.conversations.get("c_" + tail)
    short = "conv_" + "y" * 123  # 128 characters: shown whole
    with raises(NotFound, message=f"Conversation with id '{short}' not found.", param="conversation_id"):
        alice.conversations.get(short)


def test_a_corrupt_record_message_cuts_a_long_id():
    from flask_smg_history import CorruptRecord

    error = CorruptRecord.of("Item '" + "i" * 5000 + "'", "not JSON")
    assert error.message == "Item '" + "i" * 128 + "…' is stored in a form this backend cannot read (not JSON)."
    assert CorruptRecord.of("Conversation 'conv_1'").message == (
        "Conversation 'conv_1' is stored in a form this backend cannot read."
    )
