"""``store_turn`` on Redis: one script, one round trip, and no half-written
turn when the script fails.

Redis runs a script alone, so no other command lands in the middle of a
turn, and a server that goes away leaves the script run or not run; but a
script that fails half-way (a command refused by a key holding what this
backend did not write) keeps what it wrote before. The turn's script reads
every key it is about to write before its first write, so it fails there."""

from __future__ import annotations

import re

import pytest

from flask_smg_history import CorruptRecord, NotFound

from ..support.backends_redis import wire_commands
from ..support.errors import missing, raises
from ..support.turns import build_turn, same_response, state_of, store_turn, texts_of
from ..support.writers import all_items
from .conftest import backend_of, store_of

pytestmark = pytest.mark.redis


def test_a_turn_is_one_round_trip_whatever_its_length(app, monkeypatch):
    alice = store_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": "before"}])
    store_turn(app, *build_turn("alice", conv.id, ["warm"], ["up"]))  # the script loaded
    sent = wire_commands(monkeypatch)  # commands as they go on the wire
    store_turn(app, *build_turn("alice", conv.id, [f"q{n}" for n in range(150)], [f"a{n}" for n in range(50)]))
    store_turn(app, *build_turn("alice", None, ["q"], ["a"]))
    assert sent == ["EVALSHA", "EVALSHA"]


@pytest.mark.parametrize("index", ["resps", "activity"])
def test_a_foreign_value_under_a_key_the_turn_writes_fails_it_before_its_first_write(app, index):
    alice, backend = store_of(app), backend_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": "before"}])
    before = state_of(alice, conv.id)
    meta = backend._conv_keys("alice", conv.id)[0]
    next_position = backend.client.hget(meta, "n")
    key = backend._owner_key("alice", index)
    saved = backend.client.dump(key)
    backend.client.delete(key)
    backend.client.set(key, "a string where a sorted set belongs")
    response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(25)], ["a"])
    unreadable = re.compile(
        rf"Conversation '{conv.id}' is stored in a form this backend cannot read \(WRONGTYPE [^)]*\)\."
    )
    with raises(CorruptRecord, message=unreadable, param=None):
        store_turn(app, response, items, at=response.created_at + 5)
    assert backend.client.hget(meta, "n") == next_position
    assert backend.client.exists(*backend._resp_keys("alice", response.id)) == 0
    assert all(backend.client.hget(backend._owner_key("alice", "items"), i.id) is None for i in items)
    backend.client.delete(key)
    if saved is not None:
        backend.client.restore(key, 0, saved)
    assert state_of(alice, conv.id) == before
    with raises(NotFound, message=missing("response", response.id)[0], param="response_id"):
        alice.responses.get(response.id)
    store_turn(app, response, items)  # the same turn, whole, once the key is repaired
    assert texts_of(all_items(alice, conv.id)) == ["before", *(f"q{n}" for n in range(25)), "a"]
    same_response(alice.responses.get(response.id), response)
