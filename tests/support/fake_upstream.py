"""A fake OpenAI-compatible model server ("upstream") for tests, served over real HTTP.

Why a real server and not a mocked client: the code under test talks to its upstream through the
official ``openai`` client, and the failures worth testing (a stream cut mid-way, a client timeout, a
client that hangs up while the model is still generating) only happen on a socket. So this is a
threaded werkzeug server on ``127.0.0.1`` that speaks the two APIs an upstream offers:

- ``POST /v1/chat/completions`` (plain, or streamed as ``data: {chunk}`` lines ending in
  ``data: [DONE]``), ``reasoning_content`` deltas as vLLM and DeepSeek send them;
- ``POST /v1/responses`` (plain, or streamed as ``event: <type>`` + ``data: {event}`` with the real
  event sequence and ``sequence_number`` from 0);
- ``GET /v1/models`` and ``GET /v1/models/<id>``.

Its default answer is predictable, so tests can assert on it without scripting anything: the text
``"echo: " + <text of the last user message>``, streamed in pieces of one word each (with its
trailing whitespace, see :func:`split_pieces`); input tokens are the whitespace-separated words of every
text the request carries (:func:`count_words`), output tokens the number of pieces sent.

Tests change the next answers with :meth:`FakeUpstream.script` (text, reasoning, tool calls, a cut
reply, an error status, a hang, a slow or dropped stream, a context-window overflow), and check what
the code under test forwarded in :attr:`FakeUpstream.requests`.

One server is started per test session (the ``fake_upstream_server`` fixture) and ``reset()`` between
tests (the ``fake_upstream`` fixture): starting one costs little, but a session-wide one costs nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.datastructures import Headers
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = [
    "Behaviour",
    "FakeUpstream",
    "RecordedRequest",
    "count_words",
    "echo_text",
    "fake_upstream",
    "fake_upstream_server",
    "split_arguments",
    "split_pieces",
]

DEFAULT_MODEL = "fake-model"
CONTEXT_MESSAGE = (
    "This model's maximum context length is 4096 tokens. However, your messages resulted in 9000 tokens. "
    "Please reduce the length of the messages."
)
# The poll step of every wait (hang, delay): how soon a hung-up client or a reset() is noticed.
_POLL = 0.02
_FINISHES = ("stop", "length", "content_filter")
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)
_DEFAULT_ERRORS = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


# --------------------------------------------------------------------------- predictable text helpers


def split_pieces(text: str) -> list[str]:
    """The pieces a reply text is streamed in: one word each, with the whitespace that follows it (the
    first also keeps any leading whitespace), so ``"".join(split_pieces(t)) == t``. ``"echo: hi you"``
    gives ``["echo: ", "hi ", "you"]``. A text of only whitespace is one piece; ``""`` is none."""
    if not text:
        return []
    pieces = re.findall(r"\s*\S+\s*", text)
    return pieces or [text]


def split_arguments(arguments: str) -> list[str]:
    """The pieces a tool call's JSON arguments are streamed in: at least two when there are two or more
    characters (so a client has to reassemble them), chunks of at most 8 characters."""
    if len(arguments) < 2:
        return [arguments]
    size = max(1, min(8, math.ceil(len(arguments) / 2)))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def count_words(texts: Iterable[str]) -> int:
    """Whitespace-separated words in ``texts``: the fake's stand-in for a tokenizer."""
    return sum(len(text.split()) for text in texts)


def echo_text(last_user_text: str) -> str:
    """The default reply to a request whose last user message has this text."""
    return "echo: " + last_user_text


def _part_texts(content: Any) -> list[str]:
    """Text of a message's ``content``: a string, or the ``text`` of each part of a list (chat's
    ``text`` parts, the Responses API's ``input_text``/``output_text`` parts)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _item_texts(item: Any) -> list[str]:
    """Every text a message or input item carries to the model: its content, or a tool result's
    ``output`` (Responses ``function_call_output``). Tool-call arguments and tool definitions don't count."""
    if isinstance(item, str):
        return [item]
    if not isinstance(item, dict):
        return []
    texts = _part_texts(item.get("content"))
    if isinstance(item.get("output"), str):
        texts.append(item["output"])
    return texts


# --------------------------------------------------------------------------- scripting and recording


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one request. Every field defaults to "as a normal model would".

    - ``text``: the reply text (streamed in :func:`split_pieces`); ``None`` means the default echo, unless
      ``tool_calls`` is set, in which case there is no text.
    - ``reasoning``: reasoning text sent before the reply (chat: ``delta.reasoning_content`` pieces, and
      ``message.reasoning_content``; Responses: a ``reasoning`` item with one ``summary_text``).
    - ``tool_calls``: ``[(name, arguments), ...]`` or ``(name, arguments, call_id)``; arguments a JSON
      string or anything ``json.dumps`` takes. Several are parallel calls. Finish reason ``tool_calls``.
    - ``finish``: ``"length"`` or ``"content_filter"`` ends the reply as cut (chat ``finish_reason``;
      Responses ``status: incomplete`` with ``incomplete_details.reason`` ``max_output_tokens`` or
      ``content_filter``) without shortening the scripted text; ``"stop"`` forces a normal end.
    - ``status``: answer this HTTP status with OpenAI's error body (``error_message`` replaces the
      default message; ``error_body`` replaces the whole JSON body).
    - ``headers``: extra response headers (e.g. ``{"x-should-retry": "false"}``, ``{"retry-after": "0"}``).
    - ``hang``: seconds to wait before answering anything (client timeouts). Ends early when the client
      hangs up (counted as a disconnect) or at ``reset()``/``close()``.
    - ``delay``: seconds slept before each streamed piece (text, reasoning or argument delta); streams only.
    - ``drop_after``: on a streamed request, send this many server-sent events and then shut the TCP
      connection down mid-body: no ``[DONE]``, no terminal event, no final chunk of the chunked encoding.
    - ``context_window``: answer 400 ``context_length_exceeded`` if the request has more messages (chat)
      or input items (Responses; a string input is one) than this.
    """

    text: str | None = None
    reasoning: str | None = None
    tool_calls: list[Any] | tuple[Any, ...] | None = None
    finish: str | None = None
    status: int | None = None
    error_message: str | None = None
    error_body: Any = None
    headers: dict[str, str] | None = None
    hang: float = 0.0
    delay: float = 0.0
    drop_after: int | None = None
    context_window: int | None = None

    def __post_init__(self) -> None:
        if self.finish is not None and self.finish not in _FINISHES:
            raise ValueError(f"finish must be one of {_FINISHES}, not {self.finish!r}")


@dataclass
class RecordedRequest:
    """One request the fake received (any path: ``GET /v1/models`` too), recorded as it arrived (before
    any hang), so a test can check what was forwarded while the answer is still pending. ``behaviour`` is
    the script entry it used (chat/responses requests only; a default ``Behaviour()`` when none was queued).

    ``outcome`` is ``None`` while it is being served, then ``"completed"`` (answered in full, an error
    status included), ``"disconnected"`` (the client hung up first), ``"dropped"`` (``drop_after`` cut
    it) or ``"aborted"`` (``reset()``/``close()`` came first). ``status`` is the HTTP status answered."""

    method: str
    path: str
    headers: Headers
    body: bytes
    json: Any
    stream: bool = False
    behaviour: Behaviour | None = None
    status: int | None = None
    outcome: str | None = None

    @property
    def api_key(self) -> str | None:
        """The bearer token of the ``Authorization`` header, if any."""
        value = self.headers.get("Authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None


@dataclass
class _Call:
    call_id: str
    item_id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass
class _Plan:
    """What a request is answered with, the same whether streamed or not."""

    model: str
    reasoning: list[str]
    text: list[str] | None  # None: no text at all (tool calls only)
    calls: list[_Call]
    finish: str  # chat's finish_reason
    input_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def output_tokens(self) -> int:
        return len(self.reasoning) + len(self.text or []) + sum(len(call.pieces) for call in self.calls)

    @property
    def text_value(self) -> str | None:
        return None if self.text is None else "".join(self.text)


class _Stop(Exception):
    """Raised inside a wait when the request must stop; ``outcome`` says why."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class _Ctx:
    record: RecordedRequest
    sock: socket.socket | None
    abort: threading.Event
    generation: int
    finished: bool = False


def _peer_closed(sock: socket.socket | None) -> bool:
    """Whether the client has closed its end. Writes to a closed peer can succeed for a while (they land
    in kernel buffers), so a stream would otherwise go on "generating" for nobody: peeking at the socket
    sees the FIN at once. The client sends nothing after its request (werkzeug answers with
    ``Connection: close``), so readable means closed unless there is data to peek. ``MSG_DONTWAIT``
    rather than ``select``, which fails on descriptors above 1023 (a long test session gets there)."""
    if sock is None:
        return False
    try:
        if _DONTWAIT is None:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        return sock.recv(1, socket.MSG_PEEK | _DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without the access log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# --------------------------------------------------------------------------- the server


class FakeUpstream:
    """A real HTTP model server on ``127.0.0.1`` for the code under test to forward to.

    Use as a context manager (or call :meth:`close`); ``base_url`` is ``http://127.0.0.1:<port>/v1``.
    Standing settings, restored by :meth:`reset`: ``known_models`` (``None``: any model name except
    those starting with ``"missing"``), ``context_window`` (``None``: unlimited; else like the
    ``context_window`` behaviour on every request), ``api_key`` (``None``: any key; else other keys get
    401 ``invalid_api_key``) and ``model`` (the one listed by ``GET /v1/models`` when ``known_models`` is
    ``None``)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._abort = threading.Event()
        self._script: deque[Behaviour] = deque()
        self.requests: list[RecordedRequest] = []
        self.client_closed = threading.Event()
        self._disconnects = 0
        self._in_flight = 0
        self._defaults()
        self._server = make_server(host, 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.base_url = f"http://{host}:{self._server.server_port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _defaults(self) -> None:
        self.known_models: set[str] | None = None
        self.context_window: int | None = None
        self.api_key: str | None = None
        self.model = DEFAULT_MODEL

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, and end any hang or stream still going (their outcome becomes ``"aborted"``)."""
        if self._closed:
            return
        self._closed = True
        self._abort.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reset(self) -> None:
        """Forget scripts, recorded requests and disconnects, restore the standing settings, and end any
        hang or stream left over from an earlier test (it no longer counts here: a late disconnect of an
        old request is not added to this test's ``disconnects``)."""
        with self._lock:
            self._abort.set()
            self._abort = threading.Event()
            self._generation += 1
            self._script.clear()
            self.requests = []
            self._disconnects = 0
            self.client_closed = threading.Event()
            self._defaults()
            self._changed.notify_all()

    # ----------------------------------------------------------------- scripting

    def script(self, *, times: int = 1, **behaviour: Any) -> Behaviour:
        """Queue how the next request (``times`` requests) is answered; see :class:`Behaviour` for the
        keywords. Queued behaviours are used in order, one per chat/responses request, then the default
        answer resumes. ``times`` matters when the code under test retries: a scripted 500 is used up by
        the first try, and the retry gets the default answer."""
        planned = Behaviour(**behaviour)
        with self._lock:
            self._script.extend([planned] * times)
        return planned

    @property
    def scripts_left(self) -> int:
        """Queued behaviours not used yet (assert ``== 0`` to check every scripted answer was asked for)."""
        with self._lock:
            return len(self._script)

    # ----------------------------------------------------------------- observing

    @property
    def last(self) -> RecordedRequest:
        """The most recent request (``IndexError`` if there was none)."""
        with self._lock:
            return self.requests[-1]

    @property
    def disconnects(self) -> int:
        """Requests since ``reset()`` whose client went away before the answer was finished: mid-stream,
        or during a ``hang``. Not counted: ``drop_after`` (the fake hung up, not the client)."""
        with self._lock:
            return self._disconnects

    @property
    def in_flight(self) -> int:
        """Requests being served right now (a stream counts until its last byte or its disconnect)."""
        with self._lock:
            return self._in_flight

    def wait_for_disconnect(self, timeout: float = 2.0, count: int = 1) -> bool:
        """Wait until ``disconnects >= count``; whether that happened within ``timeout`` seconds."""
        return self._wait(lambda: self._disconnects >= count, timeout)

    def wait_for_requests(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Wait until ``count`` requests have arrived since ``reset()``."""
        return self._wait(lambda: len(self.requests) >= count, timeout)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no request is being served: a stream that the client closed has stopped generating."""
        return self._wait(lambda: self._in_flight == 0, timeout)

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # ----------------------------------------------------------------- request accounting

    def _begin(self, record: RecordedRequest, sock: socket.socket | None) -> _Ctx:
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            ctx = _Ctx(record, sock, self._abort, self._generation)
            self._changed.notify_all()
        return ctx

    def _finish(self, ctx: _Ctx, outcome: str) -> None:
        with self._lock:
            if ctx.finished:
                return
            ctx.finished = True
            ctx.record.outcome = outcome
            self._in_flight -= 1
            if outcome == "disconnected" and ctx.generation == self._generation:
                self._disconnects += 1
                self.client_closed.set()
            self._changed.notify_all()

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else Behaviour()

    def _pause(self, ctx: _Ctx, seconds: float) -> None:
        """Sleep ``seconds``, raising :class:`_Stop` as soon as the client hangs up or a reset/close comes."""
        deadline = time.monotonic() + seconds
        while True:
            if ctx.abort.is_set():
                raise _Stop("aborted")
            if _peer_closed(ctx.sock):
                raise _Stop("disconnected")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ctx.abort.wait(min(left, _POLL))

    # ----------------------------------------------------------------- WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        raw = request.get_data()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=Headers(request.headers),
            body=raw,
            json=payload,
            stream=isinstance(payload, dict) and payload.get("stream") is True,
        )
        ctx = self._begin(record, environ.get("werkzeug.socket"))
        outcome = "completed"
        try:
            response = self._route(request.method, request.path, payload, ctx)
        except _Stop as stop:
            outcome = stop.outcome
            response = _json(503, _error_body("The fake upstream stopped this request.", "server_error"))
        except BaseException:
            self._finish(ctx, "completed")
            raise
        record.status = response.status_code
        if not isinstance(response.response, _EventStream):
            self._finish(ctx, outcome)
        return response(environ, start_response)

    def _route(self, method: str, path: str, payload: Any, ctx: _Ctx) -> Response:
        if method == "GET" and path == "/v1/models":
            models = sorted(self.known_models) if self.known_models is not None else [self.model]
            return _json(200, {"object": "list", "data": [_model_object(m) for m in models]})
        if method == "GET" and path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            return _json(200, _model_object(name)) if self._model_known(name) else _json(404, _model_missing(name))
        apis = {"/v1/chat/completions": "chat", "/v1/responses": "responses"}
        if path not in apis:
            return _json(404, _error_body(f"Invalid URL ({method} {path})", "invalid_request_error"))
        if method != "POST":
            return _json(405, _error_body(f"Method {method} not allowed for {path}", "invalid_request_error"))
        behaviour = ctx.record.behaviour = self._next_behaviour()
        if behaviour.hang:
            self._pause(ctx, behaviour.hang)
        response = self._answer(apis[path], payload, behaviour, ctx)
        for name, value in (behaviour.headers or {}).items():
            response.headers[name] = value
        return response

    def _answer(self, api: str, body: Any, b: Behaviour, ctx: _Ctx) -> Response:
        if self.api_key is not None and ctx.record.api_key != self.api_key:
            given = ctx.record.api_key or ""
            message = f"Incorrect API key provided: {given[:3]}***{given[-4:]}."
            return _json(401, _error_body(message, "invalid_request_error", code="invalid_api_key"))
        if b.status is not None:
            if b.error_body is not None:
                return _json(b.status, b.error_body)
            message, kind, code = _DEFAULT_ERRORS.get(
                b.status,
                (
                    f"Fake upstream error {b.status}.",
                    "server_error" if b.status >= 500 else "invalid_request_error",
                    None,
                ),
            )
            return _json(b.status, _error_body(b.error_message or message, kind, code=code))
        if not isinstance(body, dict):
            return _json(400, _error_body("We could not parse the JSON body of your request.", "invalid_request_error"))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _json(400, _error_body("you must provide a model parameter", "invalid_request_error", "model"))
        if not self._model_known(model):
            return _json(404, _model_missing(model))
        items = _items(api, body)
        if items is None:
            param = "messages" if api == "chat" else "input"
            return _json(400, _error_body(f"'{param}' must be an array", "invalid_request_error", param))
        window = b.context_window if b.context_window is not None else self.context_window
        if window is not None and len(items) > window:
            param = "messages" if api == "chat" else "input"
            error = _error_body(CONTEXT_MESSAGE, "invalid_request_error", param, code="context_length_exceeded")
            return _json(400, error)
        plan = _plan(api, body, items, b)
        stream = body.get("stream") is True
        if api == "chat":
            if not stream:
                return _json(200, _chat_completion(plan))
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _chat_events(plan, include_usage)
        else:
            if not stream:
                return _json(200, _responses_final(plan, body))
            events = _responses_events(plan, body)
        return Response(
            _EventStream(self, ctx, events, b),
            status=200,
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "x-request-id": f"req_{uuid.uuid4().hex}"},
            direct_passthrough=True,
        )

    def _model_known(self, name: str) -> bool:
        if self.known_models is not None:
            return name in self.known_models
        return not name.startswith("missing")


class _EventStream:
    """The body of a streamed answer: yields each server-sent event, pausing ``delay`` before every piece,
    and notices a client that hangs up (peeking before each event, and werkzeug closing this iterator
    when a write fails) so the fake stops generating and counts the disconnect."""

    def __init__(self, fake: FakeUpstream, ctx: _Ctx, events: Iterable[tuple[bytes, bool]], b: Behaviour) -> None:
        self._fake = fake
        self._ctx = ctx
        self._gen = self._run(events, b)

    def __iter__(self) -> Iterator[bytes]:
        return self._gen

    def close(self) -> None:
        self._gen.close()
        # A body werkzeug never iterated (it failed before) still has to leave in_flight.
        self._fake._finish(self._ctx, "disconnected")

    def _run(self, events: Iterable[tuple[bytes, bool]], b: Behaviour) -> Iterator[bytes]:
        ctx = self._ctx
        outcome = "disconnected"  # what a GeneratorExit at a yield means: werkzeug's write failed
        try:
            for sent, (data, is_piece) in enumerate(events):
                if b.drop_after is not None and sent >= b.drop_after:
                    outcome = "dropped"
                    _shutdown(ctx.sock)
                    return
                try:
                    self._fake._pause(ctx, b.delay if is_piece else 0.0)
                except _Stop as stop:
                    outcome = stop.outcome
                    return
                yield data
            outcome = "completed"
        finally:
            self._fake._finish(ctx, outcome)


def _shutdown(sock: socket.socket | None) -> None:
    """End the connection mid-body. werkzeug then fails to write the chunked encoding's last chunk (a
    ``BrokenPipeError`` it treats as a dropped connection), and the client reads an unterminated body."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --------------------------------------------------------------------------- wire helpers


def _json(status: int, body: Any) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        mimetype="application/json",
        headers={"x-request-id": f"req_{uuid.uuid4().hex}"},
    )


def _error_body(message: str, kind: str, param: str | None = None, *, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _model_missing(name: str) -> dict[str, Any]:
    return _error_body(f"The model `{name}` does not exist", "invalid_request_error", "model", code="model_not_found")


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake-upstream"}


def _sse_data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- planning a reply


def _items(api: str, body: dict[str, Any]) -> list[Any] | None:
    """The messages (chat) or input items (Responses; a string input is one user message)."""
    if api == "chat":
        messages = body.get("messages")
        return messages if isinstance(messages, list) else None
    given = body.get("input")
    if given is None:
        return []
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return given if isinstance(given, list) else None


def _last_user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message":
            return "".join(_part_texts(item.get("content")))
    return ""


def _function_names(api: str, tools: Any) -> list[str]:
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            name = (tool.get("function") or {}).get("name") if api == "chat" else tool.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def _forced_tool(api: str, body: dict[str, Any]) -> str | None:
    """The tool a ``tool_choice`` makes the model call (with ``{}``), if any: ``"required"`` calls the
    first function tool; a named function choice calls that one."""
    names = _function_names(api, body.get("tools"))
    choice = body.get("tool_choice")
    if not names or choice in (None, "none", "auto"):
        return None
    if choice == "required":
        return names[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name") if api == "chat" else choice.get("name")
        return name if isinstance(name, str) else None
    return None


def _calls(spec: Iterable[Any]) -> list[_Call]:
    calls = []
    for entry in spec:
        name, arguments, *rest = entry
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call_id = rest[0] if rest else _new_id("call_")[:29]
        calls.append(_Call(call_id, _new_id("fc_"), name, arguments, split_arguments(arguments)))
    return calls


def _plan(api: str, body: dict[str, Any], items: list[Any], b: Behaviour) -> _Plan:
    texts = [text for item in items for text in _item_texts(item)]
    if api == "responses":
        instructions = body.get("instructions")
        texts += [instructions] if isinstance(instructions, str) else []
        if isinstance(instructions, list):
            texts += [text for item in instructions for text in _item_texts(item)]
        limit = body.get("max_output_tokens")
    else:
        limit = body.get("max_completion_tokens")
        limit = body.get("max_tokens") if limit is None else limit

    text: str | None = b.text
    calls: list[_Call] = []
    if b.tool_calls is not None:
        calls = _calls(b.tool_calls)
    elif b.text is None:
        forced = _forced_tool(api, body)
        if forced is not None:
            calls = _calls([(forced, "{}")])
        else:
            text = echo_text(_last_user_text(items))

    reasoning = split_pieces(b.reasoning or "")
    pieces = split_pieces(text) if text is not None else None
    finish = "tool_calls" if calls else "stop"
    total = len(reasoning) + len(pieces or [])
    if isinstance(limit, int) and limit < total:
        reasoning = reasoning[:limit]
        pieces = (pieces or [])[: max(0, limit - len(reasoning))]
        finish = "length"
    if b.finish is not None:
        finish = b.finish
    return _Plan(
        model=body["model"],
        reasoning=reasoning,
        text=pieces,
        calls=calls,
        finish=finish,
        input_tokens=count_words(texts),
    )


# --------------------------------------------------------------------------- Chat Completions


def _chat_usage(plan: _Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": len(plan.reasoning)},
    }


def _chat_completion(plan: _Plan) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.text_value if plan.text_value is not None or not plan.calls else None,
        "refusal": None,
        "annotations": [],
    }
    if plan.reasoning:
        message["reasoning_content"] = "".join(plan.reasoning)
    if plan.calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.calls
        ]
    return {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish}],
        "usage": _chat_usage(plan),
    }


def _chat_events(plan: _Plan, include_usage: bool) -> Iterator[tuple[bytes, bool]]:
    """``(bytes, is_piece)`` for each chunk: the role, reasoning pieces, text pieces, each tool call (id
    and name, then its argument pieces), the finish reason, the usage chunk if asked for, ``[DONE]``."""
    cid = _new_id("chatcmpl-")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return _sse_data(obj)

    yield chunk({"role": "assistant", "content": "", "refusal": None}), False
    for piece in plan.reasoning:
        yield chunk({"reasoning_content": piece}), True
    for piece in plan.text or []:
        yield chunk({"content": piece}), True
    for index, call in enumerate(plan.calls):
        head = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"tool_calls": [head]}), False
        for piece in call.pieces:
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}), True
    yield chunk({}, plan.finish), False
    if include_usage:
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _chat_usage(plan),
        }
        yield _sse_data(usage), False
    yield b"data: [DONE]\n\n", False


# --------------------------------------------------------------------------- Responses API


def _responses_usage(plan: _Plan) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": plan.output_tokens,
        "output_tokens_details": {"reasoning_tokens": len(plan.reasoning)},
        "total_tokens": plan.input_tokens + plan.output_tokens,
    }


def _echo_tools(tools: Any) -> list[Any]:
    """The request's tools as a response shows them: function tools get ``strict`` and ``parameters``
    (which OpenAI fills in) so the echo matches the spec's ``FunctionTool``."""
    echoed = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            tool = {"strict": True, "parameters": None, **tool}
        echoed.append(tool)
    return echoed


class _ResponsesPlan:
    """Item ids and item shapes of one Responses answer, shared by the streamed and plain forms."""

    def __init__(self, plan: _Plan, body: dict[str, Any]) -> None:
        self.plan = plan
        self.body = body
        self.id = _new_id("resp_")
        self.reasoning_id = _new_id("rs_")
        self.message_id = _new_id("msg_")
        self.incomplete = plan.finish in ("length", "content_filter")

    def reasoning_item(self, done: bool) -> dict[str, Any]:
        text = "".join(self.plan.reasoning)
        return {
            "id": self.reasoning_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if done else [],
        }

    def text_part(self, done: bool) -> dict[str, Any]:
        return {
            "type": "output_text",
            "text": (self.plan.text_value or "") if done else "",
            "annotations": [],
            "logprobs": [],
        }

    def message_item(self, done: bool) -> dict[str, Any]:
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        content = [self.text_part(True)] if done else []
        return {"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content}

    @staticmethod
    def call_item(call: _Call, done: bool) -> dict[str, Any]:
        return {
            "id": call.item_id,
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "arguments": call.arguments if done else "",
            "call_id": call.call_id,
            "name": call.name,
        }

    def output(self) -> list[dict[str, Any]]:
        items = []
        if self.plan.reasoning:
            items.append(self.reasoning_item(True))
        if self.plan.text:
            items.append(self.message_item(True))
        items += [self.call_item(call, True) for call in self.plan.calls]
        return items

    def response(self, final: bool) -> dict[str, Any]:
        body = self.body
        if not final:
            status, output, usage, completed_at, details = "in_progress", [], None, None, None
        else:
            status = "incomplete" if self.incomplete else "completed"
            output, usage = self.output(), _responses_usage(self.plan)
            completed_at = None if self.incomplete else int(time.time())
            reason = "content_filter" if self.plan.finish == "content_filter" else "max_output_tokens"
            details = {"reason": reason} if self.incomplete else None

        def given(key: str, default: Any) -> Any:
            return default if body.get(key) is None else body[key]

        response = {
            "id": self.id,
            "object": "response",
            "created_at": self.plan.created,
            "status": status,
            "background": False,
            "completed_at": completed_at,
            "error": None,
            "incomplete_details": details,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.plan.model,
            "output": output,
            "parallel_tool_calls": given("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": given("reasoning", {"effort": None, "summary": None}),
            "service_tier": "default",
            "store": given("store", True),
            "temperature": given("temperature", 1.0),
            "text": given("text", {"format": {"type": "text"}}),
            "tool_choice": given("tool_choice", "auto"),
            "tools": _echo_tools(body.get("tools")),
            "top_p": given("top_p", 1.0),
            "truncation": given("truncation", "disabled"),
            "metadata": given("metadata", {}),
        }
        if usage is not None:  # the spec's ``usage`` is an object when present: absent until the end
            response["usage"] = usage
        return response


def _responses_final(plan: _Plan, body: dict[str, Any]) -> dict[str, Any]:
    return _ResponsesPlan(plan, body).response(final=True)


def _responses_events(plan: _Plan, body: dict[str, Any]) -> Iterator[tuple[bytes, bool]]:
    """``(bytes, is_piece)`` for each event of the real sequence: created, in_progress, then per output
    item added → (summary part / content part added → deltas → done → part done) → item done, and
    completed or incomplete. ``sequence_number`` counts from 0."""
    r = _ResponsesPlan(plan, body)
    seq = itertools.count()

    def event(kind: str, is_piece: bool = False, **fields: Any) -> tuple[bytes, bool]:
        obj = {"type": kind, "sequence_number": next(seq), **fields}
        return b"event: " + kind.encode() + b"\n" + _sse_data(obj), is_piece

    yield event("response.created", response=r.response(final=False))
    yield event("response.in_progress", response=r.response(final=False))
    index = 0
    if plan.reasoning:
        rid = r.reasoning_id
        text = "".join(plan.reasoning)
        yield event("response.output_item.added", output_index=index, item=r.reasoning_item(False))
        where = {"item_id": rid, "output_index": index, "summary_index": 0}
        yield event("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
        for piece in plan.reasoning:
            yield event("response.reasoning_summary_text.delta", True, **where, delta=piece)
        yield event("response.reasoning_summary_text.done", **where, text=text)
        yield event("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text})
        yield event("response.output_item.done", output_index=index, item=r.reasoning_item(True))
        index += 1
    if plan.text:
        where = {"item_id": r.message_id, "output_index": index, "content_index": 0}
        yield event("response.output_item.added", output_index=index, item=r.message_item(False))
        yield event("response.content_part.added", **where, part=r.text_part(False))
        for piece in plan.text:
            yield event("response.output_text.delta", True, **where, delta=piece, logprobs=[])
        yield event("response.output_text.done", **where, text=plan.text_value, logprobs=[])
        yield event("response.content_part.done", **where, part=r.text_part(True))
        yield event("response.output_item.done", output_index=index, item=r.message_item(True))
        index += 1
    for call in plan.calls:
        yield event("response.output_item.added", output_index=index, item=r.call_item(call, False))
        for piece in call.pieces:
            yield event(
                "response.function_call_arguments.delta", True, item_id=call.item_id, output_index=index, delta=piece
            )
        yield event(
            "response.function_call_arguments.done",
            item_id=call.item_id,
            name=call.name,
            output_index=index,
            arguments=call.arguments,
        )
        yield event("response.output_item.done", output_index=index, item=r.call_item(call, True))
        index += 1
    final = r.response(final=True)
    yield event("response.incomplete" if r.incomplete else "response.completed", response=final)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """One fake upstream for the whole session (use ``fake_upstream``, which resets it per test)."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake upstream, reset before and after the test: no scripts, no recorded requests,
    default settings, and no hang or stream from another test still running."""
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()
