"""``GET /search`` on every backend: the list shape with cursors, the hit
shape (checked against the OpenAPI document's schema), the caller's hits
only, and every bad input a 400 in OpenAI's envelope naming its parameter."""

from __future__ import annotations

import jsonschema
import pytest
from flask import Flask

from flask_smg_history import Backend, SmgHistory
from flask_smg_history.backends.memory import MemoryBackend

from .support.openai_spec import validate

KEYS = {"key-alice": "alice", "key-bob": "bob"}
A = {"Authorization": "Bearer key-alice"}
B = {"Authorization": "Bearer key-bob"}


class UnsearchableBackend(MemoryBackend):
    """The memory backend as a third party might have written it before
    search existed: its ``search`` is ``Backend``'s."""

    search = Backend.search


@pytest.fixture
def client(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    return app.test_client()


def _conv(client, headers=A, **body):
    resp = client.post("/v1/conversations", json=body, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _hit_schema(client) -> dict:
    spec = client.get("/v1/openapi.json").get_json()
    return spec["paths"]["/search"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]


def test_search_lists_the_callers_hits_with_cursors(client, backend_name):
    if backend_name == "oracle":  # documented: no search index on Oracle
        assert client.get("/v1/search?q=dingo", headers=A).status_code == 501
        return
    conv = _conv(
        client,
        metadata={"title": "Dingo diary"},
        items=[{"role": "user", "content": "a dingo <i>howls</i>"}, {"role": "assistant", "content": "dingo!"}],
    )
    _conv(client, headers=B, items=[{"role": "user", "content": "dingo of bob"}])
    page = client.get("/v1/search", query_string={"q": "dingo", "limit": 2}, headers=A).get_json()
    jsonschema.validate(page, _hit_schema(client))
    assert page["object"] == "list" and page["has_more"] is True
    assert [h["object"] for h in page["data"]] == ["search.hit", "search.hit"]
    meta, reply = page["data"]
    assert meta["item"] is None and meta["conversation"]["id"] == conv["id"]
    assert meta["conversation"]["metadata"] == {"title": "Dingo diary"}
    assert meta["snippet"] == "<mark>Dingo</mark> diary"
    assert reply["item"]["type"] == "message" and reply["item"]["role"] == "assistant"
    assert isinstance(reply["item"]["created_at"], int) and reply["rank"] > 0
    assert (page["first_id"], page["last_id"]) == (meta["id"], reply["id"])
    rest = client.get("/v1/search", query_string={"q": "dingo", "after": page["last_id"]}, headers=A).get_json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    assert "&lt;i&gt;howls&lt;/i&gt;" in rest["data"][0]["snippet"]
    only = client.get("/v1/search", query_string={"q": "dingo", "conversation": conv["id"]}, headers=B)
    assert only.status_code == 404 and only.get_json()["error"]["param"] == "conversation_id"
    empty = client.get("/v1/search", query_string={"q": "nowhere"}, headers=A).get_json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 1000}, "q"),
        ({"q": '-"" OR - !'}, "q"),
        ({"q": "-only -exclusions"}, "q"),
        ({"q": "ok", "after": "not-a-cursor"}, "after"),
        ({"q": "ok", "after": "hit_" + "A" * 40}, "after"),
        ({"q": "ok", "limit": "0"}, "limit"),
        ({"q": "ok", "limit": "101"}, "limit"),
        ({"q": "ok", "limit": "ten"}, "limit"),
        ({"q": "ok", "conversation": "msg_1"}, "conversation"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client, query, param):
    resp = client.get("/v1/search", query_string=query, headers=A)
    assert resp.status_code == 400, resp.get_json()
    body = resp.get_json()
    validate("ErrorResponse", body)
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"
    assert resp.headers["x-should-retry"] == "false"


def test_search_needs_an_identity(client):
    assert client.get("/v1/search?q=x").status_code == 401


def test_a_backend_without_search_answers_501():
    """A custom backend that does not implement search inherits the 501."""
    app = Flask("custom")
    app.config.update(SMG_HISTORY_BACKEND="tests.test_search_api.UnsearchableBackend", SMG_HISTORY_ALLOW_ANONYMOUS=True)
    SmgHistory(app)
    resp = app.test_client().get("/v1/search?q=anything")
    body = resp.get_json()
    assert resp.status_code == 501 and body["error"]["code"] == "not_supported"
    assert body["error"]["message"].startswith("Search is not supported by the tests.test_search_api.Unsearchable")


def test_none_backend_finds_nothing():
    app = Flask("none")
    app.config.update(SMG_HISTORY_BACKEND="none")
    SmgHistory(app)
    client = app.test_client()
    page = client.get("/v1/search?q=anything").get_json()
    assert page["data"] == [] and page["has_more"] is False
    assert client.get("/v1/search?q=anything&conversation=conv_1").status_code == 404
