"""``T:activity``, the owner's conversations scored by updated_at: kept in
step with ``T:convs`` by every write, built on first use for an owner whose
keys predate it, reconciled by purge, repaired on read, and expiring with the
owner's other indexes."""

from __future__ import annotations

import time

import pytest

from .conftest import backend_of, keys_under, store_of

pytestmark = pytest.mark.redis


def _index(app, kind: str, owner: str = "alice") -> dict[str, float]:
    backend = backend_of(app)
    return {m.decode(): s for m, s in backend.client.zrange(backend._owner_key(owner, kind), 0, -1, withscores=True)}


def _updated(app, ids: list[str], owner: str = "alice") -> dict[str, float]:
    return {cid: store_of(app, owner).conversations.get(cid).updated_at for cid in ids}


def _by_activity(store) -> list[str]:
    return [c.id for c in store.conversations.list(limit=100, order_by="updated_at").data]


def test_every_write_keeps_the_two_indexes_in_step(app):
    alice = store_of(app)
    ids = [alice.conversations.create().id for _ in range(4)]
    alice.items.add(ids[0], [{"role": "user", "content": "x"}])
    alice.conversations.update(ids[1], {"k": "v"})
    alice.conversations.delete(ids[2])
    assert set(_index(app, "convs")) == set(_index(app, "activity")) == {ids[0], ids[1], ids[3]}
    assert _index(app, "activity") == _updated(app, [ids[0], ids[1], ids[3]])
    backend = backend_of(app)
    convs, activity = (backend._owner_key("alice", k) for k in ("convs", "activity"))
    assert abs(backend.client.pexpiretime(convs) - backend.client.pexpiretime(activity)) < 1000

    backend.import_records(list(backend.export("alice", None)))
    assert set(_index(app, "activity")) == {ids[0], ids[1], ids[3]}
    alice.erase_owner()
    assert not any(k.endswith(":activity") for k in keys_under(app))


def test_an_owner_older_than_the_index_gets_it_on_first_listing(app):
    """Keys written before ``T:activity`` existed (simulated by deleting it),
    then one write under the new code (so the index holds one of five) and a
    stale ``T:convs`` entry: the first listing by updated_at builds the index
    whole, in order, with the TTL of ``T:convs``."""
    alice = store_of(app)
    backend = backend_of(app)
    ids = [alice.conversations.create().id for _ in range(5)]
    alice.items.add(ids[1], [{"role": "user", "content": "old write"}])
    activity = backend._owner_key("alice", "activity")
    backend.client.delete(activity)
    alice.items.add(ids[3], [{"role": "user", "content": "written after the upgrade"}])
    assert set(_index(app, "activity")) == {ids[3]}
    backend.client.zadd(backend._owner_key("alice", "convs"), {"conv_expired_meanwhile": 1.0})

    assert _by_activity(alice) == [ids[3], ids[1], ids[4], ids[2], ids[0]]
    assert _index(app, "activity") == _updated(app, ids)
    assert set(_index(app, "convs")) == set(ids)  # the stale entry went on the way
    convs_deadline = backend.client.pexpiretime(backend._owner_key("alice", "convs"))
    assert convs_deadline > 0 and backend.client.pexpiretime(activity) == convs_deadline
    page = alice.conversations.list(limit=2, order_by="updated_at", after=ids[1])
    assert [c.id for c in page.data] == [ids[4], ids[2]]


def test_a_cursor_of_an_owner_older_than_the_index_is_known(app):
    alice = store_of(app)
    backend = backend_of(app)
    ids = [alice.conversations.create().id for _ in range(3)]
    backend.client.delete(backend._owner_key("alice", "activity"))
    page = alice.conversations.list(after=ids[2], order_by="updated_at")
    assert [c.id for c in page.data] == [ids[1], ids[0]]


def test_purge_reconciles_indexes_of_the_same_size_with_different_members(app):
    """What an older version writing next to this one can leave: an entry of
    a deleted conversation, a missing one, a score behind its updated_at."""
    alice = store_of(app)
    backend = backend_of(app)
    ids = [alice.conversations.create().id for _ in range(4)]
    activity = backend._owner_key("alice", "activity")
    backend.client.zrem(activity, ids[0])
    backend.client.zadd(activity, {"conv_deleted_by_an_older_version": time.time()})
    backend.client.zadd(activity, {ids[2]: 1.0})
    assert len(_index(app, "activity")) == len(_index(app, "convs"))

    backend.purge(before=None, dry_run=False)
    assert _index(app, "activity") == _updated(app, ids)
    assert _by_activity(alice) == ids[::-1]


def test_dangling_entries_leave_both_indexes_when_read(app):
    alice = store_of(app)
    backend = backend_of(app)
    ids = [alice.conversations.create().id for _ in range(3)]
    gone = {f"conv_gone{n}": time.time() + n for n in range(40)}  # more than one index chunk
    for kind in ("convs", "activity"):
        backend.client.zadd(backend._owner_key("alice", kind), gone)
    assert _by_activity(alice) == ids[::-1]
    assert set(_index(app, "activity")) == set(_index(app, "convs")) == set(ids)


def test_the_index_expires_with_the_owner(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=1.0 / 86400)
    alice = store_of(app)
    alice.conversations.create()
    assert any(k.endswith(":activity") for k in keys_under(app))
    time.sleep(1.3)
    assert keys_under(app) == set()


def test_keep_forever_keeps_the_index_without_ttl(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=-1)
    alice = store_of(app)
    backend = backend_of(app)
    ids = [alice.conversations.create().id for _ in range(2)]
    activity = backend._owner_key("alice", "activity")
    assert backend.client.pttl(activity) == -1
    backend.client.delete(activity)
    assert _by_activity(alice) == ids[::-1]
    assert backend.client.pttl(activity) == -1
