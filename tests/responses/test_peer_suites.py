"""Other projects' Responses-state test cases, run against us.

The scenarios come from two peer suites, read and re-expressed here (never copied):

- SGLang's model gateway (SMG), ``sgl-model-gateway/e2e_test/responses/`` in ``sgl-project/sglang``:
  ``test_state_management.py``, ``test_basic_crud.py``, ``test_streaming_events.py``,
  ``test_tools_call.py``, ``test_local_smoke.py``;
- Llama Stack, ``tests/integration/`` in ``llamastack/llama-stack``: ``responses/test_conversation_responses.py``,
  ``responses/test_responses_access_control.py``, ``responses/test_responses_errors.py``,
  ``responses/test_basic_responses.py``, ``responses/test_openai_responses.py``,
  ``responses/test_tool_responses.py``, ``conversations/test_openai_conversations.py``.

Each test names the peer file and test it ports. The peers run a real model and check its wording
("Alice" in the second answer); here the model is the fake upstream, whose answer is deterministic
(``"echo: <last user text>"`` unless scripted), so each test asserts what the peer test is really
about: that the context the model received held the earlier turns (checked on
``fake_upstream.last.json``), that IDs chain, that conversation items are appended, that
``store: false`` leaves nothing to continue from, the errors for bad references, two users' isolation,
the order of streamed events, and the tool-call round trip.

Every test runs with the official ``openai`` client in strict mode, against the app served on a loopback
port, for both kinds of upstream (Chat Completions and Responses).

Peer scenarios not ported (features we document as unsupported, or another transport): background
responses and cancel (``test_basic_crud.py::test_background_response``,
``test_openai_responses.py::test_openai_response_background_*``, ``test_cancel_*``), MCP and built-in
tools (``test_tools_call.py::test_mcp_*``, ``test_tool_choice_with_mcp_tools``,
``test_mixed_mcp_and_function_tools*``; ``test_tool_responses.py`` web/file search and MCP cases),
``include``/logprobs (``test_basic_responses.py::test_include_logprobs_*``,
``test_openai_responses.py::test_openai_response_with_top_logprobs*``), ``max_tool_calls``
(``test_tool_responses.py::test_max_tool_calls_*``), ``prompt_cache_key``, stored prompts
(``test_prompt_templates.py``), compaction (``test_compact_responses.py``) and the WebSocket transport
of ``test_local_smoke.py`` (``test_websocket_*``: its store=false connection-local cache has no HTTP
counterpart; the HTTP half of those cases is ported below).
"""

from __future__ import annotations

import json
from typing import Any, get_args

import openai
import pytest
from openai.types.responses import ResponseError

from ..support.fake_upstream import FakeUpstream, echo_text
from ..support.openai_spec import validate_stream_event

pytestmark = pytest.mark.e2e

MODEL = "fake-model"
TERMINAL = ("response.completed", "response.incomplete", "response.failed")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "A city, e.g. Berlin."}},
        "required": ["location"],
    },
}
CLOCK = {
    "type": "function",
    "name": "get_time",
    "description": "Current time in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}
HOROSCOPE = {
    "type": "function",
    "name": "get_horoscope",
    "description": "Today's horoscope for a sign.",
    "parameters": {
        "type": "object",
        "properties": {"sign": {"type": "string", "description": "A sign such as Leo."}},
        "required": ["sign"],
    },
}
SEARCH = {
    "type": "function",
    "name": "search_web",
    "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


# --------------------------------------------------------------------------- serving


def _client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, _strict_response_validation=True)


@pytest.fixture
def alice(base_url: str) -> openai.OpenAI:
    return _client(base_url, "sk-alice")


@pytest.fixture
def bob(base_url: str) -> openai.OpenAI:
    return _client(base_url, "sk-bob")


# --------------------------------------------------------------------------- what the model was sent


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _sent(fake: FakeUpstream) -> list[tuple[str, str]]:
    """The context of the last model request, in one shape for both upstream APIs: ``(role, text)`` for
    a message (``developer`` and instructions read as ``system``), ``("call", name)`` for a function call,
    ``("output", text)`` for a function call's output."""
    body = fake.last.json
    out: list[tuple[str, str]] = []
    if "messages" in body:  # Chat Completions
        for m in body["messages"]:
            role = m["role"]
            if role == "tool":
                out.append(("output", _text(m.get("content"))))
                continue
            text = _text(m.get("content"))
            if text or not m.get("tool_calls"):
                out.append(("system" if role == "developer" else role, text))
            out += [("call", c["function"]["name"]) for c in m.get("tool_calls") or []]
        return out
    if isinstance(body.get("instructions"), str):  # Responses
        out.append(("system", body["instructions"]))
    given = body.get("input")
    for item in [{"role": "user", "content": given}] if isinstance(given, str) else given:
        kind = item.get("type", "message")
        if kind == "function_call":
            out.append(("call", item["name"]))
        elif kind == "function_call_output":
            out.append(("output", _text(item["output"])))
        elif kind == "message":
            role = item["role"]
            out.append(("system" if role == "developer" else role, _text(item.get("content"))))
    return out


def _model_requests(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(("/chat/completions", "/responses")))


def _check_event_order(events: list[Any]) -> None:
    """The stream's order, as both peers check it: created (in_progress) first, one terminal event
    last, ``sequence_number`` from 0, one response ID throughout, zero-based ``output_index`` per
    item with its ``added`` before its ``done``, and the final output as many items as were added."""
    for event in events:
        validate_stream_event(event.model_dump(mode="json", exclude_unset=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and events[0].response.status == "in_progress"
    assert types[1] == "response.in_progress"
    assert [t for t in types if t in TERMINAL] == [types[-1]]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert {e.response.id for e in events if hasattr(e, "response")} == {events[0].response.id}
    added = [e for e in events if e.type == "response.output_item.added"]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [e.output_index for e in added] == list(range(len(added)))
    assert [e.output_index for e in done] == list(range(len(done)))
    for a in added:
        d = next(e for e in done if e.output_index == a.output_index)
        assert events.index(a) < events.index(d) and d.item.type == a.item.type
    assert len(events[-1].response.output) == len(added)


# =========================================================================== previous_response_id


def test_basic_response_creation(alice):
    # SGLang test_state_management.py::TestStateManagementLocal::test_basic_response_creation
    # (also test_local_smoke.py::TestResponsesLocalSmoke::test_basic_response_creation,
    # llama-stack test_conversation_responses.py::test_conversation_backward_compatibility)
    resp = alice.responses.create(model=MODEL, input="What is 2+2?", temperature=0, max_output_tokens=16)
    assert resp.id.startswith("resp_") and resp.error is None and resp.status == "completed"
    assert resp.output_text == echo_text("What is 2+2?")
    assert resp.conversation is None and resp.previous_response_id is None
    assert resp.incomplete_details is None  # test_openai_responses.py::..._incomplete_details_null_when_completed
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


def test_previous_response_id_chaining(alice, fake_upstream):
    # SGLang test_state_management.py::TestStateManagementLocal::test_previous_response_id_chaining
    # (also llama-stack test_basic_responses.py::test_response_non_streaming_multi_turn)
    first = alice.responses.create(model=MODEL, input="My name is Alice and my friend is Bob. Remember it.")
    assert first.status == "completed" and first.error is None

    second = alice.responses.create(model=MODEL, input="What is my name", previous_response_id=first.id)
    assert second.status == "completed" and second.previous_response_id == first.id
    assert _sent(fake_upstream) == [
        ("user", "My name is Alice and my friend is Bob. Remember it."),
        ("assistant", first.output_text),
        ("user", "What is my name"),
    ]

    third = alice.responses.create(model=MODEL, input="What is my friend name?", previous_response_id=second.id)
    assert third.status == "completed" and third.previous_response_id == second.id
    assert _sent(fake_upstream) == [
        ("user", "My name is Alice and my friend is Bob. Remember it."),
        ("assistant", first.output_text),
        ("user", "What is my name"),
        ("assistant", second.output_text),
        ("user", "What is my friend name?"),
    ]
    assert len({first.id, second.id, third.id}) == 3
    assert alice.responses.retrieve(third.id).previous_response_id == second.id


def test_previous_response_id_invalid(alice, fake_upstream):
    # SGLang test_state_management.py::test_previous_response_id_invalid (skipped there as a TODO) and
    # llama-stack test_responses_errors.py::test_invalid_previous_response_id_raises_not_found_error.
    # The peers disagree: SGLang (and OpenAI) answer 400 previous_response_not_found, llama-stack a 404.
    # We document OpenAI's 400, so that is what is asserted; the point both check is that the turn is
    # refused before the model is asked.
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(
            model=MODEL, input="Test", previous_response_id="resp_nonexistent123456", max_output_tokens=50
        )
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert "resp_nonexistent123456" in caught.value.message
    assert _model_requests(fake_upstream) == 0


def test_previous_response_options_carry_per_turn(alice, fake_upstream):
    # llama-stack test_openai_responses.py::test_openai_response_with_truncation_and_previous_response,
    # ::test_openai_response_with_parallel_tool_calls_and_previous_response and
    # ::test_openai_response_with_top_p_and_previous_response and
    # ::test_openai_response_with_safety_identifier_and_previous_response: per-turn settings are echoed on a
    # chained turn.
    first = alice.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": "What is 4+4?"}],
        truncation="disabled",
        top_p=0.5,
        safety_identifier="user-789-hashed",
    )
    assert first.truncation == "disabled" and first.top_p == 0.5 and first.safety_identifier == "user-789-hashed"
    second = alice.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": "What is 6+6?"}],
        previous_response_id=first.id,
        truncation="disabled",
        top_p=0.25,
        parallel_tool_calls=False,
        safety_identifier="user-789-hashed",
    )
    assert second.truncation == "disabled" and second.top_p == 0.25 and second.parallel_tool_calls is False
    assert second.safety_identifier == "user-789-hashed"
    assert second.output_text == echo_text("What is 6+6?")
    assert fake_upstream.last.json["top_p"] == 0.25
    assert [t for _, t in _sent(fake_upstream)] == ["What is 4+4?", first.output_text, "What is 6+6?"]


def test_streamed_turn_continues_a_chain(alice, fake_upstream):
    # llama-stack test_openai_responses.py::test_openai_response_with_stream_options_and_previous_response
    first = alice.responses.create(model=MODEL, input=[{"role": "user", "content": "What is 3+3?"}])
    events = list(
        alice.responses.create(
            model=MODEL,
            input=[{"role": "user", "content": "What is 5+5?"}],
            previous_response_id=first.id,
            stream=True,
            stream_options={"include_obfuscation": True},
        )
    )
    _check_event_order(events)
    final = events[-1].response
    assert events[-1].type == "response.completed" and final.previous_response_id == first.id
    assert final.output_text == echo_text("What is 5+5?")
    assert final.usage is not None and final.usage.output_tokens > 0 and final.usage.total_tokens > 0
    assert [t for _, t in _sent(fake_upstream)] == ["What is 3+3?", first.output_text, "What is 5+5?"]


def test_store_false_is_neither_retrievable_nor_continuable(alice, fake_upstream):
    # SGLang test_local_smoke.py::test_websocket_store_false_continuation_is_connection_local and
    # ::test_websocket_store_true_continuation_survives_reconnect_and_is_retrievable, over HTTP (where no
    # connection-local cache exists): a store=false turn answers, but is nowhere afterwards.
    gone = alice.responses.create(model=MODEL, input="Reply with the single word: hello", store=False)
    assert gone.status == "completed" and gone.output_text == echo_text("Reply with the single word: hello")
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(gone.id)
    asked = _model_requests(fake_upstream)
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model=MODEL, input="Reconnect turn.", previous_response_id=gone.id, store=False)
    assert caught.value.code == "previous_response_not_found"
    assert _model_requests(fake_upstream) == asked

    kept = alice.responses.create(model=MODEL, input="Persist this turn.", store=True)
    assert alice.responses.retrieve(kept.id).output_text == kept.output_text
    nxt = alice.responses.create(model=MODEL, input="Next.", previous_response_id=kept.id)
    assert nxt.previous_response_id == kept.id


def test_create_retrieve_and_delete_response(alice):
    # SGLang test_basic_crud.py::TestResponseCRUD::test_create_and_get_response and
    # ::test_delete_response (skipped there as a TODO); llama-stack test_responses_errors.py::
    # test_retrieve_nonexistent_response_raises_not_found_error / test_delete_nonexistent_response_...
    created = alice.responses.create(model=MODEL, input="Hello, world!")
    got = alice.responses.retrieve(created.id)
    assert got.id == created.id and got.status == "completed" and got.error is None
    assert got.output_text == created.output_text
    inputs = alice.responses.input_items.list(created.id).data
    assert [(i.type, i.role, i.content[0].text) for i in inputs] == [("message", "user", "Hello, world!")]

    alice.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve("resp_nonexistent123456")
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model=MODEL, input="After deletion", previous_response_id=created.id)
    assert caught.value.code == "previous_response_not_found"


# =========================================================================== conversation


def test_conversation_with_multiple_turns(alice, fake_upstream):
    # SGLang test_state_management.py::TestStateManagementCloud::test_conversation_with_multiple_turns
    conv = alice.conversations.create(metadata={"topic": "math"})
    assert conv.id.startswith("conv_") and conv.created_at and conv.metadata == {"topic": "math"}
    inputs = ["I have 5 apples.", "How many apples do I have?", "If I get 3 more, how many total?"]
    answers = []
    for text in inputs:
        resp = alice.responses.create(model=MODEL, input=text, conversation=conv.id)
        assert resp.status == "completed" and resp.error is None and resp.conversation.id == conv.id
        answers.append(resp.output_text)
    assert _sent(fake_upstream) == [
        ("user", inputs[0]),
        ("assistant", answers[0]),
        ("user", inputs[1]),
        ("assistant", answers[1]),
        ("user", inputs[2]),
    ]
    items = alice.conversations.items.list(conv.id, order="asc").data
    assert [(i.role, i.content[0].text) for i in items] == [
        (role, text) for pair in zip(inputs, answers, strict=True) for role, text in zip(("user", "assistant"), pair)
    ]


def test_conversation_basic_workflow(alice):
    # llama-stack test_conversation_responses.py::test_conversation_basic_workflow
    conv = alice.conversations.create(metadata={"topic": "test"})
    resp = alice.responses.create(
        model=MODEL, input=[{"role": "user", "content": "What are the 5 Ds of dodgeball?"}], conversation=conv.id
    )
    assert resp.id.startswith("resp_") and resp.output_text.strip()
    items = alice.conversations.items.list(conv.id).data
    assert {i.role for i in items} == {"user", "assistant"} and len(items) == 2
    # Our documented extra: the reply's conversation item says which response it came from.
    [reply] = [i for i in items if i.role == "assistant"]
    assert reply.model_extra.get("response_id") == resp.id


def test_conversation_items_listed_after_two_turns(alice):
    # SGLang test_basic_crud.py::TestConversationCRUD::test_list_conversation_items
    conv = alice.conversations.create()
    for text in ("First message", "Second message"):
        resp = alice.responses.create(model=MODEL, input=text, conversation=conv.id, max_output_tokens=50)
        assert resp.error is None
    newest_first = alice.conversations.items.list(conv.id).data
    assert [i.content[0].text for i in newest_first] == [
        echo_text("Second message"),
        "Second message",
        echo_text("First message"),
        "First message",
    ]


def test_conversation_multi_turn_and_streaming(alice, fake_upstream):
    # llama-stack test_conversation_responses.py::test_conversation_multi_turn_and_streaming
    conv = alice.conversations.create()
    first = alice.responses.create(model=MODEL, input=[{"role": "user", "content": "Say hello"}], conversation=conv.id)
    final = None
    with alice.responses.create(
        model=MODEL, input=[{"role": "user", "content": "Say goodbye"}], conversation=conv.id, stream=True
    ) as stream:
        for event in stream:
            if event.type == "response.completed":
                final = event.response
                break
    assert final is not None and final.id != first.id and final.output_text == echo_text("Say goodbye")
    assert _sent(fake_upstream) == [("user", "Say hello"), ("assistant", first.output_text), ("user", "Say goodbye")]
    items = alice.conversations.items.list(conv.id, order="asc").data
    assert [i.content[0].text for i in items] == ["Say hello", first.output_text, "Say goodbye", final.output_text]
    assert alice.responses.retrieve(final.id).output_text == final.output_text


def test_conversation_context_loading(alice, fake_upstream):
    # llama-stack test_conversation_responses.py::test_conversation_context_loading: items a conversation
    # was created with are context for its first response.
    conv = alice.conversations.create(
        items=[
            {"type": "message", "role": "user", "content": "My name is Alice. I like to eat apples."},
            {"type": "message", "role": "assistant", "content": "Hello Alice!"},
        ]
    )
    resp = alice.responses.create(
        model=MODEL, input=[{"role": "user", "content": "What do I like to eat?"}], conversation=conv.id
    )
    assert resp.output_text == echo_text("What do I like to eat?")
    assert _sent(fake_upstream) == [
        ("user", "My name is Alice. I like to eat apples."),
        ("assistant", "Hello Alice!"),
        ("user", "What do I like to eat?"),
    ]


def test_conversation_items_added_by_hand_are_context(alice, fake_upstream):
    # llama-stack conversations/test_openai_conversations.py::test_full_workflow, continued by a response:
    # items appended with conversations.items.create are part of the next turn's context.
    conv = alice.conversations.create(
        metadata={"topic": "workflow-test"}, items=[{"type": "message", "role": "user", "content": "Hello!"}]
    )
    alice.conversations.items.create(
        conv.id,
        items=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Follow up"}]}],
    )
    alice.responses.create(model=MODEL, input="And now?", conversation={"id": conv.id})
    assert _sent(fake_upstream) == [("user", "Hello!"), ("user", "Follow up"), ("user", "And now?")]
    assert alice.conversations.update(conv.id, metadata={"topic": "workflow-complete"}).metadata["topic"] == (
        "workflow-complete"
    )
    assert len(alice.conversations.items.list(conv.id).data) == 4


def test_conversation_error_handling(alice, fake_upstream):
    # llama-stack test_conversation_responses.py::test_conversation_error_handling and
    # test_responses_errors.py::test_invalid_conversation_id_format_raises_bad_request /
    # ::test_nonexistent_conversation_raises_not_found_error. (The peer's format test also looks for the
    # text "conv_" in the message; ours says "Expected an ID that begins with 'conv'.")
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(
            model=MODEL, input=[{"role": "user", "content": "Hello"}], conversation="invalid-format-no-conv-prefix"
        )
    assert "conversation" in caught.value.message and "'conv'" in caught.value.message
    missing = "conv_" + "0" * 48
    with pytest.raises(openai.NotFoundError) as caught:
        alice.responses.create(model=MODEL, input=[{"role": "user", "content": "Hello"}], conversation=missing)
    assert missing in caught.value.message and "not found" in caught.value.message
    assert _model_requests(fake_upstream) == 0


def test_deleted_conversation_cannot_be_continued(alice):
    # SGLang test_basic_crud.py::TestConversationCRUD::test_delete_conversation, followed by a turn.
    conv = alice.conversations.create()
    alice.responses.create(model=MODEL, input="Before", conversation=conv.id)
    deleted = alice.conversations.delete(conv.id)
    assert deleted.id == conv.id and deleted.deleted
    with pytest.raises(openai.NotFoundError):
        alice.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model=MODEL, input="After", conversation=conv.id)


def test_store_false_adds_nothing_to_a_conversation(alice, fake_upstream):
    # SGLang test_local_smoke.py (store=false continuation cases), with a conversation: the turn sees
    # the conversation but leaves it as it was.
    conv = alice.conversations.create(items=[{"type": "message", "role": "user", "content": "Kept"}])
    resp = alice.responses.create(model=MODEL, input="Not kept", conversation=conv.id, store=False)
    assert resp.output_text == echo_text("Not kept")
    assert _sent(fake_upstream) == [("user", "Kept"), ("user", "Not kept")]
    assert [i.content[0].text for i in alice.conversations.items.list(conv.id).data] == ["Kept"]
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(resp.id)


def test_mutually_exclusive_parameters(alice, fake_upstream):
    # SGLang test_state_management.py::test_mutually_exclusive_parameters and llama-stack
    # test_responses_errors.py::test_conflicting_previous_response_and_conversation_raises_bad_request
    first = alice.responses.create(model=MODEL, input="Test")
    asked = _model_requests(fake_upstream)
    for previous in (first.id, "resp_abc123"):
        with pytest.raises(openai.BadRequestError) as caught:
            alice.responses.create(
                model=MODEL, input="This should fail", previous_response_id=previous, conversation="conv_123"
            )
        assert "previous_response_id" in caught.value.message and "conversation" in caught.value.message
    assert _model_requests(fake_upstream) == asked


# =========================================================================== two users


def test_users_have_isolated_responses(alice, bob):
    # llama-stack test_responses_access_control.py::test_user_cannot_retrieve_other_users_response,
    # ::test_users_have_isolated_responses and ::test_user_can_access_own_resources_after_denial
    a = alice.responses.create(model=MODEL, input="Alice's secret", store=True)
    b = bob.responses.create(model=MODEL, input="Bob's secret", store=True)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(a.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(b.id)
    assert bob.responses.retrieve(b.id).id == b.id
    assert alice.responses.retrieve(a.id).id == a.id


def test_user_cannot_delete_or_list_inputs_of_other_users_response(alice, bob):
    # llama-stack test_responses_access_control.py::test_user_cannot_delete_other_users_response and
    # ::test_user_cannot_access_other_users_response_input_items
    a = alice.responses.create(model=MODEL, input="Hello from Alice")
    assert len(alice.responses.input_items.list(a.id).data) == 1
    with pytest.raises(openai.NotFoundError):
        bob.responses.input_items.list(a.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(a.id)
    assert alice.responses.retrieve(a.id).id == a.id


def test_previous_response_id_access_control(alice, bob, fake_upstream):
    # llama-stack test_responses_access_control.py::test_previous_response_id_access_control
    a = alice.responses.create(model=MODEL, input="Initial message from Alice")
    followup = alice.responses.create(model=MODEL, input="Continue the conversation", previous_response_id=a.id)
    assert followup.previous_response_id == a.id
    asked = _model_requests(fake_upstream)
    with pytest.raises(openai.BadRequestError) as caught:
        bob.responses.create(model=MODEL, input="Trying to hijack Alice's conversation", previous_response_id=a.id)
    assert caught.value.code == "previous_response_not_found"
    assert _model_requests(fake_upstream) == asked  # nothing of Alice's reached the model for Bob


def test_user_cannot_use_other_users_conversation(alice, bob, fake_upstream):
    # llama-stack conversations/test_openai_conversations.py::TestConversationAccessControl::
    # test_user_cannot_access_other_users_conversation_items and ::test_user_cannot_add_items_to_other_users_
    # conversation, through responses.create as well as the items endpoints.
    conv = alice.conversations.create(metadata={"owner": "alice"})
    alice.responses.create(model=MODEL, input="Hello, I'm Alice!", conversation=conv.id)
    asked = _model_requests(fake_upstream)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=MODEL, input="Injected by Bob!", conversation=conv.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=MODEL, input="Injected by Bob!", conversation=conv.id, stream=True)
    with pytest.raises(openai.NotFoundError):
        bob.conversations.items.list(conv.id)
    with pytest.raises(openai.NotFoundError):
        bob.conversations.items.create(
            conv.id, items=[{"type": "message", "role": "user", "content": "Injected by Bob!"}]
        )
    with pytest.raises(openai.NotFoundError):
        bob.conversations.update(conv.id, metadata={"hacked_by": "bob"})
    assert _model_requests(fake_upstream) == asked
    assert alice.conversations.retrieve(conv.id).metadata == {"owner": "alice"}
    texts = [i.content[0].text for i in alice.conversations.items.list(conv.id, order="asc").data]
    assert texts == ["Hello, I'm Alice!", echo_text("Hello, I'm Alice!")]


# =========================================================================== streaming


def test_streaming_basic_event_sequence(alice):
    # llama-stack test_basic_responses.py::test_response_streaming_basic and
    # ::test_response_streaming_incremental_content; SGLang test_state_management.py::test_streaming_response
    events = list(alice.responses.create(model=MODEL, input="Count to 5", stream=True, max_output_tokens=50))
    _check_event_order(events)
    created, completed = events[0], events[-1]
    assert created.response.output_text == "" and completed.type == "response.completed"
    assert completed.response.status == "completed" and completed.response.error is None
    deltas = [i for i, e in enumerate(events) if e.type == "response.output_text.delta"]
    assert len(deltas) > 1  # delivered in pieces, between created and completed
    assert "".join(events[i].delta for i in deltas) == completed.response.output_text == echo_text("Count to 5")
    usage = completed.response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert alice.responses.retrieve(created.response.id).output_text == completed.response.output_text


def test_output_item_event_emitted(alice):
    # SGLang test_streaming_events.py::TestStreamingEventsLocal::test_output_item_event_emitted
    events = list(alice.responses.create(model=MODEL, input="Count from 1 to 3", stream=True, max_output_tokens=50))
    _check_event_order(events)
    [completed] = [e for e in events if e.type == "response.completed"]
    [added] = [e for e in events if e.type == "response.output_item.added"]
    assert added.output_index == 0 and added.item.type == "message"
    assert [o.type for o in completed.response.output] == ["message"]


def test_reasoning_content_output_index(alice, fake_upstream):
    # SGLang test_streaming_events.py::TestStreamingEventsHarmony::test_reasoning_content
    fake_upstream.script(reasoning="The capital of France is Paris.", text="Paris.")
    events = list(
        alice.responses.create(
            model=MODEL, input="What is the capital of France? Think step by step.", stream=True, max_output_tokens=200
        )
    )
    _check_event_order(events)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.item.type, e.output_index) for e in added] == [("reasoning", 0), ("message", 1)]
    final = events[-1].response
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output_text == "Paris."


def test_completed_stream_has_no_error(alice):
    # llama-stack test_responses_errors.py::TestResponsesAPIStreamingErrors::test_completed_response_has_no_error
    events = list(alice.responses.create(model=MODEL, input="Say 'hello' and nothing else.", stream=True))
    terminal = [e for e in events if e.type in TERMINAL]
    assert [e.type for e in terminal] == ["response.completed"]
    assert terminal[0].response.status == "completed" and terminal[0].response.error is None


def test_incomplete_details_when_cut_by_max_output_tokens(alice, fake_upstream):
    # llama-stack test_openai_responses.py::test_openai_response_incomplete_details_length and
    # ::test_openai_response_incomplete_details_length_streaming. The peer expects reason "length";
    # OpenAI's (and so the strict client's) enum is "max_output_tokens", which is what we answer.
    long_ask = "Write a very long and detailed essay about the entire history of the Roman Empire."
    fake_upstream.script(text="word " * 40, finish="length")
    resp = alice.responses.create(model=MODEL, input=[{"role": "user", "content": long_ask}], max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.max_output_tokens == 16

    fake_upstream.script(text="word " * 40, finish="length")
    events = list(
        alice.responses.create(
            model=MODEL, input=[{"role": "user", "content": long_ask}], max_output_tokens=16, stream=True
        )
    )
    _check_event_order(events)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert alice.responses.retrieve(events[-1].response.id).status == "incomplete"


# =========================================================================== function tools


def test_function_call_round_trip_stateless(alice, fake_upstream):
    # SGLang test_tools_call.py::TestToolCallingCloud::test_basic_function_call: the client keeps the
    # context itself, appending the model's function_call item and its output to its own input list.
    fake_upstream.script(tool_calls=[("get_horoscope", {"sign": "Aquarius"})])
    input_list: list[Any] = [
        {"role": "system", "content": "Call the function for horoscope questions; do not answer directly."},
        {"role": "user", "content": "What is my horoscope? I am an Aquarius."},
    ]
    resp = alice.responses.create(model=MODEL, input=input_list, tools=[HOROSCOPE])
    assert resp.status == "completed" and resp.error is None
    [call] = [o for o in resp.output if o.type == "function_call"]
    assert call.name == "get_horoscope" and json.loads(call.arguments) == {"sign": "Aquarius"} and call.call_id

    input_list.append(call)
    horoscope = "Aquarius: Next Tuesday you will befriend a baby otter."
    input_list.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"horoscope": horoscope})}
    )
    fake_upstream.script(text=horoscope)
    second = alice.responses.create(
        model=MODEL,
        input=input_list,
        instructions="Respond only with a horoscope generated by a tool.",
        tools=[HOROSCOPE],
    )
    assert second.status == "completed" and [o.type for o in second.output] == ["message"]
    assert "baby otter" in second.output_text
    sent = _sent(fake_upstream)
    assert ("system", "Respond only with a horoscope generated by a tool.") in sent
    assert sent[-3:] == [
        ("user", "What is my horoscope? I am an Aquarius."),
        ("call", "get_horoscope"),
        ("output", json.dumps({"horoscope": horoscope})),
    ]


def test_function_call_ordering_with_previous_response(alice, fake_upstream):
    # llama-stack test_tool_responses.py::test_response_function_call_ordering_1: the output is sent with
    # previous_response_id, next to a repeated user message; the call stays before its output.
    fake_upstream.script(tool_calls=[("get_weather", {"location": "San Francisco"})])
    ask = "What's the weather like in San Francisco?"
    first = alice.responses.create(model=MODEL, input=ask, tools=[WEATHER], stream=False)
    assert len(first.output) == 1 and first.output[0].type == "function_call"
    assert first.output[0].status == "completed" and first.output[0].name == "get_weather"
    fake_upstream.script(text="It is raining in San Francisco.")
    second = alice.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": ask},
            {"type": "function_call_output", "output": "It is raining.", "call_id": first.output[0].call_id},
        ],
        tools=[WEATHER],
        previous_response_id=first.id,
    )
    assert len(second.output) == 1 and second.output_text == "It is raining in San Francisco."
    assert _sent(fake_upstream) == [("user", ask), ("call", "get_weather"), ("user", ask), ("output", "It is raining.")]


def test_parallel_function_calls_round_trip(alice, fake_upstream, upstream_api):
    # llama-stack test_tool_responses.py::test_parallel_tool_calls_with_function_tools and
    # ::test_response_function_call_ordering_2 (two calls answered together, in order), chained here by
    # previous_response_id.
    fake_upstream.script(tool_calls=[("get_weather", {"location": "Paris"}), ("get_time", {"location": "Paris"})])
    first = alice.responses.create(
        model=MODEL, input="Weather in Paris and the current time?", tools=[WEATHER, CLOCK], parallel_tool_calls=True
    )
    assert [(o.type, o.name, o.status) for o in first.output] == [
        ("function_call", "get_weather", "completed"),
        ("function_call", "get_time", "completed"),
    ]
    assert first.parallel_tool_calls is True
    outputs = [
        {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "It is cloudy."},
        {"type": "function_call_output", "call_id": first.output[1].call_id, "output": "It is noon."},
    ]
    fake_upstream.script(text="Cloudy, and noon.")
    second = alice.responses.create(
        model=MODEL, input=outputs, tools=[WEATHER, CLOCK], previous_response_id=first.id, parallel_tool_calls=False
    )
    assert second.output_text == "Cloudy, and noon." and second.parallel_tool_calls is False
    assert fake_upstream.last.json["parallel_tool_calls"] is False
    sent = _sent(fake_upstream)
    assert sent[0] == ("user", "Weather in Paris and the current time?")
    assert sorted(sent[1:]) == sorted(
        [("call", "get_weather"), ("call", "get_time"), ("output", "It is cloudy."), ("output", "It is noon.")]
    )
    if upstream_api == "chat":  # one assistant message with both calls, then both tool results
        assert sent[1:] == [
            ("call", "get_weather"),
            ("call", "get_time"),
            ("output", "It is cloudy."),
            ("output", "It is noon."),
        ]


@pytest.mark.parametrize(
    ("tool_choice", "tools", "expected"),
    [
        ("auto", [WEATHER], None),
        ("required", [WEATHER], "get_weather"),
        ({"type": "function", "name": "search_web"}, [SEARCH, WEATHER], "search_web"),
    ],
    ids=["auto", "required", "named"],
)
def test_tool_choice(alice, fake_upstream, upstream_api, tool_choice, tools, expected):
    # SGLang test_tools_call.py::TestToolChoiceLocal::test_tool_choice_auto / _required / _specific_function.
    # The peer's named choice is Chat Completions' shape ({"function": {"name": ...}}); the Responses API's
    # is {"type": "function", "name": ...}, used here. Asserted: the choice reaches the model in the
    # upstream's own shape, and a forced call comes back as a function_call item.
    resp = alice.responses.create(
        model=MODEL, input="What's happening in Seattle today?", tools=tools, tool_choice=tool_choice
    )
    forwarded = fake_upstream.last.json["tool_choice"]
    if isinstance(tool_choice, dict):
        assert forwarded in (tool_choice, {"type": "function", "function": {"name": "search_web"}})
        assert (forwarded.get("function") or forwarded)["name"] == "search_web"
    else:
        assert forwarded == tool_choice
    calls = [o.name for o in resp.output if o.type == "function_call"]
    assert calls == ([expected] if expected else [])
    if isinstance(tool_choice, str):
        assert resp.tool_choice == tool_choice
    else:
        assert resp.tool_choice.type == "function" and resp.tool_choice.name == "search_web"


def test_tool_choice_streaming(alice):
    # SGLang test_tools_call.py::TestToolChoiceHarmony::test_tool_choice_streaming
    events = list(
        alice.responses.create(
            model=MODEL, input="Calculate 42 * 17", tools=[SEARCH], tool_choice="required", stream=True
        )
    )
    _check_event_order(events)
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [(o.type, o.name) for o in final.output] == [("function_call", "search_web")]


# =========================================================================== errors


def test_request_validation_errors(alice, fake_upstream):
    # llama-stack test_responses_errors.py::test_invalid_temperature_raises_bad_request,
    # ::test_invalid_tool_choice_raises_bad_request, ::test_malformed_request_returns_sdk_compatible_error
    # and test_openai_responses.py::test_openai_response_max_output_tokens_below_minimum: a 400 in
    # OpenAI's envelope naming what is wrong, and the model is never asked.
    cases = [
        ({"temperature": 3.0}, "temperature"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"tools": [WEATHER], "tool_choice": "invalid_choice"}, "tool_choice"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            alice.responses.create(model=MODEL, input=[{"role": "user", "content": "Hello"}], **extra)
        assert param in (caught.value.param or "") + caught.value.message, (extra, caught.value.body)
    with pytest.raises(openai.BadRequestError) as caught:
        alice.post("/responses", body={}, cast_to=object)
    assert isinstance(caught.value.body, dict) and caught.value.message
    assert _model_requests(fake_upstream) == 0


def test_invalid_model_raises_not_found_error(alice):
    # llama-stack test_responses_errors.py::test_invalid_model_raises_not_found_error (the fake upstream
    # knows every model but those named "missing..."); the refused turn is not kept in the conversation.
    conv = alice.conversations.create()
    with pytest.raises(openai.NotFoundError) as caught:
        alice.responses.create(model="missing-model-xyz-12345", input="Hello, world!", conversation=conv.id)
    assert "missing-model-xyz-12345" in caught.value.message
    assert alice.conversations.items.list(conv.id).data == []


def test_stream_failure_is_a_spec_compliant_response_failed(alice, fake_upstream):
    # llama-stack test_openai_responses.py::test_openai_response_streaming_failed_error_code_is_spec_compliant
    # and test_responses_errors.py::TestResponsesAPIStreamingErrors (failed-event structure). The peer
    # provokes a failure with truncation="auto" (unsupported there); here the model's stream breaks off.
    # Also checked (state): the failed turn is neither stored nor appended to its conversation.
    conv = alice.conversations.create()
    fake_upstream.script(drop_after=5)
    ask = "one two three four five six seven eight nine ten eleven twelve"
    events = list(alice.responses.create(model=MODEL, input=ask, conversation=conv.id, stream=True))
    assert events[0].type == "response.created"
    assert [e.type for e in events if e.type in TERMINAL] == ["response.failed"] and events[
        -1
    ].type == "response.failed"
    for event in events:
        validate_stream_event(event.model_dump(mode="json", exclude_unset=True))
    failed = events[-1]
    assert failed.response.status == "failed" and failed.response.error.message
    assert failed.response.error.code in get_args(ResponseError.model_fields["code"].annotation)
    assert isinstance(failed.sequence_number, int)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(failed.response.id)
    assert alice.conversations.items.list(conv.id).data == []
