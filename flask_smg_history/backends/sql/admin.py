"""The SQL backend's whole-database operations: erasure of one owner, the list
of owners, purge, export, import and stats (what the CLI and
``history.erase_owner`` run). A mixin of ``SqlBackend``
(``backend.py``), kept apart from the per-request calls; it uses the backend's
``_run`` and tables through ``self`` and imports nothing of that module, so the
imports run one way.

- **Erasure** is one transaction of set-based DELETEs by owner, each an index
  range (links and items lead with owner), so it never loads the owner's rows.
- **Export** reads keyset batches, each one short transaction: conversations
  by (created_at, id), each followed by its items by position, then responses
  and feedback by (created_at, id), every batch an index range. Memory stays
  flat however many records there are, and nothing is held between batches:
  an export abandoned half-way (a crashed copy) keeps no transaction open. It
  sees each batch as of its own moment, not one snapshot of the whole.
- **Import** upserts one batch per transaction (``importing.py``).
- **Purge** deletes in batches of ``PURGE_BATCH`` conversations or responses,
  one transaction each, so a large purge never holds locks for long.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ...records import RECORD_KINDS, Conversation, Feedback, Item, Record, Response, now
from . import importing, rows
from . import items as links
from .tables import beyond, live

#: Items, responses or feedback read per export query.
EXPORT_BATCH = 500
#: Conversations read per export query (each is then followed by its items).
CONVERSATION_BATCH = 100
#: Conversations or responses removed per purge transaction.
PURGE_BATCH = 500
#: Owners read per query by ``owners()``.
OWNERS_BATCH = 1000


class SqlOperations:
    # -- erasure -------------------------------------------------------------
    def erase_owner(self, owner: str) -> dict[str, int]:
        t = self.tables

        def tx(conn: sa.Connection) -> dict[str, int]:
            # Conversations first: deleting them takes their row locks, so an
            # append waiting on one finds it gone instead of linking an item
            # between the statements below.
            conversations = conn.execute(t.conversations.delete().where(t.conversations.c.owner == owner)).rowcount
            conn.execute(t.links.delete().where(t.links.c.owner == owner))  # also without the cascade
            linked = sa.exists().where(t.links.c.owner == t.items.c.owner, t.links.c.item_id == t.items.c.id)
            items = conn.execute(t.items.delete().where(t.items.c.owner == owner, ~linked)).rowcount
            theirs = sa.select(t.responses.c.id).where(t.responses.c.owner == owner).scalar_subquery()
            feedback = conn.execute(t.feedback.delete().where(t.feedback.c.response_id.in_(theirs))).rowcount
            feedback += conn.execute(t.feedback.delete().where(t.feedback.c.owner == owner)).rowcount
            responses = conn.execute(t.responses.delete().where(t.responses.c.owner == owner)).rowcount
            return {"conversations": conversations, "items": items, "responses": responses, "feedback": feedback}

        return self._run(tx)

    def owners(self) -> Iterator[str]:
        t = self.tables
        everyone = sa.union(
            sa.select(t.conversations.c.owner), sa.select(t.responses.c.owner), sa.select(t.feedback.c.owner)
        ).subquery()
        last: str | None = None
        while True:
            query = sa.select(everyone.c.owner).order_by(everyone.c.owner).limit(OWNERS_BATCH)
            if last is not None:
                query = query.where(everyone.c.owner > last)
            batch = self._run(lambda conn, q=query: conn.execute(q).scalars().all(), write=False)
            yield from batch
            if len(batch) < OWNERS_BATCH:
                return
            last = batch[-1]

    # -- purge ---------------------------------------------------------------
    def purge(self, *, before: float | None, dry_run: bool) -> dict[str, Any]:
        c, r = self.tables.conversations, self.tables.responses
        at = now()
        old_conv = ~live(c, at) if before is None else sa.or_(~live(c, at), c.c.updated_at < before)
        old_resp = ~live(r, at) if before is None else sa.or_(~live(r, at), r.c.created_at < before)
        if dry_run:
            return self._run(lambda conn: self._purge_preview(conn, old_conv, old_resp), write=False)
        counts = dict.fromkeys(RECORD_KINDS, 0)
        while True:
            selected, removed, items = self._run(lambda conn: self._purge_conversations(conn, old_conv))
            counts["conversations"] += removed
            counts["items"] += items
            if selected < PURGE_BATCH:
                break
        while True:
            done = self._run(lambda conn: self._purge_responses(conn, old_resp))
            counts["responses"] += done[0]
            counts["feedback"] += done[1]
            if done[0] < PURGE_BATCH:
                break
        return counts

    def _purge_conversations(self, conn: sa.Connection, old: sa.ColumnElement[bool]) -> tuple[int, int, int]:
        """Remove one batch of old conversations, their links and the items
        left without any, set-wise. The conversations are row-locked first
        (re-checking the condition: an append may just have refreshed one), so
        no append links an item between reading the links and deleting them.
        Returns (selected, removed conversations, removed items)."""
        c, link = self.tables.conversations, self.tables.links
        selected = conn.execute(sa.select(c.c.id).where(old).limit(PURGE_BATCH)).scalars().all()
        if not selected:
            return 0, 0, 0
        conn.execute(c.update().where(c.c.id.in_(selected), old).values(next_position=c.c.next_position))
        ids = conn.execute(sa.select(c.c.id).where(c.c.id.in_(selected), old)).scalars().all()
        linked: dict[str, list[str]] = {}
        for owner, item_id in conn.execute(
            sa.select(link.c.owner, link.c.item_id).where(link.c.conversation_id.in_(ids))
        ):
            linked.setdefault(owner, []).append(item_id)
        conn.execute(link.delete().where(link.c.conversation_id.in_(ids)))
        items = sum(links.drop_orphans(conn, self.tables, owner, item_ids) for owner, item_ids in linked.items())
        conn.execute(c.delete().where(c.c.id.in_(ids)))
        return len(selected), len(ids), items

    def _purge_responses(self, conn: sa.Connection, old: sa.ColumnElement[bool]) -> tuple[int, int]:
        r, f = self.tables.responses, self.tables.feedback
        ids = conn.execute(sa.select(r.c.id).where(old).limit(PURGE_BATCH)).scalars().all()
        if not ids:
            return 0, 0
        feedback = conn.execute(f.delete().where(f.c.response_id.in_(ids))).rowcount
        conn.execute(r.delete().where(r.c.id.in_(ids)))
        return len(ids), feedback

    def _purge_preview(
        self, conn: sa.Connection, old_conv: sa.ColumnElement[bool], old_resp: sa.ColumnElement[bool]
    ) -> dict[str, int]:
        """What a purge would remove: items count once, and only those linked
        from no conversation that stays."""
        c, link, r, f = self.tables.conversations, self.tables.links, self.tables.responses, self.tables.feedback
        kept_link = link.alias("kept_link")
        linked_elsewhere = sa.exists().where(
            kept_link.c.owner == link.c.owner,
            kept_link.c.item_id == link.c.item_id,
            kept_link.c.conversation_id.in_(sa.select(c.c.id).where(~old_conv).correlate(None)),
        )
        doomed = (
            sa.select(link.c.owner, link.c.item_id)
            .join_from(link, c, c.c.id == link.c.conversation_id)
            .where(old_conv, ~linked_elsewhere)
            .distinct()
            .subquery()
        )
        count = sa.func.count()
        return {
            "conversations": conn.execute(sa.select(count).select_from(c).where(old_conv)).scalar(),
            "items": conn.execute(sa.select(count).select_from(doomed)).scalar(),
            "responses": conn.execute(sa.select(count).select_from(r).where(old_resp)).scalar(),
            "feedback": conn.execute(
                sa.select(count).select_from(f).where(f.c.response_id.in_(sa.select(r.c.id).where(old_resp)))
            ).scalar(),
        }

    # -- export --------------------------------------------------------------
    def export(self, owner: str | None, since: float | None) -> Iterator[Record]:
        c, r, f = self.tables.conversations, self.tables.responses, self.tables.feedback
        conversations = rows.conversation_columns(self.tables)
        for conv in self._keyset(c, conversations, owner, c.c.updated_at, since, CONVERSATION_BATCH):
            yield rows.conversation(conv)
            yield from self._export_items(conv[0])
        for row in self._keyset(r, list(r.columns), owner, r.c.created_at, since, EXPORT_BATCH):
            yield rows.response(row)
        for row in self._keyset(f, rows.feedback_columns(self.tables), owner, f.c.created_at, since, EXPORT_BATCH):
            yield rows.feedback(row)

    def _keyset(
        self,
        table: sa.Table,
        columns: list[sa.Column[Any]],
        owner: str | None,
        written: sa.Column[Any],
        since: float | None,
        batch: int,
    ) -> Iterator[sa.Row[Any]]:
        """Live rows of ``table`` by (created_at, id), ``batch`` rows per
        query and transaction, each continuing after the last row seen (an
        index range: ``<prefix>*_created``, or ``*_owner`` for one owner)."""
        after: tuple[float, str] | None = None
        while True:
            conditions = [live(table, now())]
            if owner is not None:
                conditions.append(table.c.owner == owner)
            if since is not None:
                conditions.append(written >= since)
            if after is not None:
                conditions.append(beyond(table.c.created_at, table.c.id, after[0], after[1], "asc"))
            query = sa.select(*columns).where(*conditions).order_by(table.c.created_at, table.c.id).limit(batch)
            found = self._run(lambda conn, q=query: conn.execute(q).all(), write=False)
            yield from found
            if len(found) < batch:
                return
            last = found[-1]._mapping
            after = (last["created_at"], last["id"])

    def _export_items(self, conversation_id: str) -> Iterator[Item]:
        """A conversation's items by position, ``EXPORT_BATCH`` per query."""
        link = self.tables.links
        after = -1
        while True:
            query = (
                links.linked_items(self.tables)
                .where(link.c.conversation_id == conversation_id, link.c.position > after)
                .order_by(link.c.position)
                .limit(EXPORT_BATCH)
            )
            found = self._run(lambda conn, q=query: conn.execute(q).all(), write=False)
            yield from (links.item(row) for row in found)
            if len(found) < EXPORT_BATCH:
                return
            after = found[-1][-1]

    # -- import --------------------------------------------------------------
    def import_records(self, records) -> dict[str, int]:
        """One transaction per call (the CLI sends batches). Conversations
        and feedback are upserted as they come; the batch's items and
        responses after them, set-wise (``importing.py``)."""
        batch = list(records)  # a retry on a fresh connection must see the batch again

        def tx(conn: sa.Connection) -> dict[str, int]:
            counts = dict.fromkeys(RECORD_KINDS, 0)
            items: list[Item] = []
            responses: list[Response] = []
            for record in batch:
                if isinstance(record, Item):
                    items.append(record)
                    counts["items"] += 1
                elif isinstance(record, Conversation):
                    importing.conversation(conn, self.tables, record)
                    counts["conversations"] += 1
                elif isinstance(record, Response):
                    responses.append(record)
                    counts["responses"] += 1
                elif isinstance(record, Feedback):
                    importing.feedback(conn, self.tables, record)
                    counts["feedback"] += 1
            importing.items(conn, self.tables, items)
            importing.responses(conn, self.tables, responses)
            return counts

        return self._run(tx)

    # -- statistics ----------------------------------------------------------
    def refresh_statistics(self) -> None:
        """ANALYZE every history table (PostgreSQL, SQLite) or gather its
        optimizer statistics (Oracle's ``DBMS_STATS``). After a bulk import
        the tables otherwise keep the statistics of their empty state until
        autovacuum gets to them; reads are bounded either way (see
        ``_windowed``), but appends and listings plan better on real figures."""
        dialect = self.engine.dialect.name
        quote = self.engine.dialect.identifier_preparer.format_table
        gather = sa.text("BEGIN DBMS_STATS.GATHER_TABLE_STATS(ownname => NVL(:owner, USER), tabname => :t); END;")

        def tx(conn: sa.Connection) -> None:
            for table in self.tables.metadata.tables.values():
                if dialect == "oracle":
                    conn.execute(gather, {"owner": self.settings.sql_schema, "t": table.name.upper()})
                else:
                    conn.exec_driver_sql(f"ANALYZE {quote(table)}")

        self._run(tx)

    # -- stats ---------------------------------------------------------------
    def stats(self, owner: str | None) -> dict[str, Any]:
        """Counts of live records by aggregate queries (one per table)."""
        c, link, r, f = self.tables.conversations, self.tables.links, self.tables.responses, self.tables.feedback

        def mine(table: sa.Table) -> list[sa.ColumnElement[bool]]:
            return [live(table, now())] + ([table.c.owner == owner] if owner is not None else [])

        def tx(conn: sa.Connection) -> dict[str, Any]:
            count = sa.func.count()
            conversations, oldest, newest = conn.execute(
                sa.select(count, sa.func.min(c.c.created_at), sa.func.max(c.c.created_at)).where(*mine(c))
            ).one()
            items = conn.execute(
                sa.select(count).select_from(link).join(c, c.c.id == link.c.conversation_id).where(*mine(c))
            ).scalar()
            responses = conn.execute(sa.select(count).select_from(r).where(*mine(r))).scalar()
            ratings = dict(conn.execute(sa.select(f.c.rating, count).where(*mine(f)).group_by(f.c.rating)).all())
            return {
                "conversations": conversations,
                "items": items,
                "responses": responses,
                "feedback": {"positive": ratings.get("positive", 0), "negative": ratings.get("negative", 0)},
                "oldest": oldest,
                "newest": newest,
            }

        return self._run(tx, write=False)
