"""Benchmark of the hybrid backend (the figures in docs/backends/hybrid.md).

One run, interleaved (each round measures every variant in turn, the figure is
the median over rounds), on one PostgreSQL schema read by two apps: ``postgres``
(SQL only) and ``postgres+redis`` (SQL + the Redis cache). It prints:

1. read latency of ``items.recent(20)`` and ``conversations.get`` at a
   20-message and a 10,000-message conversation: SQL only, a cache hit, and a
   cache miss (the entry deleted before each read: lookup + two SQL reads +
   fill);
2. the cost the cache adds to an append (``items.add`` of one item: the
   write-through script after the commit, on a warm entry);
3. under load (threads for a few seconds), operations per second and the SQL
   statements per second the app sends to PostgreSQL, with and without the
   cache, for two mixes: a chat turn (add the user's message, ``recent(20)``,
   add the answer) and a read-heavy one (nine reads of a conversation, list
   page or ``recent``, per append).

Statements are counted in the benchmark process with SQLAlchemy's
``before_cursor_execute`` event (every statement the app sends, exactly;
``pg_stat_statements`` is not installed here, and ``pg_stat_database`` counts
every client of the shared server).

    .venv/bin/python benchmarks/hybrid.py [--postgres URL] [--redis URL] [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import psycopg2  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402

from flask_smg_history import SmgHistory, get_state  # noqa: E402


def _app(name: str, config: dict) -> Flask:
    app = Flask(name.replace("+", "_"))
    app.config.update(config, SMG_HISTORY_BACKEND=name)
    SmgHistory(app)
    return app


def _median_us(repeat: int, fn: Callable[[], object], before: Callable[[], object] | None = None) -> float:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def _chat(store, n: int) -> str:
    conv = store.conversations.create(metadata={"title": f"{n} messages"})
    for start in range(0, n, 20):
        store.items.add(
            conv.id, [{"role": "user", "content": f"message {k}"} for k in range(start, min(n, start + 20))]
        )
    return conv.id


class Counter:
    """Statements the app's engine sends (thread-safe enough: one lock)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._lock = threading.Lock()
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        with self._lock:
            self.count += 1


def _load(store, convs: list[str], mix: str, seconds: float, threads: int) -> int:
    """Run ``mix`` on ``threads`` threads for ``seconds``; return operations done."""
    done = [0] * threads
    stop_at = time.monotonic() + seconds

    def run(t: int) -> None:
        k = 0
        while time.monotonic() < stop_at:
            cid = convs[(t + k) % len(convs)]
            if mix == "chat":
                store.items.add(cid, [{"role": "user", "content": "question"}])
                store.items.recent(cid, limit=20)
                store.items.add(cid, [{"role": "assistant", "content": "answer"}])
                done[t] += 3
            else:
                if k % 10 == 0:
                    store.items.add(cid, [{"role": "user", "content": "note"}])
                elif k % 3 == 0:
                    store.items.list(cid, limit=20, order="desc")
                elif k % 3 == 1:
                    store.items.recent(cid, limit=20)
                else:
                    store.conversations.get(cid)
                done[t] += 1
            k += 1

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    schema, prefix = f"smgb_{secrets.token_hex(4)}", f"smgbench:{uuid.uuid4().hex}:"
    admin = psycopg2.connect(args.postgres)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    config = {
        "SMG_HISTORY_POSTGRES_DB_URL": args.postgres,
        "SMG_HISTORY_SQL_SCHEMA": schema,
        "SMG_HISTORY_CREATE_TABLES": True,
        "SMG_HISTORY_REDIS_URL": args.redis,
        "SMG_HISTORY_REDIS_KEY_PREFIX": prefix,
    }
    apps = {}
    try:
        apps = {"sql": _app("postgres", config), "hybrid": _app("postgres+redis", config)}
        stores = {name: get_state(app).store_for("bench") for name, app in apps.items()}
        backend = get_state(apps["hybrid"]).backend
        sizes = {"20": _chat(stores["sql"], 20), "10000": _chat(stores["sql"], 10_000)}
        appending = _chat(stores["sql"], 20)  # appends go here, so the read figures keep their sizes
        get_state(apps["sql"]).backend.refresh_statistics()

        def evict(cid: str) -> Callable[[], None]:
            return lambda: backend.cache.invalidate("bench", cid)

        reads = {
            "recent(20)": lambda store, cid: store.items.recent(cid, limit=20),
            "conversations.get": lambda store, cid: store.conversations.get(cid),
        }
        figures: dict[tuple[str, str, str], list[float]] = {}
        append: dict[str, list[float]] = {"sql": [], "hybrid": []}
        for _ in range(args.rounds):
            for size, cid in sizes.items():
                for op, read in reads.items():
                    stores["hybrid"].items.recent(cid, limit=20)  # warm
                    variants = {
                        "sql": (partial(read, stores["sql"], cid), None),
                        "hit": (partial(read, stores["hybrid"], cid), None),
                        "miss": (partial(read, stores["hybrid"], cid), evict(cid)),
                    }
                    for variant, (fn, before) in variants.items():
                        figures.setdefault((size, op, variant), []).append(_median_us(200, fn, before))
            for name in ("sql", "hybrid"):
                cid = appending
                append[name].append(
                    _median_us(200, lambda: stores[name].items.add(cid, [{"role": "user", "content": "x"}]))  # noqa: B023
                )

        print(f"Read latency, median of {args.rounds} interleaved rounds of 200 calls (microseconds):")
        print(
            f"{'conversation':>13} {'call':>18} {'SQL only':>9} {'hit':>8} {'miss':>8} {'SQL/hit':>8} {'miss/SQL':>9}"
        )
        for size in sizes:
            for op in reads:
                sql, hit, miss = (statistics.median(figures[(size, op, v)]) for v in ("sql", "hit", "miss"))
                print(f"{size:>13} {op:>18} {sql:9.0f} {hit:8.0f} {miss:8.0f} {sql / hit:7.2f}x {miss / sql:8.2f}x")
        sql_add, hybrid_add = statistics.median(append["sql"]), statistics.median(append["hybrid"])
        print(
            f"\nitems.add (one item): SQL only {sql_add:.0f} us, hybrid {hybrid_add:.0f} us "
            f"(+{hybrid_add - sql_add:.0f} us, {hybrid_add / sql_add:.2f}x)"
        )

        engines = {"sql": get_state(apps["sql"]).backend.engine, "hybrid": backend.sql.engine}
        counters = {name: Counter(engine) for name, engine in engines.items()}
        convs = [_chat(stores["sql"], 20) for _ in range(16)]
        rounds = f"{args.rounds} interleaved rounds (medians)"
        print(f"\nUnder load: {args.threads} threads, {args.seconds:g} s per run, {rounds}")
        print(f"{'mix':>10} {'backend':>8} {'ops/s':>8} {'SQL stmts/s':>12} {'stmts/op':>9} {'hit rate':>9}")
        for mix in ("chat", "read-heavy"):
            results: dict[str, list[tuple[float, float, float]]] = {"sql": [], "hybrid": []}
            for _ in range(args.rounds):
                for name in ("sql", "hybrid"):
                    before, hits, misses = counters[name].count, backend.hits, backend.misses
                    ops = _load(stores[name], convs, mix, args.seconds, args.threads)
                    statements = counters[name].count - before
                    served = backend.hits - hits, backend.misses - misses
                    rate = served[0] / max(1, sum(served)) if name == "hybrid" else 0.0
                    results[name].append((ops / args.seconds, statements / args.seconds, rate))
            for name in ("sql", "hybrid"):
                ops, stmts, rate = (statistics.median(r[i] for r in results[name]) for i in range(3))
                hit = f"{rate:8.0%}" if name == "hybrid" else f"{'-':>8}"
                print(f"{mix:>10} {name:>8} {ops:8.0f} {stmts:12.0f} {stmts / ops:9.2f} {hit}")
    finally:
        for app in apps.values():
            get_state(app).backend.close()
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
