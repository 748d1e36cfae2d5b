"""Several processes, each with several threads, append to one conversation
in one folder at once: one total order, nothing lost, nothing duplicated,
every batch contiguous (the per-owner flock at work)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from flask import Flask

from flask_smg_history import SmgHistory, get_state

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
            store.items.add(conv_id, [{"role": "user", "content": f"{tag}{n}:{k}:{s}"} for s in "ab"])
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


def test_three_processes_of_four_threads_keep_one_order(tmp_path):
    processes, threads, batches = 3, 4, 10
    config = {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": str(tmp_path / "history")}
    app = Flask("checker", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    start_at = time.time() + 1.5  # every process starts writing together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps([config, conv.id, f"p{p}.", threads, batches, start_at])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
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
    texts = [i.payload["content"][0]["text"] for i in items]
    assert len(texts) == len(set(texts)) == processes * threads * batches * 2
    positions = [i.position for i in items]
    assert positions == list(range(len(items)))  # strictly increasing, no gap
    for a, b in zip(texts[::2], texts[1::2]):  # each batch contiguous, in order
        assert a.endswith(":a") and b == a[:-1] + "b"
    for p in range(processes):  # each thread's batches in the order it sent them
        for n in range(threads):
            mine = [t for t in texts if t.startswith(f"p{p}.{n}:") and t.endswith(":a")]
            assert mine == [f"p{p}.{n}:{k}:a" for k in range(batches)]
