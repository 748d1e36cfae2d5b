"""Several processes starting at once with SMG_HISTORY_CREATE_TABLES (gunicorn
workers) on one PostgreSQL database: one creates the tables, none crashes."""

from __future__ import annotations

import multiprocessing
import secrets

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.backends_sql import POSTGRES_URL, postgres_schema


def _start(schema: str, barrier, results) -> None:
    app = Flask("race")
    app.config.update(
        SMG_HISTORY_BACKEND="postgres",
        SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL,
        SMG_HISTORY_SQL_SCHEMA=schema,
        SMG_HISTORY_CREATE_TABLES=True,
    )
    barrier.wait()
    try:
        SmgHistory(app)
        store = get_state(app).store_for(secrets.token_hex(4))
        store.conversations.create()
        results.put("ok")
    except Exception as exc:  # reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_start_up_creates_the_tables_once():
    ctx = multiprocessing.get_context("spawn")
    with postgres_schema() as schema:
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_start, args=(schema, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        outcomes = [results.get(timeout=5) for _ in procs]
    assert outcomes == ["ok"] * 4
