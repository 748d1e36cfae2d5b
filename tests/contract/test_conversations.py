"""Contract: conversations, on every backend."""

import time

import pytest

from flask_smg_history import InvalidRequest, NotFound, get_state

from ..support.errors import missing, raises


def test_create_get_roundtrip(alice):
    conv = alice.conversations.create(metadata={"title": "Support"}, items=[{"role": "user", "content": "Hi"}])
    assert conv.id.startswith("conv_") and len(conv.id) >= 5 + 32
    got = alice.conversations.get(conv.id)
    assert (got.id, got.owner, got.metadata) == (conv.id, "alice", {"title": "Support"})
    assert int(got.created_at) == int(conv.created_at)
    items = alice.items.list(conv.id, order="asc").data
    assert [i.payload["content"][0]["text"] for i in items] == ["Hi"]


def test_create_without_anything(alice):
    conv = alice.conversations.create()
    assert alice.conversations.get(conv.id).metadata == {}
    assert alice.items.list(conv.id).data == []


def test_update_replaces_metadata(alice):
    """Replace mode (OpenAI's semantics), chosen per call; patch mode, the
    default, is in test_metadata_updates.py."""
    conv = alice.conversations.create(metadata={"a": "1", "b": "2"})
    updated = alice.conversations.update(conv.id, {"c": "3"}, mode="replace")
    assert updated.metadata == {"c": "3"}
    assert alice.conversations.get(conv.id).metadata == {"c": "3"}
    assert alice.conversations.update(conv.id, None, mode="replace").metadata == {}


def test_delete_removes_conversation_and_items(alice):
    conv = alice.conversations.create(items=[{"role": "user", "content": "x"}])
    item = alice.items.list(conv.id).data[0]
    alice.conversations.delete(conv.id)
    message, param = missing("conversation", conv.id)
    for call in (
        lambda: alice.conversations.get(conv.id),
        lambda: alice.items.get(conv.id, item.id),
        lambda: alice.conversations.delete(conv.id),
    ):
        with raises(NotFound, message=message, param=param):
            call()
    assert conv.id not in [c.id for c in alice.conversations.list(limit=100).data]


def test_missing_conversation_everywhere(alice):
    for call in (
        lambda: alice.conversations.get("conv_missing"),
        lambda: alice.conversations.update("conv_missing", {}),
        lambda: alice.conversations.delete("conv_missing"),
        lambda: alice.items.add("conv_missing", [{"role": "user", "content": "x"}]),
        lambda: alice.items.list("conv_missing"),
        lambda: alice.items.recent("conv_missing"),
    ):
        with raises(NotFound, message="Conversation with id 'conv_missing' not found.", param="conversation_id"):
            call()


def test_list_newest_first_with_cursor_pages(alice, bob):
    created = [alice.conversations.create(metadata={"n": str(n)}).id for n in range(45)]
    bob.conversations.create()
    seen, after, pages = [], None, []
    while True:
        page = alice.conversations.list(after=after, limit=20)
        pages.append((len(page.data), page.has_more))
        seen += [c.id for c in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert pages == [(20, True), (20, True), (5, False)]
    assert seen == list(reversed(created))
    asc = alice.conversations.list(limit=100, order="asc")
    assert [c.id for c in asc.data] == created and not asc.has_more


def test_list_edges(alice):
    empty = alice.conversations.list()
    assert (empty.data, empty.has_more, empty.first_id, empty.last_id) == ([], False, None, None)
    ids = [alice.conversations.create().id for _ in range(3)]
    exact = alice.conversations.list(limit=3)
    assert len(exact.data) == 3 and exact.has_more is False
    after_last = alice.conversations.list(after=ids[0])
    assert after_last.data == [] and after_last.has_more is False
    with raises(InvalidRequest, message="No record with id 'conv_unknown' to list after.", param="after"):
        alice.conversations.list(after="conv_unknown")


@pytest.mark.parametrize(
    ("metadata", "param", "reason"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata", "Metadata can have at most 16 key-value pairs, got 17."),
        ({"k" * 65: "v"}, "metadata", f"Metadata keys must be at most 64 characters: '{'k' * 65}'."),
        ({"k": "v" * 513}, "metadata", "Metadata value of 'k' must be at most 512 characters."),
        ({"k": 3}, "metadata.k.value", "Not a valid string."),
        ("not a map", "metadata", "Not a valid mapping type."),
    ],
)
def test_metadata_limits(alice, metadata, param, reason):
    with raises(InvalidRequest, message=f"Invalid '{param}': {reason}", param=param):
        alice.conversations.create(metadata=metadata)
    assert alice.conversations.list().data == []


def test_metadata_at_the_limits_is_accepted(alice):
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    conv = alice.conversations.create(metadata=metadata)
    assert alice.conversations.get(conv.id).metadata == metadata


def test_create_with_too_many_items_writes_nothing(alice):
    with raises(InvalidRequest, message="Cannot add more than 20 items at once; got 21.", param="items"):
        alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(21)])
    assert alice.conversations.list().data == []


def test_owner_isolation(alice, bob):
    conv = alice.conversations.create(metadata={"secret": "yes"}, items=[{"role": "user", "content": "x"}])
    item = alice.items.list(conv.id).data[0]
    for call in (
        lambda: bob.conversations.get(conv.id),
        lambda: bob.conversations.update(conv.id, {"x": "y"}),
        lambda: bob.conversations.delete(conv.id),
        lambda: bob.items.add(conv.id, [{"role": "user", "content": "intruder"}]),
        lambda: bob.items.list(conv.id),
        lambda: bob.items.get(conv.id, item.id),
        lambda: bob.items.delete(conv.id, item.id),
        lambda: bob.items.recent(conv.id),
    ):
        with raises(NotFound, message=f"Conversation with id '{conv.id}' not found.", param="conversation_id"):
            call()
    assert bob.conversations.list().data == []
    assert alice.conversations.get(conv.id).metadata == {"secret": "yes"}
    assert len(alice.items.list(conv.id).data) == 1


def test_retention_hides_expired_records(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=1.5 / 86400)
    store = get_state(app).store_for("alice")
    old = store.conversations.create(items=[{"role": "user", "content": "old"}])
    time.sleep(1.0)
    fresh = store.conversations.create()
    store.items.add(old.id, [{"role": "user", "content": "refresh"}])  # a write keeps it alive
    time.sleep(1.0)
    assert store.conversations.get(old.id).id == old.id
    time.sleep(0.8)
    for expired in (fresh.id, old.id):
        with raises(NotFound, message=f"Conversation with id '{expired}' not found.", param="conversation_id"):
            store.conversations.get(expired)
    assert store.conversations.list().data == []
