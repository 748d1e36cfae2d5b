"""The URL forms SMG accepts (``redis://`` with a password, ``unix://``) and
the ones it refuses at start-up, each against a throwaway server."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_smg_history import ConfigError, get_state
from flask_smg_history.backends.redis import backend as redis_backend

from ..support.apps import build_app
from ..support.errors import raises
from ..support.redis_servers import RedisServer

pytestmark = pytest.mark.redis


def _roundtrip(url: str) -> None:
    app = build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_URL": url})
    try:
        store = get_state(app).store_for("alice")
        conv = store.conversations.create(items=[{"role": "user", "content": "hi"}])
        assert [i.payload["content"][0]["text"] for i in store.items.recent(conv.id)] == ["hi"]
    finally:
        get_state(app).backend.close()


def test_unix_socket_and_password(tmp_path: Path):
    socket = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, None, "--unixsocket", str(socket), "--requirepass", "s3cret").start()
    try:
        _roundtrip(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        _roundtrip(f"unix://:s3cret@{socket}?db=1")
        app = build_app(
            {"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_URL": f"redis://:wrong@127.0.0.1:{server.port}"}
        )
        resp = app.test_client().get("/v1/history/health")
        assert resp.status_code == 503 and resp.get_json()["error"]["type"] == "server_error"
        assert "wrong" not in resp.get_data(as_text=True)  # never echo the URL's secrets
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "localhost:6379"])
def test_bad_url_is_a_config_error(url):
    message = (
        "SMG_HISTORY_REDIS_URL is not valid: Redis URL must specify one of the following schemes "
        "(redis://, rediss://, unix://)"
    )
    with raises(ConfigError, message=message, param="SMG_HISTORY_REDIS_URL"):
        build_app({"SMG_HISTORY_BACKEND": "redis", "SMG_HISTORY_REDIS_URL": url})


def test_scripts_go_through_the_client_while_redis_py_metrics_are_on(monkeypatch):
    """With redis-py's OpenTelemetry metrics on, every script call goes
    through the client's ``execute_command`` (which records them); otherwise
    the standalone backend sends it on a pooled connection itself."""
    app = build_app({"SMG_HISTORY_BACKEND": "redis"})
    store, client = get_state(app).store_for("alice"), get_state(app).backend.client

    class Enabled:
        def is_enabled(self) -> bool:
            return True

    try:
        conv = store.conversations.create(items=[{"role": "user", "content": "hi"}])
        store.items.recent(conv.id)  # the script is loaded
        sent = []
        original = client.execute_command
        monkeypatch.setattr(client, "execute_command", lambda *a, **kw: sent.append(a[0]) or original(*a, **kw))
        assert [i.id for i in store.items.recent(conv.id)] and sent == []

        monkeypatch.setattr(redis_backend, "get_observability_instance", Enabled)
        assert [i.payload["content"][0]["text"] for i in store.items.recent(conv.id)] == ["hi"]
        assert sent == ["EVALSHA"]
    finally:
        monkeypatch.undo()
        store.erase_owner()
        get_state(app).backend.close()
