"""The blueprint: every endpoint and error, on every backend, checked against
OpenAI's published schemas where OpenAI defines the shape."""

from __future__ import annotations

import re

import pytest

from flask_smg_history import get_state

from .support.errors import envelope, missing
from .support.openai_spec import validate

KEYS = {"key-alice": "alice", "key-bob": "bob"}
A = {"Authorization": "Bearer key-alice"}
B = {"Authorization": "Bearer key-bob"}


@pytest.fixture
def client(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    return app.test_client()


def _missing(resp, kind, record_id):
    """The 404 of a record that does not exist (or is another owner's)."""
    message, param = missing(kind, record_id)
    return envelope(resp, 404, message=message, param=param)


def _conv(client, **body):
    resp = client.post("/v1/conversations", json=body, headers=A)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_conversation_lifecycle(client):
    conv = _conv(client, metadata={"title": "Hello"}, items=[{"role": "user", "content": "Hi"}])
    validate("ConversationResource", conv)
    assert conv["object"] == "conversation" and isinstance(conv["created_at"], int)
    got = client.get(f"/v1/conversations/{conv['id']}", headers=A).get_json()
    assert got == conv
    updated = client.post(f"/v1/conversations/{conv['id']}", json={"metadata": {"title": "Renamed"}}, headers=A)
    assert updated.status_code == 200 and updated.get_json() == {**conv, "metadata": {"title": "Renamed"}}
    assert client.get(f"/v1/conversations/{conv['id']}", headers=A).get_json() == updated.get_json()
    deleted = client.delete(f"/v1/conversations/{conv['id']}", headers=A)
    assert deleted.get_json() == {"id": conv["id"], "object": "conversation.deleted", "deleted": True}
    validate("DeletedConversationResource", deleted.get_json())
    _missing(client.get(f"/v1/conversations/{conv['id']}", headers=A), "conversation", conv["id"])


def test_create_with_empty_body(client):
    resp = client.post("/v1/conversations", headers=A)
    assert resp.status_code == 200 and resp.get_json()["metadata"] == {}
    assert client.get(f"/v1/conversations/{resp.get_json()['id']}", headers=A).get_json() == resp.get_json()
    assert client.get(f"/v1/conversations/{resp.get_json()['id']}/items", headers=A).get_json()["data"] == []


def test_items_endpoints(client):
    conv = _conv(client)
    cid = conv["id"]
    items = [
        {"role": "user", "content": "What's the weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}", "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]
    resp = client.post(f"/v1/conversations/{cid}/items", json={"items": items}, headers=A)
    assert resp.status_code == 200
    created = resp.get_json()
    validate("ConversationItemList", created)
    assert [i["type"] for i in created["data"]] == ["message", "function_call", "function_call_output", "message"]
    assert created["first_id"] == created["data"][0]["id"] and created["last_id"] == created["data"][-1]["id"]
    listed = client.get(f"/v1/conversations/{cid}/items", headers=A).get_json()
    validate("ConversationItemList", listed)
    assert [i["id"] for i in listed["data"]] == [i["id"] for i in reversed(created["data"])]
    asc = client.get(f"/v1/conversations/{cid}/items?order=asc&limit=2", headers=A).get_json()
    assert [i["id"] for i in asc["data"]] == [i["id"] for i in created["data"][:2]] and asc["has_more"] is True
    nxt = client.get(f"/v1/conversations/{cid}/items?order=asc&limit=2&after={asc['last_id']}", headers=A).get_json()
    assert [i["id"] for i in nxt["data"]] == [i["id"] for i in created["data"][2:]] and nxt["has_more"] is False
    both = client.get(
        f"/v1/conversations/{cid}/items?include=reasoning.encrypted_content&include[]=message.output_text.logprobs",
        headers=A,
    )
    assert both.status_code == 200
    first = created["data"][0]
    got = client.get(f"/v1/conversations/{cid}/items/{first['id']}", headers=A)
    assert got.get_json() == first
    validate("ConversationItem", got.get_json())
    parent = client.delete(f"/v1/conversations/{cid}/items/{first['id']}", headers=A)
    assert parent.status_code == 200 and parent.get_json()["id"] == cid
    validate("ConversationResource", parent.get_json())
    _missing(client.get(f"/v1/conversations/{cid}/items/{first['id']}", headers=A), "item", first["id"])


def test_every_item_type_matches_openais_schema(client):
    from .contract.test_items import TOOL_ITEMS

    cid = _conv(client)["id"]
    for start in range(0, len(TOOL_ITEMS), 5):
        resp = client.post(f"/v1/conversations/{cid}/items", json={"items": TOOL_ITEMS[start : start + 5]}, headers=A)
        assert resp.status_code == 200, resp.get_json()
    listed = client.get(f"/v1/conversations/{cid}/items?limit=100", headers=A).get_json()
    assert len(listed["data"]) == len(TOOL_ITEMS)
    validate("ConversationItemList", listed)


def test_list_conversations_newest_first(client):
    ids = [_conv(client, metadata={"n": str(n)})["id"] for n in range(3)]
    body = client.get("/v1/conversations?limit=2", headers=A).get_json()
    assert [c["id"] for c in body["data"]] == [ids[2], ids[1]] and body["has_more"] is True
    rest = client.get(f"/v1/conversations?after={body['last_id']}", headers=A).get_json()
    assert [c["id"] for c in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert client.get("/v1/conversations", headers=B).get_json()["data"] == []


def test_update_conversation_patches_metadata(client):
    """SMG's semantics by default: given keys set, null removes one, the rest
    stay; a merged map beyond 16 pairs is a 400 that writes nothing."""
    conv = _conv(client, metadata={"a": "1", "b": "2"})
    url = f"/v1/conversations/{conv['id']}"
    resp = client.post(url, json={"metadata": {"b": None, "c": "3"}}, headers=A)
    assert resp.status_code == 200, resp.get_json()
    validate("ConversationResource", resp.get_json())
    assert resp.get_json()["metadata"] == {"a": "1", "c": "3"}
    assert client.get(url, headers=A).get_json()["metadata"] == {"a": "1", "c": "3"}
    assert client.post(url, json={"metadata": None}, headers=A).get_json()["metadata"] == {"a": "1", "c": "3"}
    assert client.post(url, json={"metadata": {}}, headers=A).get_json()["metadata"] == {"a": "1", "c": "3"}

    full = client.post(url, json={"metadata": {f"k{n}": "v" for n in range(14)}}, headers=A).get_json()["metadata"]
    assert len(full) == 16
    refused = client.post(url, json={"metadata": {"one_more": "x"}}, headers=A)
    assert refused.status_code == 400 and refused.headers["x-should-retry"] == "false"
    validate("ErrorResponse", refused.get_json())
    assert refused.get_json() == {
        "error": {
            "message": (
                "Invalid 'metadata': the update would leave the conversation with 17 metadata key-value pairs, "
                "more than the 16 allowed; remove keys by setting them to null in the same update."
            ),
            "type": "invalid_request_error",
            "param": "metadata",
            "code": None,
        }
    }
    stored = client.get(url, headers=A).get_json()
    assert stored["metadata"] == full
    swapped = client.post(url, json={"metadata": {"one_more": "x", "a": None}}, headers=A).get_json()["metadata"]
    assert swapped == {**{k: v for k, v in full.items() if k != "a"}, "one_more": "x"}
    bad = client.post(url, json={"metadata": {"k": 1}}, headers=A)
    envelope(bad, 400, message="Invalid 'metadata.k.value': Not a valid string.", param="metadata.k.value")
    _missing(client.post(url, json={"metadata": {"a": "1"}}, headers=B), "conversation", conv["id"])
    assert client.get(url, headers=A).get_json()["metadata"] == swapped


def test_update_conversation_replaces_metadata_when_configured(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_METADATA_UPDATE="replace")
    client = app.test_client()
    conv = _conv(client, metadata={"a": "1", "b": "2"})
    url = f"/v1/conversations/{conv['id']}"
    assert client.post(url, json={"metadata": {"c": "3"}}, headers=A).get_json()["metadata"] == {"c": "3"}
    refused = client.post(url, json={"metadata": {"c": None}}, headers=A)
    envelope(refused, 400, message="Invalid 'metadata.c.value': Field may not be null.", param="metadata.c.value")
    assert client.get(url, headers=A).get_json()["metadata"] == {"c": "3"}
    assert client.post(url, json={"metadata": None}, headers=A).get_json()["metadata"] == {}
    values = client.get("/v1/openapi.json").get_json()["components"]["schemas"]["ConversationUpdate"]
    assert values["properties"]["metadata"]["additionalProperties"] == {"type": "string"}


def test_list_conversations_by_last_write(client):
    ids = [_conv(client)["id"] for _ in range(3)]
    client.post(f"/v1/conversations/{ids[0]}/items", json={"items": [{"role": "user", "content": "x"}]}, headers=A)
    body = client.get("/v1/conversations?order_by=updated_at&limit=2", headers=A).get_json()
    assert [c["id"] for c in body["data"]] == [ids[0], ids[2]] and body["has_more"] is True
    rest = client.get(f"/v1/conversations?order_by=updated_at&after={body['last_id']}", headers=A).get_json()
    assert [c["id"] for c in rest["data"]] == [ids[1]] and rest["has_more"] is False
    asc = client.get("/v1/conversations?order_by=updated_at&order=asc", headers=A).get_json()
    assert [c["id"] for c in asc["data"]] == [ids[1], ids[2], ids[0]]
    assert [c["id"] for c in client.get("/v1/conversations", headers=A).get_json()["data"]] == ids[::-1]
    assert client.get("/v1/conversations?order_by=updated_at", headers=B).get_json()["data"] == []
    envelope(
        client.get("/v1/conversations?order_by=last_write", headers=A),
        400,
        message="Invalid 'order_by': must be 'created_at' or 'updated_at'.",
        param="order_by",
    )
    envelope(
        client.get("/v1/conversations?order_by=updated_at&after=conv_unknown", headers=A),
        400,
        message="No record with id 'conv_unknown' to list after.",
        param="after",
    )


@pytest.mark.parametrize(
    ("query", "param", "message"),
    [
        ("limit=0", "limit", "Invalid 'limit': must be an integer from 1 to 100."),
        ("limit=101", "limit", "Invalid 'limit': must be an integer from 1 to 100."),
        ("limit=ten", "limit", "Invalid 'limit': expected an integer, got 'ten'."),
        ("order=up", "order", "Invalid 'order': must be 'asc' or 'desc'."),
        ("after=msg_nope", "after", "No record with id 'msg_nope' to list after."),
        ("include=bogus", "include", "Invalid 'include': 'bogus' is not a supported value."),
    ],
)
def test_list_items_bad_query(client, query, param, message):
    cid = _conv(client, items=[{"role": "user", "content": "x"}])["id"]
    envelope(client.get(f"/v1/conversations/{cid}/items?{query}", headers=A), 400, message=message, param=param)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
            "Invalid 'metadata': Metadata can have at most 16 key-value pairs, got 17.",
        ),
        (
            {"metadata": {"k" * 65: "v"}},
            "metadata",
            f"Invalid 'metadata': Metadata keys must be at most 64 characters: '{'k' * 65}'.",
        ),
        (
            {"items": [{"role": "user", "content": "x"}] * 21},
            "items",
            "Cannot add more than 20 items at once; got 21.",
        ),
        (
            {"items": [{"type": "nonsense"}]},
            "items[0].type",
            re.compile(r"Unsupported item type 'nonsense'\. Supported types: message, .*, item_reference\."),
        ),
        ({"colour": "blue"}, "colour", "Unknown parameter: 'colour'."),
    ],
)
def test_create_conversation_bad_body(client, body, param, message):
    envelope(client.post("/v1/conversations", json=body, headers=A), 400, message=message, param=param)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"{not json", "application/json", "The request body is not valid JSON."),
        (b"[1, 2]", "application/json", "The request body must be a JSON object."),
        (b"\xff\xfe{}", "application/json", "The request body is not valid UTF-8."),
        (
            b"items=1",
            "application/x-www-form-urlencoded",
            "The request body must be JSON, sent with 'Content-Type: application/json'.",
        ),
    ],
)
def test_bad_bodies(client, data, content_type, message):
    resp = client.post("/v1/conversations", data=data, content_type=content_type, headers=A)
    envelope(resp, 400, message=message, param=None)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_add_items_needs_items(client):
    cid = _conv(client)["id"]
    envelope(
        client.post(f"/v1/conversations/{cid}/items", json={}, headers=A),
        400,
        message="Invalid 'items': Field may not be null.",
        param="items",
    )
    envelope(
        client.post(f"/v1/conversations/{cid}/items", json={"items": []}, headers=A),
        400,
        message="Invalid 'items': Shorter than minimum length 1.",
        param="items",
    )
    envelope(
        client.post(f"/v1/conversations/{cid}", json={}, headers=A),
        400,
        message="Missing required parameter: 'metadata'.",
        param="metadata",
    )
    assert client.get(f"/v1/conversations/{cid}/items", headers=A).get_json()["data"] == []


def test_oversized_body_is_413(make_app):
    client = make_app(SMG_HISTORY_MAX_REQUEST_BYTES=2048, SMG_HISTORY_ALLOW_ANONYMOUS=True).test_client()
    resp = client.post("/v1/conversations", json={"metadata": {"k": "v" * 3000}})
    envelope(resp, 413, message="The request body is larger than 2048 bytes.", param=None)
    assert client.get("/v1/conversations").get_json()["data"] == []


MISSING_CREDENTIALS = "Missing credentials: send 'Authorization: Bearer <key>' with a key from SMG_HISTORY_API_KEYS."
WRONG_KEY = "Incorrect API key provided."
NOT_BEARER = "The Authorization header must be 'Bearer <key>'."


def test_auth(client):
    envelope(client.get("/v1/conversations"), 401, message=MISSING_CREDENTIALS, param=None)
    envelope(
        client.get("/v1/conversations", headers={"Authorization": "Bearer wrong"}), 401, message=WRONG_KEY, param=None
    )
    envelope(
        client.get("/v1/conversations", headers={"Authorization": "Basic abc"}), 401, message=NOT_BEARER, param=None
    )
    assert client.get("/v1/conversations", headers=A).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "key-alic",  # a prefix of a real key
        "k",
        "key-alice2",  # a real key with more after it
        "key-alicekey-bob",
        "KEY-ALICE",  # case variants
        "Key-Alice",
        "key-alicE",
        "key-alice\x00",
        "key-bob-alice",
        "key-alice key-alice",
    ],
)
def test_only_a_whole_configured_key_is_accepted(client, token):
    """Prefixes, extensions and case variants of a configured key are wrong
    keys: a comparison that stopped early or folded case would let them in."""
    resp = client.post("/v1/conversations", json={}, headers={"Authorization": f"Bearer {token}"})
    envelope(resp, 401, message=WRONG_KEY, param=None)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []
    assert client.get("/v1/conversations", headers=B).get_json()["data"] == []


def test_the_bearer_scheme_is_case_insensitive_and_each_key_maps_to_its_owner(client):
    """RFC 7235: the scheme name is case-insensitive; the key is not."""
    mine = _conv(client)
    for scheme in ("bearer", "BEARER"):
        got = client.get(f"/v1/conversations/{mine['id']}", headers={"Authorization": f"{scheme} key-alice"})
        assert got.status_code == 200 and got.get_json() == mine
    _missing(client.get(f"/v1/conversations/{mine['id']}", headers=B), "conversation", mine["id"])


def test_anonymous_when_allowed(make_app):
    client = make_app(SMG_HISTORY_ALLOW_ANONYMOUS=True).test_client()
    conv = client.post("/v1/conversations", json={}).get_json()
    assert client.get(f"/v1/conversations/{conv['id']}").status_code == 200


def test_foreign_ids_look_missing(client):
    conv = _conv(client, items=[{"role": "user", "content": "x"}])
    item = client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"][0]
    for method, url in (
        ("get", f"/v1/conversations/{conv['id']}"),
        ("post", f"/v1/conversations/{conv['id']}"),
        ("delete", f"/v1/conversations/{conv['id']}"),
        ("get", f"/v1/conversations/{conv['id']}/items"),
        ("get", f"/v1/conversations/{conv['id']}/items/{item['id']}"),
        ("delete", f"/v1/conversations/{conv['id']}/items/{item['id']}"),
    ):
        kwargs = {"json": {"metadata": {}}} if method == "post" else {}
        foreign = getattr(client, method)(url, headers=B, **kwargs)
        missing = getattr(client, method)(url.replace(conv["id"], "conv_" + "0" * 48), headers=B, **kwargs)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.get_json()["error"]["message"] == missing.get_json()["error"]["message"].replace(
            "conv_" + "0" * 48, conv["id"]
        )


def _stored_response(app, owner="alice", **extra):
    store = get_state(app).store_for(owner)
    return store.responses.store(
        {
            "model": "gpt-test",
            "input": [{"role": "user", "content": str(n)} for n in range(25)],
            "output": [
                {
                    "type": "message",
                    "id": "msg_o",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": 1,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 1,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 2,
            },
            **extra,
        }
    )


def test_responses_endpoints(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS)
    client = app.test_client()
    resp = _stored_response(app)
    body = client.get(f"/v1/responses/{resp.id}", headers=A).get_json()
    validate("Response", body)
    assert body["id"] == resp.id and body["object"] == "response" and body["model"] == "gpt-test"
    page = client.get(f"/v1/responses/{resp.id}/input_items?order=asc", headers=A).get_json()
    validate("ResponseItemList", page)
    assert len(page["data"]) == 20 and page["has_more"] is True
    rest = client.get(f"/v1/responses/{resp.id}/input_items?order=asc&after={page['last_id']}", headers=A).get_json()
    assert len(rest["data"]) == 5 and rest["has_more"] is False
    _missing(client.get(f"/v1/responses/{resp.id}", headers=B), "response", resp.id)
    deleted = client.delete(f"/v1/responses/{resp.id}", headers=A).get_json()
    assert deleted == {"id": resp.id, "object": "response", "deleted": True}
    _missing(client.get(f"/v1/responses/{resp.id}", headers=A), "response", resp.id)
    _missing(client.delete(f"/v1/responses/{resp.id}", headers=A), "response", resp.id)


def test_feedback_endpoints(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS)
    client = app.test_client()
    resp = _stored_response(app)
    url = f"/v1/responses/{resp.id}/feedback"
    _missing(client.get(url, headers=A), "feedback", resp.id)
    first = client.post(url, json={"rating": "negative", "comment": "no"}, headers=A).get_json()
    assert first["object"] == "response.feedback" and first["rating"] == "negative" and first["model"] == "gpt-test"
    assert client.get(url, headers=A).get_json() == first
    again = client.post(url, json={"rating": "positive"}, headers=A).get_json()
    assert again["id"] == first["id"] and again["comment"] is None
    assert client.get(url, headers=A).get_json() == again
    envelope(
        client.post(url, json={"rating": "great"}, headers=A),
        400,
        message="Invalid 'rating': Must be one of: positive, negative.",
        param="rating",
    )
    envelope(
        client.post(url, json={"rating": "positive", "comment": "x" * 4097}, headers=A),
        400,
        message="Invalid 'comment': Longer than maximum length 4096.",
        param="comment",
    )
    _missing(client.post(url, json={"rating": "positive"}, headers=B), "response", resp.id)
    assert client.get(url, headers=A).get_json() == again  # the refused submissions changed nothing
    listed = client.get("/v1/feedback?rating=positive&model=gpt-test&since=2020-01-01", headers=A).get_json()
    assert [f["id"] for f in listed["data"]] == [first["id"]]
    assert client.get("/v1/feedback?rating=negative", headers=A).get_json()["data"] == []
    envelope(
        client.get("/v1/feedback?since=yesterday", headers=A),
        400,
        message="Invalid 'since': expected Unix seconds or an ISO 8601 date.",
        param="since",
    )
    for rating in ("bogus", "POSITIVE", ""):
        envelope(
            client.get(f"/v1/feedback?rating={rating}", headers=A),
            400,
            message="Invalid 'rating': must be 'positive' or 'negative'.",
            param="rating",
        )
    stats = client.get("/v1/feedback/stats", headers=A).get_json()
    assert stats["total"] == 1 and stats["by_rating"] == {"positive": 1, "negative": 0}
    assert stats["by_model"] == {"gpt-test": {"positive": 1, "negative": 0}}
    assert client.get("/v1/feedback/stats", headers=B).get_json()["total"] == 0
    _missing(client.delete(url, headers=B), "feedback", resp.id)  # bob's view: no such response of his
    withdrawn = client.delete(url, headers=A)
    assert withdrawn.status_code == 200
    assert withdrawn.get_json() == {"id": first["id"], "object": "response.feedback.deleted", "deleted": True}
    _missing(client.get(url, headers=A), "feedback", resp.id)
    _missing(client.delete(url, headers=A), "feedback", resp.id)
    assert client.get("/v1/feedback", headers=A).get_json()["data"] == []
    assert client.get("/v1/feedback/stats", headers=A).get_json()["total"] == 0
    assert client.get(f"/v1/responses/{resp.id}", headers=A).status_code == 200


def test_health_and_openapi(client):
    health = client.get("/v1/history/health").get_json()
    assert health["status"] == "ok" and health["enabled"] is True
    spec = client.get("/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    assert "/conversations/{conversation_id}/items" in spec["paths"]
    assert "ConversationCreate" in spec["components"]["schemas"]


def test_list_responses_and_erase_owner_endpoints(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS)
    client = app.test_client()
    first = _stored_response(app)
    second = _stored_response(app, model="other")
    _stored_response(app, owner="bob")
    listed = client.get("/v1/responses", headers=A).get_json()
    assert [r["id"] for r in listed["data"]] == [second.id, first.id]
    for body in listed["data"]:
        validate("Response", body)
    assert [r["id"] for r in client.get("/v1/responses?model=other", headers=A).get_json()["data"]] == [second.id]
    envelope(
        client.get("/v1/responses?limit=0", headers=A),
        400,
        message="Invalid 'limit': must be an integer from 1 to 100.",
        param="limit",
    )
    conv = _conv(client, items=[{"role": "user", "content": "x"}])
    erased = client.delete("/v1/history/owner", headers=A).get_json()
    assert erased == {
        "object": "history.owner.deleted",
        "owner": "alice",
        "deleted": {"conversations": 1, "items": 1, "responses": 2, "feedback": 0},
    }
    _missing(client.get(f"/v1/conversations/{conv['id']}", headers=A), "conversation", conv["id"])
    assert client.get("/v1/responses", headers=A).get_json()["data"] == []
    assert len(client.get("/v1/responses", headers=B).get_json()["data"]) == 1
    assert client.delete("/v1/history/owner", headers=A).get_json()["deleted"]["responses"] == 0


def test_error_codes_reach_the_envelope(client):
    """Errors that carry an OpenAI ``code`` keep it on the way out, and the
    refused batch writes nothing."""
    cid = _conv(client, items=[{"id": "msg_mine", "role": "user", "content": "x"}])["id"]
    other = _conv(client)["id"]
    url = f"/v1/conversations/{cid}/items"
    envelope(
        client.post(url, json={"items": [{"type": "item_reference", "id": "msg_mine"}]}, headers=A),
        400,
        message=f"Item with id 'msg_mine' is already in conversation '{cid}'.",
        param="items",
        code="item_already_in_conversation",
    )
    envelope(
        client.post(
            f"/v1/conversations/{other}/items",
            json={"items": [{"id": "msg_mine", "role": "user", "content": "again"}]},
            headers=A,
        ),
        400,
        message=(
            "Item with id 'msg_mine' already exists; to add it to this conversation too, send "
            '{"type": "item_reference", "id": "msg_mine"}.'
        ),
        param="items",
        code="item_already_exists",
    )
    assert [i["id"] for i in client.get(url, headers=A).get_json()["data"]] == ["msg_mine"]
    assert client.get(f"/v1/conversations/{other}/items", headers=A).get_json()["data"] == []


@pytest.mark.parametrize("mode", ["patch", "replace"])
@pytest.mark.parametrize(
    ("metadata", "param", "message"),
    [
        (
            {f"k{i}": "v" for i in range(17)},
            "metadata",
            "Invalid 'metadata': Metadata can have at most 16 key-value pairs, got 17.",
        ),
        (
            {"k" * 65: "v"},
            "metadata",
            f"Invalid 'metadata': Metadata keys must be at most 64 characters: '{'k' * 65}'.",
        ),
        ({"k": "v" * 513}, "metadata", "Invalid 'metadata': Metadata value of 'k' must be at most 512 characters."),
    ],
    ids=["pairs", "key", "value"],
)
def test_update_conversation_enforces_the_metadata_limits(make_app, mode, metadata, param, message):
    client = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_METADATA_UPDATE=mode).test_client()
    conv = _conv(client, metadata={"a": "1"})
    url = f"/v1/conversations/{conv['id']}"
    envelope(client.post(url, json={"metadata": metadata}, headers=A), 400, message=message, param=param)
    assert client.get(url, headers=A).get_json() == conv


def test_a_404_cuts_a_long_id_it_echoes(client):
    long_id = "conv_" + "9" * 5000
    resp = client.get(f"/v1/conversations/{long_id}", headers=A)
    envelope(resp, 404, message=f"Conversation with id '{long_id[:128]}…' not found.", param="conversation_id")
    assert len(resp.get_data()) < 400
