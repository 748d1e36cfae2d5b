"""The hybrid backend: every call goes to SQL, the hot reads come from Redis.

``SMG_HISTORY_BACKEND = "postgres+redis"`` (or ``"sqlite+redis"``) builds an
``SqlBackend`` for the part before the ``+`` with the same settings, and a
window cache (``cache.py``) on the Redis of ``SMG_HISTORY_REDIS_URL``.

- **SQL is the store of record.** Every write is the SQL backend's, and its
  errors are this backend's: SQL down is a 503, as on ``postgres``.
- **Hot reads from Redis**: ``get_conversation``, ``recent_items`` (up to
  ``SMG_HISTORY_CACHE_WINDOW`` items) and the pages of ``list_items`` that lie
  inside the cached window. A miss answers from SQL with the SQL backend's own
  read of what the call needs, then hands the fill (the conversation and its
  window read from SQL, one script) to a background thread (``fills.py``).
- **Never stale after an acknowledged write.** A write that changes a
  conversation deletes its entry after the commit and before it returns; fills
  carry a token the delete revokes (``cache.py``). An append extends the entry
  instead when it can prove the entry was current just before it (write-
  through), so a chat's next read still hits. Bulk writes (purge, erase,
  import) move the cache to a fresh namespace.
- **Redis down or slow means slower, not broken.** Any Redis error (connection,
  timeout after ``SMG_HISTORY_CACHE_SOCKET_TIMEOUT``, a refused write) makes
  that call use SQL; a write whose delete was lost records it in SQL and the
  cache is trusted again only after a sync (``trust.py``).

Responses, feedback, listings, search and the bulk reads are never cached.

Test seam: ``before_fill``, if set, is called on the fill thread between a
fill's SQL read and its script, so a test can hold a fill there while a writer
commits (the race the token protocol exists for). Nothing in the package sets
it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, ClassVar, TypeVar

import redis.exceptions as rex

from ...errors import ConfigError, InvalidRequest
from ...records import Item, Page, is_live, now
from ..base import Backend
from ..redis.backend import check_prefix, connect
from ..sql.backend import SqlBackend
from ..sql.window import WindowRead
from .cache import Entry, Untrusted, WindowCache
from .fills import Fills
from .trust import Trust

T = TypeVar("T")
log = logging.getLogger("flask_smg_history")

#: The SQL backend each hybrid name stands on.
SQL_HALF = {"postgres+redis": "postgres", "sqlite+redis": "sqlite"}
#: Seconds an append waits for a pending fill of its conversation before its
#: SQL write: the fill then lands first and the append's write-through extends
#: it. A fill takes a millisecond or two; past this the append goes on, and its
#: write-through deletes what the fill leaves (cold, never stale).
FILL_WAIT = 0.5
#: Seconds ``close`` gives a running fill to finish.
CLOSE_WAIT = 5.0


class HybridBackend(Backend):
    #: Only SQL's: a Redis failure never reaches the caller.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = SqlBackend.unavailable_errors

    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        if name not in SQL_HALF:
            raise ConfigError(
                f"SMG_HISTORY_BACKEND={name!r}: the hybrid backends are {', '.join(sorted(SQL_HALF))}.",
                param="SMG_HISTORY_BACKEND",
            )
        if settings.redis_cluster:
            raise ConfigError(
                "SMG_HISTORY_REDIS_CLUSTER=True is not supported by the hybrid backends: their cache scripts "
                "read a namespace key to name the entry keys, which a cluster cannot route. Use a standalone "
                "Redis (a replica set with Sentinel works), or the redis backend for a cluster.",
                param="SMG_HISTORY_REDIS_CLUSTER",
            )
        prefix = check_prefix(settings.redis_key_prefix)
        self.sql = SqlBackend(SQL_HALF[name], settings, app)
        client = connect(dataclasses.replace(settings, redis_socket_timeout=settings.cache_socket_timeout))
        self.cache = WindowCache(client, prefix)
        self.trust = Trust(self.sql, self.cache, settings.cache_recheck)
        self.fills = Fills()
        self._read_window = WindowRead(self.sql, settings.cache_window)
        self.window = settings.cache_window
        self.before_fill: Callable[[], None] | None = None
        #: Reads served by the cache and by SQL (approximate under threads),
        #: for the tests and ``benchmarks/hybrid.py``.
        self.hits = self.misses = 0

    # -- the cache -----------------------------------------------------------
    def _read(
        self,
        owner: str,
        conversation_id: str,
        want: int,
        from_entry: Callable[[Entry], T | None],
        from_sql: Callable[[], T],
    ) -> T:
        """A hot read: ``from_entry`` answers from the cached entry (given up
        to ``want`` of its newest items, -1: all it holds) or returns None
        when the entry does not cover the call; ``from_sql`` asks SQL just
        what the call needs. A miss answers from SQL first and only then hands
        its fill to the fill thread (``fills.py``), so the caller waits for no
        fill."""
        epoch = self.trust.epoch()
        if epoch is None:
            return from_sql()
        try:
            found = self.cache.lookup(epoch, owner, conversation_id, want)
        except Untrusted:
            self.trust.refused()
            return from_sql()
        except self.cache.errors as exc:
            self._redis_failed("lookup", exc)
            return from_sql()
        if isinstance(found, Entry):
            if not is_live(found.conversation.expires_at, now()):
                return from_sql()  # expired a moment before its TTL: SQL says so
            self.hits += 1
            answer = from_entry(found)
            return from_sql() if answer is None else answer
        self.misses += 1
        answer = from_sql()
        self.fills.submit((owner, conversation_id), found, partial(self._fill, epoch, found, owner, conversation_id))
        return answer

    def _fill(self, epoch: int, token: str, owner: str, conversation_id: str) -> None:
        """A miss's fill, on the fill thread: the conversation and its window
        from SQL, then the script, which stores them only if ``token`` (taken
        by the lookup that missed, before this SQL read) is still current."""
        try:
            window = self._read_window(owner, conversation_id)
        except self.sql.unavailable_errors as exc:
            log.warning("hybrid cache: a fill's SQL read failed (%s); a later miss fills", type(exc).__name__)
            return
        if window is None:
            return  # deleted or expired since the miss answered: nothing to fill
        if self.before_fill is not None:
            self.before_fill()
        ttl = self.settings.cache_ttl
        if window.conversation.expires_at is not None:
            ttl = min(ttl, window.conversation.expires_at - now())
            if ttl <= 0:
                return
        try:
            self.cache.fill(epoch, token, window, ttl)
        except Untrusted:
            self.trust.refused()
        except self.cache.errors as exc:
            self._redis_failed("fill", exc)

    def _invalidate(self, owner: str | None = None, conversation_id: str | None = None) -> None:
        """After a committed write: delete the conversation's entry (or, with
        no conversation, move to a fresh namespace). A delete that fails is
        tried once more (a pooled connection may have died with a restarted
        server), then recorded as lost (``Trust.lost_invalidation``)."""
        if not self.trust.skipping():
            for attempt in (1, 2):
                try:
                    if conversation_id is None:
                        self.cache.new_namespace()
                    else:
                        self.cache.invalidate(owner, conversation_id)
                    return
                except self.cache.errors as exc:
                    if attempt == 2 or not isinstance(exc, rex.ConnectionError):
                        self._redis_failed("invalidate", exc)
                        break
        self.trust.lost_invalidation()

    def _redis_failed(self, operation: str, exc: Exception) -> None:
        log.warning("hybrid cache: Redis %s failed (%s); serving from SQL", operation, type(exc).__name__)
        self.trust.redis_failed()

    def _writing(self, owner: str, conversation_id: str, write: Callable[[], T]) -> T:
        """Run a SQL write that changes one conversation, then invalidate its
        entry: also when the SQL call failed as an outage, since a commit that
        failed may still have happened."""
        try:
            result = write()
        except self.sql.unavailable_errors:
            self._invalidate(owner, conversation_id)
            raise
        self._invalidate(owner, conversation_id)
        return result

    def _bulk(self, write: Callable[[], T]) -> T:
        """Run a SQL write that may change any conversation, then move the
        cache to a fresh namespace (also after an outage error, as above)."""
        try:
            result = write()
        except self.sql.unavailable_errors:
            self._invalidate()
            raise
        self._invalidate()
        return result

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        """No invalidation: no entry can exist for an ID SQL does not hold (a
        fill needs the conversation read from SQL, and a delete invalidates)."""
        return self.sql.create_conversation(conversation, items)

    def get_conversation(self, owner, conversation_id):
        return self._read(
            owner,
            conversation_id,
            0,
            lambda entry: entry.conversation,
            lambda: self.sql.get_conversation(owner, conversation_id),
        )

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        return self._writing(
            owner,
            conversation_id,
            lambda: self.sql.update_conversation(
                owner, conversation_id, metadata, updated_at, expires_at, replace=replace
            ),
        )

    def delete_conversation(self, owner, conversation_id):
        self._writing(owner, conversation_id, lambda: self.sql.delete_conversation(owner, conversation_id))

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        return self.sql.list_conversations(owner, after=after, limit=limit, order=order, order_by=order_by)

    # -- items ---------------------------------------------------------------
    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        """The SQL append, then its write-through (``cache.append``), or the
        plain invalidation when the cache may not be used now."""
        append = partial(
            self.sql.add_items, owner, conversation_id, items, updated_at=updated_at, expires_at=expires_at
        )
        return self._appending(owner, conversation_id, append, updated_at=updated_at, expires_at=expires_at)

    def _appending(
        self,
        owner: str,
        conversation_id: str,
        write: Callable[[], list[Item]],
        *,
        updated_at: float,
        expires_at: float | None,
    ) -> list[Item]:
        """Run a SQL write that appends to one conversation (``write``
        returns the appended items), then extend the cached entry with them
        (write-through), or invalidate it when the cache may not be used now;
        also invalidate it when the SQL call failed as an outage, since a
        commit that failed may still have happened. A refusal changed
        nothing, so it leaves the entry as it is. A fill of the conversation
        still pending in this process is waited for first (``FILL_WAIT``), so
        the write-through finds the entry it extends."""
        self.fills.wait_for((owner, conversation_id), FILL_WAIT)
        try:
            stored = write()
        except self.sql.unavailable_errors:
            self._invalidate(owner, conversation_id)
            raise
        epoch = self.trust.epoch()
        if epoch is None or not stored:  # a turn without items moved only the conversation's times
            self._invalidate(owner, conversation_id)
            return stored
        ttl = self.settings.cache_ttl if expires_at is None else min(self.settings.cache_ttl, expires_at - now())
        try:
            self.cache.append(
                epoch,
                owner,
                conversation_id,
                stored,
                updated_at=updated_at,
                expires_at=expires_at,
                ttl=max(ttl, 0.001),
                window=self.window,
            )
        except self.cache.errors as exc:
            self._redis_failed("append", exc)
            self._invalidate(owner, conversation_id)
        return stored

    def recent_items(self, owner, conversation_id, limit):
        from_sql = partial(self.sql.recent_items, owner, conversation_id, limit)
        if limit > self.window:
            return from_sql()
        return self._read(owner, conversation_id, limit, partial(_window_recent, limit=limit), from_sql)

    def list_items(self, owner, conversation_id, *, after, limit, order):
        """From the cached window when the page lies inside it, else SQL."""
        want = limit + 1 if order == "desc" and after is None else -1
        return self._read(
            owner,
            conversation_id,
            want,
            partial(_window_page, after=after, limit=limit, order=order),
            partial(self.sql.list_items, owner, conversation_id, after=after, limit=limit, order=order),
        )

    def get_item(self, owner, conversation_id, item_id):
        return self.sql.get_item(owner, conversation_id, item_id)

    def delete_item(self, owner, conversation_id, item_id):
        self._writing(owner, conversation_id, lambda: self.sql.delete_item(owner, conversation_id, item_id))

    # -- responses and feedback (never cached) -------------------------------
    def store_response(self, response):
        self.sql.store_response(response)

    def store_turn(self, response, items, *, updated_at, expires_at):
        """SQL's one transaction; with a conversation, its cache entry is
        then extended or invalidated exactly as after ``add_items``."""
        turn = partial(self.sql.store_turn, response, items, updated_at=updated_at, expires_at=expires_at)
        if response.conversation_id is None:
            return turn()
        return self._appending(
            response.owner, response.conversation_id, turn, updated_at=updated_at, expires_at=expires_at
        )

    def get_response(self, owner, response_id):
        return self.sql.get_response(owner, response_id)

    def delete_response(self, owner, response_id):
        self.sql.delete_response(owner, response_id)

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        return self.sql.list_responses(
            owner, model=model, conversation_id=conversation_id, since=since, after=after, limit=limit
        )

    def submit_feedback(self, feedback):
        return self.sql.submit_feedback(feedback)

    def get_feedback(self, owner, response_id):
        return self.sql.get_feedback(owner, response_id)

    def delete_feedback(self, owner, response_id):
        return self.sql.delete_feedback(owner, response_id)

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        return self.sql.list_feedback(owner, rating=rating, model=model, since=since, after=after, limit=limit)

    def feedback_stats(self, owner, *, since):
        return self.sql.feedback_stats(owner, since=since)

    def search(self, owner, query, *, conversation_id, after, limit):
        return self.sql.search(owner, query, conversation_id=conversation_id, after=after, limit=limit)

    # -- erasure and operations ----------------------------------------------
    def erase_owner(self, owner):
        return self._bulk(lambda: self.sql.erase_owner(owner))

    def owners(self) -> Iterator[str]:
        return self.sql.owners()

    def purge(self, *, before, dry_run):
        if dry_run:
            return self.sql.purge(before=before, dry_run=True)
        return self._bulk(lambda: self.sql.purge(before=before, dry_run=False))

    def export(self, owner, since):
        return self.sql.export(owner, since)

    def import_records(self, records: Iterable[Any]) -> dict[str, int]:
        return self._bulk(lambda: self.sql.import_records(records))

    def stats(self, owner):
        return self.sql.stats(owner)

    def usage_stats(self, owner, *, since):
        return self.sql.usage_stats(owner, since=since)

    def settings_in_use(self) -> dict[str, Any]:
        return self.sql.settings_in_use()

    def health(self) -> dict[str, Any]:
        """SQL's health (its failure is the backend's), and the cache's state,
        which never fails the check: Redis down only makes reads slower."""
        info = self.sql.health()
        try:
            self.cache.client.ping()
            info["cache"] = "ok"
        except self.cache.errors as exc:
            info["cache"] = f"unavailable ({type(exc).__name__}): reads and writes use SQL"
        return info

    def outage_hint(self, exc: BaseException) -> str | None:
        return self.sql.outage_hint(exc)

    def refresh_statistics(self) -> None:
        self.sql.refresh_statistics()

    def pool_stats(self) -> dict[str, int]:
        return self.sql.pool_stats()

    def close(self) -> None:
        try:
            self.fills.close(CLOSE_WAIT)
            self.cache.client.close()
        finally:
            self.sql.close()


def _window_recent(entry: Entry, *, limit: int) -> list[Item] | None:
    """The newest ``limit`` items, oldest first, from a cached window, or
    None when it holds fewer and the conversation has more (SQL answers)."""
    if len(entry.items) < limit and not entry.complete:
        return None
    return list(reversed(entry.items[:limit]))


def _window_page(entry: Entry, *, after: str | None, limit: int, order: str) -> Page[Item] | None:
    """The page of ``list_items`` cut from a cached window (newest first), or
    None when it may reach beyond the window (SQL answers it)."""
    newest_first = entry.items
    if after is None:
        if order == "asc" and not entry.complete:
            return None
        seq = newest_first if order == "desc" else newest_first[::-1]
    else:
        ids = [item.id for item in newest_first]
        if after not in ids:
            if entry.complete:
                raise InvalidRequest.unknown_cursor(after)
            return None
        at = ids.index(after)
        seq = newest_first[at + 1 :] if order == "desc" else newest_first[:at][::-1]
        # asc after a cursor runs towards the newest item: always inside the window.
        if order == "asc":
            return Page(seq[:limit], has_more=len(seq) > limit)
    if len(seq) > limit:
        return Page(seq[:limit], has_more=True)
    if entry.complete:  # then ``seq`` runs to the conversation's oldest item
        return Page(seq, has_more=False)
    return None
