"""Items and their links on SQL: the statements behind appends, references and
unlinking, shared by the store calls (``backend.py``), the bulk operations
(``admin.py``) and import (``importing.py``).

An item is one row of ``<prefix>items`` keyed by (owner, id); a conversation
holds it through a row of ``<prefix>conv_items`` (conversation_id, position,
owner, item_id). A conversation's items are read as one range scan of the link
index (conversation_id, position) joined to the items' primary key. An item
goes when its last link goes: every unlink is followed by deleting those of its
items that no link names any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ...errors import InvalidRequest, NotFound
from ...records import Item, batched
from .tables import Tables

#: Item IDs per ``IN (...)`` list (Oracle allows at most 1000 expressions).
IN_CHUNK = 500


def item_columns(tables: Tables) -> list[sa.ColumnElement[Any]]:
    """The columns of ``Item(*row)``, from links joined to items."""
    i, link = tables.items, tables.links
    return [
        i.c.id,
        link.c.conversation_id,
        i.c.type,
        i.c.payload,
        i.c.created_at,
        i.c.role,
        i.c.status,
        link.c.position,
    ]


def linked_items(tables: Tables, columns: Sequence[sa.ColumnElement[Any]] | None = None) -> sa.Select[Any]:
    """SELECT of ``columns`` (default: ``item_columns``) over links joined to their items."""
    i, link = tables.items, tables.links
    return sa.select(*(item_columns(tables) if columns is None else columns)).join_from(
        link, i, sa.and_(i.c.owner == link.c.owner, i.c.id == link.c.item_id)
    )


def newest_linked(
    tables: Tables, columns: Sequence[sa.ColumnElement[Any]], top: sa.ScalarSelect[Any]
) -> sa.Select[Any]:
    """The newest items of conversation ``:cid``, newest first: at most
    ``:n`` at positions of at least ``top - :window``, one range scan of the
    link index, for a prompt's context (``recent_items``) and the hybrid
    cache's window (``window.py``). ``top`` is the conversation's
    ``next_position`` as a subquery: it is the last column, read in the same
    statement as the items, so it is the one they were read at (a statement
    reads one snapshot), and it bounds the scan without a second round trip.
    The LIMIT is needed for the plan, not only for the result: without it
    PostgreSQL expects a third of the links and hashes both tables (7 ms at
    10,000 items instead of 0.3)."""
    link = tables.links
    return (
        linked_items(tables, [*columns, top.label("next_position")])
        .where(link.c.conversation_id == sa.bindparam("cid"), link.c.position >= top - sa.bindparam("window"))
        .order_by(link.c.position.desc())
        .limit(sa.bindparam("n"))
    )


def item(row: Sequence[Any]) -> Item:
    return Item(*row)


def check_batch(conn: sa.Connection, tables: Tables, owner: str, conversation_id: str, items: list[Item]) -> dict:
    """Check a whole batch before anything is written, in the order the memory
    backend does, and return the owner's existing items it names by ID (the
    targets of its references). Two queries per ``IN_CHUNK`` items (a turn
    of the Responses API may bring hundreds)."""
    i, link = tables.items, tables.links
    linked: set[str] = set()
    existing: dict = {}
    for ids in batched(dict.fromkeys(it.id for it in items), IN_CHUNK):
        linked.update(
            conn.execute(
                sa.select(link.c.item_id).where(link.c.conversation_id == conversation_id, link.c.item_id.in_(ids))
            ).scalars()
        )
        existing.update(
            (row[0], row)
            for row in conn.execute(
                sa.select(i.c.id, i.c.type, i.c.payload, i.c.created_at, i.c.role, i.c.status).where(
                    i.c.owner == owner, i.c.id.in_(ids)
                )
            )
        )
    seen: set[str] = set()
    for it in items:
        if it.id in linked or it.id in seen:
            raise InvalidRequest.already_in_conversation(it.id, conversation_id)
        seen.add(it.id)
        reference = it.type == "item_reference"
        if reference and it.id not in existing:
            raise NotFound.item(it.id)
        if not reference and it.id in existing:
            raise InvalidRequest.item_exists(it.id)
    return existing


def link_batch(
    conn: sa.Connection, tables: Tables, owner: str, conversation_id: str, items: list[Item], base: int, existing: dict
) -> list[Item]:
    """Store the batch's new items and link every item at positions ``base``,
    ``base + 1``...: at most two multi-row INSERTs. ``existing`` holds the rows
    of the referenced items (from ``check_batch``)."""
    out: list[Item] = []
    new_rows, link_rows = [], []
    for offset, it in enumerate(items):
        position = base + offset
        if it.type == "item_reference":
            iid, type_, payload, created_at, role, status = existing[it.id]
            out.append(Item(iid, conversation_id, type_, payload, created_at, role, status, position))
        else:
            out.append(Item(it.id, conversation_id, it.type, it.payload, it.created_at, it.role, it.status, position))
            new_rows.append(
                {
                    "owner": owner,
                    "id": it.id,
                    "type": it.type,
                    "role": it.role,
                    "status": it.status,
                    "payload": it.payload,
                    "created_at": it.created_at,
                }
            )
        link_rows.append({"conversation_id": conversation_id, "position": position, "owner": owner, "item_id": it.id})
    for table, rows in ((tables.items, new_rows), (tables.links, link_rows)):
        if rows:  # one row: a plain INSERT; more: one multi-row INSERT ("insertmanyvalues")
            conn.execute(table.insert(), rows if len(rows) > 1 else rows[0])
    return out


def drop_orphans(conn: sa.Connection, tables: Tables, owner: str, item_ids: Iterable[str]) -> int:
    """Delete those of the owner's items ``item_ids`` that no link names any
    more; returns how many went. Each chunk runs in a savepoint (two more
    round trips, on deletes only) so that a link made concurrently costs a
    retry, not the caller's transaction."""
    i, link = tables.items, tables.links
    removed = 0
    still_linked = sa.exists().where(link.c.owner == i.c.owner, link.c.item_id == i.c.id)
    for chunk in batched(item_ids, IN_CHUNK):
        doomed = i.delete().where(i.c.owner == owner, i.c.id.in_(chunk), ~still_linked)
        try:
            with conn.begin_nested():
                removed += conn.execute(doomed).rowcount
        except sa_exc.IntegrityError:
            # A concurrent transaction linked one of them after this statement
            # began, and its foreign key refuses the delete. Run it again: a
            # new statement sees that link and spares the item.
            with conn.begin_nested():
                removed += conn.execute(doomed).rowcount
    return removed


def unlink_conversation(conn: sa.Connection, tables: Tables, owner: str, conversation_id: str) -> int:
    """Remove every link of one conversation and the items left without any;
    returns the number of items removed. The caller holds the conversation's
    row lock, so no append slips in between reading the links and deleting
    them."""
    link = tables.links
    ids = conn.execute(sa.select(link.c.item_id).where(link.c.conversation_id == conversation_id)).scalars().all()
    conn.execute(link.delete().where(link.c.conversation_id == conversation_id))
    return drop_orphans(conn, tables, owner, ids)
