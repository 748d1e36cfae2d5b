"""What a one-message Redis append costs, part by part, and the floor under it.

Issue 12 asks for a Redis append below LangChain's (one ``LPUSH``) and at
most 1.5 bare ``RPUSH``es. This script measures where our append's time goes,
in one process with the variants interleaved, so the gap can be read off:

- Redis server time per call (``INFO commandstats``, the ``EVALSHA``'s own
  microseconds, which include the commands the script runs) of: a bare
  ``RPUSH``; a script that does nothing (the cost of ``EVALSHA`` itself); the
  smallest script that keeps what an append guarantees (the conversation is
  live, the ID is new, the next position, the item, the owner's item
  directory, ``updated_at`` and expiry, the activity index: 8 commands, no
  TTL refresh); and the backend's ``add`` script as it is;
- wall time per call, median, of ``store.items.add`` through the whole store,
  of LangChain's ``add_message``, of a bare ``RPUSH``, and of the store with
  Redis replaced by a canned reply (the store's own Python).

A ``MULTI`` of plain commands runs every command whatever the others answer,
so it cannot refuse an append to a deleted conversation without writing to
it (Redis 8's ``HSETEX FXX`` makes one hash write conditional, not the rest):
the liveness check needs a script or a ``WATCH`` round trip.

    .venv/bin/python -m benchmarks.redis_floor [--rounds 3000]

Needs Redis (``PEERS_REDIS_URL``, default 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from . import peers

#: The smallest append that keeps the guarantees (for one new item; the
#: backend's script also takes batches and references and refreshes TTLs).
MINIMAL = r"""
local T = string.sub(KEYS[1], 1, -7)
local cid, id = ARGV[1], ARGV[6]
local meta = T .. ':c:' .. cid .. ':meta'
local e = redis.call('HGET', meta, 'e')
if not e or (e ~= '' and tonumber(e) <= tonumber(ARGV[2])) then return {'nf'} end
if redis.call('EXISTS', T .. ':s:' .. id) == 1 or redis.call('HEXISTS', T .. ':items', id) == 1 then
  return {'exists', id}
end
local first = redis.call('HINCRBY', meta, 'n', 1) - 1
redis.call('ZADD', T .. ':c:' .. cid .. ':items', first, id)
redis.call('HSET', T .. ':c:' .. cid .. ':data', id, ARGV[7])
redis.call('HSET', T .. ':items', id, cid)
redis.call('HSET', meta, 'u', ARGV[3], 'e', ARGV[4])
redis.call('ZADD', T .. ':activity', ARGV[3], cid)
return {'ok', first, {}}
"""
NOTHING = "return {'ok', 0, {}}"


def server_us(client: Any, command: str, run: Any, rounds: int) -> float:
    """Microseconds of Redis time per call of ``command``."""
    client.config_resetstat()
    for _ in range(rounds):
        run()
    return client.info("commandstats")[f"cmdstat_{command}"]["usec"] / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    ours, langchain, raw = peers.Ours("redis"), peers.LangChain("redis"), peers.RawRedis()
    try:
        backend = ours.state.backend
        client = backend.client
        conv, history, key = ours.fill(20), langchain.fill(20), raw.fill(20)
        ours.append(conv, 0)  # loads the script
        shas = {name: client.script_load(body) for name, body in (("nothing", NOTHING), ("minimal", MINIMAL))}
        shas["add (as shipped)"] = backend._shas["add"]

        def with_script(sha: str) -> Any:
            def run() -> None:
                saved = backend._shas["add"]
                backend._shas["add"] = sha
                try:
                    ours.append(conv, 1)
                finally:
                    backend._shas["add"] = saved

            return run

        print(f"Redis server time per call, {args.rounds} calls each (INFO commandstats):")
        server = {"RPUSH": server_us(client, "rpush", lambda: raw.append(key, 1), args.rounds)}
        for name, sha in shas.items():
            server[f"EVALSHA {name}"] = server_us(client, "evalsha", with_script(sha), args.rounds)
        for name, value in server.items():
            print(f"  {name:<24} {value:6.1f} µs")

        canned = [b"ok", 0, []]
        real = type(backend)._evalsha

        def store_python() -> None:
            type(backend)._evalsha = lambda self, sha, keys, argv: canned
            try:
                ours.append(conv, 1)
            finally:
                type(backend)._evalsha = real

        runs = {
            "ours (store.items.add)": lambda: ours.append(conv, 1),
            "LangChain add_message": lambda: langchain.append(history, 1),
            "raw RPUSH": lambda: raw.append(key, 1),
            "ours, Redis canned": store_python,
        }
        samples: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                started = time.perf_counter()
                runs[name]()
                samples[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
        print(f"wall time per call, median of {args.rounds} interleaved rounds:")
        for name, value in medians.items():
            print(f"  {name:<24} {value:6.1f} µs")
        ours_us, lc_us, raw_us = (medians[n] for n in names[:3])
        print(f"ours / LangChain {ours_us / lc_us:.2f}; ours / raw {ours_us / raw_us:.2f}")
        # The floor: a bare RPUSH's round trip plus the Redis time the minimal
        # script needs beyond an RPUSH's, with no Python of ours at all.
        floor = raw_us + server["EVALSHA minimal"] - server["RPUSH"]
        print(
            f"floor (no store code, minimal script): {floor:.1f} µs = {floor / lc_us:.2f} x LangChain, "
            f"{floor / raw_us:.2f} x raw"
        )
    finally:
        for contender in (ours, langchain, raw):
            contender.close()


if __name__ == "__main__":
    main()
