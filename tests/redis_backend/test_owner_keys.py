"""Owner-level operations seen from the keys: erasure leaves no key of that
owner (checked with SCAN on every master) and does not touch another owner's,
owners with Redis metacharacters in their names stay apart, an item linked
into several conversations is stored once, and key prefixes are validated."""

from __future__ import annotations

import pytest

from flask_smg_history import ConfigError, InvalidRequest, NotFound

from ..contract.test_owner_data import _fill
from ..support.apps import build_app
from ..support.errors import raises
from .conftest import backend_of, keys_under, store_of

pytestmark = pytest.mark.redis

HOSTILE = ["alice", "a}:c:b", "a", "{o:5:alice}", "*?[x]\\", "sp ace\n"]


def _owner_keys(app, owner: str) -> set[str]:
    tag = backend_of(app)._tag(owner)[len(backend_of(app).prefix) :]
    return {k for k in keys_under(app) if k.startswith(backend_of(app).prefix + tag)}


def _snapshot(app, keys: set[str]) -> dict[str, bytes]:
    client = backend_of(app).client
    return {key: client.dump(key) for key in keys}


def test_erase_leaves_no_key_of_the_owner_and_every_key_of_the_others(app):
    stores = {owner: store_of(app, owner) for owner in HOSTILE}
    for store in stores.values():
        convs = _fill(store, n_conv=2, n_items=3)
        first = store.items.list(convs[0].id).data[0]
        store.items.add(convs[1].id, [{"type": "item_reference", "id": first.id}])  # a shared item too
    others = set().union(*(_owner_keys(app, o) for o in HOSTILE if o != "alice"))
    before = _snapshot(app, others)
    assert _owner_keys(app, "alice") and len(others) > 10
    assert list(backend_of(app).owners()) == sorted(HOSTILE)

    counts = stores["alice"].erase_owner()
    assert counts == {"conversations": 2, "items": 6, "responses": 2, "feedback": 2}
    assert _owner_keys(app, "alice") == set()
    assert keys_under(app) == others and _snapshot(app, others) == before
    assert list(backend_of(app).owners()) == sorted(o for o in HOSTILE if o != "alice")
    assert stores["alice"].erase_owner() == {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}

    for owner in HOSTILE[1:]:
        stats = backend_of(app).stats(owner)
        assert (stats["conversations"], stats["items"], stats["responses"]) == (2, 7, 2), owner


def test_a_referenced_item_is_stored_once(app):
    alice = store_of(app)
    backend = backend_of(app)
    first = alice.conversations.create(items=[{"role": "user", "content": "shared " * 100}])
    item = alice.items.list(first.id).data[0]
    others = [alice.conversations.create() for _ in range(3)]
    for conv in others:
        alice.items.add(conv.id, [{"type": "item_reference", "id": item.id}])
    client = backend.client
    stored = [k for k in keys_under(app) if client.type(k) in (b"hash", b"string")]
    holding = [k for k in stored if any(b"shared shared" in (v or b"") for v in client.hgetall(k).values())]
    assert holding == [f"{backend._tag('alice')}:s:{item.id}"]  # one copy, whoever links it
    for conv in [first, *others[:2]]:
        alice.conversations.delete(conv.id)
    assert alice.items.get(others[2].id, item.id).payload == item.payload
    alice.items.delete(others[2].id, item.id)
    assert not [k for k in keys_under(app) if item.id in k]
    assert client.hlen(backend._owner_key("alice", "items")) == 0


def test_a_failed_batch_writes_nothing(app):
    alice = store_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": "x"}])
    item = alice.items.list(conv.id).data[0]
    other = alice.conversations.create()
    before = _snapshot(app, keys_under(app))
    batch = [
        {"role": "user", "content": "new"},
        {"type": "item_reference", "id": item.id},
        {"type": "item_reference", "id": "msg_none"},
    ]
    with raises(NotFound, message="Item with id 'msg_none' not found.", param="item_id"):
        alice.items.add(other.id, batch)
    batch = [{"type": "item_reference", "id": item.id}, {"id": item.id, "role": "user", "content": "again"}]
    with raises(
        InvalidRequest,
        message=f"Item with id '{item.id}' is already in conversation '{other.id}'.",
        param="items",
        code="item_already_in_conversation",
    ):
        alice.items.add(other.id, batch)
    assert _snapshot(app, keys_under(app)) == before


def bad_prefix(prefix: str) -> str:
    """The ConfigError message of a key prefix the backend refuses."""
    return (
        f"SMG_HISTORY_REDIS_KEY_PREFIX={prefix!r} is not accepted: use 1 to 64 of A-Z a-z 0-9 _ : . - (the backend "
        "puts its own hash tags, in braces, after it, and finds an owner's keys with SCAN patterns, where * ? [ ] "
        "are special)."
    )


@pytest.mark.parametrize("prefix", ["", "app{1}:", "a*", "a b:", "x" * 65, "é:"])
def test_bad_key_prefix_is_a_config_error(prefix):
    message = bad_prefix(prefix)
    if not prefix:  # refused by the settings loader before the backend sees it
        message = (
            "SMG_HISTORY_REDIS_KEY_PREFIX='' is not valid: expected a non-empty string. Prefix of every Redis key, "
            "so apps can share one Redis: 1 to 64 of `A-Z a-z 0-9 _ : . -`."
        )
    with raises(ConfigError, message=message, param="SMG_HISTORY_REDIS_KEY_PREFIX"):
        build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_KEY_PREFIX": prefix})


@pytest.mark.parametrize("prefix", ["smg:", "my-app.v2_history:"])
def test_good_key_prefixes(prefix):
    app = build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_KEY_PREFIX": prefix})
    assert backend_of(app).prefix == prefix
