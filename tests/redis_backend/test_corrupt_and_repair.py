"""Values this backend did not write give a clear error for that record and
leave the rest readable; owner-index entries without their record (what a
record that expired by TTL before the longer-lived index leaves) are skipped
and removed on read."""

from __future__ import annotations

import pytest

from flask_smg_history import CorruptRecord

from ..support.errors import raises
from .conftest import backend_of, store_of

pytestmark = pytest.mark.redis


@pytest.fixture
def anonymous_app(make_app):
    return make_app(SMG_HISTORY_ALLOW_ANONYMOUS=True)


def _texts(items):
    return [i.payload["content"][0]["text"] for i in items]


def test_corrupt_item_json_is_one_clear_error_and_pages_still_work(app):
    alice = store_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(5)])
    bad = alice.items.list(conv.id, order="asc").data[2]
    backend = backend_of(app)
    backend.client.hset(backend._conv_keys("alice", conv.id)[2], bad.id, "{not json")
    with raises(CorruptRecord, message=f"Item '{bad.id}' is stored in a form this backend cannot read.", param=None):
        alice.items.get(conv.id, bad.id)
    assert _texts(alice.items.list(conv.id, order="asc").data) == ["0", "1", "3", "4"]
    assert _texts(alice.items.recent(conv.id, limit=3)) == ["3", "4"]  # the window is the last 3 positions
    assert _texts([alice.items.get(conv.id, alice.items.list(conv.id).data[0].id)]) == ["4"]


def test_wrong_type_under_a_conversation_key(anonymous_app):
    app, client = anonymous_app, anonymous_app.test_client()
    alice = store_of(app, "anonymous")
    good = alice.conversations.create(metadata={"n": "good"})
    broken = alice.conversations.create(metadata={"n": "broken"})
    backend = backend_of(app)
    meta = backend._conv_keys("anonymous", broken.id)[0]
    backend.client.delete(meta)
    backend.client.set(meta, "a string where a hash belongs")
    for resp in (
        client.get(f"/v1/conversations/{broken.id}"),
        client.post(f"/v1/conversations/{broken.id}/items", json={"items": [{"role": "user", "content": "x"}]}),
        client.get(f"/v1/conversations/{broken.id}/items"),
    ):
        assert resp.status_code == 500, resp.get_json()
        error = resp.get_json()["error"]
        assert error["type"] == "server_error"
        assert f"Conversation '{broken.id}' is stored in a form this backend cannot read" in error["message"]
    listed = client.get("/v1/conversations")
    assert listed.status_code == 200 and [c["id"] for c in listed.get_json()["data"]] == [good.id]


def test_corrupt_response_and_feedback(app):
    alice = store_of(app)
    resp = alice.responses.store({"model": "m", "input": "hi"})
    other = alice.responses.store({"model": "m", "input": "hi"})
    alice.feedback.submit(resp.id, "positive")
    alice.feedback.submit(other.id, "negative")
    backend = backend_of(app)
    resp_key, fb_key = backend._resp_keys("alice", resp.id)
    backend.client.hset(fb_key, "d", "[]")
    unreadable = f"Feedback on response '{resp.id}' is stored in a form this backend cannot read."
    with raises(CorruptRecord, message=unreadable, param=None):
        alice.feedback.get(resp.id)
    assert [f.response_id for f in alice.feedback.list().data] == [other.id]
    backend.client.hset(resp_key, "d", "{")
    unreadable = f"Response '{resp.id}' is stored in a form this backend cannot read."
    with raises(CorruptRecord, message=unreadable, param=None):
        alice.responses.get(resp.id)


def test_dangling_owner_index_entries_are_skipped_and_removed(app):
    alice = store_of(app)
    ids = [alice.conversations.create().id for _ in range(5)]
    backend = backend_of(app)
    index = backend._owner_key("alice", "convs")
    gone = [f"conv_gone{n}" for n in range(40)]  # more than one index chunk
    created = alice.conversations.get(ids[2]).created_at
    backend.client.zadd(index, {cid: created + 0.0001 * n for n, cid in enumerate(gone)})
    page = alice.conversations.list(limit=3)
    assert [c.id for c in page.data] == ids[::-1][:3] and page.has_more
    assert [c.id for c in alice.conversations.list(after=page.last_id).data] == ids[1::-1]
    assert backend.client.zcard(index) == 5  # repaired
    rest = [c.id for c in alice.conversations.list(limit=100, order="asc").data]
    assert rest == ids


def test_dangling_feedback_index_entry_is_removed(app):
    alice = store_of(app)
    kept = alice.responses.store({"model": "m", "input": "hi"})
    dropped = alice.responses.store({"model": "m", "input": "hi"})
    alice.feedback.submit(kept.id, "positive")
    alice.feedback.submit(dropped.id, "negative")
    backend = backend_of(app)
    backend.client.delete(backend._resp_keys("alice", dropped.id)[1])  # as if it had expired before the index
    assert [f.response_id for f in alice.feedback.list().data] == [kept.id]
    assert backend.client.zcard(backend._owner_key("alice", "fb")) == 1
    assert backend.client.hlen(backend._owner_key("alice", "fbref")) == 1
