"""Processes of threads appending to one conversation at once, and the checks
of what they leave: one total order, gap-free, nothing lost or duplicated,
each thread's items in the order it sent them, every batch contiguous. Shared
by the backends whose writers are separate processes (PostgreSQL, file)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

WRITER = """
import json, sys, threading, time
from flask import Flask
from flask_smg_history import SmgHistory, get_state

config, conv_id, tag, threads, batches, start_at = json.loads(sys.argv[1])
app = Flask("writer")
app.config.update(config)
SmgHistory(app)
store = get_state(app).store_for("alice")
errors = []

def write(n):
    try:
        for k in range(batches):
            sides = "a" if k % 2 else "ab"  # one item (PostgreSQL's one-statement path) and batches
            store.items.add(conv_id, [{"role": "user", "content": f"{tag}{n}:{k}:{s}"} for s in sides])
    except Exception as exc:
        errors.append(repr(exc))

workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
time.sleep(max(0.0, start_at - time.time()))
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(errors))
"""


def run_writers(config: dict[str, Any], conversation_id: str, tags: str, threads: int, batches: int) -> None:
    """One writer process per tag, ``threads`` threads each, all starting
    together; each thread appends ``batches`` batches (two items, then one,
    in turn). Fails if any append failed."""
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps([config, conversation_id, tag, threads, batches, start_at])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in tags
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and json.loads(out) == []


def all_items(store: Any, conversation_id: str) -> list[Any]:
    items, after = [], None
    while True:
        page = store.items.list(conversation_id, after=after, limit=100, order="asc")
        items += page.data
        if not page.has_more:
            return items
        after = page.last_id


def check_one_order(items: list[Any], tags: str, threads: int, batches: int) -> None:
    """What ``run_writers`` must leave, read back in position order."""
    texts = [i.payload["content"][0]["text"] for i in items]
    per_writer = sum(1 if k % 2 else 2 for k in range(batches))
    assert len(texts) == len(tags) * threads * per_writer == len(set(texts))
    assert [i.position for i in items] == list(range(len(items)))  # strictly increasing, no gap
    for tag in tags:  # each thread's items in the order it sent them
        for n in range(threads):
            mine = [t for t in texts if t.startswith(f"{tag}{n}:")]
            assert mine == [f"{tag}{n}:{k}:{s}" for k in range(batches) for s in ("a" if k % 2 else "ab")]
    for index, text in enumerate(texts):  # two-item batches are never split
        if text.endswith(":a") and int(text.split(":")[1]) % 2 == 0:
            assert texts[index + 1] == text[:-1] + "b"
