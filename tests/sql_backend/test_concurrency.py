"""Two processes of eight threads each append to one conversation on
PostgreSQL at once: one gap-free order, nothing lost, nothing duplicated, every
batch contiguous. (The in-process threaded case runs on every backend in the
contract suite.)"""

from __future__ import annotations

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.backends_sql import POSTGRES_URL, postgres_schema
from ..support.writers import all_items, check_one_order, run_writers


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
        run_writers(config, conv.id, "PQ", threads, batches)
        items = all_items(store, conv.id)
        get_state(app).backend.close()
    check_one_order(items, "PQ", threads, batches)
