"""The SQL backend's full-text search, a mixin of ``SqlBackend`` (like
``admin.py``: it uses the backend's ``_run`` and tables through ``self`` and
imports nothing of ``backend.py``).

**Why a page is not one statement.** The order (``search.py``: conversation
activity, then position) is not the index's, so one statement that cuts a
page from the caller's matches must first find, join and sort all of them:
about a second for a word in one item of ten of an owner of a million items.
So ``collect`` builds a page in one snapshot from two plans, each bounded:

- **The walk** (``_Plan.walk``): the caller's conversations in search order
  from the cursor, each one's metadata and then its positions from the
  newest (``next_position`` bounds them, so a batch is cut to a number of
  slots, even inside one huge conversation), checked against the query
  slot by slot. It costs what it walks, so it suits words that are frequent
  among the newest conversations: a common word fills a page from the first
  few conversations.
- **The index** (``indexed``): the caller's matches from the full-text index,
  joined to their links and conversations, sorted, cut. It costs what the
  caller's matches are, so it suits rare and absent words, for which the walk
  would read everything.

``collect`` walks a first batch (``FIRST_WALK`` slots); a page not full by then
asks the index for at most ``PROBE`` matches, and takes the index's answer
when there are fewer (the index read them all: its page is exact). Else the
word is frequent and the walk goes on, each batch sized by the hits seen so
far, up to ``WALK_BUDGET`` slots; past that (many matches, but none recent: a word of old
conversations), the index finishes the page, whatever the matches cost. The
walk's end is a cursor, so each plan continues exactly where the other
stopped and a page is the one a single sorted statement would give.

- **PostgreSQL**: the index is the GIN index of the items' ``search_vector``
  and that of the conversations' metadata vectors (``<prefix>conv_search``,
  written by a trigger: ``fulltext.py``), each asked for the owner lexeme AND
  ``websearch_to_tsquery(config, q)``. The walk checks each walked item's
  ``search_vector`` and each walked conversation's metadata vector. The
  statements of a page run in one REPEATABLE READ transaction (one
  snapshot), with planner settings that hold them to their plans
  (``_Postgres``). A query of stop words only (``the``) or of exclusions
  only finds nothing.
- **SQLite**: the index is the FTS5 table, asked for the owner token AND the
  query, translated from the parsed query into FTS5's syntax (every term
  quoted, so no input is FTS5 syntax); it holds metadata too. The walk reads
  the FTS rowids of the walked slots and asks FTS5 for the query within a few
  rowid ranges around them (a lookup by one rowid costs about 0.1 ms, a
  range scan of one about as much). The read transaction is one snapshot.
- **Oracle**: ``NotSupported``: Oracle Text's DDL could not be checked without
  a server, so no index is created for it.

Snippets and ranks are computed for the page's hits only: ``ts_headline`` and
``ts_rank_cd`` on PostgreSQL; FTS5's ``snippet()``/``highlight()`` by rowid on
SQLite, whose rank is the number of matched words in the text. Either way the
cost follows the caller's data, never other owners': the owner is part of
what the index is asked for (``fulltext.py``), and the walk reads the
caller's conversations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ...errors import HistoryUnavailable, NotFound, NotSupported
from ...records import now
from ...search import START_MARK, STOP_MARK, Cursor, SearchHit, SearchPage, SearchQuery, marked
from .. import jsonfast
from . import fulltext

#: Where a metadata hit sorts among its conversation's items, in SQL: above them all.
METADATA_POSITION = 2**62
#: The first walk's slots (a conversation's metadata, or one position): a
#: word in one item of ten fills a page of 20 from about 210.
FIRST_WALK = 256
#: How much larger the walk's next batch is than all walked so far while it
#: has found nothing (with hits, the rate of hits sizes it), and each further
#: read of the conversations it walks than the last.
GROWTH = 4
#: The conversations a walk reads first.
FIRST_CHUNK = 16
#: The caller's matches (items and conversation metadata) below which the
#: index serves the page. Where the two plans cost the same for a word spread
#: evenly over a million items (measured: the index reads a match in about
#: 7 µs on PostgreSQL, 4 on SQLite, the walk a slot in about 4; a page of 20
#: takes 21 million / matches slots).
PROBE = 3500
#: The walk's slots per page, at most, before the index finishes the page:
#: enough for a word of ``PROBE`` matches spread evenly over a million items.
WALK_BUDGET = 8192
#: The rowid ranges (SQLite) one walk batch is checked in.
RANGES = 8
#: ``ts_headline``'s options: from the first match, 15 to 30 words.
HEADLINE_OPTIONS = f'StartSel="{START_MARK}", StopSel="{STOP_MARK}", MaxWords=30, MinWords=15'
#: Stand-ins for ``<`` and ``&`` while ``ts_headline`` reads the text: its
#: parser takes ``<b>`` or ``&amp;`` for markup and leaves it out, and a
#: snippet should show what was written (code, for one).
HIDDEN = {"<": "\ufdd2", "&": "\ufdd3"}


@dataclass(frozen=True)
class Found:
    """A hit's place in the order, before its snippet is made: its
    conversation and that one's ``updated_at``, its position and item
    (``None`` both: the conversation's metadata) and, on SQLite, its FTS
    rowid."""

    conversation_id: str
    updated_at: float
    position: int | None
    item_id: str | None
    rid: int | None = None

    @property
    def key(self) -> tuple[float, str, int]:
        """The sort key of ``search.py``'s order (descending); IDs compare as
        code points, which is UTF-8's byte order (PostgreSQL's ``"C"``)."""
        return self.updated_at, self.conversation_id, METADATA_POSITION if self.position is None else self.position


@dataclass(frozen=True)
class Span:
    """One conversation's part of a walk batch: its metadata (``metadata``)
    and its positions from ``lo`` up to ``hi`` (excluded)."""

    conversation_id: str
    updated_at: float
    metadata: bool
    lo: int
    hi: int


def collect(plan: _Plan, after: Cursor | None, need: int) -> list[Found]:
    """The first ``need`` hits after ``after``, walking and then, by what the
    walk found, from the index (the module's docstring says when)."""
    found: list[Found] = []
    start, size, walked = after, FIRST_WALK, 0
    while True:
        batch, end = plan.walk(start, size)
        found += batch
        if len(found) >= need or end is None:
            return found[:need]
        start, walked = end, walked + size
        if walked == FIRST_WALK:
            rest = plan.indexed(start, need - len(found), PROBE)
            if rest is not None:
                return found + rest
        if walked >= WALK_BUDGET:
            return found + plan.indexed(start, need - len(found), None)
        size = min(next_batch(walked, len(found), need), WALK_BUDGET - walked)


def next_batch(walked: int, found: int, need: int) -> int:
    """The slots of the walk's next batch: what the rest of the page takes
    at the rate of hits seen so far, a quarter more for a margin (a batch that
    falls short costs two statements more, one too large the slots beyond
    the page), but at least half of all walked, so that a walk takes a few
    batches; with no hit yet, ``GROWTH`` times all walked."""
    if found == 0:
        return walked * GROWTH
    return max(-(-(need - found) * walked * 5 // (found * 4)), walked // 2)


def cut(conversations: Iterable[Any], start: Cursor | None, slots: int) -> tuple[list[Span], Cursor | None]:
    """Cut ``slots`` walk slots from ``conversations`` (rows of ID,
    ``updated_at`` and ``next_position``, in search order from ``start``'s),
    read no further than needed: each one's metadata unless ``start`` passed
    it, then its positions newest first. Also the cursor after the last slot
    taken, or ``None`` when the conversations ran out first."""
    spans: list[Span] = []
    for conversation_id, updated_at, top in conversations:
        resumed = start is not None and (updated_at, conversation_id) == (start.updated_at, start.conversation_id)
        hi = top if not resumed or start is None or start.position is None else max(0, min(top, start.position))
        slots -= 0 if resumed else 1
        lo = hi - min(hi, slots)
        slots -= hi - lo
        spans.append(Span(conversation_id, updated_at, not resumed, lo, hi))
        if slots == 0:
            return spans, Cursor(updated_at, conversation_id, lo)
    return spans, None


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
        plan_class = _Postgres if dialect == "postgresql" else _Sqlite

        def tx(conn: sa.Connection) -> SearchPage:
            plan = plan_class(self, conn, owner, query, conversation_id)
            self._search_check(conn, dialect)
            if conversation_id is not None:
                self._conversation_row(conn, owner, conversation_id)
            if not plan.findable():
                return SearchPage([], has_more=False)
            found = collect(plan, after, limit + 1)
            return SearchPage(plan.hits(found[:limit]), has_more=len(found) > limit)

        # PostgreSQL: a transaction of its own for one snapshot (reads are
        # otherwise a transaction per statement); SQLite's read transaction is one.
        return self._run(tx, write=dialect == "postgresql")

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
                trigger = conn.execute(
                    sa.text(
                        "SELECT p.prosrc FROM pg_trigger AS t JOIN pg_proc AS p ON p.oid = t.tgfoid "
                        "WHERE t.tgrelid = CAST(:table AS regclass) AND t.tgname = :trigger"
                    ),
                    {
                        "table": self._quoted(self.tables.conversations),
                        "trigger": f"{self.settings.table_prefix}{fulltext.META_PUT}",
                    },
                ).scalar()
                config = self.settings.postgres_search_config
                if any(source is None or f"'{config}'::regconfig" not in source for source in (expression, trigger)):
                    raise HistoryUnavailable(
                        "Search is unavailable: the search index was not built with "
                        f"SMG_HISTORY_POSTGRES_SEARCH_CONFIG={config!r}. Set it back to the configuration the index "
                        "was built with, or rebuild the index with it: `flask db downgrade smg_history@smgh_0003`, "
                        "then `flask db upgrade`."
                    )
            self._search_ready = True

    def _quoted(self, table: sa.Table) -> str:
        return self.engine.dialect.identifier_preparer.format_table(table)


class _Plan:
    """One page's search on one connection: the walk's conversations (the
    same SQL on both dialects) and, per dialect, the walk's check, the index
    and the hits' snippets."""

    #: How conversation IDs compare in SQL: in byte order, as ``Found.key``.
    ids = ""

    def __init__(self, backend: Any, conn: sa.Connection, owner: str, query: SearchQuery, conversation_id: str | None):
        self.conn, self.owner, self.query, self.conversation_id = conn, owner, query, conversation_id
        self.settings = backend.settings
        self.items, self.links, self.convs = (
            backend._quoted(t) for t in (backend.tables.items, backend.tables.links, backend.tables.conversations)
        )
        self.now = now()

    def findable(self) -> bool:
        """Whether the query can find anything (SQLite: a parsed query always can)."""
        return True

    def walk(self, start: Cursor | None, slots: int) -> tuple[list[Found], Cursor | None]:
        """The hits among the next ``slots`` walk slots after ``start``, in
        order, and the cursor after the last slot (``None``: nothing left)."""
        spans, end = cut(self._conversations(start, slots + 1), start, slots)
        found = self.matches(spans) if spans else []
        return sorted(found, key=lambda f: f.key, reverse=True), end

    def _conversations(self, start: Cursor | None, most: int) -> Iterator[Any]:
        """The live conversations in search order from ``start``'s (included),
        at most ``most``, read in chunks growing from ``FIRST_CHUNK``: a walk
        of conversations of a hundred items needs a few."""
        after, inclusive, chunk = start, True, FIRST_CHUNK
        while most > 0:
            params: dict[str, Any] = {"owner": self.owner, "now": self.now, "n": min(chunk, most)}
            sql = f"SELECT c.id, c.updated_at, c.next_position FROM {self.convs} AS c WHERE {self._live(params)}"
            if after is not None:
                # updated_at alone first: a range of the (owner, updated_at, id) index
                sql += (
                    f" AND c.updated_at <= :au AND (c.updated_at < :au OR c.id{self.ids} {'<=' if inclusive else '<'}"
                    " :acid)"
                )
                params.update(au=after.updated_at, acid=after.conversation_id)
            sql += f" ORDER BY c.updated_at DESC, c.id{self.ids} DESC LIMIT :n"
            rows = self.conn.execute(sa.text(sql), params).all()
            yield from rows
            if len(rows) < params["n"]:
                return
            most -= len(rows)
            after, inclusive, chunk = Cursor(rows[-1][1], rows[-1][0], None), False, chunk * GROWTH

    def _live(self, params: dict[str, Any]) -> str:
        """SQL: ``c`` is a live conversation of the owner (the one searched in, if any)."""
        sql = "c.owner = :owner AND (c.expires_at IS NULL OR c.expires_at > :now)"
        if self.conversation_id is not None:
            sql += " AND c.id = :cid"
            params["cid"] = self.conversation_id
        return sql

    def _after(self, params: dict[str, Any], start: Cursor | None, position: str) -> str:
        """SQL (starting with AND, or empty): the hit is after ``start``;
        ``position`` is its position expression."""
        if start is None:
            return ""
        params.update(
            au=start.updated_at,
            acid=start.conversation_id,
            apos=METADATA_POSITION if start.position is None else start.position,
        )
        return (
            f" AND (c.updated_at < :au OR (c.updated_at = :au AND (c.id{self.ids} < :acid"
            f" OR (c.id = :acid AND {position} < :apos))))"
        )

    def matches(self, spans: list[Span]) -> list[Found]:
        """The hits within ``spans`` (any order)."""
        raise NotImplementedError

    def indexed(self, start: Cursor | None, need: int, cap: int | None) -> list[Found] | None:
        """The first ``need`` hits after ``start``, in order, from the index;
        ``None`` if the owner has ``cap`` matches or more (then none are
        joined or sorted)."""
        raise NotImplementedError

    def hits(self, found: list[Found]) -> list[SearchHit]:
        """``found`` with snippets, ranks and what a hit shows of its item."""
        raise NotImplementedError


def _hit(found: Found, metadata: Any, item: tuple[Any, Any, Any], snippet: str, rank: float) -> SearchHit:
    """A hit from its place and what its conversation and item rows say
    (``item``: type, role and created_at)."""
    if isinstance(metadata, str):
        metadata = jsonfast.loads(metadata)
    hit = SearchHit(found.conversation_id, found.updated_at, metadata or {}, snippet, float(rank or 0.0))
    if found.item_id is not None:
        hit.item_id, hit.position = found.item_id, found.position
        hit.item_type, hit.role, hit.item_created_at = item
    return hit


class _Postgres(_Plan):
    ids = ' COLLATE "C"'
    CONFIG = "CAST(:config AS regconfig)"
    ASKED = f"websearch_to_tsquery({CONFIG}, :q)"

    def __init__(self, backend: Any, conn: sa.Connection, owner: str, query: SearchQuery, conversation_id: str | None):
        super().__init__(backend, conn, owner, query, conversation_id)
        # One snapshot for the page's statements; and plans bounded by what
        # the statements ask, whatever the statistics say: the index's LIMIT
        # makes a sequential scan look cheap to a planner that expects many
        # matches (if the owner has few, it would read the whole table); a
        # generic plan (psycopg prepares a statement run five times, and the
        # server may then plan it once for any owner and query) cannot tell
        # an absent word from a common one; and these statements are too
        # short for JIT compilation or parallel workers to pay for their start.
        conn.exec_driver_sql(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL enable_seqscan = off; "
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off; "
            "SET LOCAL max_parallel_workers_per_gather = 0"
        )
        self.params = {"config": self.settings.postgres_search_config, "q": query.text}
        self.meta = backend._quoted(backend.tables.conversation_search)

    def findable(self) -> bool:
        """Whether the query has a word to find: not stop words only (``the``)
        or, once they are dropped, exclusions only."""
        return bool(
            self.conn.execute(
                sa.text(f"SELECT numnode({self.ASKED}) > 0 AND querytree({self.ASKED}) <> 'T'"), self.params
            ).scalar()
        )

    def matches(self, spans: list[Span]) -> list[Found]:
        sql = f"""
            SELECT l.conversation_id, l.position, l.item_id
            FROM unnest(CAST(:cids AS text[]), CAST(:los AS bigint[]), CAST(:his AS bigint[])) AS w(cid, lo, hi)
            JOIN {self.links} AS l ON l.conversation_id = w.cid AND l.position >= w.lo AND l.position < w.hi
            JOIN {self.items} AS i ON i.owner = l.owner AND i.id = l.item_id
            WHERE i.{fulltext.VECTOR} @@ {self.ASKED}
            UNION ALL
            SELECT s.conversation_id, NULL, NULL FROM {self.meta} AS s
            WHERE s.conversation_id = ANY(CAST(:metas AS text[])) AND s.{fulltext.VECTOR} @@ {self.ASKED}
        """
        walked = [s for s in spans if s.hi > s.lo]
        params = {
            **self.params,
            "cids": [s.conversation_id for s in walked],
            "los": [s.lo for s in walked],
            "his": [s.hi for s in walked],
            "metas": [s.conversation_id for s in spans if s.metadata],
        }
        updated = {s.conversation_id: s.updated_at for s in spans}
        return [Found(cid, updated[cid], pos, item) for cid, pos, item in self.conn.execute(sa.text(sql), params)]

    def indexed(self, start: Cursor | None, need: int, cap: int | None) -> list[Found] | None:
        params: dict[str, Any] = {
            **self.params,
            "owner": self.owner,
            "owner_q": fulltext.pg_owner_query(self.owner),
            "now": self.now,
            "n": need,
            "meta": METADATA_POSITION,
            "cap": cap,
        }
        live = self._live(params)
        items_after = self._after(params, start, "l.position")
        meta_after = self._after(params, start, "CAST(:meta AS bigint)")
        mine = f"@@ (CAST(:owner_q AS tsquery) && {self.ASKED})"
        # The probe counts both kinds of matches; LIMIT NULL is no limit, and
        # without a cap the gate is never closed.
        matches = "(SELECT count(*) FROM m) + (SELECT count(*) FROM mm)"
        gate = f"{matches} < :cap" if cap is not None else "true"
        sql = f"""
            WITH m AS MATERIALIZED (
                SELECT i.id FROM {self.items} AS i WHERE i.owner = :owner AND i.{fulltext.VECTOR} {mine} LIMIT :cap
            ), mm AS MATERIALIZED (
                SELECT s.conversation_id FROM {self.meta} AS s WHERE s.{fulltext.VECTOR} {mine} LIMIT :cap
            ), joined AS MATERIALIZED (
                -- apart from the LIMIT below, which would tempt the planner to walk every
                -- conversation by activity and scan the matches for each
                SELECT c.id AS cid, c.updated_at AS u, l.position AS pos, m.id AS item_id
                FROM m
                JOIN {self.links} AS l ON l.owner = :owner AND l.item_id = m.id
                JOIN {self.convs} AS c ON c.id = l.conversation_id
                WHERE {gate} AND {live}{items_after}
            )
            SELECT {matches}, f.cid, f.u, f.pos, f.item_id FROM (SELECT 1) AS one LEFT JOIN (
                (SELECT * FROM joined ORDER BY u DESC, cid COLLATE "C" DESC, pos DESC LIMIT :n)
                UNION ALL
                SELECT c.id, c.updated_at, NULL, NULL
                FROM mm JOIN {self.convs} AS c ON c.id = mm.conversation_id
                WHERE {gate} AND {live}{meta_after}
            ) AS f ON true
        """
        rows = self.conn.execute(sa.text(sql), params).all()
        if cap is not None and rows[0][0] >= cap:
            return None
        found = [Found(cid, u, pos, item) for _, cid, u, pos, item in rows if cid is not None]
        return sorted(found, key=lambda f: f.key, reverse=True)[:need]

    def hits(self, found: list[Found]) -> list[SearchHit]:
        if not found:
            return []
        texts = fulltext.pg_texts("i.payload")
        sql = f"""
            SELECT h.ord, c.metadata, i.type, i.role, i.created_at,
                ts_headline({self.CONFIG}, CAST(replace(replace(CAST(CASE WHEN h.item_id IS NULL THEN c.metadata
                    ELSE {texts} END AS text), '<', :lt), '&', :amp) AS jsonb), {self.ASKED}, :options),
                CASE WHEN h.item_id IS NULL THEN ts_rank_cd(to_tsvector({self.CONFIG}, c.metadata), {self.ASKED})
                    ELSE ts_rank_cd(i.{fulltext.VECTOR}, {self.ASKED}) END
            FROM unnest(CAST(:cids AS text[]), CAST(:item_ids AS text[])) WITH ORDINALITY AS h(cid, item_id, ord)
            JOIN {self.convs} AS c ON c.id = h.cid
            LEFT JOIN {self.items} AS i ON i.owner = :owner AND i.id = h.item_id
        """
        params = {
            **self.params,
            "owner": self.owner,
            "cids": [f.conversation_id for f in found],
            "item_ids": [f.item_id for f in found],
            "options": HEADLINE_OPTIONS,
            "lt": HIDDEN["<"],
            "amp": HIDDEN["&"],
        }
        rows = {row[0]: row for row in self.conn.execute(sa.text(sql), params)}
        return [
            _hit(f, row[1], (row[2], row[3], row[4]), _headline(row[5]), row[6])
            for f, row in ((f, rows[ordinal]) for ordinal, f in enumerate(found, start=1))
        ]


class _Sqlite(_Plan):
    def __init__(self, backend: Any, conn: sa.Connection, owner: str, query: SearchQuery, conversation_id: str | None):
        super().__init__(backend, conn, owner, query, conversation_id)
        prefix = self.settings.table_prefix
        self.fts, self.fts_rows = f'"{prefix}{fulltext.FTS}"', f'"{prefix}{fulltext.FTS_ROWS}"'

    def matches(self, spans: list[Span]) -> list[Found]:
        walked = self.conn.execute(
            sa.text(f"""
                SELECT l.conversation_id, l.position, l.item_id, r.rid
                FROM json_each(:spans) AS s
                JOIN {self.links} AS l ON l.conversation_id = json_extract(s.value, '$[0]')
                    AND l.position >= json_extract(s.value, '$[1]') AND l.position < json_extract(s.value, '$[2]')
                JOIN {self.fts_rows} AS r ON r.owner = l.owner AND r.item_id = l.item_id
                UNION ALL
                SELECT r.conversation_id, NULL, NULL, r.rid
                FROM json_each(:metas) AS s JOIN {self.fts_rows} AS r ON r.conversation_id = s.value
            """),
            {
                "spans": jsonfast.dumps([[s.conversation_id, s.lo, s.hi] for s in spans if s.hi > s.lo]),
                "metas": jsonfast.dumps([s.conversation_id for s in spans if s.metadata]),
            },
        ).all()
        if not walked:
            return []
        ranges = rowid_ranges(sorted({row[3] for row in walked}), RANGES)
        params: dict[str, Any] = {"m": fts5_body(self.query)}
        parts = []
        for n, (lo, hi) in enumerate(ranges):
            parts.append(f"SELECT rowid FROM {self.fts} WHERE {self.fts} MATCH :m AND rowid BETWEEN :lo{n} AND :hi{n}")
            params.update({f"lo{n}": lo, f"hi{n}": hi})
        matched = {rid for (rid,) in self.conn.execute(sa.text(" UNION ALL ".join(parts)), params)}
        updated = {s.conversation_id: s.updated_at for s in spans}
        return [Found(cid, updated[cid], pos, item, rid) for cid, pos, item, rid in walked if rid in matched]

    def indexed(self, start: Cursor | None, need: int, cap: int | None) -> list[Found] | None:
        fts = self.fts
        params: dict[str, Any] = {
            "m": fts5_query(self.owner, self.query),
            "owner": self.owner,
            "now": self.now,
            "meta": METADATA_POSITION,
            "n": need,
            "cap": -1 if cap is None else cap,  # a negative LIMIT is none
        }
        live = self._live(params)
        after = self._after(params, start, "COALESCE(l.position, :meta)")
        gate = "(SELECT count(*) FROM m) < :cap" if cap is not None else "1"
        sql = f"""
            WITH m AS (SELECT rowid AS rid FROM {fts} WHERE {fts} MATCH :m LIMIT :cap)
            SELECT (SELECT count(*) FROM m), f.* FROM (SELECT 1) AS one LEFT JOIN (
                SELECT c.id, c.updated_at, l.position, r.item_id, r.rid
                FROM m
                JOIN {self.fts_rows} AS r ON r.rid = m.rid
                LEFT JOIN {self.links} AS l ON l.owner = r.owner AND l.item_id = r.item_id
                JOIN {self.convs} AS c ON c.id = COALESCE(l.conversation_id, r.conversation_id)
                WHERE {gate} AND r.owner = :owner AND (r.item_id IS NULL OR l.item_id IS NOT NULL)
                    AND {live}{after}
                ORDER BY c.updated_at DESC, c.id DESC, COALESCE(l.position, :meta) DESC
                LIMIT :n
            ) AS f ON 1
        """
        rows = self.conn.execute(sa.text(sql), params).all()
        if cap is not None and rows[0][0] >= cap:
            return None
        return sorted((Found(*row[1:]) for row in rows if row[1] is not None), key=lambda f: f.key, reverse=True)

    def hits(self, found: list[Found]) -> list[SearchHit]:
        fts = self.fts
        rows = self.conn.execute(
            sa.text(f"""
                SELECT c.metadata, i.type, i.role, i.created_at
                FROM json_each(:found) AS h
                JOIN {self.convs} AS c ON c.id = json_extract(h.value, '$[0]')
                LEFT JOIN {self.items} AS i ON i.owner = :owner AND i.id = json_extract(h.value, '$[1]')
                ORDER BY h.key
            """),
            {"found": jsonfast.dumps([[f.conversation_id, f.item_id] for f in found]), "owner": self.owner},
        ).all()
        marks = sa.text(
            f"SELECT snippet({fts}, 1, :start, :stop, '…', 24), highlight({fts}, 1, :start, :stop) "
            f"FROM {fts} WHERE {fts} MATCH :m AND rowid = :rid"
        )
        out = []
        for f, (metadata, *item) in zip(found, rows, strict=True):
            snippet, whole = self.conn.execute(
                marks, {"m": fts5_body(self.query), "rid": f.rid, "start": START_MARK, "stop": STOP_MARK}
            ).one()
            out.append(_hit(f, metadata, tuple(item), marked(snippet or ""), (whole or "").count(START_MARK)))
        return out


def rowid_ranges(rids: list[int], most: int) -> list[tuple[int, int]]:
    """At most ``most`` ranges covering the sorted ``rids``, split at their
    largest gaps (what FTS5 reads in a range is what it holds there)."""
    gaps = sorted(range(1, len(rids)), key=lambda n: rids[n] - rids[n - 1], reverse=True)
    starts = sorted([0, *(n for n in gaps[: most - 1] if rids[n] - rids[n - 1] > 1)])
    return [(rids[a], rids[b - 1]) for a, b in zip(starts, [*starts[1:], len(rids)], strict=True)]


def fts5_body(query: SearchQuery) -> str:
    """The FTS5 ``MATCH`` expression of a parsed query in ``body``: the
    alternatives ORed, each its terms ANDed with its exclusions NOTed. Every
    term is an FTS5 string of its words, so nothing typed is read as FTS5
    syntax."""

    def phrase(words: tuple[str, ...]) -> str:
        return '"' + " ".join(words) + '"'

    alternatives = []
    for alternative in query.alternatives:
        expression = "(" + " AND ".join(phrase(t.words) for t in alternative if not t.negated) + ")"
        for term in alternative:
            if term.negated:
                expression = f"({expression} NOT {phrase(term.words)})"
        alternatives.append(expression)
    return f"body : ({' OR '.join(alternatives)})"


def fts5_query(owner: str, query: SearchQuery) -> str:
    """``fts5_body`` for one owner: the owner token in ``tag`` AND it."""
    return f'tag : "{fulltext.sqlite_owner_tag(owner)}" AND {fts5_body(query)}'


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
