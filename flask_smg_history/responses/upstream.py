"""What a turn asks of a model, and what a model answers with.

Every upstream, whether a server reached over HTTP (``chat.py``,
``responses_api.py``) or a Python object the host gives ``init_app``
(``upstream=``), has one job: take an ``UpstreamRequest`` (the whole context as
OpenAI input items, the instructions, tools and sampling settings) and yield
the answer as it comes, in the small vocabulary below. The turn
(``turn.py``) turns those pieces into OpenAI's output items and stream events,
so an upstream never deals with IDs, sequence numbers or storage.

An in-process upstream is any object with a ``stream(request)`` method that
returns an iterable of these (a plain ``str`` counts as ``TextDelta``). It may
raise ``UpstreamError`` to refuse. Closing the iterator (``close()``, which a
generator has) means the client went away: stop generating.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the assistant's message."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """The next piece of the model's reasoning (vLLM's ``reasoning_content``)."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a function call: its first piece names the call (``call_id``,
    ``name``); later pieces of the same ``index`` add to its ``arguments``."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class OutputItem:
    """A whole output item that is none of the above (an MCP call an
    in-process upstream ran, say), in OpenAI's item shape; it is checked as a
    conversation item is before it is stored."""

    item: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Token counts of the whole answer (the last one given wins)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Finish:
    """Why the answer ended: ``stop``, ``tool_calls``, ``length`` (the
    ``max_output_tokens`` cut it short) or ``content_filter``."""

    reason: str


@dataclass(frozen=True)
class ModelName:
    """The model that answers, as the upstream names it."""

    name: str


Delta = TextDelta | ReasoningDelta | ToolCallDelta | OutputItem | Usage | Finish | ModelName | str


@dataclass
class UpstreamRequest:
    """One call to the model: the whole context, then the turn's settings, as
    the client sent them (``tools`` and ``tool_choice`` in the Responses API's
    shapes; each adapter converts them)."""

    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    stream: bool = True


class Upstream(Protocol):
    """What ``init_app(app, upstream=...)`` accepts, and what the HTTP
    adapters are. An upstream may also set ``takes_reasoning = False`` to have
    requests with ``reasoning`` options refused (400) instead of passed on in
    ``UpstreamRequest.reasoning``."""

    def stream(self, request: UpstreamRequest) -> Iterable[Delta]: ...
