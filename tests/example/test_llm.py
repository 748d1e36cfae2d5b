"""The real LLM path: the official ``openai`` client against a fake
OpenAI-compatible server on loopback."""

from __future__ import annotations

import pytest

from .conftest import new_chat, send, signed_in
from .fake_llm import MODEL, FakeLLM


@pytest.fixture
def llm():
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def client(make_example, llm):
    app = make_example(EXAMPLE_LLM_BASE_URL=llm.base_url, EXAMPLE_LLM_API_KEY="sk-test", EXAMPLE_LLM_MODEL=MODEL)
    return signed_in(app, "carol")


def test_page_names_the_model_server(client, llm):
    page = client.get("/").get_data(as_text=True)
    assert f"model {MODEL} at {llm.base_url}" in page
    assert "local responder" not in page


def test_reply_is_stored_as_response_and_items(client, llm):
    conv = new_chat(client)
    body = send(client, conv, "hello").json
    assert body["model"] == MODEL
    assert [(i["type"], i.get("role")) for i in body["items"]] == [
        ("message", "user"),
        ("reasoning", None),
        ("message", "assistant"),
    ]
    assert body["items"][1]["summary"][0]["text"] == "Thinking about an echo."
    assert body["items"][2]["content"][0]["text"] == "Fake reply 1 to: hello"
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"
    sent = llm.requests[0]
    assert sent["model"] == MODEL
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["tools"][0]["function"]["name"] == "word_count"

    stored = client.get(f"/v1/responses/{body['response_id']}").json
    assert stored["model"] == MODEL
    assert stored["usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert stored["metadata"] == {"responder": "openai"}
    assert stored["previous_response_id"] is None
    assert [o["id"] for o in stored["output"]] == [i["id"] for i in body["items"][1:]]


def test_tool_call_round_trip_and_history_as_context(client, llm):
    conv = new_chat(client)
    first = send(client, conv, "hello").json
    second = send(client, conv, "please count my words").json
    kinds = [i["type"] for i in second["items"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output", "message"]
    call, output = second["items"][2], second["items"][3]
    assert call["name"] == "word_count" and call["call_id"] == output["call_id"]
    assert output["output"] == '{"words": 4, "characters": 21}'
    assert second["items"][-1]["content"][0]["text"] == f"The tool says: {output['output']}"

    follow_up = llm.requests[-1]["messages"]
    assert [m["role"] for m in follow_up] == ["system", "user", "assistant", "user", "assistant", "tool"]
    assert follow_up[4]["tool_calls"][0]["id"] == call["call_id"]

    stored = client.get(f"/v1/responses/{second['response_id']}").json
    assert stored["previous_response_id"] == first["response_id"]
    assert stored["usage"] == {"input_tokens": 20, "output_tokens": 10, "total_tokens": 30}
    assert [o["type"] for o in stored["output"]] == kinds[1:]

    send(client, conv, "and now?")
    context = llm.requests[-1]["messages"]
    assert [m["role"] for m in context] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert context[1]["content"] == "hello" and context[2]["content"] == "Fake reply 1 to: hello"
    assert context[-1]["content"] == "and now?"


def test_model_server_error_is_reported(client):
    conv = new_chat(client)
    response = send(client, conv, "please fail")
    assert response.status_code == 502
    message = response.json["error"]["message"]
    assert "model server" in message and "the fake model refuses" in message
    assert [i["content"][0]["text"] for i in response.json["items"]] == ["please fail"]
    stored = client.get(f"/v1/conversations/{conv}/items").json["data"]
    assert [i["id"] for i in stored] == [response.json["items"][0]["id"]]


def test_context_keeps_only_whole_tool_call_pairs():
    from example_app.responders import chat_messages
    from flask_smg_history import Item

    def item(kind, **payload):
        return Item(id="x", conversation_id="c", type=kind, payload={"type": kind, **payload}, created_at=0)

    context = [
        item("function_call_output", call_id="cut", output="orphan output"),
        item("message", role="user", content=[{"type": "input_text", "text": "hi"}]),
        item("function_call", call_id="a", name="word_count", arguments="{}"),
        item("function_call", call_id="b", name="word_count", arguments="{}"),
        item("function_call_output", call_id="a", output="1"),
        item("function_call_output", call_id="b", output="2"),
        item("function_call", call_id="pending", name="word_count", arguments="{}"),
        item("reasoning", summary=[]),
    ]
    messages = chat_messages(context)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["a", "b"]
