"""Contract: signals after each committed write, and metrics actually recorded."""

import re

import pytest

from flask_smg_history import InvalidRequest, NotFound, get_state, signals

from ..support.errors import missing, raises


@pytest.fixture
def received(app):
    log = []
    handlers = []
    for name in (
        "conversation_created",
        "items_added",
        "item_deleted",
        "conversation_deleted",
        "response_stored",
        "feedback_submitted",
        "feedback_deleted",
    ):

        def handler(sender, _name=name, **kwargs):
            log.append((_name, sender, kwargs))

        getattr(signals, name).connect(handler, sender=app)
        handlers.append((getattr(signals, name), handler))
    yield log
    for signal, handler in handlers:
        signal.disconnect(handler)


def test_every_write_sends_its_signal(app, alice, received):
    conv = alice.conversations.create(items=[{"role": "user", "content": "hi"}])
    added = alice.items.add(conv.id, [{"role": "assistant", "content": "hello"}])
    alice.items.delete(conv.id, added[0].id)
    resp = alice.responses.store({"model": "m", "input": "hi"})
    fb = alice.feedback.submit(resp.id, "positive")
    alice.feedback.delete(resp.id)
    alice.conversations.delete(conv.id)
    names = [name for name, _, _ in received]
    assert names == [
        "conversation_created",
        "items_added",
        "item_deleted",
        "response_stored",
        "feedback_submitted",
        "feedback_deleted",
        "conversation_deleted",
    ]
    assert all(sender is app and kwargs["owner"] == "alice" for _, sender, kwargs in received)
    assert received[0][2]["conversation"].id == conv.id and len(received[0][2]["items"]) == 1
    assert [i.id for i in received[1][2]["items"]] == [added[0].id]
    assert received[1][2]["conversation_id"] == conv.id and received[1][2]["owner"] == "alice"
    assert received[2][2] == {"owner": "alice", "conversation_id": conv.id, "item_id": added[0].id}
    assert received[3][2]["response"].id == resp.id
    assert received[4][2]["feedback"].rating == "positive"
    assert received[5][2] == {"owner": "alice", "response_id": resp.id, "feedback_id": fb.id}
    assert received[6][2] == {"owner": "alice", "conversation_id": conv.id}


def test_failed_writes_send_nothing(alice, received):
    conv = alice.conversations.create()
    received.clear()
    with raises(InvalidRequest, message=re.compile(r"Unsupported item type 'nope'\. .*"), param="items[0].type"):
        alice.items.add(conv.id, [{"type": "nope"}])
    with raises(NotFound, message="Conversation with id 'conv_missing' not found.", param="conversation_id"):
        alice.items.add("conv_missing", [{"role": "user", "content": "x"}])
    assert received == []


def test_failed_deletes_send_nothing(alice, bob, received):
    """A delete that finds nothing (missing, already gone, or another
    owner's) raises and sends no signal: a receiver would otherwise act on a
    deletion that never happened."""
    conv = alice.conversations.create(items=[{"id": "msg_1", "role": "user", "content": "x"}])
    resp = alice.responses.store({"model": "m", "input": "hi"})
    alice.feedback.submit(resp.id, "positive")
    gone = bob.conversations.create()
    bob.conversations.delete(gone.id)
    received.clear()
    failures = [
        (lambda: alice.conversations.delete("conv_missing"), missing("conversation", "conv_missing")),
        (lambda: alice.conversations.delete(gone.id), missing("conversation", gone.id)),
        (lambda: bob.conversations.delete(conv.id), missing("conversation", conv.id)),
        (lambda: alice.items.delete(conv.id, "msg_missing"), missing("item", "msg_missing")),
        (lambda: bob.items.delete(conv.id, "msg_1"), missing("conversation", conv.id)),
        (lambda: bob.feedback.delete(resp.id), missing("feedback", resp.id)),
        (lambda: bob.responses.delete(resp.id), missing("response", resp.id)),
    ]
    for call, (message, param) in failures:
        with raises(NotFound, message=message, param=param):
            call()
    assert received == []
    alice.feedback.delete(resp.id)
    with raises(NotFound, message=missing("feedback", resp.id)[0], param="response_id"):
        alice.feedback.delete(resp.id)  # the second time there is nothing left
    assert [name for name, _, _ in received] == ["feedback_deleted"]
    assert alice.items.get(conv.id, "msg_1").id == "msg_1" and alice.responses.get(resp.id).id == resp.id


def test_a_raising_receiver_does_not_undo_the_write(app, alice, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.items_added.connect(broken, sender=app)
    try:
        conv = alice.conversations.create()
        added = alice.items.add(conv.id, [{"role": "user", "content": "kept"}])
    finally:
        signals.items_added.disconnect(broken)
    assert alice.items.get(conv.id, added[0].id).id == added[0].id
    assert "receiver" in caplog.text


def test_operations_are_counted_and_timed(app, alice, backend_name):
    metrics = get_state(app).metrics
    before = metrics.snapshot()["operations"]
    conv = alice.conversations.create()
    alice.items.add(conv.id, [{"role": "user", "content": "x"}])
    alice.items.list(conv.id)
    with raises(NotFound, message="Conversation with id 'conv_missing' not found.", param="conversation_id"):
        alice.conversations.get("conv_missing")
    snap = metrics.snapshot()
    backend = get_state(app).backend.name

    def delta(operation, outcome):
        key = (operation, backend, outcome)
        return snap["operations"].get(key, 0) - before.get(key, 0)

    assert delta("conversations.create", "ok") == 1
    assert delta("items.add", "ok") == 1
    assert delta("items.list", "ok") == 1
    assert delta("conversations.get", "not_found") == 1
    assert snap["seconds"][("items.add", backend)] > 0


def test_prometheus_route(make_app):
    app = make_app(SMG_HISTORY_METRICS_ROUTE="/metrics")
    store = get_state(app).store_for("alice")
    store.conversations.create()
    body = app.test_client().get("/metrics").get_data(as_text=True)
    backend = get_state(app).backend.name
    line = f'smg_history_operations_total{{backend="{backend}",operation="conversations.create",outcome="ok"}} 1.0'
    assert line in body
    assert "smg_history_operation_seconds_bucket" in body


def test_each_store_call_is_counted_under_its_own_name(app, alice, backend_name):
    """The operation names of docs/signals-and-metrics.md, one count per
    backend call: a call that also reads (a response stored into a
    conversation checks that the conversation is there) counts that read."""
    metrics = get_state(app).metrics
    before = dict(metrics.snapshot()["operations"])
    conv = alice.conversations.create(items=[{"id": "msg_1", "role": "user", "content": "x"}])
    alice.conversations.get(conv.id)
    alice.conversations.update(conv.id, {"k": "v"})
    alice.conversations.list()
    alice.items.add(conv.id, [{"role": "user", "content": "y"}])
    alice.items.list(conv.id)
    alice.items.get(conv.id, "msg_1")
    alice.items.recent(conv.id)
    alice.items.delete(conv.id, "msg_1")  # then reads the conversation back
    resp = alice.responses.store({"model": "m", "input": "q", "conversation": conv.id})  # checks the conversation
    alice.responses.get(resp.id)
    alice.responses.list()
    alice.responses.input_items(resp.id)  # reads the response
    alice.feedback.submit(resp.id, "positive")  # reads the response
    alice.feedback.get(resp.id)
    alice.feedback.list()
    alice.feedback.stats()
    alice.feedback.delete(resp.id)
    alice.responses.delete(resp.id)
    alice.conversations.delete(conv.id)
    alice.erase_owner()
    backend = get_state(app).backend.name
    counted = {
        key[0]: n - before.get(key, 0)
        for key, n in metrics.snapshot()["operations"].items()
        if key[1:] == (backend, "ok") and n != before.get(key, 0)
    }
    assert counted == {
        "conversations.create": 1,
        "conversations.get": 3,
        "conversations.update": 1,
        "conversations.list": 1,
        "conversations.delete": 1,
        "items.add": 1,
        "items.list": 1,
        "items.get": 1,
        "items.recent": 1,
        "items.delete": 1,
        "responses.store": 1,
        "responses.get": 3,
        "responses.list": 1,
        "responses.delete": 1,
        "feedback.submit": 1,
        "feedback.get": 1,
        "feedback.list": 1,
        "feedback.stats": 1,
        "feedback.delete": 1,
        "erase_owner": 1,
    }
