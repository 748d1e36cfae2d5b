"""One assistant turn: ``history.responses.create`` streaming, its events
translated into the page's, the user able to stop it.

A turn runs as a generator of ``(event, data)`` pairs that ``chat.py`` sends as
server-sent events (or collects into one JSON answer): ``start``, then
``item`` (a whole reasoning item, function call or MCP call) and ``delta``
(the next piece of text), then ``done`` with the items the turn added to the
conversation, or ``error`` when it added none. The extension builds the
context from the conversation, calls the model and stores each response with
its input and output items in one write; a Stop closes its event iterator,
and the extension then stores what was generated as ``incomplete``. When the
model calls ``word_count``, the app runs it and sends the output back with
another ``create``, for up to three rounds.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask_smg_history import Conversation, HistoryError, HistoryUnavailable, NotFound, UpstreamError, history

from .responders import SYSTEM_PROMPT, WORD_COUNT_TOOL, run_word_count

log = logging.getLogger(__name__)
MAX_TOOL_ROUNDS = 3


def friendly(exc: HistoryError) -> str:
    """What to tell the person in the page about a store or model error."""
    if isinstance(exc, UpstreamError):
        return f"The model server failed: {exc.message}"
    if isinstance(exc, HistoryUnavailable):
        return "The chat history is unavailable right now; try again in a moment."
    if isinstance(exc, NotFound) and exc.param in ("conversation_id", "conversation"):
        return "This chat no longer exists; it was deleted, perhaps in another tab."
    if isinstance(exc, NotFound) and exc.param == "response_id":
        return "This reply no longer exists; it was deleted, perhaps in another tab."
    return exc.message


class StreamRegistry:
    """The replies streaming now, so a Stop request (another HTTP request)
    can reach the one it means. It lives in the server process: with several
    worker processes a Stop may land elsewhere, and the page then falls back to
    closing the stream, which the turn also treats as a stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, tuple[str, threading.Event]] = {}

    def open(self, owner: str) -> tuple[str, threading.Event]:
        stream_id = "stream_" + secrets.token_hex(12)
        event = threading.Event()
        with self._lock:
            self._streams[stream_id] = (owner, event)
        return stream_id, event

    def stop(self, owner: str, stream_id: str) -> bool:
        """Ask the stream to stop; False if it is not running (or not the
        owner's: the answer is the same)."""
        with self._lock:
            found = self._streams.get(stream_id)
        if found is None or found[0] != owner:
            return False
        found[1].set()
        return True

    def close(self, stream_id: str) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)


class Failed(Exception):
    """A round ended with ``response.failed``: nothing of it was stored."""


@dataclass
class Turn:
    """A reply: the chat, its new input (IDs minted by the app) and, for a
    regeneration, the response it replaces and the items taken out of the chat
    for it. When nothing gets stored those are put back, and a chat created
    for the turn is deleted again."""

    model: str
    registry: StreamRegistry
    conversation: Conversation
    input: list[dict[str, Any]]
    metadata: dict[str, str]
    created: bool = False
    replaces: str | None = None
    removed: list[dict[str, Any]] = field(default_factory=list)

    def _create(self, items: list[dict[str, Any]], metadata: dict[str, str]) -> tuple[str, Iterator[dict[str, Any]]]:
        events = history.responses.create(
            model=self.model,
            conversation=self.conversation.id,
            input=items,
            instructions=SYSTEM_PROMPT,
            tools=[WORD_COUNT_TOOL],
            metadata=metadata,
            stream=True,
        )
        return next(events)["response"]["id"], events  # response.created: closing now stores what came

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        stream_id, stop = self.registry.open(history.owner)
        items: list[dict[str, Any]] = []  # what the turn added to the conversation
        record, events, error = None, iter(()), None
        metadata = {**self.metadata, **({"regenerates": self.replaces} if self.replaces else {})}
        new_input = self.input
        try:
            for round_ in range(1, MAX_TOOL_ROUNDS + 1):
                response_id, events = self._create(new_input, metadata)
                if round_ == 1:
                    yield "start", self._start(stream_id)
                stopped = yield from _follow(events, stop)
                record = history.responses.get(response_id)
                tags = {"response_id": record.id, "model": record.model}
                items += [*record.input, *({**item, **tags} for item in record.output)]
                calls = [item for item in record.output if item["type"] == "function_call"]
                if stopped or stop.is_set() or record.status != "completed" or not calls:
                    break
                if round_ == MAX_TOOL_ROUNDS:
                    error = f"Stopped after {MAX_TOOL_ROUNDS} rounds of tool calls."
                    break
                new_input, metadata = [tool_output(call) for call in calls], self.metadata
                for item in new_input:
                    yield "item", {"item": item}
        except (Failed, HistoryError) as exc:
            error = friendly(exc) if isinstance(exc, HistoryError) else str(exc)
        finally:
            getattr(events, "close", lambda: None)()  # unless the turn was stored: store it as incomplete
            self.registry.close(stream_id)
        if record is None:
            self._undo()
            message = error or "No reply came."
            yield "error", {"message": message, "conversation": None if self.created else self.conversation.id}
            return
        done = {"items": items, "response_id": record.id, "model": record.model, "status": record.status}
        yield "done", {**done, "replaced": [item["id"] for item in self.removed], **({"error": error} if error else {})}

    def _start(self, stream_id: str) -> dict[str, Any]:
        conv = self.conversation
        return {
            "stream_id": stream_id,
            "conversation": {"id": conv.id, "title": conv.metadata.get("title", ""), "created": self.created},
            "user_item": None if self.replaces else self.input[0],
            "model": self.model,
        }

    def _undo(self) -> None:
        try:
            if self.created:
                history.conversations.delete(self.conversation.id)
            elif self.removed:
                history.items.add(self.conversation.id, self.removed)
        except HistoryError:
            log.warning("a failed turn could not be undone", exc_info=True)


def _follow(events: Iterator[dict[str, Any]], stop: threading.Event):
    """Pass on one response's text and whole items; True when stopped (the
    events are then closed, and the response stored as incomplete)."""
    for event in events:
        if event["type"] == "response.output_text.delta":
            yield "delta", {"text": event["delta"]}
        elif event["type"] == "response.output_item.done" and event["item"]["type"] != "message":
            yield "item", {"item": event["item"]}
        elif event["type"] == "response.failed":
            raise Failed(event["response"]["error"]["message"])
        if stop.is_set():
            events.close()  # type: ignore[attr-defined]
            return True
    return False


def tool_output(call: dict[str, Any]) -> dict[str, Any]:
    """Run a function the model called; its output is the next round's input."""
    known = call["name"] == "word_count"
    output = run_word_count(call["arguments"]) if known else '{"error": "unknown tool"}'
    return {"type": "function_call_output", "call_id": call["call_id"], "output": output}
