"""What Redis persistence costs the append path, and what the health probe
costs now that it reads the persistence settings (docs/backends/redis.md,
"Durability: what a restart can lose").

    .venv/bin/python -m benchmarks.redis_durability [--rounds 5] [--appends 200]

It starts four throwaway ``redis-server`` processes (no persistence, RDB
snapshots only, AOF with ``appendfsync everysec``, AOF with ``always``; files
in a temporary directory on this machine's disk), fills each with a
20-message and a 10,000-message conversation, then, in interleaved rounds
(the order of the servers turns each round, so a busy moment of the machine
falls on all of them), times ``--appends`` one-item ``items.add`` calls through
the store to each conversation. It prints the median milliseconds per append
of each setting and its ratio to no persistence, then the median of
``health()`` (one pipeline: PING, CONFIG GET x4, INFO persistence) beside a
bare ``PING``. The figures depend on the disk's fsync time above all.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flask import Flask

from flask_smg_history import SmgHistory, get_state
from tests.support.redis_servers import AOF_ALWAYS, AOF_EVERYSEC, NO_PERSISTENCE, RDB_ONLY, RedisServer

SETTINGS = {
    "no persistence": NO_PERSISTENCE,
    "RDB only (save 3600 1 300 100)": RDB_ONLY,
    "AOF, appendfsync everysec": AOF_EVERYSEC,
    "AOF, appendfsync always": AOF_ALWAYS,
}
SIZES = {"20-message chat": 20, "10,000-message chat": 10_000}


def _store(url: str):
    app = Flask(f"durability_{url.rsplit(':', 1)[-1].split('/')[0]}")
    app.config.update(SMG_HISTORY_BACKEND="redis", SMG_HISTORY_REDIS_URL=url)
    SmgHistory(app)
    return app, get_state(app).store_for("bench")


def _fill(store, messages: int) -> str:
    conv = store.conversations.create().id
    for start in range(0, messages, 20):
        store.items.add(conv, [{"role": "user", "content": f"m{n}"} for n in range(start, start + 20)])
    return conv


def _per_call_ms(count: int, fn) -> float:
    started = time.perf_counter()
    for n in range(count):
        fn(n)
    return (time.perf_counter() - started) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--appends", type=int, default=200, help="Appends per conversation per round.")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="smg-durability-bench-"))
    servers = {name: RedisServer(directory / str(i), persistence=p) for i, (name, p) in enumerate(SETTINGS.items())}
    try:
        stores, convs = {}, {}
        for name, server in servers.items():
            app, store = _store(server.start().url)
            stores[name] = (app, store)
            convs[name] = {size: _fill(store, n) for size, n in SIZES.items()}
        samples: dict[tuple[str, str], list[float]] = {(n, s): [] for n in SETTINGS for s in SIZES}
        names = list(SETTINGS)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                store = stores[name][1]
                for size, conv in convs[name].items():

                    def add(n: int, store=store, conv=conv) -> None:
                        store.items.add(conv, [{"role": "assistant", "content": f"r{n}"}])

                    samples[(name, size)].append(_per_call_ms(args.appends, add))

        print(f"append one item through the store, median of {args.rounds} rounds x {args.appends} calls")
        for size in SIZES:
            base = statistics.median(samples[(names[0], size)])
            print(f"  {size}")
            for name in names:
                ms = statistics.median(samples[(name, size)])
                print(f"    {name:32} {ms:7.3f} ms  {ms / base:5.2f}x")

        app, _ = stores[names[-1]]
        backend = get_state(app).backend
        health, ping = [], []
        for _ in range(args.rounds):
            health.append(_per_call_ms(args.appends, lambda n: backend.health()))
            ping.append(_per_call_ms(args.appends, lambda n: backend.client.ping()))
        h, p = statistics.median(health), statistics.median(ping)
        print(f"health(): {h:.3f} ms; bare PING: {p:.3f} ms; ratio {h / p:.2f}x")
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
