"""Contract: item references link an item into several conversations without
copying it; deletes keep what is still referenced."""

import pytest

from flask_smg_history import InvalidRequest, NotFound

from ..support.errors import missing, raises


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
    message, param = missing("item", "msg_nowhere")
    with raises(NotFound, message=message, param=param):
        alice.items.add(second.id, [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_nowhere"}])
    bob_conv = bob.conversations.create()
    message, param = missing("item", item.id)
    with raises(NotFound, message=message, param=param):
        bob.items.add(bob_conv.id, [{"type": "item_reference", "id": item.id}])  # another owner's item
    with raises(
        InvalidRequest,
        message=f"Item with id '{item.id}' is already in conversation '{first.id}'.",
        param="items",
        code="item_already_in_conversation",
    ):
        alice.items.add(first.id, [{"type": "item_reference", "id": item.id}])
    with raises(
        InvalidRequest,
        message=(
            f"Item with id '{item.id}' already exists; to add it to this conversation too, send "
            f'{{"type": "item_reference", "id": "{item.id}"}}.'
        ),
        param="items",
        code="item_already_exists",
    ):
        alice.items.add(second.id, [{"id": item.id, "role": "user", "content": "impostor"}])
    with raises(InvalidRequest, message="Invalid 'items[0].id': Missing data for required field.", param="items[0].id"):
        alice.items.add(second.id, [{"type": "item_reference"}])
    assert len(alice.items.list(second.id).data) == 1
    assert bob.items.list(bob_conv.id).data == []


def test_references_in_a_new_conversation(alice, shared):
    _, _, item = shared
    conv = alice.conversations.create(items=[{"type": "item_reference", "id": item.id}])
    assert alice.items.list(conv.id).data[0].payload == item.payload
    with raises(NotFound, message="Item with id 'msg_nowhere' not found.", param="item_id"):
        alice.conversations.create(items=[{"type": "item_reference", "id": "msg_nowhere"}])
    assert len(alice.conversations.list().data) == 3


def test_deleting_from_one_conversation_keeps_it_in_the_other(alice, shared):
    first, second, item = shared
    alice.items.add(second.id, [{"type": "item_reference", "id": item.id}])
    alice.items.delete(first.id, item.id)
    with raises(NotFound, message=f"Item with id '{item.id}' not found.", param="item_id"):
        alice.items.get(first.id, item.id)
    assert alice.items.get(second.id, item.id).payload == item.payload


def test_deleting_a_conversation_keeps_items_referenced_elsewhere(alice, shared):
    first, second, item = shared
    alice.items.add(second.id, [{"type": "item_reference", "id": item.id}])
    alice.conversations.delete(first.id)
    assert alice.items.get(second.id, item.id).payload == item.payload
    alice.conversations.delete(second.id)
    third = alice.conversations.create()
    with raises(NotFound, message=f"Item with id '{item.id}' not found.", param="item_id"):  # the last link went
        alice.items.add(third.id, [{"type": "item_reference", "id": item.id}])
