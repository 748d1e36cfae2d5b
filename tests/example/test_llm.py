"""The real LLM path: the official ``openai`` client streaming from a fake
OpenAI-compatible server on loopback."""

from __future__ import annotations

import json

import pytest

from .conftest import new_chat, send, signed_in
from .fake_llm import LONG_WORDS, MODEL, FakeLLM


@pytest.fixture
def llm():
    with FakeLLM() as fake:
        yield fake


def events_of(response) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed answer, as (event, data) pairs."""
    found = []
    for block in response.get_data(as_text=True).split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((lines["event"], json.loads(lines["data"])))
    return found


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
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["tools"][0]["function"]["name"] == "word_count"

    stored = client.get(f"/v1/responses/{body['response_id']}").json
    assert stored["model"] == MODEL
    assert stored["usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert stored["metadata"] == {"responder": "openai", "attempt": "1"}
    assert stored["status"] == "completed"
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
    assert response.json["conversation"] == conv
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


def test_reply_streams_token_by_token_as_server_sent_events(client, llm):
    conv = new_chat(client)
    response = client.post(
        f"/chat/{conv}/messages", json={"text": "hello there"}, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    events = events_of(response)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    start, done = events[0][1], events[-1][1]
    assert start["model"] == MODEL and start["user_item"]["content"][0]["text"] == "hello there"
    assert start["conversation"] == {"id": conv, "title": "hello there", "created": False}
    assert (
        "item",
        {"item": {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking about an echo."}]}},
    ) in events
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) == 6 and "".join(deltas) == "Fake reply 1 to: hello there"
    assert done["status"] == "completed"
    assert [i["type"] for i in done["items"]] == ["reasoning", "message"]
    assert done["items"][-1]["content"][0]["text"] == "Fake reply 1 to: hello there"
    stored = client.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in stored] == [start["user_item"]["id"], *(i["id"] for i in done["items"])]


def test_stop_mid_stream_stores_what_was_sent_as_incomplete(make_example):
    with FakeLLM(token_delay=0.01) as slow:
        app = make_example(EXAMPLE_LLM_BASE_URL=slow.base_url, EXAMPLE_LLM_MODEL=MODEL)
        client = signed_in(app, "carol")
        conv = new_chat(client)
        response = client.post(
            f"/chat/{conv}/messages",
            json={"text": "a long one please"},
            headers={"Accept": "text/event-stream"},
            buffered=False,
        )
        sent, stream_id, done = [], None, None
        for block in response.response:
            for part in block.decode().split("\n\n"):
                if not part.strip():
                    continue
                lines = dict(line.split(": ", 1) for line in part.split("\n"))
                data = json.loads(lines["data"])
                if lines["event"] == "start":
                    stream_id = data["stream_id"]
                elif lines["event"] == "delta":
                    sent.append(data["text"])
                    if len(sent) == 5:
                        stopped = client.post(f"/chat/streams/{stream_id}/stop")
                        assert stopped.json == {"id": stream_id, "stopping": True}
                elif lines["event"] == "done":
                    done = data
        response.close()
        assert 5 <= len(sent) < LONG_WORDS
        assert done["status"] == "incomplete"
        text = done["items"][-1]["content"][0]["text"]
        assert text == "".join(sent)
        stored = client.get(f"/v1/responses/{done['response_id']}").json
        assert stored["status"] == "incomplete"
        assert stored["output"][-1]["status"] == "incomplete"
        assert stored["output"][-1]["content"][0]["text"] == text
        items = client.get(f"/v1/conversations/{conv}/items?order=desc&limit=1").json["data"]
        assert items[0]["content"][0]["text"] == text and items[0]["status"] == "incomplete"
        assert app.extensions["example_streams"].stop("carol", stream_id) is False
        assert len(app.extensions["example_streams"]) == 0


def test_regenerate_stores_a_second_response_to_the_same_input(client, llm):
    conv = new_chat(client)
    first = send(client, conv, "hello").json
    second = send(client, conv, "and again").json
    again = client.post(f"/chat/{conv}/regenerate", json={"response_id": second["response_id"]}).json
    assert again["replaced"] == [i["id"] for i in second["items"][1:]]
    old = client.get(f"/v1/responses/{second['response_id']}").json
    new = client.get(f"/v1/responses/{again['response_id']}").json
    assert new["previous_response_id"] == old["previous_response_id"] == first["response_id"]
    old_input = client.get(f"/v1/responses/{old['id']}/input_items").json["data"]
    new_input = client.get(f"/v1/responses/{new['id']}/input_items").json["data"]
    assert old_input == new_input and old_input[0]["content"][0]["text"] == "and again"
    assert new["metadata"] == {"responder": "openai", "attempt": "2", "regenerates": second["response_id"]}
    # The model got the same context again, without the replaced answer.
    assert llm.requests[-1]["messages"] == llm.requests[-2]["messages"]
    items = client.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in items] == [i["id"] for i in first["items"] + second["items"][:1] + again["items"]]


def test_a_new_chat_whose_first_reply_fails_keeps_the_message(client):
    response = client.post("/chat/messages", json={"text": "please fail at once"})
    assert response.status_code == 502
    conv = response.json["conversation"]
    stored = client.get(f"/v1/conversations/{conv}/items").json["data"]
    assert [i["content"][0]["text"] for i in stored] == ["please fail at once"]
    assert client.get(f"/v1/responses?conversation={conv}").json["data"] == []


def test_a_stream_that_breaks_off_keeps_what_came_as_incomplete(client):
    conv = new_chat(client)
    response = send(client, conv, "please break")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "incomplete"
    assert "model server" in body["error"]
    assert body["items"][-1]["content"][0]["text"] == "Half a reply "
    stored = client.get(f"/v1/responses/{body['response_id']}").json
    assert stored["status"] == "incomplete"
