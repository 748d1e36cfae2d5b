"""Hand-written hostile input that fuzzers rarely find, on every backend:
never a 500, always the envelope, nothing half-written."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

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


def _envelope(resp, *statuses):
    assert resp.status_code in statuses, (resp.status_code, resp.get_data(as_text=True)[:300])
    error = resp.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_are_just_missing(client, bad_id):
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "x"}]}, headers=A).get_json()
    for method, url, prefix, param in (
        ("get", f"/v1/conversations/{bad_id}", "conv", "conversation_id"),
        ("delete", f"/v1/conversations/{bad_id}", "conv", "conversation_id"),
        ("get", f"/v1/conversations/{bad_id}/items", "conv", "conversation_id"),
        ("get", f"/v1/conversations/{conv['id']}/items/{bad_id}", "", "item_id"),
        ("delete", f"/v1/conversations/{conv['id']}/items/{bad_id}", "", "item_id"),
        ("get", f"/v1/responses/{bad_id}", "resp", "response_id"),
        ("get", f"/v1/responses/{bad_id}/input_items", "resp", "response_id"),
        ("get", f"/v1/responses/{bad_id}/feedback", "resp", "response_id"),
        ("get", f"/v1/responses/resp_{bad_id}", "resp", "response_id"),
    ):
        # A path ID of the wrong kind is malformed (400); one of the right
        # shape that names nothing is missing (404). Item IDs are free-form.
        resp = getattr(client, method)(url, headers=A)
        error = _envelope(resp, 400, 404)
        if "/" in unquote(bad_id):  # the URL matches no route: Werkzeug's 404, in our envelope
            assert resp.status_code == 404 and error["param"] is None
            continue
        path_id = url.split("/")[-1 if param == "item_id" else 3]
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), (url, error)
        if path_id.startswith(prefix):
            assert resp.status_code == 404, (url, error)
        else:
            assert resp.status_code == 400, (url, error)
            assert error["message"].startswith(f"Invalid '{param}': '"), error
            assert error["message"].endswith(f"Expected an ID that begins with '{prefix}'."), error
    _envelope(client.get(f"/v1/conversations/{conv['id']}/items", query_string={"after": bad_id}, headers=A), 400)
    item = {"id": bad_id, "role": "user", "content": "x"}
    error = _envelope(client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A), 400)
    assert error["param"] == "items[0].id"
    ref = {"type": "item_reference", "id": bad_id}
    _envelope(client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [ref]}, headers=A), 400)
    assert len(client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"]) == 1


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
        {"k": {"nested": "x"}},
        {"k": None},
        ["not", "a", "map"],
    ],
)
def test_bad_metadata(client, metadata):
    error = _envelope(client.post("/v1/conversations", json={"metadata": metadata}, headers=A), 400)
    assert error["param"].startswith("metadata")
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_deeply_nested_json(client):
    deep = "[" * 100_000 + "]" * 100_000
    _envelope(client.post("/v1/conversations", data=deep, content_type="application/json", headers=A), 400, 413)
    nested: dict = {}
    cursor = nested
    for _ in range(500):
        cursor["x"] = {}
        cursor = cursor["x"]
    conv = client.post("/v1/conversations", json={}, headers=A).get_json()
    item = {"type": "function_call_output", "call_id": "c", "output": "o", "extra": nested}
    resp = client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A)
    assert _envelope(resp, 400)["param"] == "items[0]"
    item["extra"] = {"a": {"b": {"c": [1, [2, [3]]]}}}  # ordinary nesting is fine
    assert client.post(f"/v1/conversations/{conv['id']}/items", json={"items": [item]}, headers=A).status_code == 200


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\xc3\x28", "application/json"),
        (b'{"metadata": {"k": "\xff"}}', "application/json"),
        (b"<xml/>", "application/xml"),
        (b"metadata=1", "application/x-www-form-urlencoded"),
        (b"{}", "text/plain"),
        (b"null", "application/json"),
        (b'"string"', "application/json"),
        (b"NaN", "application/json"),
    ],
)
def test_non_json_bodies(client, data, content_type):
    _envelope(client.post("/v1/conversations", data=data, content_type=content_type, headers=A), 400)


def test_ten_megabyte_body_is_413_and_nothing_is_written(client):
    body = json.dumps({"items": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    _envelope(client.post("/v1/conversations", data=body, content_type="application/json", headers=A), 413)
    assert client.get("/v1/conversations", headers=A).get_json()["data"] == []


def test_nothing_half_written_when_the_last_item_is_bad(client):
    conv = client.post("/v1/conversations", json={}, headers=A).get_json()
    items = [{"role": "user", "content": str(n)} for n in range(19)] + [{"type": "function_call", "id": "bad id"}]
    _envelope(client.post(f"/v1/conversations/{conv['id']}/items", json={"items": items}, headers=A), 400)
    assert client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"] == []
