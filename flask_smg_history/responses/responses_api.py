"""The ``responses`` upstream: a server that speaks the Responses API itself
(OpenAI, vLLM's ``/v1/responses``), used statelessly.

We keep the state, so the upstream is always sent ``store: false`` and the
whole context as input items (stripped to the fields OpenAI defines: our IDs
and tags mean nothing to it), and its answer, streamed or whole, is read back
into the turn's deltas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import UpstreamError
from .client import make_client, post, upstream_errors
from .upstream import (
    Delta,
    Finish,
    ModelName,
    OutputItem,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamRequest,
    Usage,
)

if TYPE_CHECKING:
    from ..config import Settings

#: The fields of each item kind an upstream is sent; other kinds stay here.
_SENT_FIELDS = {
    "message": ("type", "role", "content"),
    "function_call": ("type", "call_id", "name", "arguments"),
    "function_call_output": ("type", "call_id", "output"),
}


def upstream_input(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent = []
    for item in items:
        fields = _SENT_FIELDS.get(item.get("type", "message"))
        if fields is not None:
            sent.append({k: item[k] for k in fields if k in item} | {"type": item.get("type", "message")})
    return sent


def responses_kwargs(request: UpstreamRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": request.model, "input": upstream_input(request.input), "store": False}
    optional = {
        "instructions": request.instructions,
        "tools": request.tools or None,
        "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls if request.tools else None,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_output_tokens,
        "text": {"format": request.text_format} if request.text_format else None,
        "reasoning": request.reasoning,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if request.stream:
        kwargs["stream"] = True
    return kwargs


def _usage(usage: Any) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cached_tokens=getattr(usage.input_tokens_details, "cached_tokens", 0) or 0,
        reasoning_tokens=getattr(usage.output_tokens_details, "reasoning_tokens", 0) or 0,
    )


def _ending(response: Any) -> Iterator[Delta]:
    """Usage and the reason to stop, from a finished response."""
    if response.usage:
        yield _usage(response.usage)
    details = response.incomplete_details
    if response.status == "incomplete":
        reason = getattr(details, "reason", None)
        yield Finish("content_filter" if reason == "content_filter" else "length")
    elif any(getattr(item, "type", None) == "function_call" for item in response.output):
        yield Finish("tool_calls")
    else:
        yield Finish("stop")


def _whole(response: Any) -> Iterator[Delta]:
    yield ModelName(response.model)
    for index, item in enumerate(response.output):
        kind = item.type
        if kind == "message":
            text = "".join(getattr(part, "text", None) or getattr(part, "refusal", "") for part in item.content)
            if text:
                yield TextDelta(text)
        elif kind == "reasoning":
            parts = [*(item.content or []), *(item.summary or [])]
            text = "".join(part.text for part in parts)
            if text:
                yield ReasoningDelta(text)
        elif kind == "function_call":
            yield ToolCallDelta(index, item.call_id, item.name, item.arguments)
        else:
            yield OutputItem(item.model_dump(exclude_none=True))
    yield from _ending(response)


def _event_deltas(event: Any) -> Iterator[Delta]:
    kind = event.type
    if kind == "response.created":
        yield ModelName(event.response.model)
    elif kind == "response.output_text.delta":
        yield TextDelta(event.delta)
    elif kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
        yield ReasoningDelta(event.delta)
    elif kind == "response.output_item.added" and event.item.type == "function_call":
        yield ToolCallDelta(event.output_index, event.item.call_id, event.item.name, event.item.arguments or "")
    elif kind == "response.function_call_arguments.delta":
        yield ToolCallDelta(event.output_index, arguments=event.delta)
    elif kind in ("response.completed", "response.incomplete"):
        yield from _ending(event.response)
    elif kind in ("response.failed", "error"):
        raise _failed(event)


def _failed(event: Any) -> Exception:
    error = getattr(getattr(event, "response", None), "error", None) or event
    message = getattr(error, "message", None) or "The model server failed to answer."
    return UpstreamError(message, status=502, code="upstream_error")


class ResponsesUpstream:
    """A Responses API server at ``SMG_HISTORY_UPSTREAM_URL``."""

    def __init__(self, settings: Settings) -> None:
        self._client = make_client(settings)
        self._timeout = settings.upstream_timeout

    def stream(self, request: UpstreamRequest) -> Iterator[Delta]:
        """As ``ChatUpstream.stream``: a refusal raises here."""
        from openai.types.responses import Response, ResponseStreamEvent

        with upstream_errors(self._timeout):
            answer = post(self._client, "/responses", responses_kwargs(request), Response, ResponseStreamEvent)
        if not request.stream:
            return iter(list(_whole(answer)))
        return self._events(answer)

    def _events(self, answer: Any) -> Iterator[Delta]:
        try:
            with upstream_errors(self._timeout):
                for event in answer:
                    yield from _event_deltas(event)
        finally:
            answer.close()
