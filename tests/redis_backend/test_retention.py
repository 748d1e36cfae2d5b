"""Retention on Redis: every key of a conversation carries the TTL, a write
refreshes all of them together, and an idle conversation leaves nothing behind
(checked with SCAN over the app's prefix)."""

from __future__ import annotations

import time

import pytest

from flask_smg_history import ConfigError
from flask_smg_history.backends.redis import codec

from ..support.apps import build_app
from ..support.errors import raises
from .conftest import backend_of, keys_under, store_of
from .test_owner_keys import bad_prefix

pytestmark = pytest.mark.redis

SECONDS = 1.5 / 86400  # fractional days: a retention of 1.5 s


def _ttls(app, keys):
    client = backend_of(app).client
    return {key: client.pttl(key) for key in keys}


def test_idle_conversation_vanishes_whole_while_active_one_stays_whole(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=SECONDS)
    alice = store_of(app)
    idle = alice.conversations.create(items=[{"role": "user", "content": "idle"}])
    active = alice.conversations.create(items=[{"role": "user", "content": "0"}])
    response = alice.responses.store({"model": "m", "input": "hi", "output": []})
    alice.feedback.submit(response.id, "positive")

    ttls = _ttls(app, keys_under(app))
    assert len(ttls) >= 10 and all(0 < ttl <= 1500 for ttl in ttls.values()), ttls

    for n in range(1, 4):  # keep writing to one conversation past its first deadline
        time.sleep(0.6)
        alice.items.add(active.id, [{"role": "user", "content": str(n)}])
    time.sleep(0.3)  # 2.1 s after the idle records were last written

    left = keys_under(app)
    assert not [k for k in left if idle.id in k or response.id in k], left
    assert {k for k in left if active.id in k} == set(backend_of(app)._conv_keys("alice", active.id)[:3])  # whole
    assert [i.payload["content"][0]["text"] for i in alice.items.list(active.id, order="asc").data] == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert [c.id for c in alice.conversations.list().data] == [active.id]
    assert alice.feedback.list().data == []

    time.sleep(1.6)
    assert keys_under(app) == set()  # owner indexes included


def test_keep_forever_sets_no_ttl(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=-1)
    alice = store_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": "x"}])
    alice.items.add(conv.id, [{"role": "user", "content": "y"}])
    alice.feedback.submit(alice.responses.store({"model": "m", "input": "hi"}).id, "negative")
    ttls = _ttls(app, keys_under(app))
    assert len(ttls) >= 7 and set(ttls.values()) == {-1}
    assert alice.conversations.get(conv.id).expires_at is None


def test_general_retention_and_redis_retention_the_shorter_wins(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=1, SMG_HISTORY_RETENTION_DAYS=2 / 86400)
    conv = store_of(app).conversations.create()
    assert 0 < max(_ttls(app, keys_under(app)).values()) <= 2000
    assert conv.expires_at is not None and conv.expires_at - conv.created_at == pytest.approx(2, abs=0.01)
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=3 / 86400, SMG_HISTORY_RETENTION_DAYS=1)
    conv = store_of(app).conversations.create()
    assert store_of(app).conversations.get(conv.id).expires_at - conv.created_at == pytest.approx(3, abs=0.01)


RETENTION_DOC = (
    "Days every key of a conversation lives after its last write (fractions allowed); -1 keeps forever. "
    "When SMG_HISTORY_RETENTION_DAYS is also set, the shorter of the two applies."
)
NOT_POSITIVE = "use a positive number of days, or -1 to keep data forever (0 would expire data at once)"


@pytest.mark.parametrize(
    ("days", "reason"), [(0, NOT_POSITIVE), (-2, NOT_POSITIVE), (-0.5, NOT_POSITIVE), ("x", "expected a number")]
)
def test_bad_redis_retention_is_a_config_error(days, reason):
    message = f"SMG_HISTORY_REDIS_RETENTION_DAYS={days!r} is not valid: {reason}. {RETENTION_DOC}"
    with raises(ConfigError, message=message, param="SMG_HISTORY_REDIS_RETENTION_DAYS"):
        build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_RETENTION_DAYS": days})


def test_prefix_with_braces_is_a_config_error():
    with raises(ConfigError, message=bad_prefix("app{1}:"), param="SMG_HISTORY_REDIS_KEY_PREFIX"):
        build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_KEY_PREFIX": "app{1}:"})


def test_a_shared_item_lives_as_long_as_the_longest_lived_conversation_linking_it(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=SECONDS)
    alice = store_of(app)
    home = alice.conversations.create(items=[{"role": "user", "content": "shared"}])
    item = alice.items.list(home.id).data[0]
    active = alice.conversations.create(items=[{"type": "item_reference", "id": item.id}])
    for n in range(4):  # the home conversation goes idle; the other keeps being written
        time.sleep(0.6)
        alice.items.add(active.id, [{"role": "user", "content": str(n)}])
    left = keys_under(app)
    assert not [k for k in left if home.id in k], left  # the home conversation expired whole
    assert alice.items.get(active.id, item.id).payload == item.payload
    ttl = backend_of(app).client.pttl(f"{backend_of(app)._tag('alice')}:s:{item.id}")
    assert 1000 < ttl <= 1500  # extended by the last write to the active conversation
    alice.items.delete(active.id, item.id)  # the last live link: the item goes now, not at its TTL
    assert not [k for k in keys_under(app) if item.id in k]
    time.sleep(1.6)
    assert keys_under(app) == set()


def test_purge_removes_nothing_live_reports_ttls_and_drops_what_expiry_left_in_the_indexes(make_app):
    app = make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=SECONDS)
    alice, backend = store_of(app), backend_of(app)
    alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(2)])  # goes idle
    active = alice.conversations.create()
    for n in range(4):
        time.sleep(0.6)
        alice.items.add(active.id, [{"role": "user", "content": str(n)}])
    directory, index = backend._owner_key("alice", "items"), backend._owner_key("alice", "convs")
    assert (backend.client.hlen(directory), backend.client.zcard(index)) == (2 + 4, 2)  # the idle one's, expired

    preview = backend.purge(before=None, dry_run=True)
    assert (preview["conversations"], preview["items"]) == (0, 0) and "stale_entries" not in preview
    assert backend.client.hlen(directory) == 6
    done = backend.purge(before=None, dry_run=False)
    assert done["conversations"] == 0 and done["stale_entries"] == 3
    assert (backend.client.hlen(directory), backend.client.zcard(index)) == (4, 1)
    deadline = alice.conversations.get(active.id).expires_at
    assert done["ttl_first_ends"] == done["ttl_last_ends"] == codec.when(deadline)
    assert len(alice.items.list(active.id).data) == 4
