"""``HistoryStore``: what host code and the blueprint call, bound to one owner.

The store validates input (through ``schemas``), enforces limits, mints IDs and
timestamps, and turns driver failures into ``HistoryUnavailable``; backends only
store and fetch records. Every method is one atomic backend call, except where a
docstring says otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import schemas, signals
from .backends.base import Backend, outage_hint_of, page_of
from .config import METADATA_UPDATE_MODES
from .errors import HistoryUnavailable, InvalidRequest, NotFound, NotSupported, shown_id
from .records import ITEM_ID_PREFIXES, Conversation, Feedback, Item, Page, Response, mint_id, now
from .search import Cursor, SearchPage, SearchQuery
from .signals import emit

if TYPE_CHECKING:
    from blinker import Signal

    from .config import Settings
    from .metrics import Metrics


class TurnRunner(Protocol):
    """What ``responses.create`` hands a turn to: the app's
    ``responses.ResponsesService``, a layer above the store, given to it by
    ``state.py`` so the store never imports it."""

    def create(self, store: HistoryStore, params: dict[str, Any]) -> Any: ...


T = TypeVar("T")

# Schema instances hold no per-call state; building one per call costs more
# than the validation itself.
_CONVERSATION_CREATE = schemas.ConversationCreateSchema()
_CONVERSATION_UPDATE = schemas.ConversationUpdateSchema()
_CONVERSATION_PATCH = schemas.ConversationPatchSchema()
_RESPONSE_STORE = schemas.ResponseStoreSchema()
_FEEDBACK_SUBMIT = schemas.FeedbackSubmitSchema()
log = logging.getLogger("flask_smg_history")

MAX_PAGE = 100
#: What ``conversations.list(order_by=...)`` and ``GET /conversations?order_by=`` accept.
CONVERSATION_ORDER_BY = ("created_at", "updated_at")
MAX_CHAIN = 1000


def _check_page(limit: Any, order: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"Invalid 'limit': must be an integer from 1 to {MAX_PAGE}.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid 'order': must be 'asc' or 'desc'.", param="order")


def _check_id(value: Any, prefix: str, param: str) -> None:
    """Refuse an ID that cannot name a record of this kind, in OpenAI's words,
    before any lookup: the answer depends on the ID's text alone, so it tells
    nothing about which records exist. (Item IDs are free-form: callers may
    choose them.)"""
    if not isinstance(value, str) or not value.startswith(prefix):
        raise InvalidRequest(
            f"Invalid '{param}': '{shown_id(value)}'. Expected an ID that begins with '{prefix}'.", param=param
        )


def guarded(
    backend: Backend, metrics: Metrics | None, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run one backend call; a driver failure becomes ``HistoryUnavailable``
    whose message names the backend but never echoes the driver's text (it can
    hold URLs and credentials); it ends with the backend's ``outage_hint`` (a
    fixed sentence naming the setting to check) when that recognises the
    cause, else with "try again later". Every call is counted, timed and
    logged with its outcome, never with its content."""
    started = time.perf_counter()
    outcome, kind = "ok", None
    try:
        return fn(*args, **kwargs)
    except backend.unavailable_errors as exc:
        outcome, kind = "unavailable", type(exc).__name__
        hint = outage_hint_of(backend, exc)  # a fixed sentence of the backend's, e.g. a TLS cause
        detail = f": {hint}" if hint else "; try again later."
        raise HistoryUnavailable(f"The history backend ({backend.name}) is unavailable ({kind}){detail}") from exc
    except NotFound:
        outcome = "not_found"
        raise
    except InvalidRequest:
        outcome = "invalid_request"
        raise
    except Exception as exc:
        outcome, kind = "error", type(exc).__name__
        raise
    finally:
        seconds = time.perf_counter() - started
        if metrics is not None:
            metrics.record(operation, outcome, seconds, kind)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "history %s on %s: %s in %.2f ms",
                operation,
                backend.name,
                outcome,
                seconds * 1000,
                extra={
                    "operation": operation,
                    "backend": backend.name,
                    "duration_ms": seconds * 1000,
                    "outcome": outcome,
                },
            )


class HistoryStore:
    """The history of one owner. ``history`` in a request is one of these."""

    def __init__(
        self,
        owner: str,
        backend: Backend,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        sender: Any = None,
        responder: TurnRunner | None = None,
    ) -> None:
        self.owner = owner
        self._responder = responder  # the app's ResponsesService (responses/), above this layer
        self._backend = backend
        self._settings = settings
        self._metrics = metrics
        self._sender = sender  # the Flask app, sender of the signals
        self.conversations = Conversations(self)
        self.items = Items(self)
        self.responses = Responses(self)
        self.feedback = FeedbackStore(self)

    def _call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return guarded(self._backend, self._metrics, operation, fn, *args, **kwargs)

    def _emit(self, signal: Signal, **kwargs: Any) -> None:
        emit(signal, self._sender, owner=self.owner, **kwargs)

    def erase_owner(self) -> dict[str, int]:
        """Remove everything of this owner: conversations, items, responses and
        feedback. Returns the counts removed; running it again removes nothing."""
        counts = self._call("erase_owner", self._backend.erase_owner, self.owner)
        log.info("erased the history of one owner", extra={"operation": "erase_owner", "counts": counts})
        return counts

    def stats(self, since: float | None = None) -> dict[str, Any]:
        """Usage figures of this owner's live records created at or after
        ``since`` (Unix seconds): conversations, items by type and role,
        responses with their token usage by model and by UTC day, feedback
        by rating and model; counted in the database
        (``backends/usage.py`` and ``docs/store-api.md`` say what each is)."""
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))):
            raise InvalidRequest("Invalid 'since': expected Unix seconds.", param="since")
        stats = self._call("stats", self._backend.usage_stats, self.owner, since=since)
        return {"since": since, **stats}

    def search(
        self, query: str, limit: int = 20, after: str | None = None, conversation: str | None = None
    ) -> SearchPage:
        """This owner's conversations and items matching ``query`` (words,
        ``"phrases"``, ``-excluded``, ``or``), by conversation activity,
        newest first, and within a conversation from its newest item back;
        only in ``conversation`` when given. ``after`` is a hit's ``id`` (or a
        page's ``last_id``). The query language, what is searched and each
        backend's matching are in ``search.py`` and docs/store-api.md."""
        parsed = SearchQuery.parse(query)
        _check_page(limit, "desc")
        cursor = None if after is None else Cursor.decode(after)
        if conversation is not None:
            _check_id(conversation, "conv", "conversation")
        return self._call(
            "search",
            self._backend.search,
            self.owner,
            parsed,
            conversation_id=conversation,
            after=cursor,
            limit=limit,
        )

    def _expires_at(self, at: float) -> float | None:
        days = self._settings.retention_days
        return None if days is None else at + days * 86400

    def _new_items(self, raw_items: list[Any], conversation_id: str, at: float, param: str = "items") -> list[Item]:
        """Validate input items and turn them into records with IDs minted."""
        out = []
        for index, raw in enumerate(raw_items):
            payload = schemas.load_item(raw, f"{param}[{index}]", self._settings.max_item_bytes)
            kind = payload.get("type", "message")
            if kind != "item_reference":
                payload = {"id": payload.get("id") or mint_id(ITEM_ID_PREFIXES[kind]), **payload}
            out.append(
                Item(
                    id=payload["id"],
                    conversation_id=conversation_id,
                    type=kind,
                    payload=payload,
                    created_at=at,
                    role=payload.get("role"),
                    status=payload.get("status"),
                )
            )
        return out


class _Part:
    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._backend = store._backend
        self._call = store._call


class Conversations(_Part):
    def create(self, metadata: dict[str, str] | None = None, items: list[Any] | None = None) -> Conversation:
        """Create a conversation with up to 20 first items, in one atomic write."""
        data = schemas.load(_CONVERSATION_CREATE, {"metadata": metadata, "items": items})
        at = now()
        conv = Conversation(
            id=mint_id("conv"),
            owner=self._store.owner,
            created_at=at,
            updated_at=at,
            metadata=data["metadata"] or {},
            expires_at=self._store._expires_at(at),
        )
        records = self._store._new_items(data["items"] or [], conv.id, at)
        added = self._call("conversations.create", self._backend.create_conversation, conv, records)
        self._store._emit(signals.conversation_created, conversation=conv, items=added)
        return conv

    def get(self, conversation_id: str) -> Conversation:
        _check_id(conversation_id, "conv", "conversation_id")
        return self._call("conversations.get", self._backend.get_conversation, self._store.owner, conversation_id)

    def update(
        self, conversation_id: str, metadata: dict[str, str | None] | None, *, mode: str | None = None
    ) -> Conversation:
        """Update the conversation's metadata and ``updated_at``. ``mode``
        (default: ``SMG_HISTORY_METADATA_UPDATE``, ``patch``) is ``patch``,
        SMG's semantics: the given keys are set, a key whose value is ``None``
        is removed, others stay, and the result must fit 16 pairs (merged
        atomically by the backend); or ``replace``, OpenAI's: the new map
        (strings only) replaces the old. ``None`` (or ``{}`` as a patch)
        changes no key."""
        _check_id(conversation_id, "conv", "conversation_id")
        if mode is None:
            mode = self._store._settings.metadata_update
        if mode not in METADATA_UPDATE_MODES:
            raise InvalidRequest("Invalid 'mode': must be 'patch' or 'replace'.", param="mode")
        replace = mode == "replace"
        data = schemas.load(_CONVERSATION_UPDATE if replace else _CONVERSATION_PATCH, {"metadata": metadata})
        at = now()
        return self._call(
            "conversations.update",
            self._backend.update_conversation,
            self._store.owner,
            conversation_id,
            data["metadata"] or {},
            at,
            self._store._expires_at(at),
            replace=replace,
        )

    def delete(self, conversation_id: str) -> None:
        _check_id(conversation_id, "conv", "conversation_id")
        self._call("conversations.delete", self._backend.delete_conversation, self._store.owner, conversation_id)
        self._store._emit(signals.conversation_deleted, conversation_id=conversation_id)

    def list(
        self, after: str | None = None, limit: int = 20, order: str = "desc", order_by: str = "created_at"
    ) -> Page[Conversation]:
        """The owner's conversations by creation time (``order_by="created_at"``)
        or by last write (``"updated_at"``: every append and update moves a
        conversation to the front), newest first by default. By
        ``updated_at``, ``after`` continues from where that conversation is
        now, not where it was when the previous page was read."""
        _check_page(limit, order)
        if order_by not in CONVERSATION_ORDER_BY:
            raise InvalidRequest("Invalid 'order_by': must be 'created_at' or 'updated_at'.", param="order_by")
        return self._call(
            "conversations.list",
            self._backend.list_conversations,
            self._store.owner,
            after=after,
            limit=limit,
            order=order,
            order_by=order_by,
        )


class Items(_Part):
    def add(self, conversation_id: str, items: list[Any]) -> list[Item]:
        """Append 1 to 20 items after everything already in the conversation.
        The batch is validated whole before anything is written."""
        _check_id(conversation_id, "conv", "conversation_id")
        at = now()
        records = self._store._new_items(schemas.load_item_list(items), conversation_id, at)
        added = self._call(
            "items.add",
            self._backend.add_items,
            self._store.owner,
            conversation_id,
            records,
            updated_at=at,
            expires_at=self._store._expires_at(at),
        )
        self._store._emit(signals.items_added, conversation_id=conversation_id, items=added)
        return added

    def list(self, conversation_id: str, after: str | None = None, limit: int = 20, order: str = "desc") -> Page[Item]:
        _check_id(conversation_id, "conv", "conversation_id")
        _check_page(limit, order)
        return self._call(
            "items.list",
            self._backend.list_items,
            self._store.owner,
            conversation_id,
            after=after,
            limit=limit,
            order=order,
        )

    def get(self, conversation_id: str, item_id: str) -> Item:
        _check_id(conversation_id, "conv", "conversation_id")
        return self._call("items.get", self._backend.get_item, self._store.owner, conversation_id, item_id)

    def delete(self, conversation_id: str, item_id: str) -> Conversation:
        """Delete one item; returns the parent conversation, as OpenAI does
        (a second read, after the delete has committed)."""
        _check_id(conversation_id, "conv", "conversation_id")
        self._call("items.delete", self._backend.delete_item, self._store.owner, conversation_id, item_id)
        self._store._emit(signals.item_deleted, conversation_id=conversation_id, item_id=item_id)
        return self._store.conversations.get(conversation_id)

    def recent(self, conversation_id: str, limit: int = 20) -> list[Item]:
        """The last ``limit`` items, oldest first: ready to become a prompt."""
        _check_id(conversation_id, "conv", "conversation_id")
        _check_page(limit, "asc")
        return self._call("items.recent", self._backend.recent_items, self._store.owner, conversation_id, limit)


class Responses(_Part):
    def create(self, **params: Any) -> Any:
        """Run one turn of the Responses API, as ``POST /v1/responses`` does:
        ``model``, ``input``, ``conversation`` or ``previous_response_id``,
        ``instructions``, ``tools``... as OpenAI's ``responses.create`` takes
        them. Returns the ``Response`` (stored unless ``store=False``), or
        with ``stream=True`` an iterator of OpenAI's stream events (dicts);
        closing it early keeps the turn as ``incomplete``. Refusals raise
        before anything is generated; ``responses/turn.py`` says how context
        is built and when the turn is stored."""
        if self._store._responder is None:
            raise NotSupported.no_upstream()
        return self._store._responder.create(self._store, params)

    def context(self, conversation_id: str, limit: int) -> list[Item]:
        """The newest ``limit`` items of a conversation, oldest first: the
        context of a turn (``recent`` without its page-size cap)."""
        _check_id(conversation_id, "conv", "conversation")
        return self._call("responses.context", self._backend.recent_items, self._store.owner, conversation_id, limit)

    def keep_turn(self, response: Response, items: list[Item]) -> list[Item]:
        """Store a turn's response and append its items (input, then output)
        to its conversation, in one atomic backend call (``store_turn``)."""
        if items and response.conversation_id is None:
            raise ValueError("a turn without a conversation has no items to append")
        at = now()
        added = self._call(
            "responses.create",
            self._backend.store_turn,
            response,
            items,
            updated_at=at,
            expires_at=self._store._expires_at(at),
        )
        self._store._emit(signals.response_stored, response=response)
        if added:
            self._store._emit(signals.items_added, conversation_id=response.conversation_id, items=added)
        return added

    def store(self, response: dict[str, Any]) -> Response:
        """Store an OpenAI response object (``id`` minted when absent) with the
        ``input`` it answered. A ``conversation`` or ``previous_response_id``
        must name a record of this owner. Items are not appended to the
        conversation: call ``items.add`` for that."""
        data = schemas.load(_RESPONSE_STORE, response)
        owner = self._store.owner
        at = now()
        response_id = data.pop("id", None) or mint_id("resp")
        _check_id(response_id, "resp", "id")
        conversation = data.pop("conversation")
        if isinstance(conversation, dict) and isinstance(conversation.get("id"), str):
            conversation = conversation["id"]  # any other object is refused below, never dropped
        if conversation is not None and not isinstance(conversation, str):
            raise InvalidRequest("Invalid 'conversation': expected an ID or {'id': ...}.", param="conversation")
        if conversation is not None:
            _check_id(conversation, "conv", "conversation")
        if data["previous_response_id"] is not None:
            _check_id(data["previous_response_id"], "resp", "previous_response_id")
        if self._backend.persistent:
            if conversation is not None:
                self._store.conversations.get(conversation)
            previous = data["previous_response_id"]
            if previous is not None:
                try:
                    self.get(previous)
                except NotFound:
                    raise NotFound.response(previous) from None
        raw_input = data.pop("input")
        if isinstance(raw_input, str):
            raw_input = [{"role": "user", "content": raw_input}]
        inputs = [item.payload for item in self._store._new_items(raw_input, response_id, at, "input")]
        output = [item.payload for item in self._store._new_items(data.pop("output"), response_id, at, "output")]
        created_at = data.pop("created_at", None)
        record = Response(
            id=response_id,
            owner=owner,
            created_at=float(created_at) if isinstance(created_at, (int, float)) else at,
            model=data.pop("model"),
            status=data.pop("status"),
            conversation_id=conversation,
            previous_response_id=data.pop("previous_response_id"),
            input=inputs,
            output=output,
            usage=data.pop("usage"),
            metadata=data.pop("metadata") or {},
            safety_identifier=data.pop("safety_identifier") or data.get("user"),
            expires_at=self._store._expires_at(at),
        )
        data.pop("object", None)
        record.extra = data
        self._call("responses.store", self._backend.store_response, record)
        self._store._emit(signals.response_stored, response=record)
        return record

    def get(self, response_id: str) -> Response:
        _check_id(response_id, "resp", "response_id")
        return self._call("responses.get", self._backend.get_response, self._store.owner, response_id)

    def delete(self, response_id: str) -> None:
        _check_id(response_id, "resp", "response_id")
        self._call("responses.delete", self._backend.delete_response, self._store.owner, response_id)

    def list(
        self,
        model: str | None = None,
        conversation: str | None = None,
        since: float | None = None,
        after: str | None = None,
        limit: int = 20,
    ) -> Page[Response]:
        """The owner's stored responses, newest first, optionally only those
        of one model or one conversation, or created at or after ``since``."""
        if conversation is not None:
            _check_id(conversation, "conv", "conversation")
        _check_page(limit, "desc")
        return self._call(
            "responses.list",
            self._backend.list_responses,
            self._store.owner,
            model=model,
            conversation_id=conversation,
            since=since,
            after=after,
            limit=limit,
        )

    def input_items(
        self, response_id: str, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> Page[Item]:
        """Page through the items a response answered (stored with it)."""
        _check_page(limit, order)
        resp = self.get(response_id)
        records = [
            Item(
                id=p["id"],
                conversation_id=resp.id,
                type=p.get("type", "message"),
                payload=p,
                created_at=resp.created_at,
            )
            for p in resp.input
        ]
        return page_of(records, after=after, limit=limit, order=order)

    def chain(self, response_id: str) -> list[Response]:
        """The response and its ancestors by ``previous_response_id``, oldest
        first. One read per link; stops at a missing link or after 1000."""
        chain = [self.get(response_id)]
        while chain[-1].previous_response_id and len(chain) < MAX_CHAIN:
            try:
                chain.append(self.get(chain[-1].previous_response_id))
            except NotFound:
                break
        return list(reversed(chain))


class FeedbackStore(_Part):
    def submit(
        self,
        response_id: str,
        rating: str,
        comment: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Feedback:
        """Rate a response of this owner; a second submission replaces the
        first and keeps its ID."""
        _check_id(response_id, "resp", "response_id")
        data = schemas.load(_FEEDBACK_SUBMIT, {"rating": rating, "comment": comment, "metadata": metadata})
        model = ""
        expires_at = self._store._expires_at(now())
        if self._backend.persistent:
            resp = self._store.responses.get(response_id)
            model, expires_at = resp.model, resp.expires_at
        record = Feedback(
            id=mint_id("fb"),
            response_id=response_id,
            owner=self._store.owner,
            rating=data["rating"],
            created_at=now(),
            comment=data["comment"],
            metadata=data["metadata"] or {},
            model=model,
            expires_at=expires_at,
        )
        stored = self._call("feedback.submit", self._backend.submit_feedback, record)
        self._store._emit(signals.feedback_submitted, feedback=stored)
        return stored

    def get(self, response_id: str) -> Feedback:
        _check_id(response_id, "resp", "response_id")
        return self._call("feedback.get", self._backend.get_feedback, self._store.owner, response_id)

    def delete(self, response_id: str) -> str:
        """Withdraw this owner's feedback on a response (the response
        stays) and return the feedback's ID; ``NotFound`` when there is none."""
        _check_id(response_id, "resp", "response_id")
        feedback_id = self._call("feedback.delete", self._backend.delete_feedback, self._store.owner, response_id)
        self._store._emit(signals.feedback_deleted, response_id=response_id, feedback_id=feedback_id)
        return feedback_id

    def list(
        self,
        rating: str | None = None,
        model: str | None = None,
        since: float | None = None,
        after: str | None = None,
        limit: int = 20,
    ) -> Page[Feedback]:
        """The owner's feedback, newest first."""
        _check_page(limit, "desc")
        if rating is not None and rating not in schemas.RATINGS:
            raise InvalidRequest("Invalid 'rating': must be 'positive' or 'negative'.", param="rating")
        return self._call(
            "feedback.list",
            self._backend.list_feedback,
            self._store.owner,
            rating=rating,
            model=model,
            since=since,
            after=after,
            limit=limit,
        )

    def stats(self, since: float | None = None) -> dict[str, Any]:
        """Counts by rating, by model and by day (UTC), each split by rating."""
        raw = self._call("feedback.stats", self._backend.feedback_stats, self._store.owner, since=since)
        by_rating = {rating: int(raw["by_rating"].get(rating, 0)) for rating in schemas.RATINGS}
        return {
            "total": sum(by_rating.values()),
            "by_rating": by_rating,
            "by_model": {m: {r: int(c.get(r, 0)) for r in schemas.RATINGS} for m, c in sorted(raw["by_model"].items())},
            "by_day": {d: {r: int(c.get(r, 0)) for r in schemas.RATINGS} for d, c in sorted(raw["by_day"].items())},
        }
