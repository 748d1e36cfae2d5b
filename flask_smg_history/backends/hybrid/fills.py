"""Cache fills, run after the read that missed has answered.

Why: a miss used to read the conversation and its window from SQL and write
them to Redis before it answered: the caller waited for a SQL read of up to
``SMG_HISTORY_CACHE_WINDOW`` items, their encoding and a second script round
trip, 2.6 to 4.9 times the SQL read of ``recent(20)`` or
``conversations.get`` (``benchmarks/hybrid.py``). Now a miss answers from SQL
exactly as the SQL backend would, and hands the fill to one daemon thread per
process, which reads and stores the window meanwhile.

A late fill is never a stale one: its token was taken by the lookup that
missed, before the fill's SQL read, and every write after that revokes it
(``cache.py``). What is given up: the read right after a miss may miss too,
until the fill has landed. An append in the same process first waits for a
pending fill of its conversation (``wait_for``), so that a chat loop (read
the context, append) finds the entry its write-through extends.

A conversation has at most one fill queued. A miss whose token is that of
the fill queued or running (concurrent misses share a token) adds nothing;
one with another token replaces the queued fill: a token changes only once
the one before it was revoked, so the newer miss's is the one that can still
fill. At most ``PENDING`` fills are queued: a miss beyond that is not filled
(a later one will be). Only ``threading`` primitives are used, so
green-thread libraries that patch them (gevent, eventlet) run the fills as a
green thread. After a fork the child starts with no pending fills and a
thread of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable

log = logging.getLogger("flask_smg_history")

#: Fills queued, at most: bounds memory and backlog when Redis or SQL is slow
#: (a fill is one SQL read and one script).
PENDING = 1000


class Fills:
    """The fill thread of one backend, and the fills waiting for it."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)  # a fill was queued, or the thread must stop
        self._done = threading.Condition(self._lock)  # a fill has run
        #: In the order queued: key -> (token, fill). A dict is the queue, so
        #: a newer fill of a key can take the place of the one queued.
        self._queue: dict[Hashable, tuple[str, Callable[[], None]]] = {}
        self._running: tuple[Hashable, str] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def _here(self) -> None:
        """After a fork, forget the parent's thread and fills: they are not in this process."""
        if self._pid != os.getpid():
            self._reset()

    def submit(self, key: Hashable, token: str, fill: Callable[[], None]) -> None:
        """Queue ``fill`` of ``key`` (its conversation) with ``token`` for the
        thread, in the place of a fill of ``key`` queued with another token."""
        self._here()
        with self._lock:
            queued = self._queue.get(key)
            if self._closed or self._running == (key, token) or (queued is not None and queued[0] == token):
                return
            if queued is None and len(self._queue) >= PENDING:
                return
            self._queue[key] = (token, fill)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="smg-history-cache-fills", daemon=True)
                self._thread.start()
            self._queued.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._queued.wait()
                if self._closed:  # the fills not started are dropped
                    self._queue.clear()
                    self._done.notify_all()
                    return
                key = next(iter(self._queue))
                token, fill = self._queue.pop(key)
                self._running = (key, token)
            try:
                fill()
            except Exception:  # a bug: the thread must go on with the other fills
                log.exception("hybrid cache: a fill failed")
            finally:
                with self._lock:
                    self._running = None
                    self._done.notify_all()

    def _pending(self, key: Hashable | None = None) -> bool:
        """Whether a fill (of ``key``, if given) is queued or running; under the lock."""
        if key is None:
            return bool(self._queue) or self._running is not None
        return key in self._queue or (self._running is not None and self._running[0] == key)

    def wait_for(self, key: Hashable, timeout: float) -> None:
        """Wait until no fill of ``key`` is pending (at most ``timeout`` seconds)."""
        self._here()
        with self._lock:
            self._done.wait_for(lambda: not self._pending(key), timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no fill is pending; False if ``timeout`` ran out first."""
        self._here()
        with self._lock:
            return self._done.wait_for(lambda: not self._pending(), timeout)

    def close(self, timeout: float) -> None:
        """Stop the thread: fills not started are dropped, one running may take ``timeout``."""
        self._here()
        with self._lock:
            self._closed = True
            self._queued.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
