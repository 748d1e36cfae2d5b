"""PostgreSQL going away, never coming, and running out of connections.

The shared PostgreSQL server is never stopped: the app talks to it through a
throwaway TCP proxy (``tests/support/proxy.py``) that the test stops and
restarts, or to a closed port.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import HistoryUnavailable, SmgHistory, get_state

from ..support.backends_sql import POSTGRES_URL, postgres_schema
from ..support.errors import envelope, raises
from ..support.proxy import Proxy

#: The 503 of a PostgreSQL outage: the driver's exception type, never its text.
UNAVAILABLE = re.compile(r"The history backend \(postgres\) is unavailable \(\w+\)(; try again later\.|: .+)")


#: Where the proxies forward to: the shared PostgreSQL server.
TARGET = (sa.make_url(POSTGRES_URL).host or "127.0.0.1", sa.make_url(POSTGRES_URL).port or 5432)


def _proxy(port: int = 0) -> Proxy:
    return Proxy(TARGET, port)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as name:
        yield name


def _app(url: str, schema: str, **extra) -> Flask:
    app = Flask("faults")
    app.config.update(
        SMG_HISTORY_BACKEND="postgres",
        SMG_HISTORY_POSTGRES_DB_URL=url,
        SMG_HISTORY_SQL_SCHEMA=schema,
        SMG_HISTORY_ALLOW_ANONYMOUS=True,
        SMG_HISTORY_CREATE_TABLES=True,
        **extra,
    )
    SmgHistory(app)

    @app.get("/other")
    def other():
        return "still serving"

    return app


def _url(port: int) -> str:
    return sa.make_url(POSTGRES_URL).set(port=port).update_query_dict({"connect_timeout": "2"}).render_as_string(False)


def test_down_at_start_up_then_back_without_restart(schema):
    port = _closed_port()
    started = time.perf_counter()
    app = _app(_url(port), schema)  # nothing listens: start-up must still succeed
    client = app.test_client()
    assert client.get("/other").text == "still serving"
    response = client.post("/v1/conversations", json={})
    envelope(response, 503, message=UNAVAILABLE, param=None)
    envelope(client.get("/v1/history/health"), 503, message=UNAVAILABLE, param=None)
    counted = get_state(app).metrics.snapshot()["operations"]
    assert counted == {  # outages, never "error"
        ("conversations.create", "postgres", "unavailable"): 1,
        ("health", "postgres", "unavailable"): 1,
    }
    assert time.perf_counter() - started < 2  # well within connect_timeout

    proxy = _proxy(port)  # the server "comes back" on that address
    try:
        created = client.post("/v1/conversations", json={"metadata": {"n": "1"}})
        assert created.status_code == 200, created.get_json()
        assert client.get(f"/v1/conversations/{created.get_json()['id']}").get_json() == created.get_json()
        assert client.get("/v1/history/health").get_json()["status"] == "ok"
    finally:
        proxy.stop()
        get_state(app).backend.close()


def test_server_lost_and_back_next_call_succeeds(schema):
    proxy = _proxy()
    app = _app(_url(proxy.port), schema)
    client = app.test_client()
    try:
        conv = client.post("/v1/conversations", json={}).get_json()
        assert client.get(f"/v1/conversations/{conv['id']}").status_code == 200
        proxy.stop()  # pooled connections die with it
        lost = client.get(f"/v1/conversations/{conv['id']}")
        envelope(lost, 503, message=UNAVAILABLE, param=None)
        outcomes = {
            key[2]: n
            for key, n in get_state(app).metrics.snapshot()["operations"].items()
            if key[0] == "conversations.get"
        }
        assert outcomes == {"ok": 1, "unavailable": 1}
        proxy = _proxy(proxy.port)
        assert client.get(f"/v1/conversations/{conv['id']}").status_code == 200
    finally:
        proxy.stop()
        get_state(app).backend.close()


def test_stale_pooled_connections_are_replaced_transparently(schema, caplog):
    proxy = _proxy()
    app = _app(_url(proxy.port), schema, SMG_HISTORY_POSTGRES_POOL_MAX_SIZE=2)
    store = get_state(app).store_for("alice")
    try:
        conv = store.conversations.create()
        proxy.stop()
        proxy = _proxy(proxy.port)  # back before the next call: no 503 at all
        with caplog.at_level(logging.INFO, logger="flask_smg_history"):
            assert store.conversations.get(conv.id).id == conv.id
        assert "a pooled connection was lost; retrying once" in caplog.text
    finally:
        proxy.stop()
        get_state(app).backend.close()


#: The two statements of every chat turn run as driver SQL (``_driver_rows``):
#: a lost connection must be retried and mapped there exactly as elsewhere.
HOT_PATHS = {
    "recent": lambda store, cid: store.items.recent(cid, 20),
    "append": lambda store, cid: store.items.add(cid, [{"role": "user", "content": "hi"}]),
}


@pytest.mark.parametrize("path", sorted(HOT_PATHS))
def test_hot_paths_replace_stale_pooled_connections_and_answer_503_when_down(schema, caplog, path):
    proxy = _proxy()
    app = _app(_url(proxy.port), schema, SMG_HISTORY_POSTGRES_POOL_MAX_SIZE=2)
    store = get_state(app).store_for("alice")
    call = HOT_PATHS[path]
    try:
        conv = store.conversations.create(items=[{"role": "user", "content": "first"}])
        for _ in range(6):  # past psycopg's prepare threshold: the prepared statement dies with the connection
            call(store, conv.id)
        proxy.stop()
        proxy = _proxy(proxy.port)
        with caplog.at_level(logging.INFO, logger="flask_smg_history"):
            call(store, conv.id)
        assert "a pooled connection was lost; retrying once" in caplog.text
        proxy.stop()
        with raises(HistoryUnavailable, message=UNAVAILABLE, param=None):
            call(store, conv.id)
        proxy = _proxy(proxy.port)
        call(store, conv.id)
        stored = store.items.list(conv.id, order="asc", limit=100).data
        assert stored[0].payload["content"] == store.items.get(conv.id, stored[0].id).payload["content"]
        assert len(stored) == (1 if path == "recent" else 9)  # every acknowledged append, none twice
    finally:
        proxy.stop()
        get_state(app).backend.close()


def test_pool_exhaustion_answers_503_after_the_pool_timeout(schema):
    app = _app(POSTGRES_URL, schema, SMG_HISTORY_POSTGRES_POOL_MAX_SIZE=1, SMG_HISTORY_SQL_POOL_TIMEOUT_SECS=0.5)
    backend = get_state(app).backend
    store = get_state(app).store_for("anonymous")
    try:
        held = backend.engine.connect()  # the only connection
        started = time.perf_counter()
        with raises(HistoryUnavailable, message=UNAVAILABLE, param=None):
            store.conversations.list()
        assert 0.4 < time.perf_counter() - started < 2
        response = app.test_client().post("/v1/conversations", json={})
        envelope(response, 503, message=UNAVAILABLE, param=None)
        held.close()
        assert app.test_client().post("/v1/conversations", json={}).status_code == 200
    finally:
        backend.close()
