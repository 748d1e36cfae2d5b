"""The extension object, configuration, identity and the ``none`` backend."""

from __future__ import annotations

import pytest
from flask import Flask, g

from flask_smg_history import Backend, ConfigError, SmgHistory, get_state, history
from flask_smg_history.backends.memory import MemoryBackend


def _app(**config) -> Flask:
    app = Flask("ext_test")
    app.config.update(TESTING=True, **config)
    return app


def test_factory_pattern_and_several_apps():
    ext = SmgHistory()
    one, two = _app(), _app(SMG_HISTORY_URL_PREFIX="/api/history")
    ext.init_app(one)
    ext.init_app(two)
    assert get_state(one).backend is not get_state(two).backend
    conv = ext.store_for("anonymous", one).conversations.create()
    assert one.test_client().get(f"/v1/conversations/{conv.id}").status_code == 200
    assert two.test_client().get(f"/api/history/conversations/{conv.id}").status_code == 404
    assert one.config["SMG_HISTORY_BACKEND"] == "memory"  # effective settings are visible


def test_double_init_is_an_error():
    app = _app()
    SmgHistory(app)
    with pytest.raises(RuntimeError, match="already registered"):
        SmgHistory(app)


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"SMG_HISTORY_BACKEND": "mongo"}, ["SMG_HISTORY_BACKEND", "memory", "postgres", "redis"]),
        ({"SMG_HISTORY_MAX_REQUEST_BYTES": "big"}, ["SMG_HISTORY_MAX_REQUEST_BYTES", "integer"]),
        ({"SMG_HISTORY_MAX_REQUEST_BYTES": 0}, ["SMG_HISTORY_MAX_REQUEST_BYTES", "at least 1"]),
        ({"SMG_HISTORY_ALLOW_ANONYMOUS": "yes"}, ["SMG_HISTORY_ALLOW_ANONYMOUS", "true or false"]),
        ({"SMG_HISTORY_API_KEYS": ["k"]}, ["SMG_HISTORY_API_KEYS", "key1=owner1"]),
        ({"SMG_HISTORY_URL_PREFIX": None}, ["SMG_HISTORY_URL_PREFIX", "must be set"]),
        ({"SMG_HISTORY_BACKNED": "memory"}, ["SMG_HISTORY_BACKNED", "not a setting"]),
        ({"SMG_HISTORY_BACKEND": "json.JSONDecoder"}, ["SMG_HISTORY_BACKEND", "not a Backend"]),
    ],
)
def test_config_errors_name_the_key(config, names):
    with pytest.raises(ConfigError) as info:
        SmgHistory(_app(**config))
    for name in names:
        assert name in str(info.value)


def test_secrets_are_not_echoed_in_config_errors():
    with pytest.raises(ConfigError) as info:
        SmgHistory(_app(SMG_HISTORY_API_KEYS="sk-very-secret"))
    assert "sk-very-secret" not in str(info.value)


def test_environment_fallback(monkeypatch):
    monkeypatch.setenv("SMG_HISTORY_API_KEYS", "k1=alice, k2=bob")
    monkeypatch.setenv("SMG_HISTORY_MAX_ITEM_BYTES", "2048")
    app = _app()
    SmgHistory(app)
    settings = get_state(app).settings
    assert settings.api_keys == {"k1": "alice", "k2": "bob"}
    assert settings.max_item_bytes == 2048
    assert settings.masked()["SMG_HISTORY_API_KEYS"] == "***"


def test_backend_by_dotted_path():
    app = _app(SMG_HISTORY_BACKEND="flask_smg_history.backends.memory.MemoryBackend")
    SmgHistory(app)
    assert isinstance(get_state(app).backend, MemoryBackend)
    assert issubclass(MemoryBackend, Backend)


def test_identity_loader_comes_first():
    ext = SmgHistory()
    app = _app(SMG_HISTORY_API_KEYS={"k": "keyowner"}, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    ext.init_app(app)

    @ext.identity_loader
    def load():
        return g.get("user")

    with app.test_request_context(headers={"Authorization": "Bearer k"}):
        assert history.owner == "keyowner"
    with app.test_request_context():
        g.user = "session-user"
        assert history.owner == "session-user"


def test_history_outside_a_request_is_an_error():
    app = _app()
    SmgHistory(app)
    with pytest.raises(RuntimeError):
        history.owner  # noqa: B018


def test_none_backend_keeps_nothing():
    app = _app(SMG_HISTORY_BACKEND="none")
    SmgHistory(app)
    client = app.test_client()
    assert client.get("/v1/history/health").get_json()["status"] == "disabled"
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "hi"}]})
    assert conv.status_code == 200 and conv.get_json()["id"].startswith("conv_")
    cid = conv.get_json()["id"]
    added = client.post(f"/v1/conversations/{cid}/items", json={"items": [{"role": "user", "content": "x"}]})
    assert added.status_code == 200 and added.get_json()["data"][0]["id"].startswith("msg_")
    assert client.get(f"/v1/conversations/{cid}").status_code == 404
    assert client.get(f"/v1/conversations/{cid}/items").status_code == 404
    assert client.get("/v1/conversations").get_json()["data"] == []
    assert client.get("/v1/conversations?order_by=updated_at").get_json()["data"] == []
    for metadata in ({"k": None}, {"k": "v"}):
        assert client.post(f"/v1/conversations/{cid}", json={"metadata": metadata}).status_code == 404
    store = get_state(app).store_for("anonymous")
    resp = store.responses.store({"model": "m", "input": "hi", "conversation": cid})
    assert resp.id.startswith("resp_")
    assert store.feedback.submit(resp.id, "positive").rating == "positive"
    assert client.get(f"/v1/responses/{resp.id}").status_code == 404


def test_unexpected_backend_failure_is_a_500_envelope_and_the_app_keeps_serving():
    app = _app()
    SmgHistory(app)
    backend = get_state(app).backend
    backend.get_conversation = lambda owner, cid: 1 / 0
    client = app.test_client()
    resp = client.get("/v1/conversations/conv_x")
    assert resp.status_code == 500 and resp.get_json()["error"]["type"] == "server_error"
    assert client.get("/v1/conversations").status_code == 200


def test_unavailable_backend_is_a_503_envelope():
    class Down(ConnectionError):
        pass

    app = _app()
    SmgHistory(app)
    backend = get_state(app).backend
    type(backend).unavailable_errors = (Down,)
    try:

        def fail(*args, **kwargs):
            raise Down("password=hunter2 host unreachable")

        backend.list_conversations = fail
        resp = app.test_client().get("/v1/conversations")
        assert resp.status_code == 503
        error = resp.get_json()["error"]
        assert error["type"] == "server_error" and "memory" in error["message"]
        assert "hunter2" not in error["message"]
    finally:
        type(backend).unavailable_errors = ()
