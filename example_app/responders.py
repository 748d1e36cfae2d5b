"""Who answers: a model server, which the extension's chat adapter reaches
(``SMG_HISTORY_UPSTREAM_URL``), or the local stand-in below, an in-process
upstream (``init_app(app, upstream=...)``).

``history.responses.create`` hands an upstream the turn's whole context as
OpenAI input items (``request.input``) and makes output items, stream events
and one stored turn of what it yields; so the local responder only reads the
last input and yields text, reasoning, a function call or a whole item.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask_smg_history.responses import (
    Delta,
    Finish,
    ModelName,
    OutputItem,
    ReasoningDelta,
    ToolCallDelta,
    UpstreamRequest,
    Usage,
)

#: The stored ``model`` of the local responder's replies.
LOCAL_MODEL = "local-responder (built-in, no LLM)"
SYSTEM_PROMPT = (
    "You are a helpful assistant in the flask-smg-history example chat app. Answer briefly; use Markdown when it helps."
)
#: The one tool offered to the model, in the Responses API's shape; the app
#: runs it itself. Function tools are ``strict`` unless they say otherwise, so
#: its schema is one strict mode takes (every property required, no others).
WORD_COUNT_TOOL = {
    "type": "function",
    "name": "word_count",
    "description": "Count the words and characters of a text.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
}
MARKDOWN_DEMO = (Path(__file__).parent / "markdown_demo.md").read_text(encoding="utf-8")
#: A word with the spaces after it, or a run of spaces: the local responder's tokens.
TOKEN = re.compile(r"\S+\s*|\s+")


def text_of(item: Mapping[str, Any]) -> str:
    """The text of a message item: its text parts joined."""
    content = item.get("content")
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


def long_demo() -> str:
    """A long reply, to watch streaming and try the Stop button."""
    topics = ("conversations", "items", "responses", "feedback", "cursors", "owners", "backends", "retention")
    parts = ["## A long reply\n\nThis reply is long on purpose: press **Stop** while it streams.\n"]
    for n in range(1, 41):
        parts.append(
            f"{n}. Paragraph {n} is about {topics[n % len(topics)]}: the history keeps them per owner, "
            "pages through them with cursors and survives a restart."
        )
    return "\n".join(parts) + "\n"


class LocalResponder:
    """Deterministic replies with no network, so the app works offline,
    streamed word by word (``token_delay`` seconds apart) like a model's.

    ``/tool text`` calls the app's ``word_count`` function (the app runs it
    and sends its output back, which the responder then answers), ``/mcp
    text`` shows an MCP call, ``/markdown`` a formatted reply and ``/long`` a
    long one to stop half-way. Its "token usage" counts words: those of the
    messages it read, and the pieces of its reply. Being deterministic, it
    would repeat itself word for word when a reply is regenerated, so the app
    tells it which take that is (``takes``: the ID of the input item it
    answers, to the take's number), and it says so."""

    label = "the built-in local responder (no LLM: set EXAMPLE_LLM_BASE_URL to use one)"

    def __init__(self, token_delay: float = 0.02) -> None:
        self.token_delay = token_delay
        self.takes: dict[str, int] = {}

    def stream(self, request: UpstreamRequest) -> Iterator[Delta]:
        last = request.input[-1] if request.input else {}
        take = self.takes.pop(str(last.get("id")), 1)
        messages = [i for i in request.input if i.get("type", "message") == "message"]
        read = sum(len(text_of(i).split()) for i in messages)
        yield ModelName(LOCAL_MODEL)
        if last.get("type") == "function_call_output":
            yield from self._say(f"`word_count` says: {last.get('output')}", take, read)
            return
        text = next((text_of(i) for i in reversed(messages) if i.get("role") == "user"), "")
        words = len(text.split())
        yield ReasoningDelta(f"The local responder counts words; it does not think. This message has {words}.")
        command, rest = [*text.split(maxsplit=1), "", ""][:2]
        rest = rest.strip()
        if command == "/tool":
            yield ToolCallDelta(0, f"call_local_{len(request.input)}_{take}", "word_count", json.dumps({"text": rest}))
            yield Usage(input_tokens=read, output_tokens=1)
            yield Finish("tool_calls")
            return
        if command == "/mcp":
            item = {"type": "mcp_call", "server_label": "local-demo", "name": "echo", "output": rest, "error": None}
            yield OutputItem({**item, "arguments": json.dumps({"text": rest})})
        if command in ("/markdown", "/long"):
            reply = MARKDOWN_DEMO if command == "/markdown" else long_demo()
        else:
            preview = text if len(text) <= 80 else text[:79] + "…"
            reply = (
                f"You said “{preview}”: **{words}** words, **{len(text)}** characters.\n\n"
                "I am the built-in local responder, not a language model, so that is all I do. "
                "Try `/markdown`, `/long`, `/tool some text` or `/mcp something`."
            )
        yield from self._say(reply, take, read)

    def _say(self, reply: str, take: int, read: int) -> Iterator[Delta]:
        pieces = TOKEN.findall(f"(Take {take}.) {reply}" if take > 1 else reply)
        for token in pieces:
            if self.token_delay:
                time.sleep(self.token_delay)
            yield token
        # No model, no tokens: words instead (those it read, the pieces it streamed).
        yield Usage(input_tokens=read, output_tokens=len(pieces))


@dataclass(frozen=True)
class Responder:
    """The model name the app asks for, how the page names it, and the local
    responder when it is the one."""

    model: str
    label: str
    local: LocalResponder | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return {"responder": "local" if self.local else "openai"}


def make_responder(config: dict[str, Any]) -> Responder:
    """The local responder; or, with ``EXAMPLE_LLM_BASE_URL``, the model
    server, whose settings become the extension's (``config`` is updated)."""
    base_url = config.get("EXAMPLE_LLM_BASE_URL")
    if not base_url:
        local = LocalResponder(float(config.get("EXAMPLE_LOCAL_TOKEN_DELAY", 0.02)))
        return Responder(LOCAL_MODEL, local.label, local)
    config.update(
        SMG_HISTORY_UPSTREAM_URL=base_url,
        SMG_HISTORY_UPSTREAM_API="chat",
        SMG_HISTORY_UPSTREAM_API_KEY=config.get("EXAMPLE_LLM_API_KEY"),
    )
    return Responder(config["EXAMPLE_LLM_MODEL"], f"model {config['EXAMPLE_LLM_MODEL']} at {base_url}")
