"""Redis as the store of record: what a crash of the server keeps, and what
``flask smg-history check`` says about it beforehand.

Every test runs its own throwaway ``redis-server`` with the persistence under
test (``redis_servers.py`` presets) and crashes it with SIGKILL, never a clean
shutdown (which would write a snapshot first), then starts it again on the
same port and directory."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flask_smg_history import get_state
from flask_smg_history.errors import HistoryUnavailable

from ..contract.test_owner_data import FULL_RESPONSE
from ..support.apps import build_app
from ..support.redis_servers import (
    AOF_ALWAYS,
    AOF_EVERYSEC,
    AOF_NO_FSYNC,
    NO_PERSISTENCE,
    RDB_ONLY,
    RedisServer,
    shared_cluster,
)

pytestmark = pytest.mark.redis

OWNER = "anonymous"  # the HTTP client's owner (anonymous access on)


def _server(tmp_path: Path, persistence: tuple[str, ...], *extra: str) -> RedisServer:
    return RedisServer(tmp_path / "redis", None, *extra, persistence=persistence).start()


@pytest.fixture
def servers():
    """Servers a test starts, stopped at the end whatever happens."""
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.stop()


def _app(url: str, **extra: Any):
    return build_app(
        {
            "SMG_HISTORY_BACKEND": "redis",
            "SMG_HISTORY_REDIS_URL": url,
            "SMG_HISTORY_REDIS_SOCKET_TIMEOUT": 0.5,
            "SMG_HISTORY_ALLOW_ANONYMOUS": True,
            **extra,
        }
    )


def _check(app, *args: str):
    return app.test_cli_runner().invoke(args=["smg-history", "check", *args])


def _export(app) -> list[dict[str, Any]]:
    """Every record the backend holds, as ``flask smg-history export`` writes them."""
    result = app.test_cli_runner().invoke(args=["smg-history", "export"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _write_history(app) -> dict[str, Any]:
    """Conversations, items in several batches, responses and feedback, each
    acknowledged (HTTP 200 or a store call that returned); what was written."""
    client, store = app.test_client(), get_state(app).store_for(OWNER)
    written: dict[str, Any] = {"items": {}, "responses": []}
    for c in range(3):
        resp = client.post(
            "/v1/conversations", json={"metadata": {"n": str(c)}, "items": [{"role": "user", "content": "0"}]}
        )
        assert resp.status_code == 200, resp.get_json()
        conv = resp.get_json()["id"]
        for batch in range(4):
            added = client.post(
                f"/v1/conversations/{conv}/items",
                json={"items": [{"role": "user", "content": f"{batch}.{k}"} for k in range(3)]},
            )
            assert added.status_code == 200, added.get_json()
        written["items"][conv] = _item_texts(client, conv)
        assert len(written["items"][conv]) == 13
        response = store.responses.store({**FULL_RESPONSE, "conversation": conv})
        rated = client.post(f"/v1/responses/{response.id}/feedback", json={"rating": "positive", "comment": str(c)})
        assert rated.status_code == 200, rated.get_json()
        written["responses"].append(response.id)
    return written


def _item_texts(client, conversation_id: str) -> list[str]:
    resp = client.get(f"/v1/conversations/{conversation_id}/items?order=asc&limit=100")
    assert resp.status_code == 200, resp.get_json()
    return [item["content"][0]["text"] for item in resp.get_json()["data"]]


def _crash_and_restart(server: RedisServer) -> None:
    server.stop()  # SIGKILL: no shutdown snapshot, no final AOF flush
    server.start()


def test_aof_always_keeps_every_acknowledged_write_across_a_crash(tmp_path, servers):
    server = _server(tmp_path, AOF_ALWAYS)
    servers.append(server)
    app = _app(server.url)
    check = _check(app)
    assert check.exit_code == 0 and "warning:" not in check.output, check.output
    assert f"persistence: 127.0.0.1:{server.port}: AOF with appendfsync always" in check.output

    written = _write_history(app)
    before = _export(app)
    _crash_and_restart(server)

    client = app.test_client()  # the same app: it reconnects by itself
    assert _export(app) == before  # every record, field for field, items with their positions
    for conv, texts in written["items"].items():
        assert client.get(f"/v1/conversations/{conv}").status_code == 200
        assert _item_texts(client, conv) == texts  # in the order they were added
    for response_id in written["responses"]:
        assert client.get(f"/v1/responses/{response_id}").status_code == 200
        assert client.get(f"/v1/responses/{response_id}/feedback").get_json()["rating"] == "positive"


def test_aof_always_keeps_every_acknowledged_append_of_a_writer_killed_mid_run(tmp_path, servers):
    """The issue's case: the server dies under a running writer. Every append
    that was acknowledged is there after the restart, in order; at most the
    one in flight at the kill is there unacknowledged."""
    server = _server(tmp_path, AOF_ALWAYS)
    servers.append(server)
    app = _app(server.url)
    store = get_state(app).store_for(OWNER)
    conv = store.conversations.create().id
    acked: list[str] = []
    refused = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            try:
                (item,) = store.items.add(conv, [{"role": "user", "content": str(n)}])
                acked.append(item.id)
            except HistoryUnavailable:
                refused += 1
                time.sleep(0.01)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.stop()  # SIGKILL while the writer runs
        while refused < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        stop.set()
        writer.join()
    assert len(acked) >= 300 and refused >= 3, (len(acked), refused)
    server.start()
    stored, after = [], None
    while True:
        page = store.items.list(conv, after=after, limit=100, order="asc")
        stored += [item.id for item in page.data]
        if not page.has_more:
            break
        after = page.last_id
    acked_set = set(acked)
    assert [i for i in stored if i in acked_set] == acked  # all of them, in order
    assert len(stored) - len(acked) <= 1, (len(stored), len(acked))


def test_without_persistence_check_warns_and_a_crash_loses_every_write(tmp_path, servers):
    """The contrast: the same writes against a server that keeps nothing on
    disk, after ``check`` named the settings to change."""
    server = _server(tmp_path, NO_PERSISTENCE)
    servers.append(server)
    app = _app(server.url)
    check = _check(app)
    assert check.exit_code == 0, check.output
    assert f'warning: 127.0.0.1:{server.port}: Redis keeps nothing on disk (appendonly no, save "")' in check.output
    assert "set appendonly yes with appendfsync always" in check.output
    assert check.output.rstrip().endswith("status: ok")  # the store works: warnings are not failures

    written = _write_history(app)
    assert len(_export(app)) == 3 + 39 + 3 + 3
    _crash_and_restart(server)

    client = app.test_client()
    assert _export(app) == []
    for conv in written["items"]:
        assert client.get(f"/v1/conversations/{conv}").status_code == 404
    for response_id in written["responses"]:
        assert client.get(f"/v1/responses/{response_id}").status_code == 404


# -- what check reports, per setting ------------------------------------------
CASES = {
    "none": (
        NO_PERSISTENCE,
        'no persistence (appendonly no, save ""): a restart loses every write',
        ['Redis keeps nothing on disk (appendonly no, save "")'],
    ),
    "rdb": (
        RDB_ONLY,
        'RDB snapshots only (save "3600 1 300 100", appendonly no)',
        ['only RDB snapshots (appendonly no, save "3600 1 300 100"): a crash of Redis loses every acknowledged'],
    ),
    "aof-no": (
        AOF_NO_FSYNC,
        "AOF with appendfsync no: the OS decides",
        ["appendfsync no leaves the AOF to the OS"],
    ),
    "aof-everysec": (AOF_EVERYSEC, "AOF with appendfsync everysec: a crash can lose about the last 1 s", []),
    "aof-always": (AOF_ALWAYS, "AOF with appendfsync always: no acknowledged write is lost", []),
}
WINDOWS = {"none": "everything", "rdb": "snapshot", "aof-no": "os", "aof-everysec": "1s", "aof-always": "none"}


@pytest.mark.parametrize("case", list(CASES))
def test_check_reports_each_persistence_setting(case, tmp_path, servers):
    persistence, summary, warnings = CASES[case]
    server = _server(tmp_path, persistence)
    servers.append(server)
    app = _app(server.url)
    node = f"127.0.0.1:{server.port}"

    result = _check(app)
    assert result.exit_code == 0, result.output
    assert f"persistence: {node}: {summary}" in result.output
    printed = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(printed) == len(warnings), printed
    for line, expected in zip(printed, warnings):
        assert line.startswith(f"warning: {node}: {expected}")
    strict = _check(app, "--strict")
    assert strict.exit_code == (1 if warnings else 0), strict.output
    if warnings:
        assert f"Error: {len(warnings)} warning(s), and --strict was given." in strict.output

    detail = app.test_client().get("/v1/history/health").get_json()
    assert detail["status"] == "ok"  # warnings never fail the probe
    (reported,) = detail["detail"]["persistence"]
    assert reported["source"] == "config" and reported["window"] == WINDOWS[case]
    assert reported["settings"]["appendonly"] == ("yes" if "aof" in case else "no")
    assert detail["detail"]["warnings"] == [line.removeprefix("warning: ") for line in printed]


def test_no_appendfsync_on_rewrite_is_warned(tmp_path, servers):
    server = _server(tmp_path, AOF_EVERYSEC, "--no-appendfsync-on-rewrite", "yes")
    servers.append(server)
    result = _check(_app(server.url))
    assert result.exit_code == 0, result.output
    assert "no-appendfsync-on-rewrite yes skips the fsync while a snapshot or AOF rewrite runs" in result.output


def test_config_disabled_falls_back_to_info(tmp_path, servers):
    """Managed Redis often renames or forbids CONFIG: INFO tells whether the
    AOF is on, and check says what it could not read."""
    server = _server(tmp_path, AOF_ALWAYS, "--rename-command", "CONFIG", "")
    servers.append(server)
    app = _app(server.url)
    result = _check(app)
    assert result.exit_code == 0, result.output
    node = f"127.0.0.1:{server.port}"
    assert (
        f"persistence: {node}: AOF on (aof_enabled:1); appendfsync unknown (CONFIG GET: unknown command"
        in result.output
    )
    assert f"warning: {node}: the AOF is on but appendfsync cannot be read" in result.output
    (reported,) = app.test_client().get("/v1/history/health").get_json()["detail"]["persistence"]
    assert (reported["source"], reported["window"], reported["settings"]) == ("info", "unknown", {})

    off = RedisServer(tmp_path / "off", None, "--rename-command", "CONFIG", "").start()
    servers.append(off)
    result = _check(_app(off.url))
    assert result.exit_code == 0, result.output
    assert (
        "the AOF is off (aof_enabled:0): a restart loses every acknowledged write since the last RDB" in result.output
    )


def test_config_and_info_disabled_is_unknown_with_a_warning(tmp_path, servers):
    server = _server(tmp_path, AOF_ALWAYS, "--rename-command", "CONFIG", "", "--rename-command", "INFO", "")
    servers.append(server)
    app = _app(server.url)
    result = _check(app)
    assert result.exit_code == 0, result.output  # never a crash of check
    node = f"127.0.0.1:{server.port}"
    assert f"persistence: {node}: unknown: neither CONFIG GET nor INFO persistence answered" in result.output
    assert (
        f"warning: {node}: the persistence settings cannot be read (CONFIG GET: unknown command 'CONFIG'; "
        "INFO persistence: unknown command 'INFO')"
    ) in result.output
    assert _check(app, "--strict").exit_code == 1


def test_a_cluster_reports_each_master():
    cluster = shared_cluster()  # three masters without persistence
    app = _app(cluster.url, SMG_HISTORY_REDIS_CLUSTER=True)
    try:
        result = _check(app)
        assert result.exit_code == 0, result.output
        nodes = {f"127.0.0.1:{node.port}" for node in cluster.nodes}
        reported = [line for line in result.output.splitlines() if line.startswith("persistence: ")]
        assert {line.split(": ")[1] for line in reported} == nodes
        warned = [line for line in result.output.splitlines() if line.startswith("warning: ")]
        assert {line.split(": ")[1] for line in warned} == nodes
        assert all("Redis keeps nothing on disk" in line for line in warned)
    finally:
        get_state(app).backend.close()
