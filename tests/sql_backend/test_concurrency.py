"""Two processes of eight threads each append to one conversation on
PostgreSQL at once: one gap-free order, nothing lost, nothing duplicated, every
batch contiguous. (The in-process threaded case runs on every backend in the
contract suite.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.backends_sql import POSTGRES_URL, postgres_schema

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


def test_two_processes_eight_threads_each_keep_one_gap_free_order():
    threads, batches = 8, 10
    with postgres_schema() as schema:
        config = {
            "SMG_HISTORY_BACKEND": "postgres",
            "SMG_HISTORY_POSTGRES_DB_URL": POSTGRES_URL,
            "SMG_HISTORY_SQL_SCHEMA": schema,
            "SMG_HISTORY_POSTGRES_POOL_MAX_SIZE": threads,
            "SMG_HISTORY_CREATE_TABLES": True,
        }
        app = Flask("checker")
        app.config.update(config)
        SmgHistory(app)
        store = get_state(app).store_for("alice")
        conv = store.conversations.create()
        start_at = time.time() + 2.0  # both processes start writing together
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, json.dumps([config, conv.id, tag, threads, batches, start_at])],
                stdout=subprocess.PIPE,
                text=True,
            )
            for tag in "PQ"
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0 and json.loads(out) == []

        items, after = [], None
        while True:
            page = store.items.list(conv.id, after=after, limit=100, order="asc")
            items += page.data
            if not page.has_more:
                break
            after = page.last_id
        get_state(app).backend.close()

    texts = [i.payload["content"][0]["text"] for i in items]
    per_writer = sum(1 if k % 2 else 2 for k in range(batches))
    assert len(texts) == 2 * threads * per_writer == len(set(texts))
    assert [i.position for i in items] == list(range(len(items)))  # gap-free
    for tag in "PQ":
        for n in range(threads):
            mine = [t for t in texts if t.startswith(f"{tag}{n}:")]
            assert mine == [f"{tag}{n}:{k}:{s}" for k in range(batches) for s in ("a" if k % 2 else "ab")]
    for index, text in enumerate(texts):  # batches are never split
        if text.endswith(":a") and int(text.split(":")[1]) % 2 == 0:
            assert texts[index + 1] == text[:-1] + "b"
