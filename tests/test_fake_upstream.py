"""The fake upstream (``tests/support/fake_upstream.py``) against the official ``openai`` client.

Why: the tests of the ``/v1/responses`` endpoint trust this fake to behave like a real model server;
if it spoke a shape the real client would not parse, or failed in ways no real server fails, those
tests would prove nothing. So every behaviour is checked here through the client with strict response
validation, and the Responses API's wire bytes against OpenAI's published schema."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import openai
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .support import fake_upstream as upstream
from .support.fake_upstream import FakeUpstream, count_words, split_arguments, split_pieces

# The fixtures, bound here rather than imported by name so that a test's ``fake_upstream`` parameter
# does not shadow an import (ruff F811); a conftest can bind them the same way.
fake_upstream_server = upstream.fake_upstream_server
fake_upstream = upstream.fake_upstream

ROOT = Path(__file__).resolve().parents[1]
SPEC_CANDIDATES = (
    ROOT / "tests" / "support" / "data" / "responses-openapi.json",
    ROOT.parent / "shared" / "openai-api" / "responses-openapi.json",
)
USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello there world"}]


@cache
def _validator(name: str) -> Draft202012Validator:
    spec = next((path for path in SPEC_CANDIDATES if path.exists()), None)
    if spec is None:
        pytest.skip("responses-openapi.json (OpenAI's Responses API spec) is not on this machine")
    registry = Registry().with_resource("spec.json", DRAFT202012.create_resource(json.loads(spec.read_text())))
    return Draft202012Validator({"$ref": f"spec.json#/components/schemas/{name}"}, registry=registry)


def _valid(name: str, instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in _validator(name).iter_errors(instance)]
    assert not errors, f"{name} {json.dumps(instance)[:500]}: {errors}"


@pytest.fixture
def client(fake_upstream: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake_upstream.base_url, api_key="sk-test", max_retries=0, _strict_response_validation=True
    )


def _post_raw(fake: FakeUpstream, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST without the SDK, to see the exact bytes the fake sends."""
    request = urllib.request.Request(
        fake.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-raw"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read().decode()


def _sse(raw: str) -> list[tuple[str | None, str]]:
    """``(event, data)`` of each server-sent event in ``raw``."""
    events = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


# --------------------------------------------------------------------------- Chat Completions


def test_chat_plain_echoes_and_records_the_request(fake_upstream, client):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="gpt-test", messages=USER, temperature=0.3, max_completion_tokens=50, tools=tools, tool_choice="none"
    )
    assert reply.choices[0].message.content == "echo: hello there world"
    assert reply.choices[0].finish_reason == "stop" and reply.model == "gpt-test"
    assert reply.usage.prompt_tokens == 6  # "You are terse." + "hello there world"
    assert reply.usage.completion_tokens == 4 and reply.usage.total_tokens == 10

    seen = fake_upstream.last
    assert (seen.method, seen.path, seen.status, seen.outcome) == ("POST", "/v1/chat/completions", 200, "completed")
    assert seen.headers["Authorization"] == "Bearer sk-test" and seen.api_key == "sk-test"
    assert seen.json["messages"] == USER and seen.json["tools"] == tools and seen.json["tool_choice"] == "none"
    assert seen.json["temperature"] == 0.3 and seen.json["max_completion_tokens"] == 50
    assert seen.stream is False and len(fake_upstream.requests) == 1


def test_chat_stream_pieces_reassemble_with_a_usage_chunk(fake_upstream, client):
    stream = client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["echo: ", "hello ", "there ", "world"] == split_pieces("echo: hello there world")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 6 and chunks[-1].usage.total_tokens == 10
    assert all(c.usage is None for c in chunks[:-1])
    assert fake_upstream.last.stream and fake_upstream.last.outcome == "completed"


def test_chat_stream_wire_format(fake_upstream):
    status, raw = _post_raw(fake_upstream, "/chat/completions", {"model": "m", "messages": USER, "stream": True})
    assert status == 200 and raw.endswith("data: [DONE]\n\n")
    events = _sse(raw)
    assert all(event is None for event, _ in events) and events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert "usage" not in chunks[-1]  # no include_usage, no usage chunk
    assert fake_upstream.last.api_key == "sk-raw"


def test_chat_reasoning_content_comes_before_the_text(fake_upstream, client):
    fake_upstream.script(reasoning="Let me think.", text="Done.")
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    reasoning = [
        c.choices[0].delta.reasoning_content for c in chunks if getattr(c.choices[0].delta, "reasoning_content", None)
    ]
    content = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert reasoning == ["Let ", "me ", "think."] and content == ["Done."]
    first_content = next(i for i, c in enumerate(chunks) if c.choices[0].delta.content)
    last_reasoning = max(i for i, c in enumerate(chunks) if getattr(c.choices[0].delta, "reasoning_content", None))
    assert last_reasoning < first_content

    fake_upstream.script(reasoning="Let me think.", text="Done.")
    message = client.chat.completions.create(model="m", messages=USER).choices[0].message
    assert message.content == "Done." and message.reasoning_content == "Let me think."


def test_chat_parallel_tool_calls_reassemble(fake_upstream, client):
    calls = [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("get_time", {"tz": "Europe/Paris"}, "call_t")]
    fake_upstream.script(tool_calls=calls)
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assembled: dict[int, dict[str, str]] = {}
    argument_pieces: dict[int, int] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            slot = assembled.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                assert not slot["id"], "the id comes once, in the call's first delta"
                slot["id"], slot["name"] = call.id, call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
                argument_pieces[call.index] = argument_pieces.get(call.index, 0) + 1
    assert assembled[0]["name"] == "get_weather" and json.loads(assembled[0]["arguments"]) == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert assembled[1] == {"id": "call_t", "name": "get_time", "arguments": '{"tz": "Europe/Paris"}'}
    assert assembled[0]["id"].startswith("call_") and min(argument_pieces.values()) >= 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any(c.choices[0].delta.content for c in chunks)

    fake_upstream.script(tool_calls=calls)
    reply = client.chat.completions.create(model="m", messages=USER)
    message = reply.choices[0].message
    assert message.content is None and reply.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, c.id) for c in message.tool_calls][1] == ("get_time", "call_t")
    pieces = len(split_arguments(calls[0][1])) + len(split_arguments('{"tz": "Europe/Paris"}'))
    assert reply.usage.completion_tokens == pieces


def test_chat_finish_length_scripted_or_by_max_tokens(fake_upstream, client):
    fake_upstream.script(text="one two three", finish="length")
    reply = client.chat.completions.create(model="m", messages=USER)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("one two three", "length")

    for limit in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True, **limit))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "echo: hello " and chunks[-1].choices[0].finish_reason == "length"
    reply = client.chat.completions.create(model="m", messages=USER, max_tokens=2)
    assert reply.choices[0].message.content == "echo: hello " and reply.usage.completion_tokens == 2
    assert client.chat.completions.create(model="m", messages=USER, max_tokens=4).choices[0].finish_reason == "stop"


def test_tool_choice_is_honoured_without_a_script(fake_upstream, client):
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "second", "parameters": {"type": "object"}}},
    ]
    required = client.chat.completions.create(model="m", messages=USER, tools=tools, tool_choice="required")
    assert [(c.function.name, c.function.arguments) for c in required.choices[0].message.tool_calls] == [
        ("first", "{}")
    ]
    named = client.chat.completions.create(
        model="m", messages=USER, tools=tools, tool_choice={"type": "function", "function": {"name": "second"}}
    )
    assert named.choices[0].message.tool_calls[0].function.name == "second"
    none = client.chat.completions.create(model="m", messages=USER, tools=tools, tool_choice="none")
    assert none.choices[0].message.content == "echo: hello there world"

    rtools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": False}]
    response = client.responses.create(
        model="m", input="hi", tools=rtools, tool_choice={"type": "function", "name": "lookup"}
    )
    assert [(o.type, o.name, o.arguments) for o in response.output] == [("function_call", "lookup", "{}")]
    assert client.responses.create(model="m", input="hi", tools=rtools, tool_choice="required").output[0].name == (
        "lookup"
    )


# --------------------------------------------------------------------------- failures


def test_scripted_status_codes_raise_the_clients_errors(fake_upstream, client):
    fake_upstream.script(status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == 500 and caught.value.type == "server_error"

    fake_upstream.script(status=429, error_message="slow down", headers={"retry-after": "0"})
    with pytest.raises(openai.RateLimitError, match="slow down") as caught:
        client.responses.create(model="m", input="hi")
    assert caught.value.code == "rate_limit_exceeded" and caught.value.response.headers["retry-after"] == "0"

    fake_upstream.script(
        status=400, error_body={"error": {"message": "custom", "type": "x", "param": None, "code": "c"}}
    )
    with pytest.raises(openai.BadRequestError, match="custom"):
        client.chat.completions.create(model="m", messages=USER, stream=True)

    fake_upstream.script(status=503, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=USER)
    assert fake_upstream.scripts_left == 0
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content.startswith("echo: ")
    assert [r.status for r in fake_upstream.requests] == [500, 429, 400, 503, 503, 200]


def test_unknown_models_are_404_model_not_found(fake_upstream, client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="missing-model", messages=USER)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert caught.value.body["message"] == "The model `missing-model` does not exist"
    assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="missing", input="hi", stream=True)

    assert [m.id for m in client.models.list()] == ["fake-model"]
    fake_upstream.known_models = {"a", "b"}
    assert [m.id for m in client.models.list()] == ["a", "b"] and client.models.retrieve("a").id == "a"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("c")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="fake-model", messages=USER)
    assert client.chat.completions.create(model="b", messages=USER).model == "b"


def test_api_key_setting_rejects_other_keys(fake_upstream, client):
    fake_upstream.api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.code == "invalid_api_key"
    right = openai.OpenAI(base_url=fake_upstream.base_url, api_key="sk-right", max_retries=0)
    assert right.chat.completions.create(model="m", messages=USER).choices[0].message.content


def test_context_window_scripted_and_standing(fake_upstream, client):
    fake_upstream.script(context_window=1)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    assert caught.value.body["message"].startswith("This model's maximum context length is 4096 tokens.")
    assert client.chat.completions.create(model="m", messages=USER).choices[0].finish_reason == "stop"

    fake_upstream.context_window = 2
    assert client.chat.completions.create(model="m", messages=USER).choices[0].finish_reason == "stop"
    for _ in range(2):  # standing: every request
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            client.chat.completions.create(model="m", messages=[*USER, {"role": "user", "content": "more"}])
    items = [{"role": "user", "content": str(n)} for n in range(3)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input=items)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "input"
    assert client.responses.create(model="m", input="one string is one item").status == "completed"


def test_hang_times_the_client_out_and_the_fake_sees_it_leave(fake_upstream, client):
    fake_upstream.script(hang=5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started < 2
    assert fake_upstream.wait_for_disconnect(2) and fake_upstream.wait_idle(2)
    assert fake_upstream.last.outcome == "disconnected" and fake_upstream.client_closed.is_set()
    assert time.monotonic() - started < 2, "the hang ended when the client left, not after 5 s"


def test_drop_after_cuts_the_stream_and_the_client_raises(fake_upstream, client):
    fake_upstream.script(drop_after=3)
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert fake_upstream.wait_idle(2) and fake_upstream.last.outcome == "dropped"
    assert fake_upstream.disconnects == 0  # the fake hung up, not the client

    fake_upstream.script(drop_after=4)
    events = []
    with pytest.raises(openai.APIError):
        for event in client.responses.create(model="m", input="hi there", stream=True):
            events.append(event.type)
    assert events == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]

    fake_upstream.script(drop_after=0)  # nothing at all, not even the headers
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=USER, stream=True)


def test_a_client_closing_the_stream_early_is_seen(fake_upstream, client):
    fake_upstream.script(text=" ".join(f"w{n}" for n in range(40)), delay=0.05)
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    for _, _chunk in zip(range(3), stream):
        pass
    assert fake_upstream.in_flight == 1 and fake_upstream.disconnects == 0
    stream.close()
    assert fake_upstream.wait_for_disconnect(2) and fake_upstream.wait_idle(2)
    assert fake_upstream.last.outcome == "disconnected" and fake_upstream.disconnects == 1

    fake_upstream.script(text=" ".join(f"w{n}" for n in range(40)), delay=0.05)
    with client.responses.stream(model="m", input="hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    assert fake_upstream.wait_for_disconnect(2, count=2) and fake_upstream.wait_idle(2)


def test_reset_forgets_everything_and_ends_a_hang(fake_upstream, client):
    """The per-test fixture relies on this: nothing scripted, recorded or still hanging leaks into the
    next test."""
    fake_upstream.script(status=500)
    fake_upstream.context_window = 0
    client.models.list()
    assert fake_upstream.last.path == "/v1/models" and fake_upstream.last.status == 200
    fake_upstream.reset()
    assert fake_upstream.requests == [] and fake_upstream.scripts_left == 0 and fake_upstream.context_window is None
    assert client.chat.completions.create(model="m", messages=USER).choices[0].finish_reason == "stop"

    fake_upstream.script(hang=5)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.chat.completions.create(model="m", messages=USER)
        except openai.APIError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    started = time.monotonic()
    caller.start()
    assert fake_upstream.wait_for_requests(2)
    hanging = fake_upstream.last
    assert hanging.outcome is None and fake_upstream.in_flight == 1
    assert hanging.json["messages"] == USER  # recorded on arrival, before the answer
    fake_upstream.reset()
    caller.join(2)
    assert time.monotonic() - started < 2 and isinstance(errors[0], openai.InternalServerError)
    assert hanging.outcome == "aborted" and fake_upstream.in_flight == 0 and fake_upstream.disconnects == 0


# --------------------------------------------------------------------------- Responses API


def test_responses_plain_echoes_and_matches_the_spec(fake_upstream, client):
    input_items = [{"role": "user", "content": [{"type": "input_text", "text": "first turn"}]}]
    input_items += [{"role": "assistant", "content": "an answer"}, {"role": "user", "content": "what now"}]
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}]
    response = client.responses.create(
        model="m",
        input=input_items,
        instructions="Be brief.",
        tools=tools,
        tool_choice="auto",
        temperature=0.2,
        max_output_tokens=100,
        store=False,
    )
    assert response.output_text == "echo: what now" and response.status == "completed"
    assert response.usage.input_tokens == count_words(["first turn", "an answer", "what now", "Be brief."]) == 8
    assert response.usage.output_tokens == 3 and response.usage.total_tokens == 11
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.instructions == "Be brief." and response.store is False and response.temperature == 0.2

    seen = fake_upstream.last.json
    assert seen["input"] == input_items and seen["instructions"] == "Be brief." and seen["tools"] == tools
    assert (seen["store"], seen["max_output_tokens"], seen["tool_choice"]) == (False, 100, "auto")
    assert fake_upstream.last.api_key == "sk-test"

    status, raw = _post_raw(fake_upstream, "/responses", {"model": "m", "input": input_items, "tools": tools})
    assert status == 200
    _valid("Response", json.loads(raw))


def _wire_events(fake: FakeUpstream, **body: Any) -> list[dict[str, Any]]:
    """The streamed events as sent, each checked against the spec's ``ResponseStreamEvent``."""
    status, raw = _post_raw(fake, "/responses", {"model": "m", "stream": True, **body})
    assert status == 200
    events = []
    for event, data in _sse(raw):
        parsed = json.loads(data)
        assert event == parsed["type"]
        _valid("ResponseStreamEvent", parsed)
        events.append(parsed)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_responses_stream_events_follow_the_spec(fake_upstream):
    events = _wire_events(fake_upstream, input="hello there")
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["echo: ", "hello ", "there"]
    item_id = events[2]["item"]["id"]
    assert all(
        (d["item_id"], d["output_index"], d["content_index"], d["logprobs"]) == (item_id, 0, 0, []) for d in deltas
    )
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "echo: hello there"
    assert final["usage"]["input_tokens"] == 2 and final["usage"]["output_tokens"] == 3
    _valid("Response", final)

    fake_upstream.script(reasoning="Think first.", text="Then speak.", tool_calls=[("f", '{"a": [1, 2]}')])
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    events = _wire_events(fake_upstream, input="x", tools=tools)
    kinds = [e["type"] for e in events]
    assert kinds.count("response.output_item.added") == 3 and kinds[-1] == "response.completed"
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["reasoning", "message", "function_call"]
    assert "response.reasoning_summary_text.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 2

    events = _wire_events(fake_upstream, input="a b c d", max_output_tokens=2)
    assert events[-1]["type"] == "response.incomplete"
    incomplete = events[-1]["response"]
    assert incomplete["status"] == "incomplete" and incomplete["incomplete_details"] == {"reason": "max_output_tokens"}
    assert incomplete["output"][0]["status"] == "incomplete"
    assert incomplete["output"][0]["content"][0]["text"] == "echo: a "


def test_responses_stream_through_the_client(fake_upstream, client):
    events = list(client.responses.create(model="m", input="hi there", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "echo: hi there"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: hi there"

    fake_upstream.script(reasoning="Hmm.", tool_calls=[("a", '{"x": 1}', "call_a"), ("b", "{}")])
    with client.responses.stream(model="m", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, c.arguments, c.call_id) for c in calls][0] == ("a", '{"x": 1}', "call_a")
    assert calls[1].name == "b" and calls[1].call_id.startswith("call_")
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Hmm."

    with client.responses.stream(model="m", input="hi", max_output_tokens=1) as stream:
        assert [e.type for e in stream][-1] == "response.incomplete"
    incomplete = client.responses.create(model="m", input="hi", max_output_tokens=1)
    assert incomplete.status == "incomplete" and incomplete.incomplete_details.reason == "max_output_tokens"
    assert incomplete.output_text == "echo: "
    fake_upstream.script(finish="content_filter")
    filtered = client.responses.create(model="m", input="hi")
    assert filtered.incomplete_details.reason == "content_filter"
