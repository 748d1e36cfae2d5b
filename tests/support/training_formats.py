"""Strict validators of OpenAI's fine-tuning line formats, as OpenAI's API
reference describes them (``FineTuneChatRequestInput`` for supervised
fine-tuning, ``FineTunePreferenceRequestInput`` for DPO, and the Chat
Completions message shapes they are made of): a JSON Schema for the shape of
a line, plus the rules a schema cannot state (the last message is the
assistant's, every tool message answers a call made before it and every call
is answered, a preference pair's two answers differ).

Strict on purpose: no field OpenAI does not define (OpenAI refuses a file
with an extra key), only the roles the fine-tuning reference lists (no
``developer``), ``weight`` only 0 or 1 and only on assistant messages of
chat lines. ``check_*`` raise ``ValueError`` for a bad line (with the
schema's complaint when it is the shape that is wrong).
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {"url": {"type": "string", "minLength": 1}, "detail": {"enum": ["auto", "low", "high"]}},
        },
    },
}
_TEXT = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": _TEXT_PART}]}
_USER_CONTENT = {
    "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"anyOf": [_TEXT_PART, _IMAGE_PART]}}]
}
_TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "arguments": {"type": "string"}},
        },
    },
}
_SYSTEM = {
    "type": "object",
    "required": ["role", "content"],
    "additionalProperties": False,
    "properties": {"role": {"const": "system"}, "content": _TEXT, "name": {"type": "string"}},
}
_USER = {
    "type": "object",
    "required": ["role", "content"],
    "additionalProperties": False,
    "properties": {"role": {"const": "user"}, "content": _USER_CONTENT, "name": {"type": "string"}},
}
_TOOL = {
    "type": "object",
    "required": ["role", "tool_call_id", "content"],
    "additionalProperties": False,
    "properties": {"role": {"const": "tool"}, "tool_call_id": {"type": "string", "minLength": 1}, "content": _TEXT},
}


def _assistant(weight: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "role": {"const": "assistant"},
        "content": {"anyOf": [_TEXT, {"type": "null"}]},
        "refusal": {"type": ["string", "null"]},
        "name": {"type": "string"},
        "tool_calls": {"type": "array", "minItems": 1, "items": _TOOL_CALL},
    }
    if weight:
        properties["weight"] = {"enum": [0, 1]}
    return {
        "type": "object",
        "required": ["role"],
        "additionalProperties": False,
        "properties": properties,
        "anyOf": [{"required": ["content"]}, {"required": ["tool_calls"]}, {"required": ["refusal"]}],
    }


_FUNCTION_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "parameters": {"type": "object"},
                "strict": {"type": ["boolean", "null"]},
            },
        },
    },
}


def _conversation(assistant: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            "messages": {"type": "array", "minItems": 1, "items": {"oneOf": [_SYSTEM, _USER, assistant, _TOOL]}},
            "tools": {"type": "array", "minItems": 1, "items": _FUNCTION_TOOL},
            "parallel_tool_calls": {"type": "boolean"},
        },
    }


#: One line of a supervised (chat) fine-tuning file.
CHAT_LINE = _conversation(_assistant(weight=True))
_ANSWER = {"type": "array", "minItems": 1, "maxItems": 1, "items": _assistant(weight=False)}
#: One line of a preference (DPO) fine-tuning file.
PREFERENCE_LINE = {
    "type": "object",
    "required": ["input", "preferred_output", "non_preferred_output"],
    "additionalProperties": False,
    "properties": {
        "input": _conversation(_assistant(weight=False)),
        "preferred_output": _ANSWER,
        "non_preferred_output": _ANSWER,
    },
}
Draft202012Validator.check_schema(CHAT_LINE)
Draft202012Validator.check_schema(PREFERENCE_LINE)


def _validate(schema: dict[str, Any], data: Any) -> None:
    try:
        Draft202012Validator(schema).validate(data)
    except ValidationError as exc:
        raise ValueError(f"{exc.message} (at {list(exc.absolute_path)})") from exc


def _parse(line: str) -> Any:
    if "\n" in line.rstrip("\n"):
        raise ValueError("a JSONL line holds one JSON value on one line")
    return json.loads(line)


def _check_tool_calls(messages: list[dict[str, Any]]) -> None:
    """Tool messages answer calls of the assistant message before them, and
    every call of an assistant message that is not the last is answered
    before the next message that is not a tool message."""
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message["tool_call_id"] not in open_calls:
                raise ValueError(f"message {index}: a tool message answering no open call")
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            raise ValueError(f"message {index}: tool calls {sorted(open_calls)} were never answered")
        if message["role"] == "assistant" and index < len(messages) - 1:
            open_calls = {call["id"] for call in message.get("tool_calls", [])}


def check_chat_line(line: str) -> dict[str, Any]:
    """Parse and check one chat-jsonl line; return it."""
    data = _parse(line)
    _validate(CHAT_LINE, data)
    messages = data["messages"]
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's (the answer trained on)")
    if all(m.get("weight") == 0 for m in messages if m["role"] == "assistant"):
        raise ValueError("every assistant message has weight 0: nothing to train on")
    _check_tool_calls(messages)
    return data


def check_preference_line(line: str) -> dict[str, Any]:
    """Parse and check one preference-jsonl line; return it."""
    data = _parse(line)
    _validate(PREFERENCE_LINE, data)
    messages = data["input"]["messages"]
    if messages[-1]["role"] == "assistant":
        raise ValueError("the input must end with the message answered, not with an answer")
    if data["preferred_output"] == data["non_preferred_output"]:
        raise ValueError("the preferred and non-preferred answers are the same")
    for answer in ("preferred_output", "non_preferred_output"):
        _check_tool_calls([*messages, *data[answer]])
    return data
