"""The interface every history backend implements.

A backend speaks only in records (``records.py``). It is told the owner on every
call and must make another owner's records look exactly like missing ones
(``NotFound``). Limits, ID minting and timestamps are the store's job; a backend
assigns item positions, keeps them strictly increasing per conversation under
concurrent writers, and treats every call as one atomic, durable write.

A custom backend subclasses ``Backend`` (exported by ``flask_smg_history`` and
``flask_smg_history.backends``) and is named in ``SMG_HISTORY_BACKEND`` by
entry point or dotted path (the registry is in ``backends/__init__.py``).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidRequest, NotSupported
from ..records import MAX_METADATA_PAIRS, Conversation, Feedback, Item, Page, Record, Response
from ..search import Cursor, SearchPage, SearchQuery
from .usage import UsageTally

if TYPE_CHECKING:
    from flask import Flask

    from ..config import Settings


class Backend(ABC):
    """Storage for one app. One instance serves every request and thread of the
    app, so implementations must be thread-safe."""

    #: Driver exceptions meaning "the database cannot be reached or failed";
    #: the store turns them into ``HistoryUnavailable`` (HTTP 503).
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: False for backends that keep nothing (``none``).
    persistent: ClassVar[bool] = True

    def __init__(self, name: str, settings: Settings, app: Flask) -> None:
        self.name = name
        self.settings = settings

    # -- conversations -------------------------------------------------------
    @abstractmethod
    def create_conversation(self, conversation: Conversation, items: list[Item]) -> list[Item]:
        """Store a new conversation with its first items, atomically. Returns
        the items with their positions assigned."""

    @abstractmethod
    def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        """Return a live conversation of ``owner`` or raise ``NotFound``."""

    @abstractmethod
    def update_conversation(
        self,
        owner: str,
        conversation_id: str,
        metadata: dict[str, str | None],
        updated_at: float,
        expires_at: float | None,
        *,
        replace: bool,
    ) -> Conversation:
        """Update a conversation's metadata, refresh its ``updated_at`` and
        ``expires_at``, and return it.

        With ``replace`` the map (strings only) replaces the stored one. Without
        it, ``metadata`` is a patch (SMG's semantics): each key is set to its
        string or, when its value is ``None``, removed; other keys stay; an
        empty patch changes no key. The merge is atomic: read, merge and write
        happen under the conversation's lock in one write, so concurrent
        patches of different keys all survive. ``merge_metadata`` does the
        merge and refuses a result beyond ``MAX_METADATA_PAIRS`` with
        ``InvalidRequest`` (``param="metadata"``), in which case nothing is
        written."""

    @abstractmethod
    def delete_conversation(self, owner: str, conversation_id: str) -> None:
        """Delete a conversation and its items, or raise ``NotFound``."""

    @abstractmethod
    def list_conversations(
        self, owner: str, *, after: str | None, limit: int, order: str, order_by: str = "created_at"
    ) -> Page[Conversation]:
        """Page through the owner's live conversations by ``order_by``
        (``created_at`` or ``updated_at``; ``desc``: newest first), equal
        times in ID order, by keyset (never by offset). ``after`` is a
        conversation ID; an unknown one raises ``InvalidRequest`` with
        ``param="after"``. A conversation's ``updated_at`` moves on every
        write, so by ``updated_at`` a page continues after the cursor
        conversation's current (``updated_at``, ``id``), wherever that is now."""

    # -- items ---------------------------------------------------------------
    @abstractmethod
    def add_items(
        self, owner: str, conversation_id: str, items: list[Item], *, updated_at: float, expires_at: float | None
    ) -> list[Item]:
        """Append items atomically after every item already stored, refreshing
        the conversation's ``updated_at`` and ``expires_at``.

        An item of type ``item_reference`` links the owner's existing item with
        that ``id`` (from any conversation) without copying it; the returned
        list holds the full item in its place. The whole batch is checked
        before anything is written, and fails with ``already_in_conversation``
        (an ID already linked here, or twice in the batch), ``already_exists``
        (a new item whose ID the owner already has elsewhere) or
        ``NotFound.item`` (a reference to no item of this owner)."""

    @abstractmethod
    def list_items(self, owner: str, conversation_id: str, *, after: str | None, limit: int, order: str) -> Page[Item]:
        """Page through a conversation's items by position. ``after`` is an item
        ID of this conversation; an unknown one raises ``InvalidRequest``."""

    @abstractmethod
    def get_item(self, owner: str, conversation_id: str, item_id: str) -> Item: ...

    @abstractmethod
    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> None:
        """Unlink an item from one conversation; the item itself goes when no
        other conversation links it. ``delete_conversation`` does the same for
        each of its items."""

    @abstractmethod
    def recent_items(self, owner: str, conversation_id: str, limit: int) -> list[Item]:
        """The last ``limit`` items, oldest first: the context for a prompt."""

    # -- responses -----------------------------------------------------------
    @abstractmethod
    def store_response(self, response: Response) -> None:
        """Insert a response, or replace the owner's response with the same ID."""

    def store_turn(
        self, response: Response, items: list[Item], *, updated_at: float, expires_at: float | None
    ) -> list[Item]:
        """Keep one turn of ``POST /v1/responses``: insert ``response`` and,
        when ``response.conversation_id`` is set, append ``items`` (the turn's
        input items, then its output items, any number) to that conversation
        after everything already in it, refreshing its ``updated_at`` and
        ``expires_at`` as ``add_items`` does. One atomic write: after any
        failure, a refusal or an outage, neither the response nor any item is
        stored, and a concurrent turn's items never land between this turn's.

        The checks are those of ``add_items`` (``NotFound.conversation``,
        ``already_in_conversation``, ``item_exists``, ``NotFound.item`` for a
        reference) and of ``store_response`` (``response_id_taken``), all made
        before anything is written. Without a conversation ``items`` is empty.
        Returns the appended items with their positions.

        Every built-in backend overrides this with its own transaction or
        script; a custom backend that keeps this default answers the turn with
        ``NotSupported`` (HTTP 501) rather than store it in two writes."""
        raise NotSupported(
            f"The {self.name} backend cannot store a Responses API turn: it does not implement "
            "Backend.store_turn (one atomic write of the response and its conversation items).",
            param="store",
        )

    @abstractmethod
    def get_response(self, owner: str, response_id: str) -> Response: ...

    @abstractmethod
    def delete_response(self, owner: str, response_id: str) -> None:
        """Delete a response and the feedback on it."""

    @abstractmethod
    def list_responses(
        self,
        owner: str,
        *,
        model: str | None,
        conversation_id: str | None,
        since: float | None,
        after: str | None,
        limit: int,
    ) -> Page[Response]:
        """Page through the owner's live responses, newest first, filtered."""

    # -- feedback ------------------------------------------------------------
    @abstractmethod
    def submit_feedback(self, feedback: Feedback) -> Feedback:
        """Store the owner's feedback on a response, replacing an earlier one
        (whose ID is kept). The store has checked the response exists."""

    @abstractmethod
    def get_feedback(self, owner: str, response_id: str) -> Feedback: ...

    @abstractmethod
    def delete_feedback(self, owner: str, response_id: str) -> str:
        """Remove the owner's feedback on a response and return its ID, or
        raise ``NotFound.feedback``. The response stays."""

    @abstractmethod
    def list_feedback(
        self,
        owner: str,
        *,
        rating: str | None,
        model: str | None,
        since: float | None,
        after: str | None,
        limit: int,
    ) -> Page[Feedback]:
        """Page through the owner's feedback, newest first, filtered."""

    def feedback_stats(self, owner: str, *, since: float | None) -> dict[str, Any]:
        """Counts by rating, by model and by day. This default walks
        ``list_feedback``; backends with aggregate queries override it."""
        by_rating: Counter[str] = Counter()
        by_model: dict[str, Counter[str]] = {}
        by_day: dict[str, Counter[str]] = {}
        after = None
        while True:
            page = self.list_feedback(owner, rating=None, model=None, since=since, after=after, limit=100)
            for fb in page.data:
                day = dt.datetime.fromtimestamp(fb.created_at, dt.timezone.utc).date().isoformat()
                by_rating[fb.rating] += 1
                by_model.setdefault(fb.model, Counter())[fb.rating] += 1
                by_day.setdefault(day, Counter())[fb.rating] += 1
            if not page.has_more:
                break
            after = page.last_id
        return {"by_rating": by_rating, "by_model": by_model, "by_day": by_day}

    # -- search --------------------------------------------------------------
    def search(
        self, owner: str, query: SearchQuery, *, conversation_id: str | None, after: Cursor | None, limit: int
    ) -> SearchPage:
        """One page of the owner's hits for ``query`` in live conversations
        (one, with ``conversation_id``: ``NotFound`` if it is not the owner's),
        in the order ``search.py`` defines, after the cursor ``after``.
        Backends without a text index keep this default, a ``NotSupported``
        (HTTP 501)."""
        raise NotSupported.search(self.name, "it has no full-text index.")

    # -- erasure and operations (the CLI) ------------------------------------
    @abstractmethod
    def erase_owner(self, owner: str) -> dict[str, int]:
        """Remove every conversation, item, response and feedback of one owner
        and nothing of anyone else's. Returns counts by kind; idempotent."""

    @abstractmethod
    def owners(self) -> Iterator[str]:
        """Every owner with at least one stored record."""

    @abstractmethod
    def purge(self, *, before: float | None, dry_run: bool) -> dict[str, Any]:
        """Remove expired records, and with ``before`` also conversations last
        written and responses created before it (with their items and
        feedback). Returns what was (or, with ``dry_run``, would be) removed."""

    @abstractmethod
    def export(self, owner: str | None, since: float | None) -> Iterator[Record]:
        """Stream live records in a stable order, in constant memory: each
        conversation followed by its items by position, then responses, then
        feedback. ``since`` keeps conversations written, and responses and
        feedback created, at or after it."""

    @abstractmethod
    def import_records(self, records: Iterable[Record]) -> dict[str, int]:
        """Upsert exported records as they are (IDs, owners, timestamps,
        positions), in one transaction where the backend has them. Importing
        the same records twice leaves the same state. An item's conversation
        must be imported before it (or already be there)."""

    def stats(self, owner: str | None) -> dict[str, Any]:
        """Counts of live records, and the oldest and newest conversation.
        This default walks ``export``; backends with aggregates override it."""
        counts: dict[str, Any] = {"conversations": 0, "items": 0, "responses": 0}
        feedback: Counter[str] = Counter()
        oldest = newest = None
        for record in self.export(owner, None):
            if isinstance(record, Conversation):
                counts["conversations"] += 1
                oldest = record.created_at if oldest is None else min(oldest, record.created_at)
                newest = record.created_at if newest is None else max(newest, record.created_at)
            elif isinstance(record, Item):
                counts["items"] += 1
            elif isinstance(record, Response):
                counts["responses"] += 1
            else:
                feedback[record.rating] += 1
        counts["feedback"] = {"positive": feedback["positive"], "negative": feedback["negative"]}
        counts["oldest"], counts["newest"] = oldest, newest
        return counts

    def usage_stats(self, owner: str | None, *, since: float | None) -> dict[str, Any]:
        """Usage figures of one owner's live records, or of every owner's
        with ``None``, created at or after ``since``: conversations, items
        by type and role, responses and token usage by model and by day,
        feedback by rating and model (``usage.py`` says what each means).
        This default walks ``export``; the built-in backends count in the
        database instead, and a custom backend with aggregates should too."""
        tally = UsageTally()
        for record in self.export(owner, None):
            tally.add_record(record, since)
        return tally.result()

    # -- operations ----------------------------------------------------------
    @abstractmethod
    def health(self) -> dict[str, Any]:
        """Probe the database; raise one of ``unavailable_errors`` if it is down."""

    def outage_hint(self, exc: BaseException) -> str | None:
        """What to fix, for a recognised cause of ``exc`` (one of
        ``unavailable_errors``), such as a TLS certificate that fails
        verification; ``None`` when there is nothing better to say than "try
        again later". The 503's message ends with it, so it is shown to API
        clients: return a fixed sentence that names the setting to check, and
        never copy the driver's text into it (it can hold URLs and
        credentials). ``exception_chain(exc)`` walks the causes. This default
        recognises nothing."""
        return None

    def settings_in_use(self) -> dict[str, Any]:
        """Settings left unset whose value in force was worked out at start-up
        (a file in the app's instance folder), by key name: ``flask
        smg-history check`` prints these instead of ``None``. This default
        has none."""
        return {}

    def refresh_statistics(self) -> None:
        """Bring the database's planner statistics up to date after a bulk
        load (``flask smg-history import`` and ``copy`` call it once at the
        end), so the first queries after it are planned on the data that is
        there. Backends without a query planner keep this no-op."""
        return None

    def pool_stats(self) -> dict[str, int]:
        """Connection-pool usage (e.g. ``{"in_use": 3, "idle": 5}``) for the
        metrics; backends without a pool report nothing."""
        return {}

    def close(self) -> None:
        """Release pools and connections. Nothing calls it at process exit
        (the operating system closes the sockets then); call it when an app
        is discarded while the process goes on, as tests and ``flask
        smg-history copy`` (for its target) do. Backends without any keep
        this no-op."""
        return None


def merge_metadata(current: dict[str, str], metadata: dict[str, str | None], *, replace: bool) -> dict[str, str]:
    """The metadata an ``update_conversation`` leaves: ``metadata`` itself
    with ``replace``, else ``current`` patched by it (a ``None`` value removes
    its key). Raises ``InvalidRequest`` when the result holds more than
    ``MAX_METADATA_PAIRS`` pairs."""
    merged = {} if replace else dict(current)
    for key, value in metadata.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_METADATA_PAIRS:
        raise InvalidRequest.too_much_metadata(len(merged), MAX_METADATA_PAIRS)
    return merged


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling
    (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def outage_hint_of(backend: Backend, exc: BaseException) -> str | None:
    """``backend.outage_hint(exc)``, made safe for the error path: a hook
    that fails or returns something other than a non-empty string gives
    ``None``, so a faulty hook can never turn a 503 into a 500."""
    try:
        hint = backend.outage_hint(exc)
    except Exception:
        return None
    return hint if isinstance(hint, str) and hint else None


def page_of(records: list[Any], *, after: str | None, limit: int, order: str) -> Page[Any]:
    """Cut one page from records already sorted ascending. For stores whose
    data is in memory (the memory backend, a response's input items); database
    backends page with keyset queries instead."""
    seq = records if order == "asc" else list(reversed(records))
    start = 0
    if after is not None:
        for index, record in enumerate(seq):
            if record.id == after:
                start = index + 1
                break
        else:
            raise InvalidRequest.unknown_cursor(after)
    chunk = seq[start : start + limit]
    return Page(data=chunk, has_more=start + limit < len(seq))
