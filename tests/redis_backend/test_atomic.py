"""Appends from several processes (each with threads) keep one total order
with nothing lost or duplicated; links to one item from many threads keep its
link record exact; a page and ``recent(n)`` are one round trip whatever the
conversation's length."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..support.backends_redis import wire_commands
from ..support.writers import all_items
from .conftest import backend_of, keys_under, store_of
from .writer import write

pytestmark = pytest.mark.redis


def test_processes_and_threads_keep_one_total_order(app):
    alice = store_of(app)
    conv = alice.conversations.create()
    config = {k: v for k, v in app.config.items() if k.startswith("SMG_HISTORY_")}
    processes, threads, batches = 4, 3, 8
    ctx = multiprocessing.get_context("spawn")  # no pool sockets inherited across fork
    workers = [ctx.Process(target=write, args=(config, conv.id, f"p{p}", threads, batches)) for p in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * processes

    items = all_items(alice, conv.id)
    texts = [i.payload["content"][0]["text"] for i in items]
    assert len(texts) == processes * threads * batches * 2 == len(set(texts))
    positions = [i.position for i in items]
    assert positions == list(range(len(items)))  # dense: no lost or doubled position
    for writer in {t.split(":")[0] for t in texts}:
        mine = [t for t in texts if t.startswith(f"{writer}:")]
        assert mine == [f"{writer}:{k}:{s}" for k in range(batches) for s in "ab"]
        for k in range(batches):
            assert texts[texts.index(f"{writer}:{k}:a") + 1] == f"{writer}:{k}:b"  # batches unsplit


def test_page_and_recent_are_one_round_trip_at_any_length(app, monkeypatch):
    alice = store_of(app)
    conv = alice.conversations.create()
    for start in range(0, 2000, 20):
        alice.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(start, start + 20)])
    alice.items.recent(conv.id)
    alice.items.list(conv.id)  # scripts loaded
    sent = wire_commands(monkeypatch)  # commands as they go on the wire

    recent = alice.items.recent(conv.id, limit=20)
    assert [i.payload["content"][0]["text"] for i in recent] == [str(n) for n in range(1980, 2000)]
    middle = alice.items.list(conv.id, after=recent[0].id, limit=5, order="desc")
    assert [i.payload["content"][0]["text"] for i in middle.data] == ["1979", "1978", "1977", "1976", "1975"]
    assert sent == ["EVALSHA", "EVALSHA"]


def test_concurrent_links_and_unlinks_of_one_item_stay_consistent(app):
    alice, backend = store_of(app), backend_of(app)
    home = alice.conversations.create(items=[{"role": "user", "content": "shared"}])
    item = alice.items.list(home.id).data[0]
    anchor = alice.conversations.create(items=[{"type": "item_reference", "id": item.id}])  # a link that stays
    convs = [alice.conversations.create() for _ in range(8)]

    def churn(conv) -> None:
        for _ in range(15):
            alice.items.add(conv.id, [{"type": "item_reference", "id": item.id}])
            alice.items.delete(conv.id, item.id)
        alice.items.add(conv.id, [{"type": "item_reference", "id": item.id}])

    with ThreadPoolExecutor(9) as pool:
        done = [pool.submit(churn, conv) for conv in convs]
        time.sleep(0.05)
        done.append(pool.submit(alice.conversations.delete, home.id))  # its item lives on in the others
        for future in done:
            future.result()
    links = {k.decode() for k in backend.client.hkeys(f"{backend._tag('alice')}:s:{item.id}")}
    assert links == {"d", *(f"l:{c.id}" for c in [anchor, *convs])}
    for conv in [anchor, *convs]:
        assert alice.items.get(conv.id, item.id).payload == item.payload
        alice.items.delete(conv.id, item.id)
    assert not [k for k in keys_under(app) if item.id in k]
