"""Contract: expiry hides every kind of record at once, a write pushes a
conversation's expiry forward, and what a backend hands out is a copy (a
caller changing it changes nothing stored)."""

from __future__ import annotations

import time

import pytest

from flask_smg_history import Conversation, Feedback, Item, NotFound, Response, get_state

from ..support.errors import missing, raises

DAY = 86400


def test_a_write_moves_the_expiry_forward(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=2)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    assert conv.expires_at == pytest.approx(conv.created_at + 2 * DAY, abs=1)
    time.sleep(0.05)
    updated = store.conversations.update(conv.id, {"k": "v"})
    assert updated.expires_at == pytest.approx(updated.updated_at + 2 * DAY, abs=0.01)
    assert updated.expires_at > conv.expires_at
    assert store.conversations.get(conv.id).expires_at == pytest.approx(updated.expires_at, abs=0.01)
    time.sleep(0.05)
    store.items.add(conv.id, [{"role": "user", "content": "x"}])
    added = store.conversations.get(conv.id)
    assert added.expires_at == pytest.approx(added.updated_at + 2 * DAY, abs=0.01)
    assert added.expires_at > updated.expires_at
    resp = store.responses.store({"model": "m", "input": "q"})
    assert store.responses.get(resp.id).expires_at == pytest.approx(resp.created_at + 2 * DAY, abs=1)
    assert store.feedback.submit(resp.id, "positive").expires_at == pytest.approx(resp.expires_at, abs=0.01)


def test_expired_responses_and_feedback_are_gone_everywhere(make_app):
    # 3 seconds: long enough for the writes and the first reads on a loaded
    # machine (1 second was not, once, in CI), short enough to wait out.
    app = make_app(SMG_HISTORY_RETENTION_DAYS=3 / DAY)
    store = get_state(app).store_for("alice")
    resp = store.responses.store({"model": "m", "input": "q"})
    store.feedback.submit(resp.id, "positive")
    assert [r.id for r in store.responses.list().data] == [resp.id] and len(store.feedback.list().data) == 1
    time.sleep(max(0.0, resp.expires_at - time.time()) + 0.2)
    message, param = missing("response", resp.id)
    for call in (lambda: store.responses.get(resp.id), lambda: store.responses.delete(resp.id)):
        with raises(NotFound, message=message, param=param):
            call()
    message, param = missing("feedback", resp.id)
    for call in (lambda: store.feedback.get(resp.id), lambda: store.feedback.delete(resp.id)):
        with raises(NotFound, message=message, param=param):
            call()
    assert store.responses.list().data == [] and store.feedback.list().data == []
    assert store.feedback.stats()["total"] == 0
    assert list(get_state(app).backend.export("alice", None)) == []


def test_an_expired_conversation_is_skipped_by_export_and_the_next_one_kept(app):
    """Imported with its expiry already past, the first conversation is not
    exported; the ones after it still are."""
    now = time.time()
    backend = get_state(app).backend
    backend.import_records(
        [
            Conversation("conv_a_gone", "alice", now - 30, now - 30, expires_at=now - 10),
            Conversation("conv_b_kept", "alice", now - 20, now - 20),
            Conversation("conv_c_kept", "alice", now - 10, now - 10, expires_at=now + 1000),
        ]
    )
    assert [r.id for r in backend.export("alice", None)] == ["conv_b_kept", "conv_c_kept"]
    assert [c.id for c in get_state(app).store_for("alice").conversations.list(order="asc").data] == [
        "conv_b_kept",
        "conv_c_kept",
    ]


def test_export_since_keeps_records_written_exactly_then(app):
    at = float(int(time.time()) - 100)
    backend = get_state(app).backend
    backend.import_records(
        [
            Conversation("conv_before", "alice", at - 5, at - 1),
            Conversation("conv_at", "alice", at - 5, at),
            Response("resp_before", "alice", at - 1, model="m"),
            Response("resp_at", "alice", at, model="m"),
            Feedback("fb_before", "resp_before", "alice", "positive", at - 1, model="m"),
            Feedback("fb_at", "resp_at", "alice", "negative", at, model="m"),
        ]
    )
    assert [r.id for r in backend.export("alice", at)] == ["conv_at", "resp_at", "fb_at"]
    store = get_state(app).store_for("alice")
    assert [r.id for r in store.responses.list(since=at).data] == ["resp_at"]
    assert [f.id for f in store.feedback.list(since=at).data] == ["fb_at"]
    assert store.feedback.stats(since=at)["by_rating"] == {"positive": 0, "negative": 1}
    assert store.feedback.stats(since=at + 1)["total"] == 0


def test_what_a_backend_returns_is_a_copy(app, alice):
    """Each record handed out is changed right away, and the stored one is
    read back unchanged."""
    conv = alice.conversations.create(metadata={"k": "v"}, items=[{"id": "msg_1", "role": "user", "content": "x"}])
    resp = alice.responses.store({"model": "m", "input": "q", "metadata": {"k": "v"}, "instructions": "be nice"})
    alice.feedback.submit(resp.id, "positive", metadata={"k": "v"})
    backend = get_state(app).backend

    def stored():
        return (
            alice.conversations.get(conv.id).metadata,
            alice.items.get(conv.id, "msg_1").payload["content"],
            alice.responses.get(resp.id).metadata,
            alice.responses.get(resp.id).extra,
            alice.feedback.get(resp.id).metadata,
        )

    # literal, not a first read: a read that shared the stored dicts would change with them
    before = ({"k": "v"}, [{"type": "input_text", "text": "x"}], {"k": "v"}, {"instructions": "be nice"}, {"k": "v"})
    assert stored() == before
    handed_out = [
        lambda: [alice.conversations.get(conv.id)],
        lambda: [alice.conversations.update(conv.id, {})],
        lambda: alice.conversations.list().data,
        lambda: alice.conversations.list(order_by="updated_at").data,
        lambda: [alice.items.get(conv.id, "msg_1")],
        lambda: alice.items.recent(conv.id),
        lambda: alice.items.list(conv.id).data,
        lambda: [alice.responses.get(resp.id)],
        lambda: alice.responses.list().data,
        lambda: [alice.feedback.get(resp.id)],
        lambda: alice.feedback.list().data,
        lambda: list(backend.export("alice", None)),
    ]
    for fetch in handed_out:
        for got in fetch():
            if isinstance(got, Item):
                got.payload["content"][0]["text"] = "changed"
            else:
                got.metadata["k"] = "changed"
            if isinstance(got, Response):
                got.extra["instructions"] = "changed"
        assert stored() == before


def test_what_was_imported_is_a_copy(app, alice):
    backend = get_state(app).backend
    at = time.time()
    conv = Conversation("conv_imp", "alice", at, at, {"k": "v"})
    item = Item("msg_imp", "conv_imp", "message", {"id": "msg_imp", "type": "message", "role": "user"}, at, position=4)
    resp = Response("resp_imp", "alice", at, model="m", metadata={"k": "v"})
    fb = Feedback("fb_imp", "resp_imp", "alice", "positive", at, metadata={"k": "v"}, model="m")
    backend.import_records([conv, item, resp, fb])
    conv.metadata["k"] = item.payload["role"] = resp.metadata["k"] = fb.metadata["k"] = "changed"
    assert alice.conversations.get("conv_imp").metadata == {"k": "v"}
    assert alice.items.get("conv_imp", "msg_imp").payload["role"] == "user"
    assert alice.responses.get("resp_imp").metadata == {"k": "v"}
    assert alice.feedback.get("resp_imp").metadata == {"k": "v"}


def test_items_know_their_conversation_and_position(alice):
    conv = alice.conversations.create(items=[{"id": f"msg_{n}", "role": "user", "content": str(n)} for n in range(3)])
    other = alice.conversations.create(items=[{"type": "item_reference", "id": "msg_1"}])
    got = alice.items.get(conv.id, "msg_2")
    assert (got.conversation_id, got.position) == (conv.id, 2)
    assert [(i.conversation_id, i.position) for i in alice.items.recent(conv.id, 2)] == [(conv.id, 1), (conv.id, 2)]
    linked = alice.items.get(other.id, "msg_1")
    assert (linked.conversation_id, linked.position) == (other.id, 0)
    assert [(i.id, i.conversation_id) for i in alice.items.list(other.id).data] == [("msg_1", other.id)]
