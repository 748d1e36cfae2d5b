"""The extension object, configuration, identity and the ``none`` backend."""

from __future__ import annotations

import pytest
from flask import Flask, g

from flask_smg_history import Backend, ConfigError, SmgHistory, get_state, history
from flask_smg_history.backends.memory import MemoryBackend
from flask_smg_history.config import load_settings

from .support.errors import envelope, raises


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
    ("config", "param", "message"),
    [
        (
            {"SMG_HISTORY_BACKEND": "mongo"},
            "SMG_HISTORY_BACKEND",
            "SMG_HISTORY_BACKEND: unknown backend 'mongo'; accepted values are file, memory, none, oracle, postgres, "
            "postgres+redis, redis, sqlite, sqlite+redis, an entry point in 'flask_smg_history.backends', "
            "or a dotted import path.",
        ),
        (
            {"SMG_HISTORY_MAX_REQUEST_BYTES": "big"},
            "SMG_HISTORY_MAX_REQUEST_BYTES",
            "SMG_HISTORY_MAX_REQUEST_BYTES='big' is not valid: expected an integer. "
            "Largest request body the API accepts (413 above).",
        ),
        (
            {"SMG_HISTORY_MAX_REQUEST_BYTES": 0},
            "SMG_HISTORY_MAX_REQUEST_BYTES",
            "SMG_HISTORY_MAX_REQUEST_BYTES=0 is not valid: must be at least 1. "
            "Largest request body the API accepts (413 above).",
        ),
        (
            {"SMG_HISTORY_ALLOW_ANONYMOUS": "yes"},
            "SMG_HISTORY_ALLOW_ANONYMOUS",
            "SMG_HISTORY_ALLOW_ANONYMOUS='yes' is not valid: expected true or false. Serve callers without identity "
            "as owner `anonymous`. Default: true for memory and none, false otherwise.",
        ),
        (
            {"SMG_HISTORY_API_KEYS": ["k"]},
            "SMG_HISTORY_API_KEYS",
            "SMG_HISTORY_API_KEYS=*** is not valid: expected a dict of strings, or 'key1=owner1,key2=owner2'. "
            "Bearer keys and the owner each maps to: a dict, or `key1=owner1,key2=owner2` from the environment.",
        ),
        (
            {"SMG_HISTORY_URL_PREFIX": None},
            "SMG_HISTORY_URL_PREFIX",
            "SMG_HISTORY_URL_PREFIX=None is not valid: must be set. Where the blueprint is mounted.",
        ),
        (
            {"SMG_HISTORY_BACKNED": "memory"},
            "SMG_HISTORY_BACKNED",
            "SMG_HISTORY_BACKNED is not a setting of flask-smg-history: did you mean SMG_HISTORY_BACKEND?",
        ),
        (
            {"SMG_HISTORY_BACKEND": "json.JSONDecoder"},
            "SMG_HISTORY_BACKEND",
            "SMG_HISTORY_BACKEND='json.JSONDecoder' is not a Backend subclass.",
        ),
    ],
)
def test_config_errors_name_the_key(config, param, message):
    with raises(ConfigError, message=message, param=param):
        SmgHistory(_app(**config))


@pytest.mark.parametrize(
    ("name", "real"),
    [
        ("SMG_HISTORY_Api_Keys", "SMG_HISTORY_API_KEYS"),
        ("smg_history_api_keys", "SMG_HISTORY_API_KEYS"),
        ("Smg_History_Allow_Anonymous", "SMG_HISTORY_ALLOW_ANONYMOUS"),
        ("SMG_HISTORY_max_request_bytes", "SMG_HISTORY_MAX_REQUEST_BYTES"),
        ("smg_history_unknown", None),
    ],
)
def test_a_case_variant_of_a_setting_is_an_error_naming_the_real_key(name, real):
    """A key that differs from a setting only in case would be ignored, so
    the app would run without what the host believes it set (API keys
    meaning no bearer auth at all): it stops the app, naming the real key."""
    if real is None:
        message, param = f"{name} is not a setting of flask-smg-history (see the configuration reference).", name
    else:
        message = f"{name} is not a setting of flask-smg-history: setting names are upper case, did you mean {real}?"
        param = real
    with raises(ConfigError, message=message, param=param):
        SmgHistory(_app(**{name: "k=alice"}))


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("SMG_HISTORY_BACKEN", "SMG_HISTORY_BACKEND"),
        ("SMG_HISTORY_API_KEY", "SMG_HISTORY_API_KEYS"),
        ("smg_history_redis_ur", "SMG_HISTORY_REDIS_URL"),
        ("SMG_HISTORY_POSTGRES_URL", "SMG_HISTORY_POSTGRES_DB_URL"),
        ("SMG_HISTORY_UNKNOWN", None),  # the shared prefix alone suggests nothing
        ("SMG_HISTORY_X", None),
    ],
)
def test_a_typo_in_a_setting_name_suggests_the_closest_setting(name, suggestion):
    if suggestion is None:
        message = f"{name} is not a setting of flask-smg-history (see the configuration reference)."
    else:
        message = f"{name} is not a setting of flask-smg-history: did you mean {suggestion}?"
    with raises(ConfigError, message=message, param=name):
        SmgHistory(_app(**{name: "x"}))


@pytest.mark.parametrize(
    ("variable", "real", "param"),
    [
        ("SMG_HISTORY_Api_Keys", "SMG_HISTORY_API_KEYS", "SMG_HISTORY_API_KEYS"),
        ("smg_history_backend", "SMG_HISTORY_BACKEND", "SMG_HISTORY_BACKEND"),
        ("atp_password", "ATP_PASSWORD", "SMG_HISTORY_ORACLE_PASSWORD"),
    ],
)
def test_a_case_variant_in_the_environment_is_an_error_naming_the_real_name(monkeypatch, variable, real, param):
    monkeypatch.setenv(variable, "x")
    message = (
        f"The environment variable {variable} is not read: environment names are case-sensitive, did you mean {real}?"
    )
    with raises(ConfigError, message=message, param=param):
        SmgHistory(_app())


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("SMG_HISTORY_POSTGRES_POOL_MAX_SIZE", "Connections in the PostgreSQL pool."),
        ("SMG_HISTORY_REDIS_POOL_MAX_SIZE", "Connections in the Redis pool; callers wait for a free one."),
        ("SMG_HISTORY_ORACLE_POOL_MAX", "Maximum sessions in the Oracle pool."),
    ],
)
@pytest.mark.parametrize("size", [0, -1])
def test_a_pool_of_no_connections_is_refused_at_init(name, doc, size):
    """A pool of 0 would make every call wait out the pool timeout and fail:
    refused at start-up instead, from the config and from the environment."""
    message = f"{name}={size} is not valid: must be at least 1. {doc}"
    with raises(ConfigError, message=message, param=name):
        SmgHistory(_app(**{name: size}))
    with raises(ConfigError, message=f"{name}='{size}' is not valid: must be at least 1. {doc}", param=name):
        load_settings({}, environ={name: str(size)})


def test_secrets_are_not_echoed_in_config_errors():
    message = (
        "SMG_HISTORY_API_KEYS=*** is not valid: expected key1=owner1,key2=owner2. "
        "Bearer keys and the owner each maps to: a dict, or `key1=owner1,key2=owner2` from the environment."
    )
    with raises(ConfigError, message=message, param="SMG_HISTORY_API_KEYS") as info:
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
    fb = store.feedback.submit(resp.id, "positive")
    assert (fb.rating, fb.model, fb.expires_at, fb.id[:3]) == ("positive", "", None, "fb_")
    assert client.get(f"/v1/responses/{resp.id}").status_code == 404


def test_unexpected_backend_failure_is_a_500_envelope_and_the_app_keeps_serving():
    app = _app()
    SmgHistory(app)
    backend = get_state(app).backend
    backend.get_conversation = lambda owner, cid: 1 / 0
    client = app.test_client()
    resp = client.get("/v1/conversations/conv_x")
    envelope(resp, 500, message="The history service failed unexpectedly.", param=None)
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
        envelope(resp, 503, message="The history backend (memory) is unavailable (Down); try again later.", param=None)
        assert "hunter2" not in resp.get_data(as_text=True)
        counted = get_state(app).metrics.snapshot()["operations"]
        assert counted == {("conversations.list", "memory", "unavailable"): 1}  # an outage, not an "error"
    finally:
        type(backend).unavailable_errors = ()


def test_an_unexpected_failure_is_counted_as_an_error():
    app = _app()
    SmgHistory(app)
    get_state(app).backend.get_conversation = lambda owner, cid: 1 / 0
    resp = app.test_client().get("/v1/conversations/conv_x")
    envelope(resp, 500, message="The history service failed unexpectedly.", param=None)
    assert get_state(app).metrics.snapshot()["operations"] == {("conversations.get", "memory", "error"): 1}


def test_get_state_of_an_app_without_the_extension_says_what_to_do():
    with pytest.raises(RuntimeError) as info:
        get_state(Flask("bare"))
    assert str(info.value) == "SmgHistory is not initialised on this app: call SmgHistory(app) first."


@pytest.mark.parametrize("owner", ["", None, 42, b"alice"])
def test_a_store_needs_an_owner(owner):
    """An empty or non-string owner would bind a store to nobody (or to
    everybody named "None"): refused before any store exists."""
    app = _app()
    SmgHistory(app)
    with pytest.raises(ValueError) as info:
        get_state(app).store_for(owner)
    assert str(info.value) == "owner must be a non-empty string"


@pytest.mark.parametrize("owner", ["\udcff", "al\ud800ice", "Émile\udfff"])
def test_an_owner_with_a_lone_surrogate_is_refused_before_any_backend_sees_it(owner):
    """JSON (a token's claim) can carry a lone surrogate; no database, file
    name or Redis key can store one, so each backend would fail its own way."""
    app = _app()
    SmgHistory(app)
    with pytest.raises(ValueError) as info:
        get_state(app).store_for(owner)
    assert str(info.value) == "owner must be valid Unicode text (it has a lone surrogate)"
    assert get_state(app).store_for("Émile").owner == "Émile"


def test_history_is_one_store_per_request_bound_to_the_caller():
    ext = SmgHistory()
    app = _app(SMG_HISTORY_API_KEYS={"k-alice": "alice", "k-bob": "bob"}, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    ext.init_app(app)
    with app.test_request_context(headers={"Authorization": "Bearer k-alice"}):
        first = history._get_current_object()  # type: ignore[attr-defined]
        assert first is history._get_current_object()  # type: ignore[attr-defined]
        assert first.owner == "alice" and g.get("_smg_history_store") is first
    with app.test_request_context(headers={"Authorization": "Bearer k-bob"}):
        assert history.owner == "bob" and history._get_current_object() is not first  # type: ignore[attr-defined]


def test_an_outage_of_the_health_probe_is_a_503_counted_as_unavailable():
    class Down(ConnectionError):
        pass

    app = _app()
    SmgHistory(app)
    backend = get_state(app).backend
    type(backend).unavailable_errors = (Down,)
    try:

        def fail():
            raise Down("secret detail")

        backend.health = fail
        resp = app.test_client().get("/v1/history/health")
        envelope(resp, 503, message="The history backend (memory) is unavailable (Down); try again later.", param=None)
        assert get_state(app).metrics.snapshot()["operations"] == {("health", "memory", "unavailable"): 1}
    finally:
        type(backend).unavailable_errors = ()


def test_feedback_on_the_none_backend_carries_the_retention_it_would_have():
    app = _app(SMG_HISTORY_BACKEND="none", SMG_HISTORY_RETENTION_DAYS=2)
    SmgHistory(app)
    fb = get_state(app).store_for("anonymous").feedback.submit("resp_1", "negative")
    assert fb.expires_at == pytest.approx(fb.created_at + 2 * 86400, abs=1)


def _host_app(handled: bool) -> Flask:
    """A host with routes of its own that call ``history``; with ``handled``,
    the one documented line that maps history errors to the envelope."""
    from werkzeug.exceptions import abort

    app = Flask("host_routes")
    app.config.update(SMG_HISTORY_ALLOW_ANONYMOUS=True)  # PROPAGATE_EXCEPTIONS off: Flask's own 500 page
    SmgHistory(app)
    if handled:
        from flask_smg_history import HistoryError, history_error_response

        app.register_error_handler(HistoryError, history_error_response)

    @app.get("/chats/<cid>")
    def chat(cid):
        return {"id": history.conversations.get(cid).id}

    @app.post("/chats")
    def new_chat():
        return {"id": history.conversations.create(metadata={"k": 1}).id}

    @app.get("/missing")
    def missing():
        abort(404)

    @app.get("/broken")
    def broken():
        raise ValueError("the host's own bug")

    return app


def test_a_history_error_in_a_host_route_is_the_envelope_with_one_line():
    client = _host_app(handled=True).test_client()
    missing = "Conversation with id 'conv_nope' not found."
    envelope(client.get("/chats/conv_nope"), 404, message=missing, param="conversation_id")
    envelope(
        client.post("/chats"),
        400,
        message="Invalid 'metadata.k.value': Not a valid string.",
        param="metadata.k.value",
    )


def test_a_history_error_in_a_host_route_with_the_line_leaves_the_host_s_other_error_pages_alone():
    app = _host_app(handled=True)
    client = app.test_client()
    page = client.get("/missing")
    assert page.status_code == 404 and page.mimetype == "text/html"  # Flask's own 404, not the envelope
    broken = client.get("/broken")
    assert broken.status_code == 500 and broken.mimetype == "text/html"
    assert client.get("/v1/conversations/conv_nope").get_json()["error"]["param"] == "conversation_id"


def test_a_history_error_in_a_host_route_without_the_line_stays_flask_s_default():
    resp = _host_app(handled=False).test_client().get("/chats/conv_nope")
    assert resp.status_code == 500 and resp.mimetype == "text/html"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "Not signed in: this app's identity loader found no user for this request."),
        (
            {"k": "keyowner"},
            "Not signed in: this app's identity loader found no user for this request, and it sent no "
            "'Authorization: Bearer <key>' header with a key from SMG_HISTORY_API_KEYS.",
        ),
    ],
)
def test_the_401_of_an_app_with_an_identity_loader_says_the_caller_is_not_signed_in(keys, message):
    """An app that identifies users by its sign-in does not tell them to send
    a bearer key, unless it also accepts keys."""
    ext = SmgHistory()
    app = _app(SMG_HISTORY_API_KEYS=keys, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    ext.init_app(app)
    ext.identity_loader(lambda: None)
    envelope(app.test_client().get("/v1/conversations"), 401, message=message, param=None)
    without_loader = _app(SMG_HISTORY_API_KEYS={"k": "keyowner"}, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    SmgHistory(without_loader)
    envelope(
        without_loader.test_client().get("/v1/conversations"),
        401,
        message="Missing credentials: send 'Authorization: Bearer <key>' with a key from SMG_HISTORY_API_KEYS.",
        param=None,
    )
