"""Faults, through the HTTP API: Redis down at start-up, gone mid-run, hung,
or the pool exhausted each give a 503 in the error envelope within the
configured timeout, and the app recovers by itself when Redis is back.

Each test runs its own throwaway ``redis-server`` (never the shared one)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from flask_smg_history import get_state

from ..support.apps import build_app
from ..support.errors import envelope
from ..support.redis_servers import Cluster, RedisServer, free_port

pytestmark = pytest.mark.redis

TIMEOUT = 0.5
#: The 503 of a Redis outage: the driver's exception type, never its text.
UNAVAILABLE = re.compile(r"The history backend \(redis\) is unavailable \(\w+\)(; try again later\.|: .+)")


@pytest.fixture
def server(tmp_path: Path):
    node = RedisServer(tmp_path / "redis")
    yield node
    node.stop()


def _app(server: RedisServer, **extra):
    return build_app(
        {
            "SMG_HISTORY_BACKEND": "redis",
            "SMG_HISTORY_REDIS_URL": server.url,
            "SMG_HISTORY_REDIS_SOCKET_TIMEOUT": TIMEOUT,
            "SMG_HISTORY_ALLOW_ANONYMOUS": True,
            **extra,
        }
    )


def _unavailable(resp, started: float, within: float) -> None:
    elapsed = time.monotonic() - started
    envelope(resp, 503, message=UNAVAILABLE, param=None)
    assert elapsed < within, elapsed


def _create(client, headers=None) -> str:
    resp = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "hi"}]}, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["id"]


def test_down_at_start_up_then_recovers(server):
    app = _app(server)  # nothing listens yet: start-up does not need Redis
    client = app.test_client()
    started = time.monotonic()
    _unavailable(client.post("/v1/conversations", json={}), started, TIMEOUT + 0.5)
    assert client.get("/v1/history/health").status_code == 503
    server.start()
    conv = _create(client)
    assert client.get(f"/v1/conversations/{conv}/items").status_code == 200


def test_killed_mid_run_then_restarted(server):
    server.start()
    client = _app(server).test_client()
    conv = _create(client)
    server.stop()
    for _ in range(2):  # the app keeps answering, with 503s
        started = time.monotonic()
        _unavailable(client.get(f"/v1/conversations/{conv}"), started, TIMEOUT + 0.5)
    outcomes = get_state(client.application).metrics.snapshot()["operations"]
    assert {key: n for key, n in outcomes.items() if key[0] == "conversations.get"} == {
        ("conversations.get", "redis", "unavailable"): 2  # outages, never "error"
    }
    server.start()  # empty again (no persistence): the scripts must be loaded anew
    assert client.get(f"/v1/conversations/{conv}").status_code == 404
    _create(client)


def test_hung_server_times_out_within_the_socket_timeout(server):
    server.start()
    client = _app(server).test_client()
    conv = _create(client)
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        _unavailable(client.get(f"/v1/conversations/{conv}/items"), started, TIMEOUT + 0.5)
        assert time.monotonic() - started >= TIMEOUT * 0.9  # it did wait for the socket timeout
        started = time.monotonic()
        _unavailable(
            client.post(f"/v1/conversations/{conv}/items", json={"items": [{"role": "user", "content": "x"}]}),
            started,
            TIMEOUT + 0.5,
        )
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert client.get(f"/v1/conversations/{conv}/items").status_code == 200


def test_full_pool_waits_then_503(server):
    server.start()
    app = _app(server, SMG_HISTORY_REDIS_POOL_MAX_SIZE=1, SMG_HISTORY_REDIS_POOL_TIMEOUT=0.3)
    client = app.test_client()
    conv = _create(client)
    pool = get_state(app).backend.client.connection_pool
    held = pool.get_connection()
    assert get_state(app).backend.pool_stats() == {"in_use": 1, "idle": 0}
    try:
        started = time.monotonic()
        _unavailable(client.get(f"/v1/conversations/{conv}"), started, 0.3 + 0.5)
        assert time.monotonic() - started >= 0.3  # it waited for a connection first
    finally:
        pool.release(held)
    assert client.get(f"/v1/conversations/{conv}").status_code == 200
    assert get_state(app).backend.pool_stats() == {"in_use": 0, "idle": 1}


def test_cluster_down_at_start_up_then_a_master_lost_and_back(tmp_path: Path):
    ports = [free_port(with_bus=True) for _ in range(3)]
    cluster = Cluster(tmp_path / "cluster", ports)
    node = RedisServer(tmp_path, ports[0])  # only for its URL: nothing runs yet
    # A cluster spreads owners (each owner's keys share a slot): 30 owners.
    users = [{"Authorization": f"Bearer sk-{n}"} for n in range(30)]
    keys = {f"sk-{n}": f"user-{n}" for n in range(30)}
    client = _app(node, SMG_HISTORY_REDIS_CLUSTER=True, SMG_HISTORY_API_KEYS=keys).test_client()
    started = time.monotonic()
    _unavailable(client.post("/v1/conversations", json={}), started, TIMEOUT + 0.5)
    cluster.start()
    try:
        convs = [_create(client, user) for user in users]  # on every master, but for a chance of 1e-5
        lost = cluster.nodes[1]
        lost.stop()
        statuses = []
        for conv, user in zip(convs, users):
            started = time.monotonic()
            resp = client.get(f"/v1/conversations/{conv}", headers=user)
            if resp.status_code != 200:
                _unavailable(resp, started, TIMEOUT + 0.5)
            statuses.append(resp.status_code)
        assert 503 in statuses and 200 in statuses  # the other masters keep serving
        lost.start()  # same port and node ID, no data: the cluster heals
        cluster.wait_until_ok()
        for _ in range(10):
            _create(client)
        survivors = [(c, u) for c, u, status in zip(convs, users, statuses) if status == 200]
        assert all(client.get(f"/v1/conversations/{c}", headers=u).status_code == 200 for c, u in survivors)
    finally:
        cluster.stop()


def test_a_reply_cut_off_by_the_timeout_is_never_read_by_the_next_call(server):
    """Scripts are sent on a pooled connection without the client's layers
    (``_evalsha``): one that times out must not leave its late reply on a
    connection the pool hands out again. One connection, so the next calls
    would get it."""
    server.start()
    app = _app(server, SMG_HISTORY_REDIS_POOL_MAX_SIZE=1)
    client = app.test_client()
    conv = _create(client)
    post = {"items": [{"role": "user", "content": "early"}]}
    assert client.post(f"/v1/conversations/{conv}/items", json=post).status_code == 200  # the script is loaded
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        post = {"items": [{"role": "user", "content": "late"}]}
        _unavailable(client.post(f"/v1/conversations/{conv}/items", json=post), started, TIMEOUT + 0.5)
    finally:
        server.process.send_signal(signal.SIGCONT)
    time.sleep(0.2)  # the server answers the timed-out append (it may have run)
    texts = [
        i["content"][0]["text"] for i in client.get(f"/v1/conversations/{conv}/items?order=asc").get_json()["data"]
    ]
    assert texts in (["hi", "early"], ["hi", "early", "late"])
    added = client.post(f"/v1/conversations/{conv}/items", json={"items": [{"role": "user", "content": "next"}]})
    assert added.status_code == 200 and added.get_json()["data"][0]["content"][0]["text"] == "next"
    assert client.get(f"/v1/conversations/{conv}").get_json()["id"] == conv
