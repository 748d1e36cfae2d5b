"""Hand-written hostile input that fuzzers rarely find, on every backend:
never a 500, always the envelope, nothing half-written."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from ..support.errors import envelope, malformed, missing, shown

A = {"Authorization": "Bearer sk-a"}
KEYS = {"sk-a": "alice", "sk-b": "bob"}

HOSTILE_IDS = [
    "conv_1' OR '1'='1",
    "conv_1; DROP TABLE smg_history_conversations; --",
    'conv_"\\x00',
    "conv_*",
    "conv_{tag}",
    "conv_a:b:c",
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "conv_" + "a" * 5000,
    "conv_\u00e9\u4e2d\U0001f600",
]


@pytest.fixture
def client(make_app):
    return make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_ALLOW_ANONYMOUS=False).test_client()


NO_ROUTE = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_are_just_missing(client, bad_id):
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "x"}]}, headers=A).get_json()
    for method, url, prefix, kind in (
        ("get", f"/v1/conversations/{bad_id}", "conv", "conversation"),
        ("delete", f"/v1/conversations/{bad_id}", "conv", "conversation"),
        ("get", f"/v1/conversations/{bad_id}/items", "conv", "conversation"),
        ("get", f"/v1/conversations/{conv['id']}/items/{bad_id}", "", "item"),
        ("delete", f"/v1/conversations/{conv['id']}/items/{bad_id}", "", "item"),
        ("get", f"/v1/responses/{bad_id}", "resp", "response"),
        ("get", f"/v1/responses/{bad_id}/input_items", "resp", "response"),
        ("get", f"/v1/responses/{bad_id}/feedback", "resp", "feedback"),
        ("get", f"/v1/responses/resp_{bad_id}", "resp", "response"),
    ):
        # A path ID of the wrong kind is malformed (400); one of the right
        # shape that names nothing is missing (404). Item IDs are free-form.
        resp = getattr(client, method)(url, headers=A)
        if "/" in unquote(bad_id):  # the URL matches no route: Werkzeug's 404, in our envelope
            envelope(resp, 404, message=NO_ROUTE, param=None)
            continue
        path_id = unquote(url.split("/")[-1 if kind == "item" else 3])
        message, param = missing(kind, path_id)
        if path_id.startswith(prefix):
            envelope(resp, 404, message=message, param=param)
        else:
            envelope(resp, 400, message=malformed(param, path_id, prefix), param=param)
    listing = client.get(f"/v1/conversations/{conv['id']}/items", query_string={"after": bad_id}, headers=A)
    envelope(listing, 400, message=f"No record with id '{shown(bad_id)}' to list after.", param="after")
    bad_item_id = "Invalid 'items[0].id': must be 1 to 128 letters, digits, '_' or '-'."
    item = {"id": bad_id, "role": "user", "content": "x"}
    resp = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A)
    envelope(resp, 400, message=bad_item_id, param="items[0].id")
    ref = {"type": "item_reference", "id": bad_id}
    resp = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [ref]}, headers=A)
    envelope(resp, 400, message=bad_item_id, param="items[0].id")
    assert len(client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"]) == 1


@pytest.mark.parametrize(
    ("metadata", "param", "reason"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata", "Metadata can have at most 16 key-value pairs, got 17."),
        ({"k" * 65: "v"}, "metadata", f"Metadata keys must be at most 64 characters: '{'k' * 65}'."),
        ({"k": "v" * 513}, "metadata", "Metadata value of 'k' must be at most 512 characters."),
        ({"k": {"nested": "x"}}, "metadata.k.value", "Not a valid string."),
        ({"k": None}, "metadata.k.value", "Field may not be null."),
        (["not", "a", "map"], "metadata", "Not a valid mapping type."),
    ],
)
def test_bad_metadata(client, metadata, param, reason):
    resp = client.post("/v1/conversations", json={"metadata": metadata}, headers=A)
    envelope(resp, 400, message=f"Invalid '{param}': {reason}", param=param)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_deeply_nested_json(client):
    deep = "[" * 100_000 + "]" * 100_000
    resp = client.post("/v1/conversations", data=deep, content_type="application/json", headers=A)
    envelope(resp, 400, message="The request body is not valid JSON.", param=None)
    nested: dict = {}
    cursor = nested
    for _ in range(500):
        cursor["x"] = {}
        cursor = cursor["x"]
    conv = client.post("/v1/conversations", json={}, headers=A).get_json()
    item = {"type": "function_call_output", "call_id": "c", "output": "o", "extra": nested}
    resp = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A)
    envelope(resp, 400, message="Invalid 'items[0]': nested more than 64 levels deep.", param="items[0]")
    assert client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"] == []
    item["extra"] = {"a": {"b": {"c": [1, [2, [3]]]}}}  # ordinary nesting is fine
    added = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A)
    assert added.status_code == 200
    stored = client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"]
    assert stored == added.get_json()["data"] and stored[0]["extra"] == item["extra"]


NOT_JSON = "The request body must be JSON, sent with 'Content-Type: application/json'."


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"\xc3\x28", "application/json", "The request body is not valid UTF-8."),
        (b'{"metadata": {"k": "\xff"}}', "application/json", "The request body is not valid UTF-8."),
        (b"<xml/>", "application/xml", NOT_JSON),
        (b"metadata=1", "application/x-www-form-urlencoded", NOT_JSON),
        (b"{}", "text/plain", NOT_JSON),
        (b"null", "application/json", "The request body must be a JSON object."),
        (b'"string"', "application/json", "The request body must be a JSON object."),
        (b"NaN", "application/json", "The request body must be a JSON object."),
    ],
)
def test_non_json_bodies(client, data, content_type, message):
    resp = client.post("/v1/conversations", data=data, content_type=content_type, headers=A)
    envelope(resp, 400, message=message, param=None)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_ten_megabyte_body_is_413_and_nothing_is_written(client):
    body = json.dumps({"items": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    resp = client.post("/v1/conversations", data=body, content_type="application/json", headers=A)
    envelope(resp, 413, message="The request body is larger than 1048576 bytes.", param=None)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_nothing_half_written_when_the_last_item_is_bad(client):
    conv = client.post("/v1/conversations", json={}, headers=A).get_json()
    items = [{"role": "user", "content": str(n)} for n in range(19)] + [{"type": "function_call", "id": "bad id"}]
    resp = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": items}, headers=A)
    envelope(
        resp, 400, message="Invalid 'items[19].id': must be 1 to 128 letters, digits, '_' or '-'.", param="items[19].id"
    )
    assert client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"] == []
