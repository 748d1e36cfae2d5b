"""Upserting exported records on SQL (``import_records``, hence ``flask
smg-history import`` and ``copy``), kept out of the request path.

A batch's items are upserted set-wise, a handful of statements whatever the
batch size: which items and links exist already (``IN`` lists), one
executemany UPDATE of the existing items, one multi-row INSERT of the new ones
and one of the new links, then each conversation's ``next_position`` raised
above its imported positions; responses likewise. Conversations and feedback,
far fewer, are upserted one by one. Every upsert keeps the record's IDs, owner,
timestamps and positions, so importing the same records twice leaves the same
rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from ...errors import InvalidRequest, NotFound, shown_id
from ...records import Conversation, Feedback, Item, Response, batched
from . import rows
from .items import IN_CHUNK
from .tables import Tables


def conversation(conn: sa.Connection, tables: Tables, record: Conversation) -> None:
    c = tables.conversations
    values = rows.conversation_values(record)
    existing = conn.execute(sa.select(c.c.owner).where(c.c.id == record.id)).scalar()
    if existing is None:
        conn.execute(c.insert().values(id=record.id, next_position=0, **values))
    elif existing != record.owner:
        raise InvalidRequest(f"Conversation '{shown_id(record.id)}' belongs to another owner.", param="id")
    else:
        conn.execute(c.update().where(c.c.id == record.id).values(values))


def feedback(conn: sa.Connection, tables: Tables, record: Feedback) -> None:
    """Replace the owner's feedback on that response (and any row with the
    record's ID), as resubmitting does, but keeping the record's ID."""
    f = tables.feedback
    mine = sa.and_(f.c.response_id == record.response_id, f.c.owner == record.owner)
    conn.execute(f.delete().where(sa.or_(mine, f.c.id == record.id)))
    conn.execute(f.insert().values(rows.feedback_row(record)))


def responses(conn: sa.Connection, tables: Tables, records: list[Response]) -> None:
    """Upsert responses set-wise. A response ID another owner holds is
    refused, as ``store`` does."""
    if not records:
        return
    r = tables.responses
    latest = {record.id: record for record in records}
    holders: dict[str, str] = {}
    for chunk in batched(latest, IN_CHUNK):
        holders.update(conn.execute(sa.select(r.c.id, r.c.owner).where(r.c.id.in_(chunk))).all())
    taken = next((rid for rid, rec in latest.items() if holders.get(rid, rec.owner) != rec.owner), None)
    if taken is not None:
        raise InvalidRequest.response_id_taken(taken)
    values = {rid: rows.response_values(rec) for rid, rec in latest.items()}
    updates = [{"k_id": rid, **{f"v_{k}": v for k, v in row.items()}} for rid, row in values.items() if rid in holders]
    if updates:
        columns = {k: sa.bindparam(f"v_{k}") for k in next(iter(values.values()))}
        conn.execute(r.update().where(r.c.id == sa.bindparam("k_id")).values(columns), updates)
    inserts = [{"id": rid, **row} for rid, row in values.items() if rid not in holders]
    if inserts:
        conn.execute(r.insert(), inserts)


def items(conn: sa.Connection, tables: Tables, records: list[Item]) -> None:
    """Upsert items and their links. An item already linked into its
    conversation keeps that link; a later copy of the same (owner, id) in the
    batch (one item linked twice) is the one stored."""
    if not records:
        return
    owners = _owners(conn, tables, records)
    latest = {(owners[r.conversation_id], r.id): r for r in records}
    existing = _existing_items(conn, tables, latest)
    i = tables.items
    fields = ("type", "role", "status", "payload", "created_at")
    updates = [
        {"k_owner": owner, "k_id": iid, **{f"v_{f}": getattr(r, f) for f in fields}}
        for (owner, iid), r in latest.items()
        if (owner, iid) in existing
    ]
    if updates:
        conn.execute(
            i.update()
            .where(i.c.owner == sa.bindparam("k_owner"), i.c.id == sa.bindparam("k_id"))
            .values({f: sa.bindparam(f"v_{f}") for f in fields}),
            updates,
        )
    inserts = [
        {"owner": owner, "id": iid, **{f: getattr(r, f) for f in fields}}
        for (owner, iid), r in latest.items()
        if (owner, iid) not in existing
    ]
    if inserts:
        conn.execute(i.insert(), inserts)
    _links(conn, tables, records, owners)


def _owners(conn: sa.Connection, tables: Tables, records: list[Item]) -> dict[str, str]:
    c = tables.conversations
    cids = list(dict.fromkeys(r.conversation_id for r in records))
    owners: dict[str, str] = {}
    for chunk in batched(cids, IN_CHUNK):
        owners.update(conn.execute(sa.select(c.c.id, c.c.owner).where(c.c.id.in_(chunk))).all())
    missing = next((cid for cid in cids if cid not in owners), None)
    if missing is not None:
        raise NotFound.conversation(missing)
    return owners


def _existing_items(conn: sa.Connection, tables: Tables, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    i = tables.items
    by_owner: dict[str, list[str]] = {}
    for owner, iid in keys:
        by_owner.setdefault(owner, []).append(iid)
    found: set[tuple[str, str]] = set()
    for owner, ids in by_owner.items():
        for chunk in batched(ids, IN_CHUNK):
            found.update(conn.execute(sa.select(i.c.owner, i.c.id).where(i.c.owner == owner, i.c.id.in_(chunk))).all())
    return found


def _links(conn: sa.Connection, tables: Tables, records: list[Item], owners: dict[str, str]) -> None:
    link, c = tables.links, tables.conversations
    wanted: dict[tuple[str, str], int] = {}
    for r in records:
        wanted.setdefault((r.conversation_id, r.id), r.position)
    by_conversation: dict[str, list[str]] = {}
    for cid, iid in wanted:
        by_conversation.setdefault(cid, []).append(iid)
    present: set[tuple[str, str]] = set()
    for cid, ids in by_conversation.items():
        for chunk in batched(ids, IN_CHUNK):
            query = sa.select(link.c.conversation_id, link.c.item_id).where(
                link.c.conversation_id == cid, link.c.item_id.in_(chunk)
            )
            present.update(conn.execute(query).all())
    new_links = [
        {"conversation_id": cid, "position": position, "owner": owners[cid], "item_id": iid}
        for (cid, iid), position in wanted.items()
        if (cid, iid) not in present
    ]
    if new_links:
        conn.execute(link.insert(), new_links)
    tops: dict[str, int] = {}
    for (cid, _), position in wanted.items():
        tops[cid] = max(tops.get(cid, 0), position + 1)
    for cid, top in tops.items():
        conn.execute(c.update().where(c.c.id == cid, c.c.next_position < top).values(next_position=top))
