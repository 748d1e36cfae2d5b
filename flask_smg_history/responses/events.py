"""An upstream's deltas turned into OpenAI's output items and stream events.

``Assembler`` holds the output as it grows: one item is open at a time (a
message taking text, a function call taking arguments, a reasoning item
taking its text); a delta of another kind closes it with its ``.done``
events and opens the next. The events are exactly OpenAI's, numbered from 0
by ``sequence_number``, so a streaming client and a stored response see the
same items with the same IDs. A non-streaming turn runs the same assembler and
drops the events.
"""

from __future__ import annotations

from typing import Any

from ..records import ITEM_ID_PREFIXES, mint_id
from .upstream import Delta, Finish, ModelName, OutputItem, ReasoningDelta, TextDelta, ToolCallDelta, Usage

Event = dict[str, Any]


def usage_object(usage: Usage | None) -> dict[str, Any] | None:
    """A ``Usage`` as the Response object carries it (totals that add up)."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


class Assembler:
    """The output of one turn, built from deltas, with the events that tell a
    streaming client about it."""

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.model: str | None = None
        self._seq = 0
        self._open: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # upstream's call index -> our function_call item

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    # -- feeding ---------------------------------------------------------------
    def feed(self, delta: Delta) -> list[Event]:
        """The events a delta causes (none for usage, model and finish)."""
        if isinstance(delta, str):
            delta = TextDelta(delta)
        if isinstance(delta, TextDelta):
            return self._text(delta.text) if delta.text else []
        if isinstance(delta, ReasoningDelta):
            return self._reasoning(delta.text) if delta.text else []
        if isinstance(delta, ToolCallDelta):
            return self._tool_call(delta)
        if isinstance(delta, OutputItem):
            events = self.close("completed")
            item = {**delta.item}
            item.setdefault("id", mint_id(_prefix(item)))
            index = len(self.output)
            self.output.append(item)
            events.append(self.event("response.output_item.added", output_index=index, item=item))
            events.append(self.event("response.output_item.done", output_index=index, item=item))
            return events
        if isinstance(delta, Usage):
            self.usage = delta
        elif isinstance(delta, Finish):
            self.finish = delta.reason
        elif isinstance(delta, ModelName):
            self.model = delta.name or self.model
        else:
            raise TypeError(f"an upstream yielded {type(delta).__name__}, which is no delta")
        return []

    def _opened(self, item: dict[str, Any]) -> list[Event]:
        events = self.close("completed")
        self._open = item
        self.output.append(item)
        events.append(self.event("response.output_item.added", output_index=len(self.output) - 1, item=_copy(item)))
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if item is None or item["type"] != "message":
            item = {
                "id": mint_id("msg"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events = self._opened(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append(self._part_event("response.content_part.added", item, part))
        part = item["content"][0]
        part["text"] += text
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=len(self.output) - 1,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if item is None or item["type"] != "reasoning":
            item = {
                "id": mint_id("rs"),
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": ""}],
            }
            events = self._opened(item)
        item["content"][0]["text"] += text
        events.append(
            self.event(
                "response.reasoning_text.delta",
                item_id=item["id"],
                output_index=len(self.output) - 1,
                content_index=0,
                delta=text,
            )
        )
        return events

    def _tool_call(self, delta: ToolCallDelta) -> list[Event]:
        events: list[Event] = []
        item = self._calls.get(delta.index)
        if item is None:
            item = {
                "id": mint_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": delta.call_id or mint_id("call"),
                "name": delta.name or "",
                "arguments": "",
            }
            self._calls[delta.index] = item
            events = self._opened(item)
        elif item is not self._open:
            # A piece of a call already closed: some servers interleave calls.
            # Its arguments still count; its events were already sent whole.
            item["arguments"] += delta.arguments
            return []
        if delta.name and not item["name"]:
            item["name"] = delta.name
        if delta.arguments:
            item["arguments"] += delta.arguments
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=len(self.output) - 1,
                    delta=delta.arguments,
                )
            )
        return events

    # -- closing ---------------------------------------------------------------
    def close(self, status: str) -> list[Event]:
        """Close the open item (``completed``, or ``incomplete`` when the
        turn was cut short) with its ``.done`` events."""
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self.output) - 1
        events: list[Event] = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(
                self.event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            events.append(self._part_event("response.content_part.done", item, part))
            item["status"] = status
        elif item["type"] == "reasoning":
            events.append(
                self.event(
                    "response.reasoning_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=item["content"][0]["text"],
                )
            )
        else:
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    name=item["name"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            item["status"] = status
        events.append(self.event("response.output_item.done", output_index=index, item=_copy(item)))
        return events

    def abandon(self) -> None:
        """Leave the open item ``incomplete`` without events: the turn failed
        or its client went away, so nobody reads its ``.done`` events."""
        item, self._open = self._open, None
        if item is not None and "status" in item:
            item["status"] = "incomplete"

    def _part_event(self, kind: str, item: dict[str, Any], part: dict[str, Any]) -> Event:
        return self.event(kind, item_id=item["id"], output_index=len(self.output) - 1, content_index=0, part=dict(part))

    def output_snapshot(self) -> list[dict[str, Any]]:
        return [_copy(item) for item in self.output]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that later deltas do not change an event already
    handed out (content parts are the only nested values that grow)."""
    copied = dict(item)
    for key in ("content", "summary"):
        if isinstance(copied.get(key), list):
            copied[key] = [dict(part) if isinstance(part, dict) else part for part in copied[key]]
    return copied


def _prefix(item: dict[str, Any]) -> str:
    return ITEM_ID_PREFIXES.get(item.get("type", ""), "item")
