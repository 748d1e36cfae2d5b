"""One turn of the stateful Responses API, from request to stored response.

``ResponsesService`` (one per app) holds the upstream; ``Turn`` runs one
request through four steps:

1. **Context.** With ``conversation``, its newest items (at most
   ``SMG_HISTORY_UPSTREAM_CONTEXT_ITEMS``, oldest first, in one read that also
   checks the conversation is the caller's); with ``previous_response_id``,
   the chain's inputs and outputs, newest responses first until the cap is
   reached. ``instructions`` are never carried over. Then the new input, its
   ``item_reference``s resolved.
2. **Upstream.** The whole context goes to the upstream, whose status is
   awaited before anything is sent back, so a refusal (an unknown model, a
   too long context) is an HTTP error with the upstream's status, while a
   stream's first event need not wait for the model's first token. With
   ``truncation: "auto"`` a too long context is retried with the older half
   of the history dropped, until it fits or no history is left.
3. **Output.** The deltas become output items and, when streaming, OpenAI's
   events (``events.Assembler``).
4. **Storage.** With ``store`` (the default) the response, its input items
   and its output items are kept in one atomic backend call
   (``Backend.store_turn``), appended to the conversation when there is one.
   Nothing is stored before that call, so a failure anywhere before it (the
   upstream failing, timing out or breaking off) leaves nothing behind. A
   client that goes away mid-stream gets its turn stored as ``incomplete``
   with the text so far, and the upstream's stream is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import HistoryError, InvalidRequest, NotFound, NotSupported, UpstreamError
from ..records import Item, Response, mint_id, now
from .events import Assembler, Event, usage_object
from .objects import response_object
from .request import CreateRequest, load_create
from .upstream import Delta, Upstream, UpstreamRequest

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import HistoryStore

log = logging.getLogger("flask_smg_history")
T = TypeVar("T")

_END = object()
#: Item kinds a model is sent as context; the others (reasoning, MCP calls...)
#: stay in the history but mean nothing to a stateless upstream.
_CONTEXT_KINDS = frozenset({"message", "function_call", "function_call_output"})


def upstream_for(settings: Settings, upstream: Upstream | None) -> Upstream | None:
    """The host's in-process upstream, else the HTTP one the settings name."""
    if upstream is not None:
        if not callable(getattr(upstream, "stream", None)):
            raise TypeError("an upstream must have a stream(request) method (see flask_smg_history.responses)")
        return upstream
    if not settings.upstream_url:
        return None
    if settings.upstream_api == "responses":
        from .responses_api import ResponsesUpstream

        return ResponsesUpstream(settings)
    from .chat import ChatUpstream

    return ChatUpstream(settings)


class ResponsesService:
    """``POST /v1/responses`` and ``history.responses.create`` for one app."""

    def __init__(self, settings: Settings, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.upstream = upstream_for(settings, upstream)

    def create(self, store: HistoryStore, params: dict[str, Any]) -> Response | Iterator[Event]:
        if self.upstream is None:
            raise NotSupported.no_upstream()
        takes_reasoning = getattr(self.upstream, "takes_reasoning", True)
        turn = Turn(self, store, load_create(params, reasoning_allowed=takes_reasoning))
        turn.start()
        return TurnEvents(turn) if turn.request.stream else turn.run()


class Turn:
    def __init__(self, service: ResponsesService, store: HistoryStore, request: CreateRequest) -> None:
        self.service = service
        self.store = store
        self.request = request
        self.id = mint_id("resp")
        self.at = now()
        self.assembler = Assembler()
        self.inputs: list[Item] = []
        self._source: Iterator[Delta] | None = None
        self._ended: tuple[str, dict[str, Any] | None] | None = None  # the model's ending, once known

    # -- 1. context --------------------------------------------------------------
    def start(self) -> None:
        """Read the context, check the input and open the upstream. Every
        refusal happens here, before a streaming answer has begun."""
        request = self.request
        where = request.conversation or self.id
        self.inputs = self.store._new_items(request.input, where, self.at, "input")
        cap = self.service.settings.upstream_context_items
        if request.conversation is not None:
            history = [item.payload for item in self.store.responses.context(request.conversation, cap)]
        elif request.previous_response_id is not None:
            history = self._chain(request.previous_response_id, cap)
        else:
            history = []
        new = [self._resolved(item, history) for item in self.inputs]
        self._open(history, new)

    def _chain(self, response_id: str, cap: int) -> list[dict[str, Any]]:
        """The chain's inputs and outputs, oldest first, the newest ``cap``."""
        parts: list[list[dict[str, Any]]] = []
        count, current = 0, response_id
        while current is not None and count < cap:
            try:
                response = self.store.responses.get(current)
            except NotFound:
                if current == response_id:
                    raise InvalidRequest.previous_response_not_found(response_id) from None
                break  # an older link has expired or was deleted: the chain starts after it
            parts.append([*response.input, *response.output])
            count += len(parts[-1])
            current = response.previous_response_id
        history = [item for part in reversed(parts) for item in part]
        return history[-cap:]

    def _resolved(self, item: Item, history: list[dict[str, Any]]) -> dict[str, Any]:
        """The payload the upstream gets for an input item: a reference is
        replaced by the item it names, from the context or the conversation."""
        if item.type != "item_reference":
            return item.payload
        for known in reversed(history):
            if known.get("id") == item.id:
                return known
        if self.request.conversation is None:
            raise NotFound.item(item.id)
        return self.store.items.get(self.request.conversation, item.id).payload

    # -- 2. upstream -------------------------------------------------------------
    def _upstream_request(self, context: list[dict[str, Any]]) -> UpstreamRequest:
        r = self.request
        return UpstreamRequest(
            model=r.model,
            input=[p for p in context if p.get("type", "message") in _CONTEXT_KINDS],
            instructions=r.instructions,
            tools=r.tools,
            tool_choice=r.tool_choice if r.tools or r.tool_choice == "none" else None,
            parallel_tool_calls=r.parallel_tool_calls if r.tools else None,
            temperature=r.temperature,
            top_p=r.top_p,
            max_output_tokens=r.max_output_tokens,
            text_format=r.text_format,
            reasoning=r.reasoning,
            stream=r.stream,
        )

    def _open(self, history: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        """Send the request. An HTTP upstream refuses here, once its status
        is in (before its first token), so a refusal is an HTTP error with the
        upstream's status and a stream's first event need not wait for the
        model's first token; an in-process upstream refuses here if its
        ``stream`` raises before returning (a generator's body runs later)."""
        upstream = self.service.upstream
        assert upstream is not None
        while True:
            request = self._upstream_request([*history, *new])
            try:
                self._source = iter(_guarded(upstream.stream, request))
                return
            except UpstreamError as exc:
                if self.request.truncation == "auto" and exc.context_too_long and history:
                    history = history[max(1, len(history) // 2) :]
                    continue
                raise

    def _deltas(self) -> Iterator[Delta]:
        assert self._source is not None
        while (delta := _guarded(next, self._source, _END)) is not _END:
            yield delta

    def close(self) -> None:
        """Close the upstream's stream (the server stops generating)."""
        if self._source is not None:
            _close(self._source)

    # -- 3. output, 4. storage ------------------------------------------------
    def run(self) -> Response:
        """A non-streaming turn: the whole answer, then the stored response."""
        try:
            for delta in self._deltas():
                self.assembler.feed(delta)
        finally:
            self.close()
        status, details = self._ending()
        self.assembler.close(_item_status(status))
        return self._keep(status, details)

    def _events(self) -> Iterator[Event]:
        """A streaming turn: OpenAI's events, the last one terminal. The turn
        is stored before the terminal event is sent, so a client that reads
        ``response.completed`` can read the response back."""
        a = self.assembler
        stored = False
        try:
            yield a.event("response.created", response=self._object("in_progress"))
            yield a.event("response.in_progress", response=self._object("in_progress"))
            try:
                for delta in self._deltas():
                    yield from a.feed(delta)
            except UpstreamError as exc:
                stored = True  # nothing is to be stored after an upstream failure
                a.abandon()
                yield a.event("response.failed", response=self._object("failed", error=_error(exc)))
                return
            finally:
                self.close()
            status, details = self._ending()
            self._ended = (status, details)
            yield from a.close(_item_status(status))
            try:
                record = self._keep(status, details)
            except HistoryError as exc:
                stored = True
                yield a.event("response.failed", response=self._object("failed", error=_error(exc)))
                return
            stored = True
            yield a.event(f"response.{status}", response=response_object(record))
        except GeneratorExit:
            if not stored:
                self._cut_off()
            raise

    def _cut_off(self) -> None:
        """The client went away mid-stream: close the upstream and keep what
        was generated, as ``incomplete`` (or as it ended, when the model had
        finished and only the closing events were left to send)."""
        self.close()
        self.assembler.abandon()
        status, details = self._ended or ("incomplete", None)
        try:
            self._keep(status, details)
        except HistoryError:
            log.warning("a turn cut off by its client could not be stored", exc_info=True)

    def _ending(self) -> tuple[str, dict[str, Any] | None]:
        finish = self.assembler.finish
        if finish == "length":
            return "incomplete", {"reason": "max_output_tokens"}
        if finish == "content_filter":
            return "incomplete", {"reason": "content_filter"}
        return "completed", None

    def _record(self, status: str, details: dict[str, Any] | None = None, error: Any = None) -> Response:
        r, a = self.request, self.assembler
        return Response(
            id=self.id,
            owner=self.store.owner,
            created_at=self.at,
            model=a.model or r.model,
            status=status,
            conversation_id=r.conversation,
            previous_response_id=r.previous_response_id,
            input=[item.payload for item in self.inputs],
            output=a.output_snapshot(),
            usage=usage_object(a.usage),
            metadata=r.metadata,
            extra={
                **r.echoed(),
                "incomplete_details": details,
                "error": error,
                "completed_at": int(now()) if status == "completed" else None,
            },
            safety_identifier=r.safety_identifier,
            expires_at=self.store._expires_at(self.at),
        )

    def _object(self, status: str, error: Any = None) -> dict[str, Any]:
        return response_object(self._record(status, error=error))

    def _keep(self, status: str, details: dict[str, Any] | None) -> Response:
        """Store the turn in one backend call (when ``store``); a failure
        says the model answered but nothing was kept."""
        record = self._record(status, details)
        if not self.request.store:
            return record
        where = self.request.conversation or self.id
        try:
            checked = self.store._new_items(record.output, where, self.at, "output")
            record.output = [item.payload for item in checked]
            items: list[Item] = []
            if self.request.conversation is not None:
                # Extension fields on the conversation's copies only, so a
                # client listing the conversation knows which response (and
                # model) each reply came from, to rate it.
                tags = {"response_id": record.id, "model": record.model}
                items = [*self.inputs, *(_tagged(item, tags) for item in checked)]
            self.store.responses.keep_turn(record, items)
        except HistoryError as exc:
            raise type(exc)(
                f"The model answered, but the turn could not be stored, so nothing of it was kept: {exc.message}",
                param=exc.param,
                code=exc.code,
            ) from exc
        return record


class TurnEvents(Iterator[Event]):
    """The events of a streaming turn. Closing it before its end keeps the
    turn as ``incomplete`` and closes the upstream, also before its first
    event was read (a generator closed before it starts runs none of its
    code, so its own ``GeneratorExit`` handling cannot see that case)."""

    def __init__(self, turn: Turn) -> None:
        self._turn = turn
        self._events = turn._events()
        self._started = False

    def __next__(self) -> Event:
        self._started = True
        return next(self._events)

    def close(self) -> None:
        if not self._started:
            self._started = True
            self._turn._cut_off()
        self._events.close()


def _tagged(item: Item, tags: dict[str, str]) -> Item:
    return Item(
        id=item.id,
        conversation_id=item.conversation_id,
        type=item.type,
        payload={**item.payload, **tags},
        created_at=item.created_at,
        role=item.role,
        status=item.status,
    )


def _error(exc: HistoryError) -> dict[str, str]:
    """A failure as a failed response's ``error``."""
    return {"code": "server_error", "message": exc.message}


def _item_status(status: str) -> str:
    return "completed" if status == "completed" else "incomplete"


def _guarded(step: Callable[..., T], *args: Any) -> T:
    """Run one step of the upstream; whatever an in-process upstream raises
    but ``UpstreamError`` is its failure, as an HTTP upstream's is (a 502)."""
    try:
        return step(*args)
    except UpstreamError:
        raise
    except Exception as exc:
        log.exception("the in-process upstream failed")
        raise UpstreamError(f"The model failed ({type(exc).__name__}).", status=502, code="upstream_error") from exc


def _close(source: Iterable[Any]) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        close()
