"""Contract: listing conversations by last write (``order_by="updated_at"``),
keyset-paged, on every backend."""

from __future__ import annotations

import time

import pytest

from flask_smg_history import Conversation, InvalidRequest, get_state

from ..support.errors import raises


def _ids(page) -> list[str]:
    return [c.id for c in page.data]


def _walk(store, **kwargs) -> list[list[str]]:
    """Every page of a listing, following ``last_id``."""
    pages, after = [], None
    while True:
        page = store.conversations.list(after=after, **kwargs)
        pages.append(_ids(page))
        if not page.has_more:
            return pages
        after = page.last_id


def test_a_write_moves_a_conversation_to_the_front(alice):
    c1, c2, c3 = (alice.conversations.create(metadata={"n": str(n)}) for n in range(3))
    by_activity = {"order_by": "updated_at"}
    assert _ids(alice.conversations.list(**by_activity)) == [c3.id, c2.id, c1.id]

    alice.items.add(c1.id, [{"role": "user", "content": "back again"}])
    assert _ids(alice.conversations.list(**by_activity)) == [c1.id, c3.id, c2.id]
    alice.conversations.update(c2.id, {"n": "updated"})
    assert _ids(alice.conversations.list(**by_activity)) == [c2.id, c1.id, c3.id]
    assert _ids(alice.conversations.list(order="asc", **by_activity)) == [c3.id, c1.id, c2.id]

    listed = alice.conversations.list(**by_activity).data
    assert [c.updated_at for c in listed] == sorted((c.updated_at for c in listed), reverse=True)
    assert listed[0].metadata == {"n": "updated"}
    # the default order is still by creation, whatever was written since
    assert _ids(alice.conversations.list()) == [c3.id, c2.id, c1.id]
    assert _ids(alice.conversations.list(order_by="created_at", order="asc")) == [c1.id, c2.id, c3.id]

    alice.conversations.delete(c1.id)
    assert _ids(alice.conversations.list(**by_activity)) == [c2.id, c3.id]


def test_pages_follow_the_cursor(alice):
    created = [alice.conversations.create().id for _ in range(25)]
    for cid in created[::2]:  # the even ones, oldest first: they end up newest
        alice.items.add(cid, [{"role": "user", "content": "x"}])
    expected = list(reversed(created[1::2] + created[::2]))  # newest first
    pages = _walk(alice, limit=10, order_by="updated_at")
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == expected
    assert sum(_walk(alice, limit=7, order="asc", order_by="updated_at"), []) == list(reversed(expected))


def test_equal_updated_at_is_ordered_by_id_across_pages(app, alice):
    """Conversations written at the same instant (imported here, so the
    timestamps are exact) page in ID order, and a cursor in the middle of a
    tie continues inside it."""
    base = round(time.time()) - 100.0
    times = {  # id -> (created_at, updated_at)
        "conv_tie_b": (base + 1, base + 50),
        "conv_tie_a": (base + 2, base + 50),
        "conv_tie_d": (base + 3, base + 50),
        "conv_tie_c": (base + 4, base + 50),
        "conv_old": (base + 5, base + 10),
        "conv_new": (base + 6, base + 90),
    }
    get_state(app).backend.import_records(
        [Conversation(cid, "alice", created, updated) for cid, (created, updated) in times.items()]
    )
    asc = ["conv_old", "conv_tie_a", "conv_tie_b", "conv_tie_c", "conv_tie_d", "conv_new"]
    for limit in (1, 2, 3, 4, 100):
        assert sum(_walk(alice, limit=limit, order="asc", order_by="updated_at"), []) == asc, limit
        assert sum(_walk(alice, limit=limit, order_by="updated_at"), []) == asc[::-1], limit
    assert _ids(alice.conversations.list(after="conv_tie_b", order="asc", order_by="updated_at")) == asc[3:]
    assert _ids(alice.conversations.list(after="conv_tie_c", limit=2, order_by="updated_at")) == [
        "conv_tie_b",
        "conv_tie_a",
    ]
    # by creation the same records come in creation order
    assert _ids(alice.conversations.list(order="asc", limit=100)) == list(times)


def test_the_cursor_continues_from_where_its_conversation_is_now(alice):
    """``updated_at`` moves on every write: a page continues after the cursor
    conversation's current place. A conversation written between two pages
    moves to the front (a newest-first walk does not see it again); when the
    cursor's own conversation is written, the walk goes on from the front."""
    c = [alice.conversations.create().id for _ in range(5)]  # c4 newest
    first = alice.conversations.list(limit=2, order_by="updated_at")
    assert _ids(first) == [c[4], c[3]]
    alice.items.add(c[1], [{"role": "user", "content": "moved"}])
    assert _ids(alice.conversations.list(after=first.last_id, order_by="updated_at")) == [c[2], c[0]]
    alice.items.add(c[3], [{"role": "user", "content": "the cursor moved"}])
    assert _ids(alice.conversations.list(after=c[3], order_by="updated_at")) == [c[1], c[4], c[2], c[0]]
    assert _ids(alice.conversations.list(after=c[3], order="asc", order_by="updated_at")) == []


def test_unknown_or_foreign_cursor(alice, bob):
    mine = alice.conversations.create()
    theirs = bob.conversations.create()
    for after in ("conv_unknown", theirs.id):
        with raises(InvalidRequest, message=f"No record with id '{after}' to list after.", param="after"):
            alice.conversations.list(after=after, order_by="updated_at")
    assert _ids(alice.conversations.list(after=mine.id, order_by="updated_at")) == []


def test_owner_isolation(alice, bob):
    a1, a2 = alice.conversations.create(), alice.conversations.create()
    b1 = bob.conversations.create()
    bob.items.add(b1.id, [{"role": "user", "content": "bob writes"}])
    bob.conversations.update(b1.id, {"k": "v"})
    assert _ids(alice.conversations.list(order_by="updated_at")) == [a2.id, a1.id]
    assert _ids(bob.conversations.list(order_by="updated_at")) == [b1.id]
    alice.conversations.delete(a2.id)
    assert _ids(bob.conversations.list(order_by="updated_at")) == [b1.id]
    assert _ids(alice.conversations.list(order_by="updated_at")) == [a1.id]


@pytest.mark.parametrize("order_by", ["updated", "UPDATED_AT", "", "id", None])
def test_bad_order_by(alice, order_by):
    with raises(InvalidRequest, message="Invalid 'order_by': must be 'created_at' or 'updated_at'.", param="order_by"):
        alice.conversations.list(order_by=order_by)


def test_expired_conversations_leave_the_listing(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=1.0 / 86400)
    store = get_state(app).store_for("alice")
    old = store.conversations.create()
    time.sleep(0.6)
    fresh = store.conversations.create()
    time.sleep(0.6)
    assert _ids(store.conversations.list(order_by="updated_at")) == [fresh.id]
    with raises(InvalidRequest, message=f"No record with id '{old.id}' to list after.", param="after"):
        store.conversations.list(after=old.id, order_by="updated_at")
