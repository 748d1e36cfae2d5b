"""A conversation's window as the hybrid backend's cache stores it.

A fill (``backends/hybrid/``) reads a conversation's record and its newest
items, up to ``SMG_HISTORY_CACHE_WINDOW`` of them, with two statements on one
connection (one read transaction on SQLite; on PostgreSQL each statement
reads a snapshot of its own, so the items come with the ``next_position``
they were read at), each item's payload as the JSON text SQL holds: the cache
stores that text as it is, so a fill neither parses nor re-encodes the
payloads, and builds no ``Item`` (profiled on SQLite, 100 chat messages: reading them with
``get_conversation`` and ``recent_items`` took 1,070 µs and re-encoding them
90; this read takes 490).

The items are ``recent_items``' statement (``items.newest_linked``) with the
payload as text: one range scan of the link index, positions from
``next_position - size`` up. There is no wider second window
when deleted items left gaps: the window then holds fewer items and is not
complete, and a read it cannot answer goes to SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...records import Conversation, now
from . import items, rows
from .tables import live

if TYPE_CHECKING:
    from .backend import SqlBackend


@dataclass(frozen=True)
class Window:
    """A conversation's record and newest items; ``items`` are newest first,
    each ``(id, type, payload JSON text, created_at, role, status, position)``."""

    conversation: Conversation
    items: list[tuple[Any, ...]]
    #: The position the conversation's next item takes, read with ``items``.
    next_position: int
    #: Whether ``items`` are all of the conversation's items.
    complete: bool


class WindowRead:
    """The two statements of a window read, built once for a backend."""

    def __init__(self, backend: SqlBackend, size: int) -> None:
        self.backend, self.size = backend, size
        t = backend.tables
        c, i, link = t.conversations, t.items, t.links
        self._record = sa.select(*rows.conversation_columns(t), c.c.next_position).where(
            c.c.id == sa.bindparam("cid"), c.c.owner == sa.bindparam("b_owner"), live(c, sa.bindparam("now"))
        )
        # The record's statement checked owner and expiry: ``next_position`` as it is.
        top = sa.select(c.c.next_position).where(c.c.id == sa.bindparam("cid")).scalar_subquery()
        columns = [i.c.id, i.c.type, sa.cast(i.c.payload, sa.Text), i.c.created_at, i.c.role, i.c.status]
        self._items = items.newest_linked(t, [*columns, link.c.position], top)

    def __call__(self, owner: str, conversation_id: str) -> Window | None:
        """The window, or None if the conversation is not the owner's or not live."""
        params = {"cid": conversation_id, "b_owner": owner, "now": now(), "window": self.size, "n": self.size}

        def tx(conn: sa.Connection) -> Window | None:
            record = conn.execute(self._record, params).first()
            if record is None:
                return None
            found = conn.execute(self._items, params).all()
            # No items: none appended since the record was read is left (it
            # would be in the window; a delete of it revokes the fill's
            # token), so the record's next_position still holds.
            top = found[0].next_position if found else record.next_position
            newest = [tuple(row[:-1]) for row in found]
            return Window(rows.conversation(record[:-1]), newest, top, complete=top - self.size <= 0)

        return self.backend._run(tx, write=False)
