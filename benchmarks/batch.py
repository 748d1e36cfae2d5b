"""What a second item costs an append: ``items.add`` of 2 items against 1.

A chat turn stores two messages (the user's and the reply) in one call, so a
batch must take the same fast path as a single item: on PostgreSQL one
driver statement whatever the batch's size, on Redis one script whose calls
do not grow with it, on SQLite one transaction. The target is at most 1.2x
the time of one item, on each backend, in a 20-message chat and in a
10,000-message one.

The two sizes take turns in a shuffled order (seeded) within every round,
each timed alone, through the whole store (validation, IDs, signals,
metrics); a conversation takes at most a tenth of its length in new items
before the next prefilled one is used. Medians of ``--rounds`` rounds.

    .venv/bin/python -m benchmarks.batch [--rounds 500] [--sizes 20,10000] [--backends sqlite,postgres,redis]

Needs PostgreSQL (``PEERS_PG_URL``) and Redis (``PEERS_REDIS_URL``), as
``benchmarks/peers.py`` does; SQLite is a file in the temporary folder
(``peers.configure``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from .peers import TEXT, Ours

#: The target on (2 items) / (1 item).
CEILING = 1.2


def measure(ours: Ours, size: int, rounds: int) -> dict[int, float]:
    """Median seconds of an append of 1 and of 2 items at ``size``."""
    budget, store = max(2, size // 10), ours.store
    conversations = [ours.fill(size) for _ in range(-(-3 * rounds // budget))]
    order = random.Random(size)
    samples: dict[int, list[float]] = {1: [], 2: []}
    added = 0
    for r in range(rounds):
        for count in order.sample([1, 2], 2):
            conv = conversations[added // budget]
            batch = [{"role": "user", "content": TEXT.format(n=r)} for _ in range(count)]
            started = time.perf_counter()
            store.items.add(conv, batch)
            samples[count].append(time.perf_counter() - started)
            added += count
    return {count: statistics.median(values) for count, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--sizes", default="20,10000")
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    args = parser.parse_args()
    print(f"# median of {args.rounds} interleaved rounds; ms per items.add; target: 2 items <= {CEILING}x 1 item")
    print(f"{'backend':<9} {'messages':>8} {'1 item':>8} {'2 items':>8} {'ratio':>6}  verdict")
    misses = 0
    for backend in args.backends.split(","):
        ours = Ours(backend)
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                medians = measure(ours, size, args.rounds)
                ratio = medians[2] / medians[1]
                misses += ratio > CEILING
                verdict = "met" if ratio <= CEILING else "MISSED"
                one, two = (medians[n] * 1e3 for n in (1, 2))
                print(f"{backend:<9} {size:>8,} {one:8.3f} {two:8.3f} {ratio:6.2f}  {verdict}")
        finally:
            ours.close()
    print(f"{misses} target(s) missed")


if __name__ == "__main__":
    main()
