"""Benchmark of the Redis backend (the figures in docs/backends/redis.md).

Prints items added per second (one item per call and 20 per call, through the
backend and through the whole store; one per call to a conversation linking
20 shared items), ``recent(20)`` at 100 and 100,000 items,
and the ratio of our add-one-item to the bare redis-py commands that store the
same data (position, item, conversation timestamps, TTLs) in one pipeline.

    .venv/bin/python benchmarks/redis.py [--url redis://127.0.0.1:6379/0] [--cluster] [--search]

With ``--search``, only the search figures instead (the bounded scan).

It writes under a fresh key prefix and deletes those keys at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name
# would shadow the redis package: put the repository there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from flask import Flask  # noqa: E402

from flask_smg_history import SmgHistory, get_state  # noqa: E402
from flask_smg_history.records import Item, mint_id, now  # noqa: E402

ROUNDS = 5


def _item(text: str) -> Item:
    item_id = mint_id("msg")
    payload = {
        "id": item_id,
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": text}],
    }
    return Item(id=item_id, conversation_id="", type="message", payload=payload, created_at=now(), role="user")


def _rate(count: int, fn: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for n in range(count):
        fn(n)
    return count / (time.perf_counter() - started)


def _median_ms(repeat: int, fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def search_figures(backend, store) -> None:
    """``history.search`` on an owner of 10,000 items in 100 conversations:
    a word in one item in ten (the first page is found early), a word in
    ten items (the scan goes through everything), a word in none, and the
    Redis time of one script run (``SCAN_CHUNK`` items: how long the server
    is busy at a stretch)."""
    from flask_smg_history.backends.redis.search import SCAN_BUDGET, SCAN_CHUNK
    from flask_smg_history.search import SearchQuery

    for c in range(100):
        conv = store.conversations.create(metadata={"title": f"chat {c}"})
        for start in range(0, 100, 20):
            texts = [f"note {c * 100 + n} topic{(c * 100 + n) % 1000}" for n in range(start, start + 20)]
            texts = [t + (" deploy failed" if k % 10 == 0 else " all fine") for k, t in enumerate(texts)]
            backend.add_items("bench", conv.id, [_item(t) for t in texts], updated_at=now(), expires_at=None)
    print(f"redis search, one owner of 10,000 items; SCAN_CHUNK {SCAN_CHUNK}, SCAN_BUDGET {SCAN_BUDGET}")
    for label, query in (("common word", "deploy"), ("word in 10 items", "topic7"), ("word in none", "zebra")):
        page = store.search(query)
        print(
            f"{label + ', first page:':34} {_median_ms(20, lambda q=query: store.search(q)):8.2f} ms"
            f"  ({len(page.data)} hits, has_more {page.has_more})"
        )
    args = ["", "", "", "", "", 21, SCAN_CHUNK, json.dumps(_lua(SearchQuery.parse("zebra")))]
    one_run = _median_ms(20, lambda: backend._run("search", "bench", [repr(now()), *args[1:]], "search"))
    print(f"{'one script run of ' + str(SCAN_CHUNK) + ' items:':34} {one_run:8.2f} ms")


def _lua(query):
    from flask_smg_history.backends.redis.search import _lua_query

    return _lua_query(query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--calls", type=int, default=3000, help="add calls per single-item measurement")
    parser.add_argument("--search", action="store_true", help="only the search figures (the bounded scan)")
    args = parser.parse_args()

    prefix = f"smgbench:{uuid.uuid4().hex}:"
    app = Flask("smg_bench")
    app.config.update(
        SMG_HISTORY_BACKEND="redis",
        SMG_HISTORY_REDIS_URL=args.url,
        SMG_HISTORY_REDIS_CLUSTER=args.cluster,
        SMG_HISTORY_REDIS_KEY_PREFIX=prefix,
    )
    SmgHistory(app)
    backend = get_state(app).backend
    store = get_state(app).store_for("bench")
    client = backend.client
    try:
        if args.search:
            search_figures(backend, store)
            return
        conv = store.conversations.create()
        meta, items_key, data_key, _ = backend._conv_keys("bench", "conv_bare")
        directory, index = backend._owner_key("bench", "items"), backend._owner_key("bench", "convs")
        ttl_ms = int(backend.retention * 1000)

        def ours_one(n: int) -> None:
            backend.add_items("bench", conv.id, [_item(str(n))], updated_at=now(), expires_at=None)

        def store_one(n: int) -> None:
            store.items.add(conv.id, [{"role": "user", "content": str(n)}])

        def ours_twenty(n: int) -> None:
            batch = [_item(f"{n}.{k}") for k in range(20)]
            backend.add_items("bench", conv.id, batch, updated_at=now(), expires_at=None)

        def bare(n: int) -> None:
            item = _item(str(n))
            doc = {"p": item.payload, "t": item.type, "r": item.role, "s": item.status, "c": item.created_at}
            pipe = client.pipeline(transaction=False)
            pipe.zadd(items_key, {item.id: n})
            pipe.hset(data_key, item.id, json.dumps(doc, separators=(",", ":")))
            pipe.hset(directory, item.id, "conv_bare")
            pipe.hset(meta, mapping={"u": repr(now()), "e": "", "n": n + 1})
            for key in (meta, items_key, data_key, directory, index):
                pipe.pexpire(key, ttl_ms)
            pipe.execute()

        # Interleaved rounds, medians: a busy machine slows all four alike.
        rounds: dict[str, list[float]] = {"ours": [], "store": [], "twenty": [], "bare": []}
        per_round = max(args.calls // ROUNDS, 20)
        for _ in range(ROUNDS):
            rounds["ours"].append(_rate(per_round, ours_one))
            rounds["bare"].append(_rate(per_round, bare))
            rounds["store"].append(_rate(per_round, store_one))
            rounds["twenty"].append(20 * _rate(per_round // 20, ours_twenty))
        ours, bare_rate, via_store, batched = (
            statistics.median(rounds[k]) for k in ("ours", "bare", "store", "twenty")
        )
        ratios = sorted(o / b for o, b in zip(rounds["bare"], rounds["ours"]))

        small = store.conversations.create()
        for _ in range(100 // 20):
            backend.add_items("bench", small.id, [_item(str(k)) for k in range(20)], updated_at=now(), expires_at=None)
        large = store.conversations.create()
        started = time.perf_counter()
        for _ in range(100_000 // 20):
            backend.add_items("bench", large.id, [_item(str(k)) for k in range(20)], updated_at=now(), expires_at=None)
        fill_s = time.perf_counter() - started
        recent_small = _median_ms(1000, lambda: store.items.recent(small.id, limit=20))
        recent_large = _median_ms(1000, lambda: store.items.recent(large.id, limit=20))

        # An append also extends the TTL of every shared item the conversation links.
        linking = store.conversations.create()
        for item in store.items.list(small.id, limit=20).data:
            backend.add_items(
                "bench", linking.id, [Item(item.id, "", "item_reference", {}, 0)], updated_at=now(), expires_at=None
            )
        linked = _rate(
            per_round,
            lambda n: backend.add_items("bench", linking.id, [_item(str(n))], updated_at=now(), expires_at=None),
        )

        print(
            f"redis at {args.url}{' (cluster)' if args.cluster else ''}, "
            f"{args.calls} calls per rate in {ROUNDS} interleaved rounds"
        )
        print(f"add 1 item per call, backend:        {ours:9.0f} items/s")
        print(f"add 1 item per call, whole store:    {via_store:9.0f} items/s")
        print(f"add 20 items per call, backend:      {batched:9.0f} items/s")
        print(f"bare redis-py pipeline, 1 item:      {bare_rate:9.0f} items/s")
        print(
            f"ratio ours / bare (time per item):   {bare_rate / ours:9.2f}   (target <= 1.5; "
            f"rounds {ratios[0]:.2f}..{ratios[-1]:.2f})"
        )
        print(f"ratio whole store / bare:            {bare_rate / via_store:9.2f}")
        print(f"recent(20) at 100 items:             {recent_small:9.3f} ms (median of 1000)")
        print(f"recent(20) at 100,000 items:         {recent_large:9.3f} ms (median of 1000)")
        print(f"add 1 item, conversation linking 20 shared items: {linked:9.0f} items/s")
        print(f"filling 100,000 items, 20 per call:  {fill_s:9.1f} s")
    finally:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
        backend.close()


if __name__ == "__main__":
    main()
