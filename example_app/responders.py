"""Who answers a message: an OpenAI-compatible server, or a local stand-in.

Both take the conversation's recent items (oldest first, as ``history.items.recent``
returns them) and *stream* the reply as a sequence of events, so the page can
show it token by token and the user can stop it:

- ``("delta", text)``: the next piece of the assistant's message;
- ``("item", payload)``: a whole output item that is not the message (reasoning,
  a function call or its output, an MCP call), in OpenAI's Responses shapes;
- ``("model", name)``: the model that answers, as the server names it;
- ``("usage", {...})``: token usage so far.

The caller (``turns.py``) turns what was streamed into the stored response and
conversation items; closing the generator stops the reply (and, for a model
server, closes its HTTP stream).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask_smg_history import Item

#: The stored ``model`` of the local responder's replies.
LOCAL_MODEL = "local-responder (built-in, no LLM)"
SYSTEM_PROMPT = (
    "You are a helpful assistant in the flask-smg-history example chat app. Answer briefly; use Markdown when it helps."
)
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

Event = tuple[str, Any]


class ResponderError(Exception):
    """The model server failed; the message is shown in the page."""


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


def message(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text}],
    }


def reasoning(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


#: A word with the spaces after it, or a run of spaces: the local responder's tokens.
TOKEN = re.compile(r"\S+\s*|\s+")

MARKDOWN_DEMO = """\
## What this page renders

Replies are **Markdown**, rendered in the browser by a vendored *markdown-it*,
with raw HTML switched off:

- lists, **bold**, *italics*, `inline code` and [links](https://commonmark.org)
- tables and fenced code blocks, each with a **Copy** button
- nothing a reply says can run as script

| Store call | What it keeps |
|---|---|
| `history.responses.store` | the whole reply, with model and usage |
| `history.items.add` | the reply's items, in the conversation |
| `history.feedback.submit` | your 👍 or 👎, with a comment |

```python
from flask_smg_history import history

context = history.items.recent(conversation_id, limit=40)
```

> Set `EXAMPLE_LLM_BASE_URL` to talk to a real model instead.
"""

LONG_TOPICS = (
    "conversations",
    "items",
    "responses",
    "feedback",
    "cursors",
    "owners",
    "backends",
    "retention",
)


def long_demo() -> str:
    """A long reply, to watch streaming and try the Stop button."""
    parts = ["## A long reply\n\nThis reply is long on purpose: press **Stop** while it streams.\n"]
    for number in range(1, 41):
        topic = LONG_TOPICS[number % len(LONG_TOPICS)]
        parts.append(
            f"{number}. Paragraph {number} is about {topic}: the history keeps them per owner, "
            "pages through them with cursors and survives a restart."
        )
    return "\n".join(parts) + "\n"


class LocalResponder:
    """Deterministic replies with no network, so the app works offline,
    streamed word by word (``token_delay`` seconds apart) like a model's.

    ``/tool text`` shows a function call and its output, ``/mcp text`` an MCP
    call (the item kinds the page folds away), ``/markdown`` a formatted reply
    and ``/long`` a long one to stop half-way. Its "token usage" counts words:
    those of the messages it read, and the pieces of its reply."""

    label = "the built-in local responder (no LLM: set EXAMPLE_LLM_BASE_URL to use one)"
    model = LOCAL_MODEL
    metadata = {"responder": "local"}

    def __init__(self, token_delay: float = 0.02) -> None:
        self.token_delay = token_delay

    def stream(self, context: list[Item], attempt: int = 1) -> Iterator[Event]:
        user_texts = [text_of(i.payload) for i in context if i.type == "message" and i.role == "user"]
        text = user_texts[-1] if user_texts else ""
        words = len(text.split())
        yield "model", LOCAL_MODEL
        yield "item", reasoning(f"The local responder counts words; it does not think. This message has {words}.")
        command = text.split(maxsplit=1)[0] if text.split() else ""
        rest = text[len(command) :].strip()
        if command == "/tool":
            arguments = json.dumps({"text": rest})
            call_id = f"call_local_{len(context)}_{attempt}"
            yield "item", {"type": "function_call", "call_id": call_id, "name": "word_count", "arguments": arguments}
            yield "item", {"type": "function_call_output", "call_id": call_id, "output": run_word_count(arguments)}
        elif command == "/mcp":
            arguments = json.dumps({"text": rest})
            yield (
                "item",
                {
                    "type": "mcp_call",
                    "server_label": "local-demo",
                    "name": "echo",
                    "arguments": arguments,
                    "output": rest,
                    "error": None,
                },
            )
        if command == "/markdown":
            reply = MARKDOWN_DEMO
        elif command == "/long":
            reply = long_demo()
        else:
            preview = text if len(text) <= 80 else text[:79] + "…"
            reply = (
                f"You said “{preview}”: **{words}** words, **{len(text)}** characters.\n\n"
                "I am the built-in local responder, not a language model, so that is all I do. "
                "Try `/markdown`, `/long`, `/tool some text` or `/mcp something`."
            )
        if attempt > 1:
            reply = f"(Take {attempt}.) {reply}"
        pieces = TOKEN.findall(reply)
        for token in pieces:
            if self.token_delay:
                time.sleep(self.token_delay)
            yield "delta", token
        # No model, no tokens: it reports words instead (those of the messages
        # it read, and the pieces it streamed), so the usage panel has figures.
        read = sum(len(text_of(i.payload).split()) for i in context if i.type == "message")
        yield "usage", {"input_tokens": read, "output_tokens": len(pieces), "total_tokens": read + len(pieces)}


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
    """Streams from an OpenAI-compatible Chat Completions server with the
    official client, offering one tool (``word_count``) that the app runs
    itself, for up to three rounds of tool calls."""

    metadata = {"responder": "openai"}

    def __init__(self, base_url: str, api_key: str | None, model: str) -> None:
        from openai import OpenAI

        self.base_url = base_url
        self.model = model
        self.label = f"model {model} at {base_url}"
        self.client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=120, max_retries=1)

    def _failed(self, exc: Exception) -> ResponderError:
        return ResponderError(f"The model server at {self.base_url} failed: {exc}")

    def stream(self, context: list[Item], attempt: int = 1) -> Iterator[Event]:
        import openai

        messages = chat_messages(context)
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        yield "model", self.model
        for _ in range(MAX_TOOL_ROUNDS):
            try:
                chunks = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    tools=[WORD_COUNT_TOOL],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            except openai.OpenAIError as exc:
                raise self._failed(exc) from exc
            thought: list[str] = []
            content: list[str] = []
            calls: dict[int, dict[str, str]] = {}
            try:
                for chunk in chunks:
                    if chunk.model:
                        yield "model", chunk.model
                    if chunk.usage:
                        usage["input_tokens"] += chunk.usage.prompt_tokens or 0
                        usage["output_tokens"] += chunk.usage.completion_tokens or 0
                        usage["total_tokens"] += chunk.usage.total_tokens or 0
                        yield "usage", dict(usage)
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    extra = delta.model_extra or {}
                    piece = extra.get("reasoning_content") or extra.get("reasoning")
                    if piece:
                        thought.append(str(piece))
                    if delta.content:
                        if thought:
                            yield "item", reasoning("".join(thought))
                            thought = []
                        content.append(delta.content)
                        yield "delta", delta.content
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
            except openai.OpenAIError as exc:
                raise self._failed(exc) from exc
            finally:
                chunks.close()
            if thought:
                yield "item", reasoning("".join(thought))
            if not calls:
                return
            tool_calls = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(calls.items())
            ]
            messages.append({"role": "assistant", "content": "".join(content) or None, "tool_calls": tool_calls})
            for call in tool_calls:
                fn = call["function"]
                result = run_word_count(fn["arguments"]) if fn["name"] == "word_count" else '{"error": "unknown tool"}'
                yield (
                    "item",
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": fn["name"],
                        "arguments": fn["arguments"],
                    },
                )
                yield "item", {"type": "function_call_output", "call_id": call["id"], "output": result}
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        yield "delta", f"(Stopped after {MAX_TOOL_ROUNDS} rounds of tool calls.)"


def make_responder(config: Mapping[str, Any]) -> LocalResponder | OpenAIResponder:
    base_url = config.get("EXAMPLE_LLM_BASE_URL")
    if base_url:
        return OpenAIResponder(base_url, config.get("EXAMPLE_LLM_API_KEY"), config["EXAMPLE_LLM_MODEL"])
    return LocalResponder(float(config.get("EXAMPLE_LOCAL_TOKEN_DELAY", 0.02)))
