"""The cache epoch row (``<prefix>cache_epoch``, revision smgh_0005).

The hybrid backend (``backends/hybrid/``) records here, in the database every
app process shares, that a write could not invalidate its Redis cache entry,
and that Redis was later moved to a fresh namespace. Its protocol is in
``backends/hybrid/trust.py``; these are the three statements it needs, each
one short transaction of its own through ``SqlBackend._run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from .backend import SqlBackend

#: The one row's primary key.
ROW = 1


@dataclass(frozen=True)
class Epoch:
    """The row: ``epoch`` rises on each lost invalidation, ``synced`` is the
    epoch Redis was last moved to a fresh namespace for, ``untrusted_at``
    (Unix seconds) when ``epoch`` last moved ahead of ``synced``."""

    epoch: int
    synced: int
    untrusted_at: float | None

    @property
    def trusted(self) -> bool:
        return self.epoch == self.synced


def read(backend: SqlBackend) -> Epoch | None:
    """The row, or None if it is missing (then the cache is never trusted)."""
    t = backend.tables.cache_epoch

    def tx(conn: sa.Connection) -> Epoch | None:
        row = conn.execute(sa.select(t.c.epoch, t.c.synced, t.c.untrusted_at).where(t.c.id == ROW)).first()
        return None if row is None else Epoch(int(row.epoch), int(row.synced), row.untrusted_at)

    return backend._run(tx, write=False)


def raise_epoch(backend: SqlBackend, at: float) -> Epoch | None:
    """Raise ``epoch`` by one; if the row was trusted until now, ``at``
    becomes its ``untrusted_at``. Returns the row as this transaction left it."""
    t = backend.tables.cache_epoch

    def tx(conn: sa.Connection) -> Epoch | None:
        conn.execute(
            t.update()
            .where(t.c.id == ROW)
            .values(
                epoch=t.c.epoch + 1,
                untrusted_at=sa.case((t.c.epoch == t.c.synced, at), else_=t.c.untrusted_at),
            )
        )
        row = conn.execute(sa.select(t.c.epoch, t.c.synced, t.c.untrusted_at).where(t.c.id == ROW)).first()
        return None if row is None else Epoch(int(row.epoch), int(row.synced), row.untrusted_at)

    return backend._run(tx)


def mark_synced(backend: SqlBackend, epoch: int) -> bool:
    """Record that Redis now serves a namespace made for ``epoch``; False if
    ``epoch`` has moved on meanwhile (a lost invalidation since: sync again)."""
    t = backend.tables.cache_epoch

    def tx(conn: sa.Connection) -> bool:
        done = conn.execute(t.update().where(t.c.id == ROW, t.c.epoch == epoch).values(synced=epoch))
        return done.rowcount == 1

    return backend._run(tx, single=True)
