"""``POST /v1/responses`` against a real OpenAI-compatible upstream (the fake
in ``support/fake_upstream.py``), over both upstream APIs: what is forwarded,
what comes back, streamed and not, and what every failure leaves stored.

Every streamed event is checked against ``ResponseStreamEvent`` of OpenAI's
spec, and every response object against ``Response``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from flask_smg_history import get_state
from flask_smg_history.backends.memory import MemoryBackend

from ..support.fake_upstream import FakeUpstream, echo_text
from ..support.openai_spec import validate_responses, validate_stream_event

APIS = ("chat", "responses")


@pytest.fixture(params=APIS)
def api(request) -> str:
    return request.param


@pytest.fixture
def app(make_app, fake_upstream: FakeUpstream, api: str):
    return make_app(
        SMG_HISTORY_UPSTREAM_URL=fake_upstream.base_url,
        SMG_HISTORY_UPSTREAM_API=api,
        SMG_HISTORY_UPSTREAM_API_KEY="sk-upstream-secret",
        SMG_HISTORY_UPSTREAM_TIMEOUT=2.0,
    )


@pytest.fixture
def client(app):
    return app.test_client()


def _sent(fake: FakeUpstream) -> list[tuple[str, str]]:
    """(role, text) of each message the upstream was sent, system included."""
    body = fake.last.json
    if "messages" in body:
        return [(m["role"], m["content"] if isinstance(m["content"], str) else "") for m in body["messages"]]
    out = [("system", body["instructions"])] if body.get("instructions") else []
    for item in body["input"]:
        content = item.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        out.append((item.get("role", item.get("type")), text))
    return out


def _events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        events.append(event)
    return events


def _check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Every event valid and numbered from 0; created first, one terminal
    event last. Returns the terminal event's response."""
    for event in events:
        validate_stream_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[0]["response"]["status"] == "in_progress"
    assert events[1]["type"] == "response.in_progress"
    terminal = [e for e in events if e["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == [events[-1]]
    validate_responses("Response", events[-1]["response"])
    return events[-1]["response"]


def _error(response) -> dict[str, Any]:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_a_conversation_turn_forwards_the_context_and_stores_it(client, fake_upstream, api):
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "earlier"}]}).get_json()
    answer = client.post(
        "/v1/responses",
        json={"model": "fake-model", "input": "hello there", "conversation": conv["id"], "instructions": "Be kind."},
    )
    assert answer.status_code == 200
    body = answer.get_json()
    validate_responses("Response", body)
    assert _sent(fake_upstream) == [("system", "Be kind."), ("user", "earlier"), ("user", "hello there")]
    assert fake_upstream.last.api_key == "sk-upstream-secret"
    if api == "responses":
        assert fake_upstream.last.json["store"] is False
    assert body["status"] == "completed" and body["conversation"] == {"id": conv["id"]}
    assert body["instructions"] == "Be kind." and body["previous_response_id"] is None
    assert body["output"][-1]["content"][0]["text"] == echo_text("hello there")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] and usage["output_tokens"] > 0
    assert client.get(f"/v1/responses/{body['id']}").get_json() == body
    items = client.get(f"/v1/conversations/{conv['id']}/items?order=asc").get_json()["data"]
    assert [i["role"] for i in items] == ["user", "user", "assistant"]
    assert items[2]["id"] == body["output"][-1]["id"] and items[2]["response_id"] == body["id"]


def test_a_chain_forwards_inputs_and_outputs_without_old_instructions(client, fake_upstream):
    first = client.post("/v1/responses", json={"model": "fake-model", "input": "one", "instructions": "old"})
    second = client.post(
        "/v1/responses", json={"model": "fake-model", "input": "two", "previous_response_id": first.get_json()["id"]}
    )
    assert second.status_code == 200
    assert _sent(fake_upstream) == [("user", "one"), ("assistant", echo_text("one")), ("user", "two")]
    assert second.get_json()["instructions"] is None


def test_store_false_stores_nothing(client, fake_upstream):
    conv = client.post("/v1/conversations", json={}).get_json()
    body = client.post(
        "/v1/responses", json={"model": "fake-model", "input": "hi", "conversation": conv["id"], "store": False}
    ).get_json()
    assert body["store"] is False and body["status"] == "completed"
    assert client.get(f"/v1/responses/{body['id']}").status_code == 404
    assert client.get(f"/v1/conversations/{conv['id']}/items").get_json()["data"] == []


def test_max_output_tokens_cut_is_incomplete(client, fake_upstream):
    fake_upstream.script(text="a b c d e f g h i j k l m n o p q r s t u v w x y z")
    body = client.post("/v1/responses", json={"model": "fake-model", "input": "hi", "max_output_tokens": 16}).get_json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["max_output_tokens"] == 16 and body["output"][-1]["status"] == "incomplete"
    sent = fake_upstream.last.json
    assert 16 in (sent.get("max_tokens"), sent.get("max_output_tokens"))


def test_streaming_events_follow_openais_order_and_the_stored_response_equals_the_streamed(client, fake_upstream):
    conv = client.post("/v1/conversations", json={}).get_json()
    fake_upstream.script(text="streamed reply here", reasoning="thinking hard")
    answer = client.post(
        "/v1/responses", json={"model": "fake-model", "input": "go", "conversation": conv["id"], "stream": True}
    )
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    events = _events(answer.data)
    final = _check_stream(events)
    kinds = [e["type"] for e in events]
    assert (
        kinds[-8:]
        == [
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 3,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ][-8:]
        or kinds[-1] == "response.completed"
    )
    assert "response.reasoning_text.delta" in kinds
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "streamed reply here"
    assert final["status"] == "completed"
    assert client.get(f"/v1/responses/{final['id']}").get_json() == final
    assert [o["type"] for o in final["output"]] == ["reasoning", "message"]


def test_parallel_tool_calls_and_the_loop_continues_with_outputs(client, fake_upstream, api):
    tools = [
        {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}},
        {"type": "function", "name": "time", "parameters": {"type": "object", "properties": {}}},
    ]
    conv = client.post("/v1/conversations", json={}).get_json()
    fake_upstream.script(tool_calls=[("weather", '{"city": "Oslo"}'), ("time", "{}")])
    answer = client.post(
        "/v1/responses",
        json={"model": "fake-model", "input": "both", "conversation": conv["id"], "tools": tools, "stream": True},
    )
    events = _events(answer.data)
    final = _check_stream(events)
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert [(c["name"], c["arguments"]) for c in calls] == [("weather", '{"city": "Oslo"}'), ("time", "{}")]
    sent_tools = fake_upstream.last.json["tools"]
    assert [t["function"]["name"] if api == "chat" else t["name"] for t in sent_tools] == ["weather", "time"]
    outputs = [{"type": "function_call_output", "call_id": c["call_id"], "output": "sunny"} for c in calls]
    follow = client.post(
        "/v1/responses", json={"model": "fake-model", "input": outputs, "conversation": conv["id"], "tools": tools}
    )
    assert follow.status_code == 200, follow.get_json()
    body = fake_upstream.last.json
    if api == "chat":
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant", "tool", "tool"]
        assert [c["id"] for c in body["messages"][1]["tool_calls"]] == [c["call_id"] for c in calls]
    else:
        assert [i["type"] for i in body["input"]] == [
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
        ]


@pytest.mark.parametrize(
    ("choice", "expected_chat", "expected_responses"),
    [
        ("none", "none", "none"),
        ("required", "required", "required"),
        (
            {"type": "function", "name": "weather"},
            {"type": "function", "function": {"name": "weather"}},
            {"type": "function", "name": "weather"},
        ),
    ],
)
def test_tool_choice_is_passed_on(client, fake_upstream, api, choice, expected_chat, expected_responses):
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}]
    body = client.post(
        "/v1/responses", json={"model": "fake-model", "input": "x", "tools": tools, "tool_choice": choice}
    ).get_json()
    assert body["tool_choice"] == choice
    assert fake_upstream.last.json["tool_choice"] == (expected_chat if api == "chat" else expected_responses)
    kinds = [o["type"] for o in body["output"]]
    assert kinds == (["message"] if choice == "none" else ["function_call"])


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({}, "model", "Missing required parameter: 'model'."),
        ({"model": "m", "input": "x", "temperature": 2.5}, "temperature", None),
        ({"model": "m", "input": "x", "top_p": -1}, "top_p", None),
        ({"model": "m", "input": "x", "max_output_tokens": 15}, "max_output_tokens", None),
        ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice", None),
        ({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice", None),
        ({"model": "m", "input": "x", "background": True}, "background", None),
        ({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt", None),
        ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", None),
        ({"model": "m", "input": "x", "tools": [{"type": "mcp", "server_label": "s"}]}, "tools[0].type", None),
        ({"model": "m", "input": "x", "include": ["reasoning.encrypted_content"]}, "include", None),
        ({"model": "m", "input": "x", "unknown_thing": 1}, "unknown_thing", "Unknown parameter: 'unknown_thing'."),
        ({"model": "m", "input": "x", "conversation": 5}, "conversation", None),
        ({"model": "m", "input": "x", "conversation": "abc"}, "conversation", None),
        ({"model": "m", "input": 7}, "input", None),
        ({"model": "m"}, "input", "Missing required parameter: 'input'."),
    ],
)
def test_bad_requests_are_400s_naming_the_parameter(client, fake_upstream, body, param, message):
    answer = client.post("/v1/responses", json=body)
    assert answer.status_code == 400
    error = _error(answer)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert message is None or error["message"] == message
    assert param.split("[")[0].split(".")[0] in error["message"]
    assert fake_upstream.requests == []


def test_conversation_and_previous_response_are_mutually_exclusive(client, fake_upstream):
    conv = client.post("/v1/conversations", json={}).get_json()
    answer = client.post(
        "/v1/responses",
        json={"model": "m", "input": "x", "conversation": conv["id"], "previous_response_id": "resp_abc"},
    )
    error = _error(answer)
    assert answer.status_code == 400 and error["code"] == "mutually_exclusive_parameters"
    assert "'previous_response_id'" in error["message"] and "'conversation'" in error["message"]
    assert "Mutually exclusive" in error["message"]


def test_unknown_conversation_is_404_and_unknown_previous_response_is_400(client, fake_upstream):
    answer = client.post("/v1/responses", json={"model": "m", "input": "x", "conversation": "conv_missing"})
    assert answer.status_code == 404 and _error(answer)["message"] == "Conversation with id 'conv_missing' not found."
    answer = client.post("/v1/responses", json={"model": "m", "input": "x", "previous_response_id": "resp_missing"})
    assert answer.status_code == 400
    assert _error(answer) == {
        "message": "Previous response with id 'resp_missing' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert fake_upstream.requests == []


def _nothing_stored(app, conv_id: str) -> None:
    store = get_state(app).store_for("anonymous")
    assert store.items.list(conv_id).data == []
    assert store.responses.list().data == []


def test_upstream_status_and_error_body_pass_through(app, client, fake_upstream):
    conv = client.post("/v1/conversations", json={}).get_json()
    answer = client.post("/v1/responses", json={"model": "missing-model", "input": "x", "conversation": conv["id"]})
    assert answer.status_code == 404
    error = _error(answer)
    assert error["code"] == "model_not_found" and "missing-model" in error["message"]
    fake_upstream.script(status=500, error_message="the GPU caught fire")
    answer = client.post("/v1/responses", json={"model": "fake-model", "input": "x", "conversation": conv["id"]})
    assert answer.status_code == 500 and _error(answer)["message"] == "the GPU caught fire"
    _nothing_stored(app, conv["id"])


def test_a_hanging_upstream_is_a_504_and_an_unreachable_one_a_502(make_app, app, client, fake_upstream, api):
    conv = client.post("/v1/conversations", json={}).get_json()
    fake_upstream.script(hang=5)
    started = time.monotonic()
    answer = client.post("/v1/responses", json={"model": "fake-model", "input": "x", "conversation": conv["id"]})
    assert answer.status_code == 504 and time.monotonic() - started < 4.5
    error = _error(answer)
    assert "SMG_HISTORY_UPSTREAM_TIMEOUT" in error["message"] and "sk-upstream-secret" not in json.dumps(error)
    _nothing_stored(app, conv["id"])
    dead = make_app(
        SMG_HISTORY_UPSTREAM_URL="http://127.0.0.1:9/v1",
        SMG_HISTORY_UPSTREAM_API=api,
        SMG_HISTORY_UPSTREAM_API_KEY="sk-upstream-secret",
    )
    answer = dead.test_client().post("/v1/responses", json={"model": "fake-model", "input": "x"})
    assert answer.status_code == 502
    error = _error(answer)
    assert "SMG_HISTORY_UPSTREAM_URL" in error["message"] and "127.0.0.1:9" not in error["message"]


def test_an_upstream_refusing_our_key_is_a_502_that_names_the_setting(client, fake_upstream):
    fake_upstream.script(status=401, error_message="Incorrect API key provided: sk-upstream-secret")
    answer = client.post("/v1/responses", json={"model": "fake-model", "input": "x"})
    assert answer.status_code == 502
    error = _error(answer)
    assert "SMG_HISTORY_UPSTREAM_API_KEY" in error["message"] and "sk-upstream" not in error["message"]


def test_a_stream_dropped_mid_way_fails_and_stores_nothing(app, client, fake_upstream):
    conv = client.post("/v1/conversations", json={}).get_json()
    fake_upstream.script(text="one two three four five six", drop_after=4)
    answer = client.post(
        "/v1/responses", json={"model": "fake-model", "input": "x", "conversation": conv["id"], "stream": True}
    )
    events = _events(answer.data)
    final = _check_stream(events)
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    _nothing_stored(app, conv["id"])


def test_truncation_auto_drops_the_oldest_items_until_the_context_fits(client, fake_upstream):
    items = [{"role": "user", "content": f"m{n}"} for n in range(12)]
    conv = client.post("/v1/conversations", json={"items": items}).get_json()
    fake_upstream.context_window = 6
    refused = client.post("/v1/responses", json={"model": "fake-model", "input": "now", "conversation": conv["id"]})
    assert refused.status_code == 400 and _error(refused)["code"] == "context_length_exceeded"
    answer = client.post(
        "/v1/responses",
        json={"model": "fake-model", "input": "now", "conversation": conv["id"], "truncation": "auto"},
    )
    assert answer.status_code == 200 and answer.get_json()["truncation"] == "auto"
    sent = [text for _, text in _sent(fake_upstream)]
    assert len(sent) <= 6 and sent[-1] == "now" and sent[:-1] == [f"m{n}" for n in range(12)][-(len(sent) - 1) :]


def test_no_upstream_is_a_501_naming_the_setting(make_app):
    answer = make_app().test_client().post("/v1/responses", json={"model": "m", "input": "x"})
    assert answer.status_code == 501
    assert "SMG_HISTORY_UPSTREAM_URL" in _error(answer)["message"]


def test_a_client_that_disconnects_keeps_an_incomplete_turn_and_closes_the_upstream(app, fake_upstream):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = get_state(app).store_for("anonymous")
        conv = store.conversations.create()
        fake_upstream.script(text=" ".join(f"w{n}" for n in range(200)), delay=0.02)
        body = json.dumps({"model": "fake-model", "input": "long", "conversation": conv.id, "stream": True})
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
        sock.sendall(
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        seen = b""
        while b"output_text.delta" not in seen:
            seen += sock.recv(4096)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        assert fake_upstream.wait_for_disconnect(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not store.responses.list().data:
            time.sleep(0.05)
        [stored] = store.responses.list().data
        assert stored.status == "incomplete" and 0 < len(stored.output_text.split()) < 200
        items = [i.payload for i in store.items.list(conv.id, order="asc").data]
        assert [i["role"] for i in items] == ["user", "assistant"] and items[1]["status"] == "incomplete"
    finally:
        server.shutdown()
        thread.join(5)


class DownAtStore(MemoryBackend):
    """A memory backend whose database 'goes down' just as a turn is stored."""

    unavailable_errors = (ConnectionError,)

    def store_turn(self, response, items, *, updated_at, expires_at):
        raise ConnectionError("connection reset while storing")


def test_a_storage_outage_after_the_model_answered_is_a_503_and_a_failed_stream(make_app, fake_upstream):
    app = make_app(
        SMG_HISTORY_BACKEND=f"{__name__}.DownAtStore",
        SMG_HISTORY_ALLOW_ANONYMOUS=True,
        SMG_HISTORY_UPSTREAM_URL=fake_upstream.base_url,
    )
    client = app.test_client()
    answer = client.post("/v1/responses", json={"model": "fake-model", "input": "x"})
    assert answer.status_code == 503
    error = _error(answer)
    assert error["type"] == "server_error"
    assert error["message"].startswith(
        "The model answered, but the turn could not be stored, so nothing of it was kept"
    )
    assert "connection reset" not in error["message"]
    events = _events(client.post("/v1/responses", json={"model": "fake-model", "input": "x", "stream": True}).data)
    final = _check_stream(events)
    assert final["status"] == "failed" and final["error"]["message"].startswith("The model answered, but")
    assert client.get(f"/v1/responses/{final['id']}").status_code == 404


def test_reasoning_options_go_to_a_responses_upstream_and_are_refused_for_chat(client, fake_upstream, api):
    answer = client.post("/v1/responses", json={"model": "fake-model", "input": "x", "reasoning": {"effort": "low"}})
    if api == "chat":
        assert answer.status_code == 400
        error = _error(answer)
        assert error["param"] == "reasoning" and error["code"] == "unsupported_parameter"
        assert fake_upstream.requests == []
    else:
        assert answer.status_code == 200 and answer.get_json()["reasoning"] == {"effort": "low"}
        assert fake_upstream.last.json["reasoning"] == {"effort": "low"}
