"""Three processes of four threads each append to one conversation in one
folder at once: one total order, nothing lost, nothing duplicated, every
batch contiguous (the per-owner flock at work). The writer processes are the
PostgreSQL test's (one-item and two-item batches in turn)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..sql_backend.test_concurrency import WRITER

TAGS = "PQR"


def test_three_processes_of_four_threads_keep_one_order(tmp_path):
    threads, batches = 4, 10
    config = {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": str(tmp_path / "history")}
    app = Flask("checker", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    start_at = time.time() + 1.5  # every process starts writing together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps([config, conv.id, tag, threads, batches, start_at])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in TAGS
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
    per_writer = sum(1 if k % 2 else 2 for k in range(batches))
    assert len(texts) == len(TAGS) * threads * per_writer == len(set(texts))
    assert [i.position for i in items] == list(range(len(items)))  # strictly increasing, no gap
    for tag in TAGS:  # each thread's items in the order it sent them
        for n in range(threads):
            mine = [t for t in texts if t.startswith(f"{tag}{n}:")]
            assert mine == [f"{tag}{n}:{k}:{s}" for k in range(batches) for s in ("a" if k % 2 else "ab")]
    for index, text in enumerate(texts):  # two-item batches are never split
        if text.endswith(":a") and int(text.split(":")[1]) % 2 == 0:
            assert texts[index + 1] == text[:-1] + "b"
