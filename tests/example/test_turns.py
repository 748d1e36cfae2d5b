"""Turns through ``history.responses.create``: the local responder as an
in-process upstream (streamed and not, and on ``POST /v1/responses``), the
tool loop, Stop, a failed regeneration, the preference export of a
regeneration, and the chat adapter against the shared fake upstream."""

from __future__ import annotations

import json
import time

from flask import session

from example_app.responders import LOCAL_MODEL, SYSTEM_PROMPT
from example_app.turns import MAX_TOOL_ROUNDS
from flask_smg_history import UpstreamError, history
from flask_smg_history.responses import Finish, ToolCallDelta

from ..support.fake_upstream import fake_upstream, fake_upstream_server  # noqa: F401
from .conftest import events_of, new_chat, read_events, send, signed_in


def as_user(app, name: str = "alice"):
    context = app.test_request_context()
    context.push()
    session["user"] = name
    return context


def test_the_local_responder_is_an_in_process_upstream(example):
    context = as_user(example)
    try:
        conv = history.conversations.create()
        whole = history.responses.create(model=LOCAL_MODEL, conversation=conv.id, input="three little words")
        assert whole.status == "completed" and whole.model == LOCAL_MODEL
        assert [o["type"] for o in whole.output] == ["reasoning", "message"]
        text = whole.output[-1]["content"][0]["text"]
        assert text.startswith("You said “three little words”: **3** words")
        assert whole.usage["input_tokens"] == 3 and whole.usage["output_tokens"] > 10

        events = list(history.responses.create(model=LOCAL_MODEL, conversation=conv.id, input="again", stream=True))
        kinds = [e["type"] for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
        assert "response.reasoning_text.delta" in kinds
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert deltas.startswith("You said “again”")
        assert events[-1]["response"]["output"][-1]["content"][0]["text"] == deltas
        # The second turn read the first: the conversation is its context.
        assert events[-1]["response"]["usage"]["input_tokens"] == 3 + len(text.split()) + 1

        call = history.responses.create(model=LOCAL_MODEL, input="/tool count me", store=False)
        [fc] = [o for o in call.output if o["type"] == "function_call"]
        assert (fc["name"], json.loads(fc["arguments"])) == ("word_count", {"text": "count me"})
        mcp = history.responses.create(model=LOCAL_MODEL, input="/mcp ping", store=False)
        assert [o["type"] for o in mcp.output] == ["reasoning", "mcp_call", "message"]
        assert mcp.output[1]["output"] == "ping"
    finally:
        context.pop()


def test_the_local_responder_answers_on_v1_responses_too(alice):
    answer = alice.post("/v1/responses", json={"model": LOCAL_MODEL, "input": "hi there"})
    assert answer.status_code == 200, answer.json
    assert answer.json["output"][-1]["content"][0]["text"].startswith("You said “hi there”")


def test_the_tool_loop_runs_the_function_and_sends_its_output_back(alice):
    conv = new_chat(alice)
    response = alice.post(
        f"/chat/{conv}/messages", json={"text": "/tool count these four words"}, headers={"Accept": "text/event-stream"}
    )
    events = events_of(response)
    items = [data["item"]["type"] for name, data in events if name == "item"]
    assert items == ["reasoning", "function_call", "function_call_output"]
    done = events[-1][1]
    assert events[-1][0] == "done" and done["status"] == "completed"
    user, reasoning, call, output, answer = done["items"]
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert json.loads(output["output"]) == {"words": 4, "characters": 22}
    assert answer["content"][0]["text"] == f"`word_count` says: {output['output']}"
    asked = alice.get(f"/v1/responses/{call['response_id']}").json
    answered = alice.get(f"/v1/responses/{answer['response_id']}").json
    assert [o["type"] for o in asked["output"]] == ["reasoning", "function_call"]
    assert asked["metadata"] == answered["metadata"] == {"responder": "local", "attempt": "1"}
    assert [i["id"] for i in alice.get(f"/v1/responses/{answered['id']}/input_items").json["data"]] == [output["id"]]
    stored = alice.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in stored] == [i["id"] for i in done["items"]]
    assert user["id"] == events[0][1]["user_item"]["id"]


def test_the_tool_loop_stops_after_three_rounds(example, alice):
    local = example.extensions["example_responder"].local

    def always_calls(request):
        yield ToolCallDelta(0, f"call_{len(request.input)}", "word_count", '{"text": "again"}')
        yield Finish("tool_calls")

    local.stream = always_calls
    conv = new_chat(alice)
    body = send(alice, conv, "loop").json
    assert body["error"] == f"Stopped after {MAX_TOOL_ROUNDS} rounds of tool calls."
    assert [i["type"] for i in body["items"]] == ["message"] + ["function_call", "function_call_output"] * 2 + [
        "function_call"
    ]
    assert len(alice.get(f"/v1/responses?conversation={conv}").json["data"]) == MAX_TOOL_ROUNDS


def test_stop_stores_the_local_reply_as_incomplete(make_example):
    app = make_example(EXAMPLE_LOCAL_TOKEN_DELAY=0.005)
    client = signed_in(app, "carol")
    conv = new_chat(client)
    response = client.post(
        f"/chat/{conv}/messages", json={"text": "/long"}, headers={"Accept": "text/event-stream"}, buffered=False
    )
    sent, done = [], None
    for name, data in read_events(response):
        if name == "start":
            stream_id = data["stream_id"]
        elif name == "delta":
            sent.append(data["text"])
            if len(sent) == 8:
                assert client.post(f"/chat/streams/{stream_id}/stop").json["stopping"] is True
        elif name == "done":
            done = data
    response.close()
    assert done["status"] == "incomplete" and len(sent) == 8
    stored = client.get(f"/v1/responses/{done['response_id']}").json
    assert stored["status"] == "incomplete" and stored["output"][-1]["content"][0]["text"] == "".join(sent)
    items = client.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in items] == [i["id"] for i in done["items"]]
    assert items[-1]["status"] == "incomplete" and items[-1]["response_id"] == stored["id"]
    assert len(app.extensions["example_streams"]) == 0


def test_a_failed_regeneration_puts_the_reply_back(example, alice):
    conv = new_chat(alice)
    first = send(alice, conv, "hello").json
    before = alice.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]

    def down(request):
        raise UpstreamError("The model is napping.", status=503)
        yield  # a generator, as an upstream's stream usually is

    example.extensions["example_responder"].local.stream = down
    failed = alice.post(f"/chat/{conv}/regenerate", json={"response_id": first["response_id"]})
    assert failed.status_code == 502 and "napping" in failed.json["error"]["message"]
    assert alice.get(f"/v1/conversations/{conv}/items?order=asc").json["data"] == before
    assert len(alice.get(f"/v1/responses?conversation={conv}").json["data"]) == 1


def test_a_regeneration_rated_apart_from_the_first_is_a_preference_pair(example, alice):
    conv = new_chat(alice)
    first = send(alice, conv, "Which is better?").json
    again = alice.post(f"/chat/{conv}/regenerate", json={"response_id": first["response_id"]}).json
    alice.post(f"/v1/responses/{first['response_id']}/feedback", json={"rating": "negative"})
    alice.post(f"/v1/responses/{again['response_id']}/feedback", json={"rating": "positive"})
    result = example.test_cli_runner().invoke(args=["smg-history", "export", "--format", "preference-jsonl"])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["input"]["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Which is better?"},
    ]
    assert line["preferred_output"][0]["content"] == again["items"][-1]["content"][0]["text"]
    assert line["preferred_output"][0]["content"].startswith("(Take 2.)")
    assert line["non_preferred_output"][0]["content"] == first["items"][-1]["content"][0]["text"]
    assert line["input"]["tools"][0]["function"]["name"] == "word_count"


def test_a_turn_goes_through_the_chat_adapter_to_a_real_server(make_example, fake_upstream):  # noqa: F811
    app = make_example(EXAMPLE_LLM_BASE_URL=fake_upstream.base_url, EXAMPLE_LLM_MODEL="fake-model")
    client = signed_in(app, "dora")
    first = client.post("/chat/messages", json={"text": "hello model"}).json
    assert first["items"][-1]["content"][0]["text"] == "echo: hello model"
    conv = first["conversation"]
    second = send(client, conv, "and again").json
    assert second["items"][-1]["content"][0]["text"] == "echo: and again"
    assert second["model"] == "fake-model"
    sent = fake_upstream.last
    assert sent.path == "/v1/chat/completions" and sent.stream
    assert sent.json["model"] == "fake-model"
    assert sent.json["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "hello model"},
        {"role": "assistant", "content": "echo: hello model"},
        {"role": "user", "content": "and again"},
    ]
    assert [t["function"]["name"] for t in sent.json["tools"]] == ["word_count"]
    # Stop closes the upstream's stream: the server sees its client go away.
    fake_upstream.script(text="many words " * 200, delay=0.01)
    response = client.post(
        f"/chat/{conv}/messages", json={"text": "go long"}, headers={"Accept": "text/event-stream"}, buffered=False
    )
    for name, data in read_events(response):
        if name == "start":
            stream_id = data["stream_id"]
        elif name == "delta":
            client.post(f"/chat/streams/{stream_id}/stop")
        elif name == "done":
            done = data
    response.close()
    assert done["status"] == "incomplete"
    assert fake_upstream.wait_for_disconnect(timeout=5)
    for _ in range(50):
        if fake_upstream.last.outcome:
            break
        time.sleep(0.02)
    assert fake_upstream.last.outcome == "disconnected"
