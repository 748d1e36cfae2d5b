"""Fine-tuning lines built from stored responses (``training.py``), checked
by the strict validators of ``tests/support/training_formats.py``, which must
themselves refuse lines OpenAI would refuse."""

from __future__ import annotations

import json

import pytest

from flask_smg_history import training
from flask_smg_history.records import Response

from .support.training_formats import check_chat_line, check_preference_line

GOOD_CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
            ],
            "weight": 0,
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    "parallel_tool_calls": True,
}
GOOD_PREFERENCE = {
    "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A joke?"}]},
    "preferred_output": [{"role": "assistant", "content": "A good one."}],
    "non_preferred_output": [{"role": "assistant", "content": "A bad one."}],
}


def _line(data) -> str:
    return json.dumps(data)


def _edit(data, path, value=None, *, delete=False):
    """A deep copy of ``data`` with the value at ``path`` replaced (or deleted)."""
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


def test_the_validators_accept_good_lines():
    assert check_chat_line(_line(GOOD_CHAT)) == GOOD_CHAT
    assert check_preference_line(_line(GOOD_PREFERENCE)) == GOOD_PREFERENCE


@pytest.mark.parametrize(
    "bad",
    [
        _edit(GOOD_CHAT, ["messages"], []),
        _edit(GOOD_CHAT, ["messages"], delete=True),
        _edit(GOOD_CHAT, ["metadata"], {"rating": "positive"}),  # a key OpenAI does not define
        _edit(GOOD_CHAT, ["messages", 0, "role"], "developer"),  # not a fine-tuning role
        _edit(GOOD_CHAT, ["messages", 1, "content"], 42),
        _edit(GOOD_CHAT, ["messages", 1, "content"], [{"type": "input_text", "text": "Responses shape"}]),
        _edit(GOOD_CHAT, ["messages", 2, "weight"], 2),
        _edit(GOOD_CHAT, ["messages", 1, "weight"], 0),  # weight on a user message
        _edit(GOOD_CHAT, ["messages", 2, "tool_calls", 0, "type"], "custom"),
        _edit(GOOD_CHAT, ["messages", 2, "tool_calls", 0, "function", "arguments"], {"city": "Paris"}),
        _edit(GOOD_CHAT, ["messages", 3, "tool_call_id"], delete=True),
        _edit(GOOD_CHAT, ["messages", 3, "tool_call_id"], "call_unknown"),  # answers no call
        _edit(GOOD_CHAT, ["messages", 3], {"role": "user", "content": "a call never answered"}),
        _edit(GOOD_CHAT, ["messages", 4], {"role": "user", "content": "the last word is not the answer"}),
        _edit(GOOD_CHAT, ["messages", 4, "weight"], 0),  # nothing to train on
        _edit(GOOD_CHAT, ["messages", 4, "content"], delete=True),  # an empty assistant message
        _edit(GOOD_CHAT, ["tools", 0, "type"], "web_search"),
        _edit(GOOD_CHAT, ["parallel_tool_calls"], "yes"),
    ],
)
def test_the_chat_validator_refuses_bad_lines(bad):
    with pytest.raises(ValueError):
        check_chat_line(_line(bad))


@pytest.mark.parametrize(
    "bad",
    [
        _edit(GOOD_PREFERENCE, ["input"], delete=True),
        _edit(
            GOOD_PREFERENCE,
            ["input", "messages"],
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        ),
        _edit(
            GOOD_PREFERENCE,
            ["preferred_output"],
            [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
        ),
        _edit(GOOD_PREFERENCE, ["preferred_output"], []),
        _edit(GOOD_PREFERENCE, ["preferred_output", 0, "role"], "user"),
        _edit(GOOD_PREFERENCE, ["preferred_output", 0, "weight"], 1),
        _edit(GOOD_PREFERENCE, ["non_preferred_output"], [{"role": "assistant", "content": "A good one."}]),  # same
        _edit(GOOD_PREFERENCE, ["non_preferred_output"], {"role": "assistant", "content": "not a list"}),
        _edit(GOOD_PREFERENCE, ["chosen"], "another dialect's key"),
    ],
)
def test_the_preference_validator_refuses_bad_lines(bad):
    with pytest.raises(ValueError):
        check_preference_line(_line(bad))


def test_a_line_is_one_line():
    with pytest.raises(ValueError):
        check_chat_line(json.dumps(GOOD_CHAT, indent=1))


# -- building lines from responses --------------------------------------------------
def _response(rid, input_items, output, previous=None, status="completed", **extra) -> Response:
    return Response(
        id=rid,
        owner="alice",
        created_at=1.0,
        model="m",
        status=status,
        input=input_items,
        output=output,
        previous_response_id=previous,
        extra=extra,
    )


def _message(role, *texts, kind=None):
    kind = kind or ("output_text" if role == "assistant" else "input_text")
    return {"type": "message", "role": role, "content": [{"type": kind, "text": t} for t in texts]}


def test_a_chain_becomes_one_example_trained_on_its_last_answer():
    first = _response(
        "resp_1",
        [_message("developer", "Use metric units."), _message("user", "Weather in Paris?")],
        [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            _message("assistant", "Let me look."),
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
        ],
        instructions="Old instructions, not carried over.",
    )
    second = _response(
        "resp_2",
        [{"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"}],
        [_message("assistant", "It is ", "18 °C and sunny.")],
        previous="resp_1",
        instructions="Be brief.",
        tools=[
            {"type": "function", "name": "weather", "description": "Weather now", "parameters": {"type": "object"}},
            {"type": "web_search"},
        ],
        parallel_tool_calls=False,
    )
    line = training.chat_example([first, second])
    assert line == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use metric units."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "It is "}, {"type": "text", "text": "18 °C and sunny."}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object"}},
            }
        ],
        "parallel_tool_calls": False,
    }
    check_chat_line(json.dumps(line))


def test_images_and_refusals_keep_their_shapes():
    question = {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
        ],
    }
    refusal = {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't say."}]}
    line = training.chat_example([_response("resp_1", [question], [refusal])])
    assert line["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
        {"role": "assistant", "refusal": "I can't say."},
    ]
    check_chat_line(json.dumps(line))


@pytest.mark.parametrize(
    ("input_items", "output", "reason"),
    [
        ([{"type": "item_reference", "id": "msg_1"}], [_message("assistant", "a")], "item_reference"),
        (
            [_message("user", "q")],
            [{"type": "web_search_call", "id": "ws_1", "status": "completed"}],
            "web_search_call",
        ),
        ([_message("user", "q")], [{"type": "reasoning", "id": "rs_1", "summary": []}], "assistant message"),
        (
            [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}],
            [_message("assistant", "a")],
            "input_file",
        ),
        (
            [{"type": "function_call_output", "call_id": "call_9", "output": "x"}],
            [_message("assistant", "a")],
            "without its call",
        ),
    ],
)
def test_what_the_format_cannot_hold_is_refused_with_a_reason(input_items, output, reason):
    with pytest.raises(training.Unsupported) as info:
        training.chat_example([_response("resp_1", input_items, output)])
    assert reason in str(info.value)


def test_a_reply_that_did_not_complete_is_no_example():
    stopped = _response("resp_1", [_message("user", "q")], [_message("assistant", "half an ans")], status="incomplete")
    for build in (training.chat_example, training.preference_parts):
        with pytest.raises(training.Unsupported, match="status incomplete"):
            build([stopped])


def test_a_preference_answer_is_one_assistant_message():
    rated = _response("resp_1", [_message("user", "q")], [_message("assistant", "a")], instructions="Be brief.")
    prompt, answer = training.preference_parts([rated])
    assert prompt == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}]}
    assert answer == {"role": "assistant", "content": "a"}
    two = _response("resp_2", [_message("user", "q")], [_message("assistant", "a"), _message("assistant", "b")])
    with pytest.raises(training.Unsupported, match="exactly one assistant message"):
        training.preference_parts([two])
