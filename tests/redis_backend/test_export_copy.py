"""Export streams in constant memory, and ``flask smg-history copy`` moves a
memory store into Redis, survives an interruption, resumes and verifies."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

import pytest
import redis.exceptions as rex

from flask_smg_history import NotFound
from flask_smg_history.backends.redis import RedisBackend
from flask_smg_history.backends.redis import operations as redis_ops
from flask_smg_history.records import Conversation, Item, now

from ..contract.test_owner_data import _fill
from ..support.apps import build_app
from ..support.errors import raises
from .conftest import backend_of, keys_under, store_of

pytestmark = pytest.mark.redis


def _load(backend, owner: str, conversations: int, items: int) -> None:
    """Write ``conversations`` x ``items`` through import, the fast path."""
    at = now()
    for c in range(conversations):
        cid = f"conv_{owner}{c}"
        records: list = [Conversation(id=cid, owner=owner, created_at=at + c, updated_at=at + c)]
        for i in range(items):
            iid = f"msg_{owner}{c}_{i}"
            payload = {
                "id": iid,
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x" * 200}],
            }
            records.append(
                Item(id=iid, conversation_id=cid, type="message", payload=payload, created_at=at, position=i)
            )
        backend.import_records(records)


def _export_peak(backend, owner: str) -> tuple[int, int]:
    gc.collect()
    tracemalloc.start()
    try:
        count = sum(1 for _ in backend.export(owner, None))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_stays_flat_as_the_data_grows(app):
    backend = backend_of(app)
    _load(backend, "small", 2, 1000)
    _load(backend, "large", 16, 1000)  # eight times as many items
    small_count, small_peak = _export_peak(backend, "small")
    large_count, large_peak = _export_peak(backend, "large")
    assert (small_count, large_count) == (2 + 2000, 16 + 16000)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)


def _timeless(record):
    """A record without the expiry the target's retention gave it."""
    return record if isinstance(record, Item) else dataclasses.replace(record, expires_at=None)


def _records(owner: str, items: int):
    """One conversation with ``items`` items, generated as they are consumed."""
    at = now()
    yield Conversation(id=f"conv_{owner}", owner=owner, created_at=at, updated_at=at)
    for i in range(items):
        iid = f"msg_{owner}_{i}"
        payload = {"id": iid, "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 200}]}
        yield Item(id=iid, conversation_id=f"conv_{owner}", type="message", payload=payload, created_at=at, position=i)


def _import_peak(backend, owner: str, items: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        assert backend.import_records(_records(owner, items))["items"] == items
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_import_memory_stays_flat_for_a_long_conversation(app):
    backend = backend_of(app)
    small_peak = _import_peak(backend, "small", 2000)
    large_peak = _import_peak(backend, "large", 16000)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)
    assert backend.stats("large")["items"] == 16000


class _Interrupt:
    """Make the target's third import batch fail as a lost connection would."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        original = RedisBackend.import_records

        def import_records(backend, records):
            self.calls += 1
            if self.calls == 3:
                raise rex.ConnectionError("Redis went away mid-copy")
            return original(backend, records)

        monkeypatch.setattr(RedisBackend, "import_records", import_records)


def test_copy_memory_to_redis_interrupted_resumed_and_verified(app, tmp_path, monkeypatch):
    source = build_app({"SMG_HISTORY_BACKEND": "memory"}, tmp_path / "source")
    for owner, n_conv in (("alice", 3), ("bob", 2)):
        convs = _fill(store_of(source, owner), n_conv=n_conv, n_items=4)
        shared = store_of(source, owner).items.list(convs[0].id).data[0]
        store_of(source, owner).items.add(convs[1].id, [{"type": "item_reference", "id": shared.id}])
    target = app.config  # the Redis under test, under this test's own prefix
    args = [
        "smg-history",
        "copy",
        "--to-backend",
        "redis",
        "--to-url",
        target["SMG_HISTORY_REDIS_URL"],
        "--set",
        f"SMG_HISTORY_REDIS_KEY_PREFIX={target['SMG_HISTORY_REDIS_KEY_PREFIX']}",
        "--set",
        f"SMG_HISTORY_REDIS_CLUSTER={str(target['SMG_HISTORY_REDIS_CLUSTER']).lower()}",
        "--checkpoint",
        str(tmp_path / "copy.json"),
        "--batch-size",
        "6",
    ]
    interrupt = _Interrupt(monkeypatch)
    first = source.test_cli_runner().invoke(args=args)
    assert first.exit_code != 0 and "copy stopped after 12 records" in first.output, first.output
    assert backend_of(app).stats(None)["conversations"] > 0  # the first batches are in Redis

    second = source.test_cli_runner().invoke(args=args)
    assert second.exit_code == 0, second.output
    assert "resuming after 12 records" in second.stderr and "verified: counts match" in second.output
    assert interrupt.calls > 3

    exported = list(backend_of(source).export(None, None))
    copied = list(backend_of(app).export(None, None))
    assert all(r.expires_at is not None for r in copied if not isinstance(r, Item))  # Redis retention applied
    assert [_timeless(r) for r in copied] == exported
    alice = store_of(app, "alice")
    conv = exported[0]
    assert alice.conversations.get(conv.id).metadata == conv.metadata
    later = [r for r in exported if isinstance(r, Conversation)][1]
    ids = {c: {r.id for r in exported if isinstance(r, Item) and r.conversation_id == c} for c in (conv.id, later.id)}
    (shared,) = [r for r in exported if isinstance(r, Item) and r.id in ids[conv.id] & ids[later.id]][:1]
    alice.conversations.delete(conv.id)  # the copied reference still links the item elsewhere
    assert alice.items.get(later.id, shared.id).payload == shared.payload


def test_import_finds_the_owner_of_a_conversation_imported_by_another_run(make_app):
    app = make_app()
    first, second = backend_of(app), backend_of(make_app())  # one Redis prefix, as two runs of the CLI
    _load(first, "carol", 1, 3)
    at = now()
    payload = {"id": "msg_late", "type": "message", "role": "user", "content": []}
    late = Item(
        id="msg_late", conversation_id="conv_carol0", type="message", payload=payload, created_at=at, position=7
    )
    assert second._import_owners == {}
    assert second.import_records([late]) == {"conversations": 0, "items": 1, "responses": 0, "feedback": 0}
    listed = store_of(app, "carol").items.list("conv_carol0", order="asc").data
    assert [i.position for i in listed] == [0, 1, 2, 7]
    orphan = dataclasses.replace(late, conversation_id="conv_nowhere")
    with raises(NotFound, message="Conversation with id 'conv_nowhere' not found.", param="conversation_id"):
        second.import_records([orphan])


def test_importing_twice_leaves_the_same_keys(app):
    backend = backend_of(app)
    alice = store_of(app)
    convs = _fill(alice, n_conv=2, n_items=3)
    alice.items.add(convs[1].id, [{"type": "item_reference", "id": alice.items.list(convs[0].id).data[0].id}])
    records = list(backend.export(None, None))
    alice.erase_owner()
    backend.import_records(records)
    keys = keys_under(app)
    once = {k: (backend.client.type(k), backend.client.dump(k)) for k in keys}
    backend.import_records(records)
    assert keys_under(app) == keys
    assert {k: (backend.client.type(k), backend.client.dump(k)) for k in keys} == once


def test_copy_refuses_an_unknown_setting(app, tmp_path):
    source = build_app({"SMG_HISTORY_BACKEND": "memory"}, tmp_path / "source")
    args = ["smg-history", "copy", "--to-backend", "redis", "--set", "SMG_HISTORY_REDIS_NOPE=1"]
    result = source.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0 and "expected SMG_HISTORY_KEY=VALUE" in result.output


def test_export_keeps_its_place_when_the_item_it_stopped_at_is_deleted(app, monkeypatch):
    monkeypatch.setattr(redis_ops, "_ITEM_CHUNK", 2)
    alice = store_of(app)
    conv = alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(6)])
    records = backend_of(app).export("alice", None)
    seen = [next(records), next(records), next(records)]  # the conversation and the first page of two
    alice.items.delete(conv.id, seen[-1].id)  # the cursor's own item
    seen += list(records)
    assert [r.payload["content"][0]["text"] for r in seen[1:]] == ["0", "1", "2", "3", "4", "5"]
