"""Redis down, paused or unreachable from one process: reads and writes go
to SQL and succeed, and no read returns data older than an acknowledged
write, also after Redis comes back holding stale entries. SQL down is a 503."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytest
import redis
from flask import Flask

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.errors import ConfigError

from ..support.backends_redis import STANDALONE_URL
from ..support.proxy import Proxy
from ..support.redis_servers import RedisServer, free_port
from .conftest import backend_of, settle, store_of

RECHECK = 0.4


def _texts(items) -> list[str]:
    return [i.payload["content"][0]["text"] for i in items]


@pytest.fixture
def server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


def test_redis_down_then_back_empty(make_app, server):
    app = make_app(SMG_HISTORY_REDIS_URL=server.url, SMG_HISTORY_CACHE_RECHECK=RECHECK)
    store, backend = store_of(app), backend_of(app)
    conv = store.conversations.create(items=[{"role": "user", "content": "a"}])
    store.items.recent(conv.id, limit=5)
    settle(app)
    assert _texts(store.items.recent(conv.id, limit=5)) == ["a"] and backend.hits == 1
    assert backend.health()["cache"] == "ok"

    server.stop()
    store.items.add(conv.id, [{"role": "user", "content": "b"}])
    assert _texts(store.items.recent(conv.id, limit=5)) == ["a", "b"]
    assert store.conversations.get(conv.id).id == conv.id
    assert get_state(app).store_for("alice").conversations.list().data[0].id == conv.id
    assert backend.health()["cache"] == "unavailable (ConnectionError): reads and writes use SQL"
    assert backend.health() == {**backend.sql.health(), "cache": backend.health()["cache"]}  # SQL's report, kept
    assert backend.hits == 1

    server.start()  # empty, as after a restart without persistence
    time.sleep(RECHECK + 0.05)
    store.items.add(conv.id, [{"role": "user", "content": "c"}])
    for _ in range(2):
        assert _texts(store.items.recent(conv.id, limit=5)) == ["a", "b", "c"]
        settle(app)
    assert backend.hits == 2  # the cache serves again


def test_a_paused_redis_comes_back_with_a_stale_window_and_serves_nothing_stale(make_app, server):
    """SIGSTOP keeps the server's data: the writer's delete times out, so the
    window it meant to delete is still there when the server resumes."""
    config = {"SMG_HISTORY_REDIS_URL": server.url, "SMG_HISTORY_CACHE_RECHECK": RECHECK}
    reader_app = make_app(**config)
    writer, reader = store_of(make_app(**config)), store_of(reader_app)
    reader_backend = backend_of(reader_app)
    conv = writer.conversations.create(items=[{"role": "user", "content": "a"}])
    reader.items.recent(conv.id, limit=5)
    settle(reader_app)
    assert _texts(reader.items.recent(conv.id, limit=5)) == ["a"] and reader_backend.hits == 1

    server.process.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    writer.items.add(conv.id, [{"role": "user", "content": "b"}])
    writer.conversations.update(conv.id, metadata={"v": "2"})
    assert time.monotonic() - started < 2 * RECHECK + 1.0  # slower, not stuck
    assert _texts(reader.items.recent(conv.id, limit=5)) == ["a", "b"]  # a timeout, then SQL
    server.process.send_signal(signal.SIGCONT)
    assert reader_backend.cache.client.keys(f"{reader_backend.cache.entry_prefix}*:{conv.id}")  # the stale window

    for store in (reader, writer, store_of(make_app(**config))):  # and a process that saw nothing
        assert _texts(store.items.recent(conv.id, limit=5)) == ["a", "b"]
        assert store.conversations.get(conv.id).metadata == {"v": "2"}
    time.sleep(RECHECK + 0.05)
    hits = reader_backend.hits
    for _ in range(2):
        assert _texts(reader.items.recent(conv.id, limit=5)) == ["a", "b"]
        settle(reader_app)
    # Trusted again, after a sync: the second read at least is a hit (on a
    # slow machine the sync may come during the reads above, and both hit).
    assert reader_backend.hits >= hits + 1


def test_a_writer_that_cannot_reach_redis_is_not_read_stale_by_one_that_can(make_app):
    """Partial failure: the writer's Redis is unreachable, the reader's is
    fine and holds a warm, trusted window. Once the write returns, the reader
    reads it: the writer raised the SQL epoch and waited out the reader's lease."""
    reader_app = make_app(SMG_HISTORY_CACHE_RECHECK=RECHECK)
    reader, reader_backend = store_of(reader_app), backend_of(reader_app)
    writer = store_of(
        make_app(SMG_HISTORY_CACHE_RECHECK=RECHECK, SMG_HISTORY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    )
    conv = writer.conversations.create(items=[{"role": "user", "content": "a"}])
    reader.items.recent(conv.id, limit=5)
    settle(reader_app)
    assert _texts(reader.items.recent(conv.id, limit=5)) == ["a"] and reader_backend.hits == 1

    started = time.monotonic()
    writer.items.add(conv.id, [{"role": "user", "content": "b"}])
    first = time.monotonic() - started
    assert _texts(reader.items.recent(conv.id, limit=5)) == ["a", "b"]
    assert first >= RECHECK * 0.8  # the lease wait: the price of a lost delete while the cache was trusted

    started = time.monotonic()  # the reader has synced and trusts the cache again: the next lost delete waits too
    writer.items.add(conv.id, [{"role": "user", "content": "c"}])
    assert time.monotonic() - started >= RECHECK * 0.8
    started = time.monotonic()  # but not while it is still untrusted
    writer.items.add(conv.id, [{"role": "user", "content": "d"}])
    assert time.monotonic() - started < RECHECK * 0.8
    assert _texts(reader.items.recent(conv.id, limit=5)) == ["a", "b", "c", "d"]


@pytest.fixture
def proxy():
    """The machine's Redis behind a proxy that can cut a command mid-flight."""
    url = redis.connection.parse_url(STANDALONE_URL)
    proxy = Proxy((url["host"], url["port"]))
    yield proxy
    proxy.stop()


def _cached_entries(backend) -> set[str]:
    """The conversation IDs the cache holds an entry of (read past the proxy)."""
    client = redis.Redis.from_url(STANDALONE_URL)
    try:
        return {key.decode().rsplit(":", 1)[1] for key in client.scan_iter(f"{backend.cache.entry_prefix}*:conv_*")}
    finally:
        client.close()


def _two_cached_chats(app):
    store = store_of(app)
    chats = [store.conversations.create(items=[{"role": "user", "content": t}]) for t in "ab"]
    for conv in chats:
        store.items.recent(conv.id, limit=5)
    settle(app)
    assert _cached_entries(backend_of(app)) == {conv.id for conv in chats}
    return chats


def test_an_invalidation_cut_once_is_sent_again_and_drops_only_its_entry(make_app, proxy, caplog):
    """A pooled connection that dies under the delete (a restarted server, a
    dropped link) costs one retry on a fresh connection: the entry is gone,
    the other stays trusted, and the write waits for no lease."""
    app = make_app(SMG_HISTORY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", SMG_HISTORY_CACHE_RECHECK=2.0)
    store, backend = store_of(app), backend_of(app)
    changed, other = _two_cached_chats(app)
    proxy.cut_next()
    with caplog.at_level(logging.INFO, logger="flask_smg_history"):
        started = time.monotonic()
        store.conversations.update(changed.id, metadata={"v": "2"})
        elapsed = time.monotonic() - started
    assert proxy.cut == 1
    assert _cached_entries(backend) == {other.id}
    assert elapsed < 1.0  # a lost invalidation waits out leases: up to the 2 s recheck
    assert "hybrid cache" not in caplog.text
    hits = backend.hits
    assert store.conversations.get(changed.id).metadata == {"v": "2"}
    assert _texts(store.items.recent(other.id, limit=5)) == ["b"]
    assert backend.hits == hits + 1  # still trusted: the untouched chat is a hit


def test_an_invalidation_cut_twice_is_lost_recorded_and_waited_for(make_app, proxy, caplog):
    app = make_app(SMG_HISTORY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", SMG_HISTORY_CACHE_RECHECK=RECHECK)
    store, backend = store_of(app), backend_of(app)
    changed, other = _two_cached_chats(app)
    proxy.cut_next(2)
    with caplog.at_level(logging.INFO, logger="flask_smg_history"):
        started = time.monotonic()
        store.conversations.update(changed.id, metadata={"v": "2"})
        elapsed = time.monotonic() - started
    assert proxy.cut == 2
    assert "hybrid cache: Redis invalidate failed (ConnectionError); serving from SQL" in caplog.text
    assert "a write could not invalidate its entry; waiting" in caplog.text
    assert elapsed >= RECHECK * 0.8
    assert changed.id in _cached_entries(backend)  # the stale entry is still there, and never served
    hits = backend.hits
    for reader in (store, store_of(make_app(SMG_HISTORY_CACHE_RECHECK=RECHECK))):
        assert reader.conversations.get(changed.id).metadata == {"v": "2"}
        assert _texts(reader.items.recent(other.id, limit=5)) == ["b"]
    assert backend.hits == hits


def test_an_invalidation_refused_by_the_server_is_not_sent_again(make_app, proxy, caplog):
    """Only a lost connection is worth a second try: a server that refuses
    the delete (a replica promoted away: READONLY) refuses it again, so the
    invalidation is recorded as lost at once."""
    app = make_app(SMG_HISTORY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", SMG_HISTORY_CACHE_RECHECK=RECHECK)
    store = store_of(app)
    changed, _ = _two_cached_chats(app)
    proxy.answer_next(b"-READONLY You can't write against a read only replica.\r\n", 2)
    with caplog.at_level(logging.INFO, logger="flask_smg_history"):
        store.conversations.update(changed.id, metadata={"v": "2"})
    assert proxy.answered == 1
    assert "hybrid cache: Redis invalidate failed (ReadOnlyError); serving from SQL" in caplog.text
    assert "a write could not invalidate its entry; waiting" in caplog.text
    assert store.conversations.get(changed.id).metadata == {"v": "2"}


def test_cluster_is_a_config_error_naming_the_key(hybrid_config):
    app = Flask("cluster")
    app.config.update(hybrid_config, SMG_HISTORY_REDIS_CLUSTER=True)
    with pytest.raises(ConfigError) as info:
        SmgHistory(app)
    assert info.value.param == "SMG_HISTORY_REDIS_CLUSTER" and "standalone" in info.value.message


def test_sql_down_is_a_503(tmp_path):
    app = Flask("sql_down")
    app.config.update(
        SMG_HISTORY_BACKEND="postgres+redis",
        SMG_HISTORY_POSTGRES_DB_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        SMG_HISTORY_API_KEYS={"sk-a": "alice"},
        SMG_HISTORY_SQL_POOL_TIMEOUT_SECS=1,
    )
    SmgHistory(app)
    response = app.test_client().get("/v1/conversations/conv_1", headers={"Authorization": "Bearer sk-a"})
    assert response.status_code == 503
    assert response.get_json()["error"]["type"] == "server_error"
    assert "postgres+redis" in response.get_json()["error"]["message"]
    get_state(app).backend.close()
