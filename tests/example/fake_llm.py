"""A small OpenAI-compatible Chat Completions server on a loopback port, so
the example app's real LLM path runs against a real HTTP peer in tests.

It answers "count" with a ``word_count`` tool call, a tool result with a
sentence about it, "fail" with a 400 error, anything else with a numbered
echo; every request body it gets is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

MODEL = "fake-model-1"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
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
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if last["role"] == "tool":
            message["content"] = f"The tool says: {last['content']}"
        elif "fail" in last["content"]:
            return self._json({"error": {"message": "the fake model refuses", "type": "invalid_request_error"}}, 400)
        elif "count" in last["content"]:
            message["reasoning_content"] = "I should use the word_count tool."
            arguments = json.dumps({"text": last["content"]})
            call = {"id": f"call_{len(self.requests)}", "type": "function"}
            message["tool_calls"] = [{**call, "function": {"name": "word_count", "arguments": arguments}}]
        else:
            message["reasoning_content"] = "Thinking about an echo."
            message["content"] = f"Fake reply {len(self.requests)} to: {last['content']}"
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return self._json(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": USAGE,
            }
        )

    @staticmethod
    def _json(data: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, mimetype="application/json")
