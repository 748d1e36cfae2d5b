"""Who answers a message: an OpenAI-compatible server, or a local stand-in.

Both take the conversation's recent items (oldest first, as ``history.items.recent``
returns them) and return a ``Reply``: the output items to store, in OpenAI's
Responses shapes, with the model name and token usage. The page and the
stored ``model`` say which one answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask_smg_history import Item

#: The stored ``model`` of the local responder's replies.
LOCAL_MODEL = "local-responder (built-in, no LLM)"
SYSTEM_PROMPT = "You are a helpful assistant in the flask-smg-history example chat app. Answer briefly."
MAX_TOOL_ROUNDS = 3

#: The one tool offered to the model; the app runs it itself.
WORD_COUNT_TOOL = {
    "type": "function",
    "function": {
        "name": "word_count",
        "description": "Count the words and characters of a text.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
}


class ResponderError(Exception):
    """The model server failed; the message is shown in the page."""


@dataclass
class Reply:
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, int] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def text_of(payload: Mapping[str, Any]) -> str:
    """The text of a message item: its text parts joined."""
    content = payload.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def run_word_count(arguments: str) -> str:
    try:
        text = json.loads(arguments).get("text", "")
    except (ValueError, AttributeError):
        return json.dumps({"error": "arguments must be a JSON object with a 'text' string"})
    text = text if isinstance(text, str) else str(text)
    return json.dumps({"words": len(text.split()), "characters": len(text)})


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def reasoning(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


class LocalResponder:
    """Deterministic replies with no network, so the app works offline. A
    message starting with ``/tool`` shows a function call and its output, one
    starting with ``/mcp`` an MCP call: the item kinds the page folds away."""

    label = "the built-in local responder (no LLM: set EXAMPLE_LLM_BASE_URL to use one)"

    def reply(self, context: list[Item]) -> Reply:
        user_texts = [text_of(i.payload) for i in context if i.type == "message" and i.role == "user"]
        text = user_texts[-1] if user_texts else ""
        words = len(text.split())
        output = [reasoning(f"The local responder counts words; it does not think. This message has {words}.")]
        if text.startswith("/tool"):
            arguments = json.dumps({"text": text[5:].strip()})
            call_id = f"call_local_{len(context)}"
            output.append({"type": "function_call", "call_id": call_id, "name": "word_count", "arguments": arguments})
            output.append({"type": "function_call_output", "call_id": call_id, "output": run_word_count(arguments)})
        elif text.startswith("/mcp"):
            output.append(
                {
                    "type": "mcp_call",
                    "server_label": "local-demo",
                    "name": "echo",
                    "arguments": json.dumps({"text": text[4:].strip()}),
                    "output": text[4:].strip(),
                    "error": None,
                }
            )
        preview = text if len(text) <= 80 else text[:79] + "…"
        output.append(message(f"Local responder: you said “{preview}” ({words} words, {len(text)} characters)."))
        return Reply(model=LOCAL_MODEL, output=output, metadata={"responder": "local"})


def chat_messages(context: list[Item]) -> list[dict[str, Any]]:
    """Stored items as Chat Completions messages. Function calls and outputs
    are kept only in matched pairs, so a context window that cuts a pair in
    two still makes a valid request; other item kinds are not sent."""
    outputs = {i.payload.get("call_id") for i in context if i.type == "function_call_output"}
    calls: set[str] = set()
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for item in context:
        p = item.payload
        if item.type == "message":
            messages.append({"role": p.get("role", "user"), "content": text_of(p)})
        elif item.type == "function_call" and p.get("call_id") in outputs:
            calls.add(p["call_id"])
            call = {
                "id": p["call_id"],
                "type": "function",
                "function": {"name": p["name"], "arguments": p["arguments"]},
            }
            last = messages[-1]
            if last["role"] == "assistant" and last.get("tool_calls") and not last.get("content"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item.type == "function_call_output" and p.get("call_id") in calls:
            messages.append({"role": "tool", "tool_call_id": p["call_id"], "content": str(p.get("output", ""))})
    return messages


class OpenAIResponder:
    """Calls an OpenAI-compatible Chat Completions server with the official
    client, offering one tool (``word_count``) that the app runs itself."""

    def __init__(self, base_url: str, api_key: str | None, model: str) -> None:
        from openai import OpenAI

        self.base_url = base_url
        self.model = model
        self.label = f"model {model} at {base_url}"
        self.client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=120, max_retries=1)

    def reply(self, context: list[Item]) -> Reply:
        import openai

        messages = chat_messages(context)
        output: list[dict[str, Any]] = []
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        model = self.model
        for _ in range(MAX_TOOL_ROUNDS):
            try:
                completion = self.client.chat.completions.create(
                    model=self.model, messages=messages, tools=[WORD_COUNT_TOOL]
                )
            except openai.OpenAIError as exc:
                raise ResponderError(f"The model server at {self.base_url} failed: {exc}") from exc
            model = completion.model or model
            if completion.usage:
                usage["input_tokens"] += completion.usage.prompt_tokens
                usage["output_tokens"] += completion.usage.completion_tokens
                usage["total_tokens"] += completion.usage.total_tokens
            if not completion.choices:
                raise ResponderError(f"The model server at {self.base_url} returned no choices.")
            answer = completion.choices[0].message
            thought = (answer.model_extra or {}).get("reasoning_content")
            if thought:
                output.append(reasoning(str(thought)))
            if not answer.tool_calls:
                output.append(message(answer.content or ""))
                break
            messages.append(answer.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True))
            for call in answer.tool_calls:
                fn = call.function
                result = run_word_count(fn.arguments) if fn.name == "word_count" else '{"error": "unknown tool"}'
                output.append({"type": "function_call", "call_id": call.id, "name": fn.name, "arguments": fn.arguments})
                output.append({"type": "function_call_output", "call_id": call.id, "output": result})
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        else:
            output.append(message(f"(Stopped after {MAX_TOOL_ROUNDS} rounds of tool calls.)"))
        return Reply(model=model, output=output, usage=usage, metadata={"responder": "openai"})


def make_responder(config: Mapping[str, Any]) -> LocalResponder | OpenAIResponder:
    base_url = config.get("EXAMPLE_LLM_BASE_URL")
    if base_url:
        return OpenAIResponder(base_url, config.get("EXAMPLE_LLM_API_KEY"), config["EXAMPLE_LLM_MODEL"])
    return LocalResponder()
