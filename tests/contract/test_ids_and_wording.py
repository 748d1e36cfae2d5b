"""Contract: IDs of the wrong kind are malformed (400, in OpenAI's words), not
missing, and the errors clients match on are worded as SMG words them; on
every backend, through the store API and over HTTP."""

from __future__ import annotations

import pytest

from flask_smg_history import InvalidRequest, NotFound, get_state
from flask_smg_history.records import ITEM_ID_PREFIXES

from ..support.errors import envelope, malformed, missing, raises

#: SMG's words for an unknown item type, listing every supported one.
UNSUPPORTED = (
    "Unsupported item type 'nonsense'. Supported types: " + ", ".join((*ITEM_ID_PREFIXES, "item_reference")) + "."
)

CONVERSATION_CALLS = [
    ("conversations.get", lambda s, cid: s.conversations.get(cid)),
    ("conversations.update", lambda s, cid: s.conversations.update(cid, {"k": "v"})),
    ("conversations.delete", lambda s, cid: s.conversations.delete(cid)),
    ("items.add", lambda s, cid: s.items.add(cid, [{"role": "user", "content": "x"}])),
    ("items.list", lambda s, cid: s.items.list(cid)),
    ("items.get", lambda s, cid: s.items.get(cid, "msg_1")),
    ("items.delete", lambda s, cid: s.items.delete(cid, "msg_1")),
    ("items.recent", lambda s, cid: s.items.recent(cid)),
]
RESPONSE_CALLS = [
    ("responses.get", lambda s, rid: s.responses.get(rid)),
    ("responses.delete", lambda s, rid: s.responses.delete(rid)),
    ("responses.input_items", lambda s, rid: s.responses.input_items(rid)),
    ("responses.chain", lambda s, rid: s.responses.chain(rid)),
    ("feedback.submit", lambda s, rid: s.feedback.submit(rid, rating="positive")),
    ("feedback.get", lambda s, rid: s.feedback.get(rid)),
    ("feedback.delete", lambda s, rid: s.feedback.delete(rid)),
]


def _malformed(call, store, bad, param, prefix):
    with raises(InvalidRequest, message=malformed(param, bad, prefix), param=param):
        call(store, bad)


@pytest.mark.parametrize(("name", "call"), CONVERSATION_CALLS, ids=[c[0] for c in CONVERSATION_CALLS])
def test_a_conversation_id_of_the_wrong_kind_is_malformed(alice, bob, name, call):
    for bad in ("abc", "resp_123", "msg_1", "CONV_1", ""):
        _malformed(call, alice, bad, "conversation_id", "conv")
    theirs = bob.conversations.create(items=[{"id": "msg_1", "role": "user", "content": "x"}])
    for absent in ("conv_doesnotexist", theirs.id):  # well-formed: missing and foreign look alike
        message, param = missing("conversation", absent)
        with raises(NotFound, message=message, param=param):
            call(alice, absent)
    assert bob.items.list(theirs.id).data[0].id == "msg_1"  # nothing of bob's was touched


@pytest.mark.parametrize(("name", "call"), RESPONSE_CALLS, ids=[c[0] for c in RESPONSE_CALLS])
def test_a_response_id_of_the_wrong_kind_is_malformed(alice, bob, name, call):
    for bad in ("abc", "conv_123", "fb_1", "RESP_1"):
        _malformed(call, alice, bad, "response_id", "resp")
    theirs = bob.responses.store({"model": "m", "output": []})
    for absent in ("resp_doesnotexist", theirs.id):
        kind = "feedback" if name in ("feedback.get", "feedback.delete") else "response"
        message, param = missing(kind, absent)
        with raises(NotFound, message=message, param=param):
            call(alice, absent)
    assert bob.responses.get(theirs.id).model == "m"


def test_item_ids_stay_free_form(alice):
    conv = alice.conversations.create(items=[{"id": "anything-1", "role": "user", "content": "x"}])
    assert alice.items.get(conv.id, "anything-1").id == "anything-1"
    with raises(NotFound, message="Item with id 'not_an_item_prefix' not found.", param="item_id"):
        alice.items.get(conv.id, "not_an_item_prefix")


@pytest.mark.parametrize(
    ("field", "value", "prefix"),
    [("id", "my-response", "resp"), ("conversation", "abc", "conv"), ("previous_response_id", "x1", "resp")],
)
def test_stored_responses_take_ids_of_their_kind(alice, field, value, prefix):
    with raises(InvalidRequest, message=malformed(field, value, prefix), param=field):
        alice.responses.store({"model": "m", field: value})
    assert alice.responses.list().data == []


def test_responses_list_refuses_a_conversation_filter_of_the_wrong_kind(alice):
    with raises(InvalidRequest, message=malformed("conversation", "abc", "conv"), param="conversation"):
        alice.responses.list(conversation="abc")


def test_more_than_twenty_items_is_worded_as_smg_words_it(alice):
    items = [{"role": "user", "content": str(n)} for n in range(21)]
    conv = alice.conversations.create()
    for call in (lambda: alice.items.add(conv.id, items), lambda: alice.conversations.create(items=items)):
        with raises(InvalidRequest, message="Cannot add more than 20 items at once; got 21.", param="items"):
            call()
    assert alice.items.list(conv.id).data == []
    assert len(alice.conversations.list().data) == 1


def test_an_unknown_item_type_is_worded_as_smg_words_it(alice):
    conv = alice.conversations.create()
    with raises(InvalidRequest, message=UNSUPPORTED, param="items[1].type"):
        alice.items.add(conv.id, [{"role": "user", "content": "ok"}, {"type": "nonsense"}])
    assert alice.items.list(conv.id).data == []


def test_http_answers_malformed_path_ids_with_400(make_app):
    client = make_app(SMG_HISTORY_ALLOW_ANONYMOUS=True).test_client()
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "x"}]}).get_json()
    items = {"items": [{"role": "user", "content": "x"}]}
    requests = [
        ("get", "/v1/conversations/abc", None, "conversation_id", "abc", "conv"),
        ("post", "/v1/conversations/abc", {"metadata": {"k": "v"}}, "conversation_id", "abc", "conv"),
        ("delete", "/v1/conversations/abc", None, "conversation_id", "abc", "conv"),
        ("get", "/v1/conversations/abc/items", None, "conversation_id", "abc", "conv"),
        ("post", "/v1/conversations/abc/items", items, "conversation_id", "abc", "conv"),
        ("get", "/v1/conversations/abc/items/msg_1", None, "conversation_id", "abc", "conv"),
        ("delete", "/v1/conversations/abc/items/msg_1", None, "conversation_id", "abc", "conv"),
        ("get", f"/v1/responses/{conv['id']}", None, "response_id", conv["id"], "resp"),
        ("delete", "/v1/responses/abc", None, "response_id", "abc", "resp"),
        ("get", "/v1/responses/abc/input_items", None, "response_id", "abc", "resp"),
        ("get", "/v1/responses/abc/feedback", None, "response_id", "abc", "resp"),
        ("post", "/v1/responses/abc/feedback", {"rating": "positive"}, "response_id", "abc", "resp"),
        ("delete", "/v1/responses/abc/feedback", None, "response_id", "abc", "resp"),
    ]
    for method, url, body, param, bad, prefix in requests:
        envelope(getattr(client, method)(url, json=body), 400, message=malformed(param, bad, prefix), param=param)
    listed = client.get(f"/v1/conversations/{conv['id']}/items").get_json()
    assert len(listed["data"]) == 1  # nothing was written by the refused requests


def test_http_wording_of_the_errors_clients_match_on(make_app):
    app = make_app(SMG_HISTORY_ALLOW_ANONYMOUS=True)
    client = app.test_client()
    conv = client.post("/v1/conversations", json={}).get_json()
    too_many = {"items": [{"role": "user", "content": str(n)} for n in range(21)]}
    envelope(
        client.post(f"/v1/conversations/{conv['id']}/items", json=too_many),
        400,
        message="Cannot add more than 20 items at once; got 21.",
        param="items",
    )
    unknown = {"items": [{"type": "nonsense"}]}
    envelope(
        client.post(f"/v1/conversations/{conv['id']}/items", json=unknown),
        400,
        message=UNSUPPORTED,
        param="items[0].type",
    )
    assert client.get(f"/v1/conversations/{conv['id']}/items").get_json()["data"] == []
    assert get_state(app).store_for("anonymous").items.list(conv["id"]).data == []
