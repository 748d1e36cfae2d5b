"""End to end: the official ``openai`` client in strict mode creates
responses through our server, which calls the fake upstream over HTTP."""

from __future__ import annotations

import openai
import pytest

from ..support.fake_upstream import echo_text
from ..support.openai_spec import validate_stream_event


def _client(base_url: str, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, _strict_response_validation=True)


@pytest.mark.e2e
def test_a_conversation_with_the_openai_client(base_url):
    client = _client(base_url)
    conv = client.conversations.create()
    first = client.responses.create(model="fake-model", input="Hi", conversation=conv.id)
    assert first.output_text == echo_text("Hi") and first.status == "completed"
    assert first.conversation is not None and first.conversation.id == conv.id
    second = client.responses.create(model="fake-model", input="And again", conversation={"id": conv.id})
    assert second.output_text == echo_text("And again")
    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert [item.content[0].text for item in items] == ["Hi", echo_text("Hi"), "And again", echo_text("And again")]
    assert client.responses.retrieve(second.id).output_text == second.output_text
    assert [i.id for i in client.responses.input_items.list(second.id)] == [items[2].id]
    with pytest.raises(openai.NotFoundError):
        _client(base_url, "sk-bob").responses.create(model="fake-model", input="x", conversation=conv.id)


@pytest.mark.e2e
def test_previous_response_id_and_store_false(base_url):
    client = _client(base_url)
    first = client.responses.create(model="fake-model", input="one")
    second = client.responses.create(model="fake-model", input="two", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    gone = client.responses.create(model="fake-model", input="three", store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="four", previous_response_id=gone.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


@pytest.mark.e2e
def test_streaming_with_create_and_with_the_stream_helper(base_url):
    client = _client(base_url)
    conv = client.conversations.create()
    events = list(client.responses.create(model="fake-model", input="stream it", conversation=conv.id, stream=True))
    for event in events:
        validate_stream_event(event.model_dump(mode="json", exclude_unset=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == echo_text("stream it")
    with client.responses.stream(model="fake-model", input="helper", conversation=conv.id) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == echo_text("helper")
    assert client.responses.retrieve(final.id).output_text == final.output_text


@pytest.mark.e2e
def test_a_function_call_loop(base_url, fake_upstream):
    client = _client(base_url)
    tools = [
        {
            "type": "function",
            "name": "weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        }
    ]
    fake_upstream.script(tool_calls=[("weather", '{"city": "Oslo"}')])
    first = client.responses.create(model="fake-model", input="Weather?", tools=tools, tool_choice="required")
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "weather" and call.arguments == '{"city": "Oslo"}'
    fake_upstream.script(text="It is sunny in Oslo.")
    second = client.responses.create(
        model="fake-model",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}],
        tools=tools,
    )
    assert second.output_text == "It is sunny in Oslo."
