"""The time a Responses API turn adds to the model call it makes, in one run.

A turn of ``store.responses.create(model=..., input=..., conversation=...)``
reads the conversation's newest items (at most
``SMG_HISTORY_UPSTREAM_CONTEXT_ITEMS``), converts them to chat messages, calls
the upstream and stores the turn (input and output items, and the response)
in one backend call. Against an upstream that answers at once, what a turn
costs beyond the model call is what we add. Each round times:

- **turn**: ours = ``store.responses.create(model, input=<a 174-character
  user message>, conversation=conv)``; direct = the same upstream called
  with its own ``openai.OpenAI`` client and the very request ours sends (the
  conversation's context and the new input, built by
  ``responses.chat.chat_kwargs`` outside the timing; checked equal to what
  the upstream received from ours);
- **first event**: ours = ``create(..., stream=True)`` then ``next(events)``
  (``response.created``); direct = ``chat.completions.create(...,
  stream=True)`` then its first chunk. Both streams are then drained to the
  end (ours stores the turn as ``completed`` on the way), and that whole
  streamed turn is reported too;
- **context read**: ``store.responses.context(conv, n)`` alone, for n = 20
  and n = the cap, to show the read is bounded by what is sent, not by the
  conversation's length.

The upstream is a threaded werkzeug server in this process on 127.0.0.1
(HTTP/1.1 keep-alive, ``TCP_NODELAY``) answering Chat Completions with a
fixed short reply, whole or streamed in three pieces: its own time is the
same for both contenders. The two contenders take turns within every round
in a seeded shuffled order; each phase is timed in rounds of its own; the
tables report medians. Each ours turn appends two items, so a conversation
takes at most a tenth of its length in items (``size // 20`` turns) before
the next, prefilled one is used. Warm: the connection pools, the upstream's
keep-alive connections and the backends' scripts and statements (five
untimed turns of each contender per size); no ANALYZE is run.

    .venv/bin/python -m benchmarks.responses [--rounds 200] [--sizes 20,2000,10000] [--servers postgres,redis]
    .venv/bin/python -m benchmarks.responses --profile 300 --sizes 20,2000   # cProfile of ours instead

Needs PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import openai
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.responses.chat import chat_kwargs
from flask_smg_history.responses.upstream import UpstreamRequest

from .peers import REDIS_URL, configure

SIZES = (20, 2_000, 10_000)
MODEL = "bench-model"
#: The new user message of every turn (174 characters).
INPUT = (
    "Could you summarise what we found about the billing job yesterday, and list the three checks "
    "we still have to run before Friday? Keep it short, I'll paste it into the ticket."
)
#: A stored message of ordinary length (about 190 characters).
TEXT = INPUT + " Message {n}."
#: The upstream's answer, streamed in these pieces.
REPLY = ("Sure. The three checks: ", "the ledger totals, the retry queue, ", "and the alert on failed runs.")
#: Item kinds a turn sends as context (``responses.turn``'s own list).
CONTEXT_KINDS = {"message", "function_call", "function_call_output"}
WARM = 5
#: The issue's ceilings, in ms: turn added time by conversation length, and
#: time to first streamed event above direct.
TURN_TARGETS = {20: 3.0, 2_000: 5.0}
FIRST_EVENT_TARGET = 1.0


# --------------------------------------------------------------------------- the upstream


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 (keep-alive, chunked streams), no Nagle delay, no access log."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Upstream:
    """A Chat Completions server on 127.0.0.1 that answers at once. It keeps
    the last request body, to check that both contenders send the same."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="bench-upstream")
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes] | list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(size) or b"{}")
        self.last = body
        if environ["PATH_INFO"] != "/v1/chat/completions":
            start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        created, model = int(time.time()), body.get("model", MODEL)
        words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": words, "completion_tokens": len(REPLY), "total_tokens": words + len(REPLY)}
        if not body.get("stream"):
            answer = {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(REPLY)}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
            data = json.dumps(answer).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            piece = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + json.dumps(piece).encode() + b"\n\n"

        def events() -> Iterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for piece in REPLY:
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield chunk(None, usage=usage)
            yield b"data: [DONE]\n\n"

        return events()


# --------------------------------------------------------------------------- the contenders


def stored(n: int) -> dict[str, str]:
    return {"role": "user" if n % 2 == 0 else "assistant", "content": TEXT.format(n=n)}


class Ours:
    """The store of an app whose upstream is the local server."""

    def __init__(self, server: str, upstream_url: str) -> None:
        app = Flask("bench_responses")
        self.prefix = f"resp{uuid.uuid4().hex[:6]}_"
        configure(app, server, self.prefix)
        app.config.update(SMG_HISTORY_UPSTREAM_URL=upstream_url, SMG_HISTORY_UPSTREAM_API="chat")
        SmgHistory(app)
        self.server = server
        self.state = get_state(app)
        self.store = self.state.store_for("bench")
        self.cap: int = self.state.settings.upstream_context_items
        self.spy = Spy(self.store._responder.upstream._client)

    def fill(self, size: int) -> str:
        conv = self.store.conversations.create()
        for start in range(0, size, 20):
            self.store.items.add(conv.id, [stored(n) for n in range(start, min(size, start + 20))])
        return conv.id

    def turn(self, conv: str) -> Any:
        return self.store.responses.create(model=MODEL, input=INPUT, conversation=conv)

    def stream(self, conv: str) -> Iterator[dict[str, Any]]:
        return self.store.responses.create(model=MODEL, input=INPUT, conversation=conv, stream=True)

    def request(self, conv: str, stream: bool) -> dict[str, Any]:
        """The ``chat.completions.create`` arguments a turn on ``conv`` sends
        now: its context and the new input, converted as ours does."""
        context = [i.payload for i in self.store.responses.context(conv, self.cap)]
        sent = [p for p in context if p.get("type", "message") in CONTEXT_KINDS]
        new = {"type": "message", "role": "user", "content": INPUT}
        return chat_kwargs(UpstreamRequest(model=MODEL, input=[*sent, new], stream=stream))

    def close(self) -> None:
        self.store.erase_owner()
        backend = self.state.backend
        if self.server == "postgres":
            import sqlalchemy as sa

            with backend.engine.begin() as connection:
                for table in sa.inspect(connection).get_table_names():
                    if table.startswith(self.prefix):
                        connection.execute(sa.text(f'DROP TABLE "{table}" CASCADE'))
        else:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"{self.prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()
        backend.close()


class Spy:
    """Times the upstream call inside ours: ``spent`` is the last call's
    ``client.post`` (a whole answer; the chat adapter posts its body through
    it), or for a stream, from that call to its first chunk: what direct's
    timing covers, so that ours minus ``spent`` is what the turn adds,
    measured within the same turn."""

    def __init__(self, client: Any) -> None:
        self.spent = 0.0
        self._post = client.post
        client.post = self.post

    def post(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        answer = self._post(*args, **kwargs)
        if not kwargs.get("stream"):
            self.spent = time.perf_counter() - started
            return answer
        return _Timed(answer, started, self)


class _Timed:
    def __init__(self, stream: Any, started: float, spy: Spy) -> None:
        self._stream, self._started, self._spy = stream, started, spy

    def __iter__(self) -> Iterator[Any]:
        chunks = iter(self._stream)
        first = next(chunks)
        self._spy.spent = time.perf_counter() - self._started
        yield first
        yield from chunks

    def close(self) -> None:
        self._stream.close()


class Direct:
    """The same upstream, called with the openai client as ours makes it."""

    def __init__(self, upstream_url: str) -> None:
        self.client = openai.OpenAI(base_url=upstream_url, api_key="not-needed", timeout=60.0, max_retries=0)

    def turn(self, kwargs: dict[str, Any]) -> Any:
        return self.client.chat.completions.create(**kwargs)

    def turn_as_is(self, kwargs: dict[str, Any]) -> Any:
        """The same request with the messages in ``extra_body``: the same
        bytes on the wire (checked), without the client's walk of every
        message against its types (``maybe_transform``)."""
        rest = {k: v for k, v in kwargs.items() if k != "messages"}
        return self.client.chat.completions.create(messages=[], extra_body={"messages": kwargs["messages"]}, **rest)

    def stream(self, kwargs: dict[str, Any]) -> Any:
        return self.client.chat.completions.create(**kwargs)

    def stream_as_is(self, kwargs: dict[str, Any]) -> Any:
        rest = {k: v for k, v in kwargs.items() if k != "messages"}
        return self.client.chat.completions.create(messages=[], extra_body={"messages": kwargs["messages"]}, **rest)


# --------------------------------------------------------------------------- the method


class Conversations:
    """Prefilled conversations of ``size`` items, each used for at most
    ``size // 20`` turns (two items each) before the next."""

    def __init__(self, ours: Ours, size: int, turns: int) -> None:
        self.per = max(1, size // 20)
        self.handles = [ours.fill(size) for _ in range(-(-turns // self.per))]
        self.used = 0

    def next(self) -> str:
        handle = self.handles[self.used // self.per]
        self.used += 1
        return handle


def measure(ours: Ours, direct: Direct, upstream: Upstream, size: int, rounds: int) -> dict[str, Any]:
    """Medians in seconds: each phase in rounds of its own, the contenders
    in a seeded shuffled order within a round."""
    convs = Conversations(ours, size, 2 * (rounds + WARM))
    order = random.Random(size)
    samples: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        samples.setdefault(key, []).append(seconds)

    # The check: the direct requests are the one ours sent.
    conv = convs.handles[0]
    expected = ours.request(conv, stream=False)
    ours.turn(conv)
    sent_by_ours = upstream.last
    assert sent_by_ours["messages"] == expected["messages"], "the direct request differs from ours"
    direct.turn_as_is(expected)
    assert upstream.last == sent_by_ours, "the request sent as is differs from ours"
    sent = len(expected["messages"])
    request_bytes = len(json.dumps(sent_by_ours).encode())

    def turn_round(timed: bool) -> None:
        conv = convs.next()
        kwargs = ours.request(conv, stream=False)
        for who in order.sample(("ours", "direct", "as is"), 3):
            started = time.perf_counter()
            if who == "ours":
                ours.turn(conv)
            elif who == "direct":
                direct.turn(kwargs)
            else:
                direct.turn_as_is(kwargs)
            if timed:
                took = time.perf_counter() - started
                add(f"{who} turn", took)
                if who == "ours":
                    add("ours turn added", took - ours.spy.spent)

    def stream_round(timed: bool) -> None:
        conv = convs.next()
        kwargs = ours.request(conv, stream=True)
        for who in order.sample(("ours", "direct", "as is"), 3):
            started = time.perf_counter()
            if who == "ours":
                events = ours.stream(conv)
            elif who == "direct":
                events = iter(direct.stream(kwargs))
            else:
                events = iter(direct.stream_as_is(kwargs))
            next(events)
            first = time.perf_counter()
            for _ in events:
                pass
            if timed:
                add(f"{who} first", first - started)
                add(f"{who} streamed", time.perf_counter() - started)
                if who == "ours":
                    add("ours first added", first - started - ours.spy.spent)

    for phase in (turn_round, stream_round):
        for _ in range(WARM):
            phase(False)
        for _ in range(rounds):
            phase(True)
    # Reads alone, on conversations of the nominal length or up to a tenth longer.
    for r in range(rounds):
        conv = convs.handles[r % len(convs.handles)]
        for n, key in order.sample(((20, "read 20"), (ours.cap, "read cap")), 2):
            started = time.perf_counter()
            ours.store.responses.context(conv, n)
            add(key, time.perf_counter() - started)
    medians: dict[str, Any] = {k: statistics.median(v) for k, v in samples.items()}
    medians["sent"] = sent
    medians["bytes"] = request_bytes
    return medians


def profile(ours: Ours, size: int, turns: int, top: int = 20) -> None:
    """cProfile of ``turns`` turns of ours at ``size``: whole non-streaming
    turns, then streamed ones up to their first event (the rest of each
    stream drained unprofiled). Printed: the top functions by own time, then
    ours by cumulative time."""
    convs = Conversations(ours, size, 2 * (turns + WARM))
    for _ in range(WARM):
        ours.turn(convs.next())
        list(ours.stream(convs.next()))
    for mode in ("non-streaming turn", "first streamed event"):
        profiler = cProfile.Profile()
        for _ in range(turns):
            conv = convs.next()
            if mode == "non-streaming turn":
                profiler.runcall(ours.turn, conv)
            else:
                events = profiler.runcall(lambda conv=conv: (e := ours.stream(conv), next(e))[0])
                list(events)
        print(f"-- {mode}, per {turns} turns")
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats("flask_smg_history", top)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds per phase and size")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="conversation lengths, comma-separated")
    parser.add_argument("--servers", default="postgres,redis")
    parser.add_argument("--profile", type=int, default=0, metavar="TURNS", help="profile this many turns of ours")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    upstream = Upstream()
    direct = Direct(upstream.base_url)
    results: list[tuple[str, int, dict[str, Any]]] = []
    cap = 0
    try:
        for server in args.servers.split(","):
            ours = Ours(server, upstream.base_url)
            cap = ours.cap
            try:
                for size in sizes:
                    if args.profile:
                        print(f"== profile: {server}, {size:,} items, {args.profile} turns of ours")
                        profile(ours, size, args.profile)
                    else:
                        results.append((server, size, measure(ours, direct, upstream, size, args.rounds)))
            finally:
                ours.close()
    finally:
        upstream.close()
    if args.profile:
        return
    print(f"median of {args.rounds} interleaved rounds, ms; context cap (SMG_HISTORY_UPSTREAM_CONTEXT_ITEMS) = {cap}")
    print(
        "direct = the same request through chat.completions.create, as a user would call the upstream; "
        "as is = the same bytes\nwithout the client's walk of every message (maybe_transform), the floor; "
        "added = ours - as is (difference of medians);\nin turn = median over ours's turns of the turn's time "
        "minus its own upstream call's"
    )
    print("\nnon-streaming turn: ours = responses.create")
    print(
        f"{'server':<9} {'items':>7} {'sent':>5} {'req kB':>6} {'ours':>7} {'direct':>7} {'as is':>7} "
        f"{'added':>7} {'ours/dir':>8} {'in turn':>7}  target (added; in turn)"
    )
    misses = 0

    def verdict(target: float | None, *figures: float) -> str:
        nonlocal misses
        if target is None:
            return "-"
        missed = [f > target / 1e3 for f in figures]
        misses += any(missed)
        return f"<= {target:g} ms: " + "; ".join("MISSED" if m else "met" for m in missed)

    for server, size, m in results:
        added = m["ours turn"] - m["as is turn"]
        print(
            f"{server:<9} {size:>7,} {m['sent']:>5} {m['bytes'] / 1e3:6.1f} {ms(m['ours turn'])} "
            f"{ms(m['direct turn'])} {ms(m['as is turn'])} {ms(added)} {m['ours turn'] / m['direct turn']:8.2f} "
            f"{ms(m['ours turn added'])}  "
            f"{verdict(TURN_TARGETS.get(size), added, m['ours turn added'])}"
        )
    print("\nstreamed turn: time to first event (ours: response.created), and to the end of the drained stream")
    print(
        f"{'server':<9} {'items':>7} {'ours 1st':>8} {'dir 1st':>8} {'as is 1st':>9} {'added':>7} {'in turn':>7} "
        f"{'ours end':>8} {'as is end':>9} {'added':>7}  target (first event: added; in turn)"
    )
    for server, size, m in results:
        added = m["ours first"] - m["as is first"]
        target = FIRST_EVENT_TARGET if size in TURN_TARGETS else None
        print(
            f"{server:<9} {size:>7,} {ms(m['ours first']):>8} {ms(m['direct first']):>8} "
            f"{ms(m['as is first']):>9} {ms(added)} {ms(m['ours first added'])} {ms(m['ours streamed']):>8} "
            f"{ms(m['as is streamed']):>9} {ms(m['ours streamed'] - m['as is streamed'])}  "
            f"{verdict(target, added, m['ours first added'])}"
        )
    print("\ncontext read alone: store.responses.context(conv, n)")
    print(f"{'server':<9} {'items':>7} {'n=20':>7} {'n=' + str(cap):>7}")
    for server, size, m in results:
        print(f"{server:<9} {size:>7,} {ms(m['read 20'])} {ms(m['read cap'])}")
    print(f"\n{misses} target(s) missed (a row counts once)")


if __name__ == "__main__":
    main()
