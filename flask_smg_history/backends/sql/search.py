"""The SQL backend's full-text search, a mixin of ``SqlBackend`` (like
``admin.py``: it uses the backend's ``_run`` and tables through ``self`` and
imports nothing of ``backend.py``).

One statement finds a page: the caller's matching items (through their links
into live conversations of the caller) and matching conversation metadata,
in the order ``search.py`` defines, after the cursor, ``LIMIT n + 1``.

- **PostgreSQL**: items by the GIN index of ``search_vector`` for the owner
  lexeme AND ``websearch_to_tsquery(config, q)``; metadata by
  ``to_tsvector(config, metadata)`` over the caller's live conversations (no
  index: their metadata changes rarely, but the conversation row is written on
  every append, which would write a GIN entry each time). The page's
  snippets (``ts_headline``) and ranks (``ts_rank_cd``) are computed for its
  rows only. A query of stop words only (``the``) or of exclusions only finds
  nothing.
- **SQLite**: the FTS5 table for the owner token AND the query, translated
  from the parsed query into FTS5's syntax (every term quoted, so no input is
  FTS5 syntax); then one ``snippet()``/``highlight()`` lookup by rowid per
  hit of the page. The rank is the number of matched words in the text.
- **Oracle**: ``NotSupported``: Oracle Text's DDL could not be checked without
  a server, so no index is created for it.

Either way the cost follows the caller's matches (and, for metadata on
PostgreSQL, the caller's conversations), never other owners' data: the owner
is part of what the index is asked for (``fulltext.py``).
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from ...errors import HistoryUnavailable, NotFound, NotSupported
from ...records import now
from ...search import START_MARK, STOP_MARK, Cursor, SearchHit, SearchPage, SearchQuery, marked
from .. import jsonfast
from . import fulltext

#: Where a metadata hit sorts among its conversation's items: above them all.
METADATA_POSITION = 2**62
#: ``ts_headline``'s options: from the first match, 15 to 30 words.
HEADLINE_OPTIONS = f'StartSel="{START_MARK}", StopSel="{STOP_MARK}", MaxWords=30, MinWords=15'
#: Stand-ins for ``<`` and ``&`` while ``ts_headline`` reads the text: its
#: parser takes ``<b>`` or ``&amp;`` for markup and leaves it out, and a
#: snippet should show what was written (code, for one).
HIDDEN = {"<": "\ufdd2", "&": "\ufdd3"}


class SqlSearch:
    _search_ready = False
    _search_lock = threading.Lock()

    def search(self, owner, query, *, conversation_id, after, limit):
        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise NotSupported.search(
                self.name,
                "Oracle Text is not set up by this version, as its index DDL could not be checked without an "
                "Oracle server (see the SQL backend's documentation).",
            )
        if conversation_id is not None and "\x00" in conversation_id:
            raise NotFound.conversation(conversation_id)
        run = self._search_postgres if dialect == "postgresql" else self._search_sqlite

        def tx(conn: sa.Connection) -> SearchPage:
            self._search_check(conn, dialect)
            if conversation_id is not None:
                self._conversation_row(conn, owner, conversation_id)
            return run(conn, owner, query, conversation_id, after, limit)

        return self._run(tx, write=False)

    # -- shared ----------------------------------------------------------------
    def _search_check(self, conn: sa.Connection, dialect: str) -> None:
        """Once per backend: the index is there (SQLite: FTS5 was compiled
        in when the tables were migrated) and was built in the configured
        text search configuration (PostgreSQL)."""
        if self._search_ready:
            return
        with self._search_lock:
            if dialect == "sqlite":
                name = f"{self.settings.table_prefix}{fulltext.FTS}"
                found = conn.execute(
                    sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": name}
                ).first()
                if found is None:
                    raise NotSupported.search(
                        self.name,
                        "the SQLite library that migrated the tables has no FTS5 (full-text search) compiled in; "
                        "with one that has it, run `flask db downgrade smg_history@smgh_0003` and "
                        "`flask db upgrade` to build the index.",
                    )
            else:
                expression = conn.execute(
                    sa.text(
                        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a "
                        "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                        "WHERE d.adrelid = CAST(:table AS regclass) AND a.attname = :column"
                    ),
                    {"table": self._quoted(self.tables.items), "column": fulltext.VECTOR},
                ).scalar()
                config = self.settings.postgres_search_config
                if expression is None or f"'{config}'::regconfig" not in expression:
                    raise HistoryUnavailable(
                        "Search is unavailable: the search index was not built with "
                        f"SMG_HISTORY_POSTGRES_SEARCH_CONFIG={config!r}. Set it back to the configuration the index "
                        "was built with, or rebuild the index with it: `flask db downgrade smg_history@smgh_0003`, "
                        "then `flask db upgrade`."
                    )
            self._search_ready = True

    def _quoted(self, table: sa.Table) -> str:
        return self.engine.dialect.identifier_preparer.format_table(table)

    @staticmethod
    def _filters(params: dict[str, Any], conversation_id: str | None, after: Cursor | None, position: str, ids: str):
        """SQL conditions (each starting with AND) for one conversation and
        for the hits after the cursor; ``position`` is the hit's position
        expression, ``ids`` how conversation IDs compare (PostgreSQL: in
        byte order, as the other backends order them)."""
        sql = ""
        if conversation_id is not None:
            sql += " AND c.id = :cid"
            params["cid"] = conversation_id
        if after is not None:
            sql += (
                f" AND (c.updated_at < :au OR (c.updated_at = :au AND (c.id{ids} < :acid"
                f" OR (c.id = :acid AND {position} < :apos))))"
            )
            params.update(
                au=after.updated_at,
                acid=after.conversation_id,
                apos=METADATA_POSITION if after.position is None else after.position,
            )
        return sql

    @staticmethod
    def _hit(row: Any, snippet: str, rank: float) -> SearchHit:
        cid, updated_at, position, item_id, item_type, role, created_at, metadata = row[:8]
        if isinstance(metadata, str):
            metadata = jsonfast.loads(metadata)
        hit = SearchHit(cid, updated_at, metadata or {}, snippet, float(rank or 0.0))
        if item_id is not None:
            hit.item_id, hit.item_type, hit.role = item_id, item_type, role
            hit.item_created_at, hit.position = created_at, position
        return hit

    # -- PostgreSQL ------------------------------------------------------------
    def _search_postgres(self, conn, owner, query: SearchQuery, conversation_id, after, limit) -> SearchPage:
        items, links, convs = (
            self._quoted(t) for t in (self.tables.items, self.tables.links, self.tables.conversations)
        )
        config = "CAST(:config AS regconfig)"
        asked = f"websearch_to_tsquery({config}, :q)"
        # Constant expressions (the parameters are sent inline), folded when the
        # statement is planned: stop words only, or exclusions only, find nothing.
        findable = f"numnode({asked}) > 0 AND querytree({asked}) <> 'T'"
        live = "c.owner = :owner AND (c.expires_at IS NULL OR c.expires_at > :now)"
        params: dict[str, Any] = {
            "config": self.settings.postgres_search_config,
            "q": query.text,
            "owner": owner,
            "owner_q": fulltext.pg_owner_query(owner),
            "now": now(),
            "meta": METADATA_POSITION,
            "n": limit + 1,
            "options": HEADLINE_OPTIONS,
            "lt": HIDDEN["<"],
            "amp": HIDDEN["&"],
        }
        item_filters = self._filters(params, conversation_id, after, "l.position", ' COLLATE "C"')
        meta_filters = self._filters(params, conversation_id, after, "CAST(:meta AS bigint)", ' COLLATE "C"')
        sql = f"""
            WITH hits AS (
                SELECT * FROM (
                SELECT c.id AS cid, c.updated_at AS u, l.position AS pos, i.id AS item_id
                FROM {items} AS i
                JOIN {links} AS l ON l.owner = i.owner AND l.item_id = i.id
                JOIN {convs} AS c ON c.id = l.conversation_id
                WHERE i.owner = :owner AND i.{fulltext.VECTOR} @@ (CAST(:owner_q AS tsquery) && {asked})
                    AND {findable} AND {live}{item_filters}
                UNION ALL
                SELECT c.id, c.updated_at, CAST(:meta AS bigint), NULL
                FROM {convs} AS c
                WHERE {live} AND {findable} AND to_tsvector({config}, c.metadata) @@ {asked}{meta_filters}
                ) AS found
                ORDER BY u DESC, cid COLLATE "C" DESC, pos DESC
                LIMIT :n
            )
            SELECT h.cid, h.u, h.pos, h.item_id, i.type, i.role, i.created_at, c.metadata,
                ts_headline({config}, CAST(replace(replace(CAST(CASE WHEN h.item_id IS NULL THEN c.metadata
                    ELSE {fulltext.pg_texts("i.payload")} END AS text), '<', :lt), '&', :amp) AS jsonb), {asked},
                    :options),
                CASE WHEN h.item_id IS NULL THEN ts_rank_cd(to_tsvector({config}, c.metadata), {asked})
                    ELSE ts_rank_cd(i.{fulltext.VECTOR}, {asked}) END
            FROM hits AS h
            JOIN {convs} AS c ON c.id = h.cid
            LEFT JOIN {items} AS i ON i.owner = :owner AND i.id = h.item_id
            ORDER BY h.u DESC, h.cid COLLATE "C" DESC, h.pos DESC
        """
        found = conn.execute(sa.text(sql), params).all()
        hits = [self._hit(row, _headline(row[8]), row[9]) for row in found[:limit]]
        return SearchPage(hits, has_more=len(found) > limit)

    # -- SQLite ----------------------------------------------------------------
    def _search_sqlite(self, conn, owner, query: SearchQuery, conversation_id, after, limit) -> SearchPage:
        prefix = self.settings.table_prefix
        fts, fts_rows = f'"{prefix}{fulltext.FTS}"', f'"{prefix}{fulltext.FTS_ROWS}"'
        items, links, convs = (
            self._quoted(t) for t in (self.tables.items, self.tables.links, self.tables.conversations)
        )
        params: dict[str, Any] = {
            "m": fts5_query(owner, query),
            "owner": owner,
            "now": now(),
            "meta": METADATA_POSITION,
            "n": limit + 1,
        }
        filters = self._filters(params, conversation_id, after, "COALESCE(l.position, :meta)", "")
        sql = f"""
            SELECT c.id, c.updated_at, COALESCE(l.position, :meta) AS pos, r.item_id, i.type, i.role,
                i.created_at, c.metadata, {fts}.rowid
            FROM {fts}
            JOIN {fts_rows} AS r ON r.rid = {fts}.rowid
            LEFT JOIN {links} AS l ON l.owner = r.owner AND l.item_id = r.item_id
            LEFT JOIN {items} AS i ON i.owner = r.owner AND i.id = r.item_id
            JOIN {convs} AS c ON c.id = COALESCE(l.conversation_id, r.conversation_id)
            WHERE {fts} MATCH :m AND r.owner = :owner AND (r.item_id IS NULL OR l.item_id IS NOT NULL)
                AND c.owner = :owner AND (c.expires_at IS NULL OR c.expires_at > :now){filters}
            ORDER BY c.updated_at DESC, c.id DESC, pos DESC
            LIMIT :n
        """
        found = conn.execute(sa.text(sql), params).all()
        marks = sa.text(
            f"SELECT snippet({fts}, 1, :start, :stop, '…', 24), highlight({fts}, 1, :start, :stop) "
            f"FROM {fts} WHERE {fts} MATCH :m AND rowid = :rid"
        )
        hits = []
        for row in found[:limit]:
            snippet, whole = conn.execute(
                marks, {"m": params["m"], "rid": row[8], "start": START_MARK, "stop": STOP_MARK}
            ).one()
            hits.append(self._hit(row, marked(snippet or ""), (whole or "").count(START_MARK)))
        return SearchPage(hits, has_more=len(found) > limit)


def fts5_query(owner: str, query: SearchQuery) -> str:
    """The FTS5 ``MATCH`` expression of a parsed query, for one owner: the
    owner token in ``tag`` AND, in ``body``, the alternatives ORed, each its
    terms ANDed with its exclusions NOTed. Every term is an FTS5 string of
    its words, so nothing typed is read as FTS5 syntax."""

    def phrase(words: tuple[str, ...]) -> str:
        return '"' + " ".join(words) + '"'

    alternatives = []
    for alternative in query.alternatives:
        expression = "(" + " AND ".join(phrase(t.words) for t in alternative if not t.negated) + ")"
        for term in alternative:
            if term.negated:
                expression = f"({expression} NOT {phrase(term.words)})"
        alternatives.append(expression)
    return f'tag : "{fulltext.sqlite_owner_tag(owner)}" AND body : ({" OR ".join(alternatives)})'


def _headline(value: Any) -> str:
    """The snippet of ``ts_headline`` over a jsonb array or object: its
    first string holding a match (else its first string), marked."""
    if isinstance(value, str):
        value = jsonfast.loads(value)
    strings = [s for s in (value.values() if isinstance(value, dict) else value or []) if isinstance(s, str)]
    chosen = next((s for s in strings if START_MARK in s), strings[0] if strings else "")
    for character, stand_in in HIDDEN.items():
        chosen = chosen.replace(stand_in, character)
    return marked(chosen)
