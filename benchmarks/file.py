"""Benchmark of the file backend (the figures in docs/backends/file.md).

Prints, through the store (``history.items.add`` and ``.recent``), the
median latency of appending one item and of ``recent(20)`` on a 20-message
conversation and on a 10,000-message one, with the owner holding 1, 100 and
1,000 conversations, and the ratio of the long conversation to the short one;
and the latency of listing the owner's newest 20 conversations, which reads
every conversation's file. The two conversations are measured in
interleaved rounds, so a disk that slows down during the run slows both.

    .venv/bin/python benchmarks/file.py [--folder /tmp/somewhere]

It writes into a fresh temporary folder (or ``--folder``, which must be
empty or absent) and removes it at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402

from flask_smg_history import SmgHistory, get_state  # noqa: E402

ROUNDS = 7
CALLS = 10  # per round and figure
LONG = 10_000
SHORT = 20
OWNER_SIZES = (1, 100, 1000)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _fill(store, conversation_id: str, count: int) -> None:
    for start in range(0, count, 20):
        store.items.add(
            conversation_id, [{"role": "user", "content": f"message {n}"} for n in range(start, start + 20)]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="smg-file-bench-"))
    app = Flask("bench", instance_path=str(folder / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="file", SMG_HISTORY_FILE_PATH=str(folder / "history"))
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    try:
        started = time.perf_counter()
        long = store.conversations.create()
        _fill(store, long.id, LONG)
        short = store.conversations.create()
        _fill(store, short.id, SHORT)
        print(f"setup: {LONG} + {SHORT} items in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        print("conversations  figure          20 msgs ms  10k msgs ms  ratio")
        held = 2
        for size in OWNER_SIZES:
            while held < size:  # filler conversations of one message each
                store.conversations.create(items=[{"role": "user", "content": "filler"}])
                held += 1
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(ROUNDS):
                for name, conv in (("short", short), ("long", long)):
                    for _ in range(CALLS):
                        message = [{"role": "user", "content": "one more"}]
                        samples.setdefault(("append", name), []).append(
                            _time(lambda c=conv, m=message: store.items.add(c.id, m))
                        )
                        samples.setdefault(("recent(20)", name), []).append(
                            _time(lambda c=conv: store.items.recent(c.id, limit=20))
                        )
            for figure in ("append", "recent(20)"):
                a, b = _median_ms(samples[(figure, "short")]), _median_ms(samples[(figure, "long")])
                print(f"{max(size, held):>13}  {figure:<14}  {a:>10.2f}  {b:>11.2f}  {b / a:>5.2f}")
            listing = [_time(lambda: store.conversations.list(limit=20)) for _ in range(ROUNDS)]
            print(f"{max(size, held):>13}  {'list(20) convs':<14}  {_median_ms(listing):>10.2f}")
    finally:
        get_state(app).backend.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
