"""Three processes of four threads each append to one conversation in one
folder at once: one total order, nothing lost, nothing duplicated, every
batch contiguous (the per-owner flock at work)."""

from __future__ import annotations

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.writers import all_items, check_one_order, run_writers


def test_three_processes_of_four_threads_keep_one_order(tmp_path):
    threads, batches = 4, 10
    config = {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": str(tmp_path / "history")}
    app = Flask("checker", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    run_writers(config, conv.id, "PQR", threads, batches)
    check_one_order(all_items(store, conv.id), "PQR", threads, batches)
