"""Benchmark of the hybrid backend (the figures in docs/backends/hybrid.md).

One run, interleaved (each round measures every variant in turn, the figure is
the median over rounds), on one PostgreSQL database read by two apps: ``postgres``
(SQL only) and ``postgres+redis`` (SQL + the Redis cache). It prints:

1. read latency of ``items.recent(20)`` and ``conversations.get`` at a
   20-message and a 10,000-message conversation: SQL only, a cache hit, and a
   cache miss (the entry deleted before each read: lookup + two SQL reads +
   fill);
2. the cost the cache adds to an append (``items.add`` of one item: the
   write-through script after the commit, on a warm entry);
3. under load (threads for a few seconds), operations per second, and what
   PostgreSQL did for them, with and without the cache, for two mixes: a chat
   turn (add the user's message, ``recent(20)``, add the answer) and a
   read-heavy one (nine reads of a conversation, list page or ``recent``, per
   append).

What PostgreSQL did is counted by the server, in a database of the run's own
(``benchmarks/pgstat.py``: ``pg_stat_database`` deltas): transactions per
second (each hot statement is one autocommit transaction; a write of several
statements is one), and per operation the rows fetched, the rows and index
entries returned and the buffer pages touched. After every timed run the
script makes PostgreSQL publish every pooled connection's counters
(``Server.settled``), so a run's reading holds all of its work and nothing
else, on connections kept warm as in a running app. The counting is checked
first against a known number of calls (the run stops with a message if it is
off).

    .venv/bin/python benchmarks/hybrid.py [--postgres URL] [--redis URL] [--rounds 5] [--seconds 3]

``--postgres`` names the server (a superuser, as on the development machine:
the run creates and drops its database there).
"""

from __future__ import annotations

import argparse
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

import redis  # noqa: E402
from flask import Flask  # noqa: E402

from benchmarks.pgstat import MIN_FLUSH, RunDatabase, Work  # noqa: E402
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


class Server:
    """PostgreSQL's count of the apps' work (``benchmarks/pgstat.py``), read
    while their pools keep their connections (warm server processes, as in an
    app that has been running)."""

    def __init__(self, db: RunDatabase, backends: list) -> None:
        self.db = db
        self.engines = [(b.engine, b.tables.conversations.fullname) for b in backends]
        self._pokes = 0  # statements ``settled`` sent, taken off its readings

    def settled(self) -> Work:
        """The counters once every pooled connection has published its own:
        ``MIN_FLUSH`` after the work, one statement on each that reads a
        table (an index probe for no row: no row fetched, a page or two),
        after which PostgreSQL publishes the backend's counters before it
        answers. Their transactions are taken off; the rest of the reading is
        the apps' work."""
        time.sleep(MIN_FLUSH)
        for engine, conversations in self.engines:
            held = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
            for conn in held:
                cursor = conn.cursor()
                cursor.execute(f"SELECT 1 FROM {conversations} WHERE id = ''")
                cursor.fetchall()
                cursor.close()
            for conn in held:
                conn.close()
            self._pokes += len(held)
        return self.db.work() - Work(self._pokes, 0, 0, 0)

    def check(self, store, cid: str) -> None:
        """The counting is right: 1,000 reads of the SQL-only app, each one
        autocommit statement, are 1,000 transactions (up to 1% more: the
        catch-up transactions of idle connections, ``pgstat.py``) and fetch
        exactly 100 times the rows of 10."""
        before = self.settled()
        for _ in range(10):
            store.items.recent(cid, limit=20)
        ten = self.settled()
        for _ in range(1000):
            store.items.recent(cid, limit=20)
        thousand = self.settled() - ten
        rows = (ten - before).rows_fetched
        if not (1000 <= thousand.transactions <= 1010 and thousand.rows_fetched == 100 * rows):
            raise SystemExit(
                f"counting check failed: 1000 recent(20) calls on the SQL-only app were {thousand.transactions} "
                f"transactions and fetched {thousand.rows_fetched} rows in pg_stat_database, not 1000 (to 1010) "
                f"and {100 * rows} (100 times the {rows} of 10 calls): the server's figures below would be wrong "
                f"(is another client using database {self.db.name}, or did the SQL backend's read path change?)"
            )
        print(
            f"Counting check: 1000 recent(20) calls on postgres = {thousand.transactions} transactions "
            f"(+{thousand.transactions - 1000} catch-ups) and {thousand.rows_fetched} rows fetched "
            f"(100 x {rows}) in pg_stat_database: ok"
        )


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
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    prefix = f"smgbench:{uuid.uuid4().hex}:"
    db = RunDatabase(args.postgres)
    config = {
        "SMG_HISTORY_POSTGRES_DB_URL": db.url,
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
            f"(+{hybrid_add - sql_add:.0f} us, {hybrid_add / sql_add:.2f}x)\n"
        )

        convs = [_chat(stores["sql"], 20) for _ in range(16)]
        for name in ("sql", "hybrid"):  # every connection the load will use is open and warm
            _load(stores[name], convs, "chat", 0.5, args.threads)
        server = Server(db, [get_state(apps["sql"]).backend, backend.sql])
        server.check(stores["sql"], convs[0])
        rounds = f"{args.rounds} interleaved rounds (medians)"
        print(f"\nUnder load: {args.threads} threads, {args.seconds:g} s per run, {rounds}; PostgreSQL's own counts")
        print(
            f"{'mix':>10} {'backend':>8} {'ops/s':>8} {'PG xact/s':>10} {'xact/op':>8} {'rows fetched/op':>16} "
            f"{'rows+entries returned/op':>25} {'pages hit/op':>13} {'hit rate':>9}"
        )
        last = server.settled()
        for mix in ("chat", "read-heavy"):
            results: dict[str, list[tuple[float, ...]]] = {"sql": [], "hybrid": []}
            for _ in range(args.rounds):
                for name in ("sql", "hybrid"):
                    hits, misses = backend.hits, backend.misses
                    ops = _load(stores[name], convs, mix, args.seconds, args.threads)
                    now = server.settled()
                    work, last = now - last, now
                    served = backend.hits - hits, backend.misses - misses
                    rate = served[0] / max(1, sum(served)) if name == "hybrid" else 0.0
                    per_op = (work.transactions / ops, work.rows_fetched / ops, work.rows_returned / ops)
                    results[name].append(
                        (ops / args.seconds, work.transactions / args.seconds, *per_op, work.blocks_hit / ops, rate)
                    )
            for name in ("sql", "hybrid"):
                ops, xacts, per_op, fetched, returned, pages, rate = (
                    statistics.median(r[i] for r in results[name]) for i in range(7)
                )
                hit = f"{rate:9.0%}" if name == "hybrid" else f"{'-':>9}"
                print(
                    f"{mix:>10} {name:>8} {ops:8.0f} {xacts:10.0f} {per_op:8.2f} {fetched:16.2f} "
                    f"{returned:25.2f} {pages:13.2f} {hit}"
                )
            sql, hybrid = (
                [statistics.median(r[i] for r in results[name]) for i in range(6)] for name in ("sql", "hybrid")
            )
            print(
                f"{mix:>10} hybrid / sql: {hybrid[0] / sql[0]:.2f}x the operations/s, "
                f"{hybrid[1] / sql[1]:.2f}x the transactions/s, {hybrid[2] / sql[2]:.2f}x the transactions per "
                f"operation, {hybrid[3] / sql[3]:.2f}x the rows fetched and {hybrid[5] / sql[5]:.2f}x the pages "
                "touched per operation"
            )
    finally:
        for app in apps.values():
            get_state(app).backend.close()
        db.drop()
        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
