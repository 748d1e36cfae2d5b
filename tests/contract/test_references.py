"""Contract: item references link an item into several conversations without
copying it; deletes keep what is still referenced."""

import pytest

from flask_smg_history import InvalidRequest, NotFound


@pytest.fixture
def shared(alice):
    first = alice.conversations.create(items=[{"role": "user", "content": "shared"}])
    item = alice.items.list(first.id).data[0]
    second = alice.conversations.create(items=[{"role": "user", "content": "own"}])
    return first, second, item


def test_a_reference_links_the_same_item(alice, shared):
    first, second, item = shared
    added = alice.items.add(second.id, [{"type": "item_reference", "id": item.id}])
    assert [a.payload for a in added] == [item.payload]
    assert added[0].conversation_id == second.id
    listed = alice.items.list(second.id, order="asc").data
    assert [i.id for i in listed] == [listed[0].id, item.id]
    assert alice.items.get(second.id, item.id).payload == item.payload
    assert [i.id for i in alice.items.recent(second.id, 1)] == [item.id]


def test_references_are_checked_whole_batch(alice, bob, shared):
    first, second, item = shared
    with pytest.raises(NotFound) as info:
        alice.items.add(second.id, [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_nowhere"}])
    assert "msg_nowhere" in info.value.message
    bob_conv = bob.conversations.create()
    with pytest.raises(NotFound):
        bob.items.add(bob_conv.id, [{"type": "item_reference", "id": item.id}])  # another owner's item
    with pytest.raises(InvalidRequest) as info:
        alice.items.add(first.id, [{"type": "item_reference", "id": item.id}])
    assert info.value.code == "item_already_in_conversation"
    with pytest.raises(InvalidRequest) as info:
        alice.items.add(second.id, [{"id": item.id, "role": "user", "content": "impostor"}])
    assert info.value.code == "item_already_exists"
    with pytest.raises(InvalidRequest) as info:
        alice.items.add(second.id, [{"type": "item_reference"}])
    assert info.value.param == "items[0].id"
    assert len(alice.items.list(second.id).data) == 1
    assert bob.items.list(bob_conv.id).data == []


def test_references_in_a_new_conversation(alice, shared):
    _, _, item = shared
    conv = alice.conversations.create(items=[{"type": "item_reference", "id": item.id}])
    assert alice.items.list(conv.id).data[0].payload == item.payload
    with pytest.raises(NotFound):
        alice.conversations.create(items=[{"type": "item_reference", "id": "msg_nowhere"}])
    assert len(alice.conversations.list().data) == 3


def test_deleting_from_one_conversation_keeps_it_in_the_other(alice, shared):
    first, second, item = shared
    alice.items.add(second.id, [{"type": "item_reference", "id": item.id}])
    alice.items.delete(first.id, item.id)
    with pytest.raises(NotFound):
        alice.items.get(first.id, item.id)
    assert alice.items.get(second.id, item.id).payload == item.payload


def test_deleting_a_conversation_keeps_items_referenced_elsewhere(alice, shared):
    first, second, item = shared
    alice.items.add(second.id, [{"type": "item_reference", "id": item.id}])
    alice.conversations.delete(first.id)
    assert alice.items.get(second.id, item.id).payload == item.payload
    alice.conversations.delete(second.id)
    third = alice.conversations.create()
    with pytest.raises(NotFound):  # the last link went, and the item with it
        alice.items.add(third.id, [{"type": "item_reference", "id": item.id}])
