"""The ``chat`` upstream: a Chat Completions server (vLLM, SGLang, Ollama,
llama.cpp, TGI, LiteLLM, OpenAI) behind the Responses API.

It converts the context from Responses items to chat messages (as SMG's
router does: instructions become the system message, reasoning and items
chat has no message for are left out, function calls are kept only in
matched call/output pairs so a cut context still makes a valid request),
converts tools and ``tool_choice``, and turns the answer, streamed or whole,
back into the turn's deltas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .client import make_client, post, upstream_errors
from .upstream import Delta, Finish, ModelName, ReasoningDelta, TextDelta, ToolCallDelta, UpstreamRequest, Usage

if TYPE_CHECKING:
    from ..config import Settings

_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        str(part.get("text") or part.get("refusal") or "")
        for part in content or []
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
    )


def _message_content(content: Any) -> Any:
    """A message's content as chat takes it: a string, or parts when it holds
    an image (``input_image`` becomes ``image_url``)."""
    if isinstance(content, str) or not any(
        isinstance(p, dict) and p.get("type") == "input_image" for p in content or []
    ):
        return _text(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif part.get("type") in _TEXT_PARTS:
            parts.append({"type": "text", "text": _text([part])})
    return parts


def chat_messages(request: UpstreamRequest) -> list[dict[str, Any]]:
    """The request's instructions and context as chat messages."""
    items = request.input
    answered = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
    called: set[str] = set()
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            messages.append(
                {"role": "system" if role == "developer" else role, "content": _message_content(item.get("content"))}
            )
        elif kind == "function_call" and item.get("call_id") in answered:
            called.add(item["call_id"])
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), (str, type(None))):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output" and item.get("call_id") in called:
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _text(output)})
    return messages


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                k: v for k, v in tool.items() if k in ("name", "description", "parameters", "strict") and v is not None
            },
        }
        for tool in tools
    ]


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def chat_response_format(text_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not text_format or text_format.get("type") == "text":
        return None
    if text_format["type"] == "json_object":
        return {"type": "json_object"}
    spec = {k: text_format[k] for k in ("name", "schema", "description", "strict") if k in text_format}
    return {"type": "json_schema", "json_schema": spec}


def chat_kwargs(request: UpstreamRequest) -> dict[str, Any]:
    """The ``chat.completions.create`` arguments of a request."""
    kwargs: dict[str, Any] = {"model": request.model, "messages": chat_messages(request)}
    if request.tools:
        kwargs["tools"] = chat_tools(request.tools)
        if request.parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None and (request.tools or request.tool_choice == "none"):
        kwargs["tool_choice"] = chat_tool_choice(request.tool_choice)
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_output_tokens,
        "response_format": chat_response_format(request.text_format),
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if request.stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def _usage(usage: Any) -> Usage:
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_tokens=getattr(prompt, "cached_tokens", None) or 0,
        reasoning_tokens=getattr(completion, "reasoning_tokens", None) or 0,
    )


def _reasoning(message: Any) -> str | None:
    """vLLM and DeepSeek send reasoning as ``reasoning_content``; others as
    ``reasoning``; neither is in the client's types."""
    extra = message.model_extra or {}
    piece = extra.get("reasoning_content") or extra.get("reasoning")
    return piece if isinstance(piece, str) and piece else None


def _message_deltas(message: Any, finish_reason: str | None, *, streamed: bool) -> Iterator[Delta]:
    """The deltas of a streamed chunk's ``delta`` or a whole answer's
    ``message`` (the same fields; a streamed call carries its own index)."""
    thought = _reasoning(message)
    if thought:
        yield ReasoningDelta(thought)
    if message.content:
        yield TextDelta(message.content)
    for position, call in enumerate(message.tool_calls or []):
        function = call.function
        yield ToolCallDelta(
            index=call.index if streamed else position,
            call_id=call.id,
            name=function.name if function else None,
            arguments=(function.arguments or "") if function else "",
        )
    if finish_reason:
        yield Finish(finish_reason)


def _chunk_deltas(chunk: Any) -> Iterator[Delta]:
    if chunk.usage:
        yield _usage(chunk.usage)
    for choice in chunk.choices[:1]:
        yield from _message_deltas(choice.delta, choice.finish_reason, streamed=True)


def _completion_deltas(completion: Any) -> Iterator[Delta]:
    for choice in completion.choices[:1]:
        yield from _message_deltas(choice.message, choice.finish_reason, streamed=False)
    if completion.usage:
        yield _usage(completion.usage)


class ChatUpstream:
    """A Chat Completions server at ``SMG_HISTORY_UPSTREAM_URL``."""

    #: Chat Completions has no field for the Responses API's ``reasoning``
    #: options, so a request carrying them is refused (an upstream without
    #: this attribute takes them).
    takes_reasoning = False

    def __init__(self, settings: Settings) -> None:
        self._client = make_client(settings)
        self._timeout = settings.upstream_timeout

    def stream(self, request: UpstreamRequest) -> Iterator[Delta]:
        """Send the request and return its answer's deltas. A refusal raises
        here, as soon as the server's status is in, before any token;
        closing the iterator closes the HTTP stream, so the server stops
        generating."""
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        with upstream_errors(self._timeout):
            answer = post(self._client, "/chat/completions", chat_kwargs(request), ChatCompletion, ChatCompletionChunk)
        if not request.stream:
            return iter([ModelName(answer.model), *_completion_deltas(answer)])
        return self._chunks(answer)

    def _chunks(self, answer: Any) -> Iterator[Delta]:
        try:
            named = False
            with upstream_errors(self._timeout):
                for chunk in answer:
                    if not named and chunk.model:
                        named = True
                        yield ModelName(chunk.model)
                    yield from _chunk_deltas(chunk)
        finally:
            answer.close()
