"""When an app process may use the Redis cache: the SQL cache epoch protocol.

While Redis answers, ``cache.py`` alone keeps the cache fresh (writers delete
their entry after the SQL commit, before they return). This module covers a
write whose delete did not reach Redis (Redis down, too slow, or unreachable
from this process only): its entry may be stale in a Redis that other
processes still read, or that comes back later with its data.

The shared record is the one row of ``<prefix>cache_epoch`` in SQL
(``sql/epoch.py``): ``epoch``, ``synced`` and ``untrusted_at``.

- **A lost invalidation** raises ``epoch`` (one short transaction); if the row
  was trusted (``epoch == synced``) until then, ``untrusted_at`` becomes now.
  The writer then waits until ``untrusted_at + SMG_HISTORY_CACHE_RECHECK``
  before it returns: by then every lease (below) granted while the row was
  trusted has run out.
- **A lease**: a process uses the cache only while it holds one. It gets one
  by reading the row and finding it trusted, for ``RECHECK`` seconds from
  before that read; and every cache script it runs presents the epoch it read,
  which Redis refuses unless its namespace was made for that epoch.
- **A sync** re-trusts the cache: a process that finds the row untrusted (or
  itself saw a Redis error, or was refused by Redis) moves Redis to a fresh,
  empty namespace made for the row's ``epoch``, then sets ``synced = epoch``
  only if ``epoch`` has not moved meanwhile. A lost invalidation that races
  the sync thus either lands before the new namespace's data was read from
  SQL, or makes the sync fail.

So once a write has returned, no process reads a cache entry older than it:
the entry was deleted, or refused, or every lease that could still see it has
run out. What it assumes: the app hosts' clocks agree (``untrusted_at`` is one
host's wall clock, compared with another's), and no process pauses between its
lease check and its cache read for longer than the wait. After a Redis error a
process leaves the cache alone for ``RECHECK`` seconds (SQL serves), then
syncs before using it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..sql import epoch as sql_epoch
from ..sql.backend import SqlBackend
from .cache import WindowCache

log = logging.getLogger("flask_smg_history")


class Trust:
    """One process's right to use the cache, shared by its threads."""

    def __init__(
        self,
        sql: SqlBackend,
        cache: WindowCache,
        recheck: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sql = sql
        self.cache = cache
        self.recheck = recheck
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = threading.Lock()
        self._epoch = 0
        self._lease_until = 0.0  # clock time; 0: no lease
        self._skip_until = 0.0  # clock time before which Redis is left alone
        self._must_sync = True  # a fresh process has seen nothing: sync first

    def epoch(self) -> int | None:
        """The epoch to present to Redis if the cache may be used now, else
        None (serve from SQL). Reads the SQL row at most once per ``recheck``
        while trusted; a thread that finds another one renewing the lease
        serves from SQL meanwhile instead of waiting."""
        now = self._clock()
        if now < self._skip_until:
            return None
        if not self._must_sync and now < self._lease_until:
            return self._epoch
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._renew(now)
        finally:
            self._lock.release()

    def _renew(self, now: float) -> int | None:
        row = sql_epoch.read(self.sql)
        if row is None:
            log.warning("the hybrid cache is off: the cache epoch row is missing (run `flask db upgrade`)")
            self._skip_until = now + self.recheck
            return None
        if row.trusted and not self._must_sync:
            self._epoch, self._lease_until = row.epoch, now + self.recheck
            return row.epoch
        try:
            self.cache.sync(row.epoch)
        except self.cache.errors:
            self.redis_failed()
            return None
        if not sql_epoch.mark_synced(self.sql, row.epoch):
            self._skip_until = now + self.recheck  # an invalidation was lost meanwhile: later
            return None
        self._epoch, self._lease_until, self._must_sync = row.epoch, now + self.recheck, False
        return row.epoch

    def skipping(self) -> bool:
        """Whether Redis is being left alone after an error."""
        return self._clock() < self._skip_until

    def redis_failed(self) -> None:
        """Redis failed this process: SQL serves for ``recheck`` seconds, then
        the cache is synced before it is used again."""
        self._must_sync = True
        self._skip_until = self._clock() + self.recheck

    def refused(self) -> None:
        """Redis's namespace was not made for our epoch: sync before use."""
        self._must_sync = True

    def lost_invalidation(self) -> None:
        """Record in SQL that a committed write could not invalidate its
        entry, and wait until no lease that may still trust the cache is left
        (see the module's docstring)."""
        self._must_sync = True
        row = sql_epoch.raise_epoch(self.sql, self._wall())
        if row is None or row.untrusted_at is None:
            return
        wait = row.untrusted_at + self.recheck - self._wall()
        if wait > 0:
            log.info("hybrid cache: a write could not invalidate its entry; waiting %.2f s for leases", wait)
            self._sleep(min(wait, self.recheck))
