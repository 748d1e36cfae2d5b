"""A small OpenAI-compatible Chat Completions server on a loopback port, so
the example app's real LLM path runs against a real HTTP peer in tests.

It streams (``"stream": true``, server-sent events of ``chat.completion.chunk``
objects, usage last when ``stream_options.include_usage`` asks for it) or
answers in one JSON body. It answers "count" with a ``word_count`` tool call,
a tool result with a sentence about it, "fail" with a 400 error, "long" with
200 numbered words ``token_delay`` seconds apart (to stop half-way), "break"
with a few words and then a dropped connection, anything else with a
numbered echo. Every request body it gets is kept in
``requests``, and ``streams_closed`` counts the streams a client closed before
their end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

MODEL = "fake-model-1"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
LONG_WORDS = 200
#: A piece of text that makes the stream break off: the connection drops.
BREAK = "<break>"


class FakeLLM:
    def __init__(self, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.streams_closed = 0
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @Request.application
    def wsgi(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return self._json({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)
        body = request.get_json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        last = body["messages"][-1]
        if last["role"] != "tool" and "fail" in last["content"]:
            return self._json({"error": {"message": "the fake model refuses", "type": "invalid_request_error"}}, 400)
        thought, pieces, calls = self._answer(last)
        number = len(self.requests)
        if body.get("stream"):
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            chunks = self._chunks(number, thought, pieces, calls, include_usage)
            return Response(self._sse(chunks), mimetype="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces) or None}
        if thought:
            message["reasoning_content"] = thought
        if calls:
            message["tool_calls"] = calls
        return self._json(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": USAGE,
            }
        )

    def _answer(self, last: dict[str, Any]) -> tuple[str | None, list[str], list[dict[str, Any]]]:
        """Reasoning, the reply's text in pieces, and tool calls."""
        if last["role"] == "tool":
            return None, ["The tool says: ", last["content"]], []
        if "count" in last["content"]:
            arguments = json.dumps({"text": last["content"]})
            call = {"id": f"call_{len(self.requests)}", "type": "function"}
            return (
                "I should use the word_count tool.",
                [],
                [{**call, "function": {"name": "word_count", "arguments": arguments}}],
            )
        if "break" in last["content"]:
            return None, ["Half ", "a ", "reply ", BREAK], []
        if "long" in last["content"]:
            return "A long answer, then.", [f"word{n} " for n in range(1, LONG_WORDS + 1)], []
        text = f"Fake reply {len(self.requests)} to: {last['content']}"
        return "Thinking about an echo.", [word + " " for word in text.split(" ")[:-1]] + [text.split(" ")[-1]], []

    def _chunks(self, number, thought, pieces, calls, include_usage) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        if thought:
            half = len(thought) // 2
            yield chunk({"reasoning_content": thought[:half]})
            yield chunk({"reasoning_content": thought[half:]})
        for piece in pieces:
            if self.token_delay:
                time.sleep(self.token_delay)
            if piece == BREAK:
                raise ConnectionAbortedError("the fake model server breaks off its stream")
            yield chunk({"content": piece})
        for index, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            head = {"index": index, "id": call["id"], "type": "function"}
            yield chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        yield chunk({}, "tool_calls" if calls else "stop")
        if include_usage:
            yield {**chunk({}), "choices": [], "usage": USAGE}

    def _sse(self, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
        finished = False
        try:
            for data in chunks:
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.streams_closed += 1

    @staticmethod
    def _json(data: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, mimetype="application/json")
