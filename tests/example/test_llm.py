"""The real LLM path: the official ``openai`` client streaming from a fake
OpenAI-compatible server on loopback."""

from __future__ import annotations

import time

import pytest

from example_app.responders import SYSTEM_PROMPT, WORD_COUNT_TOOL

from .conftest import events_of, new_chat, read_events, send, signed_in
from .fake_llm import LONG_WORDS, MODEL, FakeLLM


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
    assert body["items"][1]["content"][0]["text"] == "Thinking about an echo."
    assert body["items"][2]["content"][0]["text"] == "Fake reply 1 to: hello"
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"
    sent = llm.requests[0]
    assert sent["model"] == MODEL
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hello"}]
    function = {k: v for k, v in WORD_COUNT_TOOL.items() if k != "type"}
    assert sent["tools"] == [{"type": "function", "function": {**function, "strict": True}}]

    stored = client.get(f"/v1/responses/{body['response_id']}").json
    assert stored["model"] == MODEL
    usage = stored["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (10, 5, 15)
    assert stored["metadata"] == {"responder": "openai", "attempt": "1"}
    assert stored["status"] == "completed"
    assert stored["conversation"] == {"id": conv} and stored["previous_response_id"] is None
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

    # Two responses: the call, then the answer to its output, sent back by the app.
    follow_up = llm.requests[-1]["messages"]
    assert [m["role"] for m in follow_up] == ["system", "user", "assistant", "user", "assistant", "tool"]
    assert follow_up[4]["tool_calls"][0]["id"] == call["call_id"]
    assert follow_up[5] == {"role": "tool", "tool_call_id": call["call_id"], "content": output["output"]}
    assert call["response_id"] != second["response_id"] == second["items"][-1]["response_id"]
    asked = client.get(f"/v1/responses/{call['response_id']}").json
    assert [o["type"] for o in asked["output"]] == ["reasoning", "function_call"]
    assert [i["type"] for i in client.get(f"/v1/responses/{second['response_id']}/input_items").json["data"]] == [
        "function_call_output"
    ]

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
    assert first["items"][-1]["content"][0]["text"] == context[2]["content"]


def test_model_server_error_is_reported_and_nothing_is_stored(client):
    conv = new_chat(client)
    response = send(client, conv, "please fail")
    assert response.status_code == 502
    assert response.json["error"]["message"] == "The model server failed: the fake model refuses"
    assert response.json["conversation"] == conv
    assert client.get(f"/v1/conversations/{conv}/items").json["data"] == []
    assert client.get(f"/v1/responses?conversation={conv}").json["data"] == []


def test_only_whole_tool_call_pairs_reach_the_model(client, llm):
    """A chat whose history holds an orphan function output and a call that
    was never answered (cut off by a context window, or by a failure) still
    makes a valid request: the extension's chat adapter leaves them out."""
    conv = new_chat(client)
    orphan = {"type": "function_call_output", "call_id": "cut", "output": "orphan output"}
    pending = {"type": "function_call", "call_id": "pending", "name": "word_count", "arguments": "{}"}
    pair = [
        {"type": "function_call", "call_id": "a", "name": "word_count", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "word_count", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call_output", "call_id": "b", "output": "2"},
    ]
    said = {"type": "message", "role": "user", "content": "hi"}
    added = client.post(f"/v1/conversations/{conv}/items", json={"items": [orphan, said, *pair, pending]})
    assert added.status_code == 200, added.json
    send(client, conv, "go on")
    messages = llm.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool", "user"]
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
    [(_, reasoning)] = [(name, data) for name, data in events if name == "item"]
    assert reasoning["item"]["type"] == "reasoning"
    assert reasoning["item"]["content"] == [{"type": "reasoning_text", "text": "Thinking about an echo."}]
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) == 6 and "".join(deltas) == "Fake reply 1 to: hello there"
    assert done["status"] == "completed"
    assert [i["type"] for i in done["items"]] == ["message", "reasoning", "message"]
    assert done["items"][0]["id"] == start["user_item"]["id"]
    assert done["items"][-1]["content"][0]["text"] == "Fake reply 1 to: hello there"
    stored = client.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in stored] == [i["id"] for i in done["items"]]


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
        for name, data in read_events(response):
            if name == "start":
                stream_id = data["stream_id"]
            elif name == "delta":
                sent.append(data["text"])
                if len(sent) == 5:
                    stopped = client.post(f"/chat/streams/{stream_id}/stop")
                    assert stopped.json == {"id": stream_id, "stopping": True}
            elif name == "done":
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
        # The app closed its stream from the model server: the model stops too.
        for _ in range(100):
            if slow.streams_closed:
                break
            time.sleep(0.02)
        assert slow.streams_closed == 1


def test_regenerate_stores_a_second_response_to_the_same_input(client, llm):
    conv = new_chat(client)
    first = send(client, conv, "hello").json
    second = send(client, conv, "and again").json
    again = client.post(f"/chat/{conv}/regenerate", json={"response_id": second["response_id"]}).json
    assert again["replaced"] == [i["id"] for i in second["items"]]
    old = client.get(f"/v1/responses/{second['response_id']}").json
    new = client.get(f"/v1/responses/{again['response_id']}").json
    old_input = client.get(f"/v1/responses/{old['id']}/input_items").json["data"]
    new_input = client.get(f"/v1/responses/{new['id']}/input_items").json["data"]
    without_id = lambda items: [{k: v for k, v in i.items() if k != "id"} for i in items]  # noqa: E731
    assert without_id(old_input) == without_id(new_input) and old_input[0]["content"][0]["text"] == "and again"
    assert new["metadata"] == {"responder": "openai", "attempt": "2", "regenerates": second["response_id"]}
    assert new["instructions"] == old["instructions"] and new["tools"] == old["tools"]
    # The model got the same context again, without the replaced answer.
    assert llm.requests[-1]["messages"] == llm.requests[-2]["messages"]
    items = client.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in items] == [i["id"] for i in first["items"] + again["items"]]


def test_a_new_chat_whose_first_reply_fails_is_deleted(client):
    response = client.post("/chat/messages", json={"text": "please fail at once"})
    assert response.status_code == 502
    assert "the fake model refuses" in response.json["error"]["message"]
    assert response.json["conversation"] is None
    assert client.get("/v1/conversations").json["data"] == []
    assert client.get("/v1/responses").json["data"] == []


def test_a_stream_that_breaks_off_stores_nothing(client):
    """The extension keeps nothing of a turn whose model failed half-way: the
    page puts the message back in the box, to be sent again."""
    conv = new_chat(client)
    response = client.post(
        f"/chat/{conv}/messages", json={"text": "please break"}, headers={"Accept": "text/event-stream"}
    )
    events = events_of(response)
    assert [name for name, _ in events] == ["start", "delta", "delta", "delta", "error"]
    assert events[-1][1] == {"message": events[-1][1]["message"], "conversation": conv}
    assert "broke off" in events[-1][1]["message"]
    assert client.get(f"/v1/conversations/{conv}/items").json["data"] == []
    assert send(client, conv, "please break").status_code == 502
