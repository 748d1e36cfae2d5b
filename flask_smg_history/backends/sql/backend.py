"""The SQL backend: ``sqlite``, ``postgres`` and ``oracle`` through SQLAlchemy.

One class for the three dialects, written in SQLAlchemy Core (no ORM session:
a store call is a handful of statements on a connection of our own, so the
host's ``db.session`` is never committed or rolled back by us, and the ORM's
per-row bookkeeping stays out of the hot path).

Guarantees and how they are kept:

- **One transaction per store call.** ``_run`` checks out a connection, runs
  the call's statements, commits, and gives the connection back; any error
  rolls back. On PostgreSQL a read, or a write that is one statement (an
  append of new items, a turn), is that statement's own transaction, without BEGIN and
  COMMIT round trips (``engine.Transactions`` says which work gets which). A
  connection that died while idle in the pool (the server was
  restarted) is detected on its first statement and the call is retried once on
  a fresh connection, which is safe because nothing was committed.
- **One gap-free order under concurrent writers.** Each conversation row has a
  ``next_position`` counter. ``add_items`` starts with ``UPDATE conversations
  SET next_position = next_position + n ... RETURNING next_position``, which
  checks owner and expiry, takes the conversation's row lock (PostgreSQL,
  Oracle; SQLite's write lock, taken at ``BEGIN IMMEDIATE``) and reserves ``n``
  consecutive positions in one statement. A second writer waits on that lock
  until the first commits, then reads the advanced counter. The unique index
  (conversation_id, position) of the links backs this up.
- **Items once per owner, linked into conversations** (``items.py``): an
  ``item_reference`` adds a link, a delete removes one and the item goes with
  its last link.
- **Bounded statements.** Adding a batch is: one UPDATE, one multi-row INSERT
  of items and one of links, COMMIT, whatever the batch size (references add
  two checking queries). ``recent`` is one query in the common case. A turn
  of the Responses API (``store_turn``) is that append and the response's
  INSERT in one transaction; on PostgreSQL, one statement.
- **Keyset pagination.** Pages continue after the cursor's (position) or
  (created_at, id) — for conversations also (updated_at, id) — with an index
  range scan; never OFFSET.
- **Failures are 503s.** Connection, pool-timeout and disconnect errors are
  ``unavailable_errors``; a database whose history schema is behind the code
  answers 503 with a message saying to run ``flask db upgrade``.

Whole-database operations (erasure, purge, export, import, stats) live in the
``SqlOperations`` mixin of ``admin.py``, the usage statistics in the
``SqlStats`` mixin of ``stats.py``, full-text search in ``SqlSearch``
(``search.py``); records become rows and back in ``rows.py``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ...errors import HistoryUnavailable, InvalidRequest, NotFound
from ...records import Conversation, Feedback, Item, Page, Response, now
from .. import jsonfast
from ..base import Backend, merge_metadata
from . import items as links
from . import migrate, rows
from .admin import SqlOperations
from .engine import build_engine, postgres_tls_hint
from .search import SqlSearch
from .stats import SqlStats
from .tables import JsonDocument, beyond, build_tables, live

T = TypeVar("T")
log = logging.getLogger("flask_smg_history")
#: Where ``_driver_rows`` keeps a pooled connection's cursor.
_CURSOR = "smg_history_cursor"


class SqlUnavailable(Exception):
    """No usable connection: the pool could not connect or hand one out in
    time, or the connection was lost. The driver's error is the cause."""


class SqlBackend(SqlSearch, SqlOperations, SqlStats, Backend):
    unavailable_errors = (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
        SqlUnavailable,
    )

    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        built = build_engine(name, settings, app)
        self.engine = built.engine
        postgres = self.engine.dialect.name == "postgresql"
        search_config = settings.postgres_search_config if postgres else None
        self.tables = build_tables(settings.table_prefix, settings.sql_schema, search_config=search_config)
        self._owned = built.owned
        self._closer = built.closer
        self._transactions = built.transactions
        self.write_options = built.transactions.write
        self._reserve_positions = self._reserve_statement()
        self._recent = self._recent_statement()
        # The hot paths' driver SQL (see ``_driver_rows``), on PostgreSQL.
        driver = postgres and self.engine.dialect.paramstyle == "pyformat"
        self._append_sql = self._append_statement(with_response=False) if driver else None
        self._turn_sql = self._append_statement(with_response=True) if driver else None
        #: Whether ``_driver_rows`` statements may run on the pool's own
        #: connection, which needs autocommit at the driver (our psycopg engine).
        self._pooled = built.autocommit
        self._recent_sql = str(self._recent.compile(dialect=self.engine.dialect)) if built.autocommit else None
        self._schema_ok = False
        self._schema_lock = threading.Lock()
        self._create_tables = settings.create_tables
        self._app = app
        self._unhook = migrate.install_flask_migrate_hook(app, self)
        self._start_up()

    # -- schema --------------------------------------------------------------
    def _start_up(self) -> None:
        """Create or check the tables now if the database answers; if it does
        not, start anyway (the first call will answer 503 and try again)."""
        try:
            self._check_schema()
        except self.unavailable_errors as exc:
            hint = self.outage_hint(exc)  # a TLS set-up problem will not pass by itself: say what to fix
            detail = f": {hint}" if hint else "; will retry"
            log.warning("history backend %s is unreachable at start-up (%s)%s", self.name, type(exc).__name__, detail)
        except HistoryUnavailable as exc:
            log.warning("%s", exc.message)

    def schema_changed(self) -> None:
        self._schema_ok = self._search_ready = False

    def _check_schema(self) -> None:
        """Pass once the tables are at our head revision (creating them first
        with ``SMG_HISTORY_CREATE_TABLES``); until then every call answers 503
        with what to run."""
        if self._schema_ok:
            return
        with self._schema_lock:
            current = self._current_revision()
            tables = f"The history tables ({self.settings.table_prefix}*)"
            if current is not None and not migrate.is_known(current):
                raise HistoryUnavailable(
                    f"{tables} were migrated by a newer flask-smg-history (revision {current}): "
                    "install that version, or downgrade the tables with it first."
                )
            head = migrate.head_revision()
            if current != head and self._create_tables:
                migrate.upgrade(self)
                current = self._current_revision()
            if current != head:
                state = "do not exist" if current is None else f"are at revision {current}, this version needs {head}"
                raise HistoryUnavailable(f"{tables} {state}: run {self._upgrade_advice()}.")
            self._schema_ok = True

    def _upgrade_advice(self) -> str:
        """The command that works in this app first: Flask-Migrate's upgrade
        when the app has its command group, else our ``init-db``."""
        flask_migrate = migrate.upgrade_command(self._app)
        if flask_migrate is not None:
            return f"`{flask_migrate}` (or `flask smg-history init-db`)"
        return "`flask smg-history init-db` (or `flask db upgrade` if the app uses Flask-Migrate)"

    def _current_revision(self) -> str | None:
        with self._connect(self._transactions.read) as conn:
            return migrate.current_revision(self, conn)

    # -- transactions --------------------------------------------------------
    def _connect(self, options: dict[str, Any], *, pooled: bool = False) -> Any:
        """A SQLAlchemy connection with ``options``, or with ``pooled`` the
        pool's own DBAPI connection (for ``_driver_rows`` alone, on an
        autocommit engine); either goes back to the pool on leaving a
        ``with`` block."""
        try:
            if pooled:
                return contextlib.closing(self.engine.raw_connection())
            conn = self.engine.connect()
        except (sa_exc.DBAPIError, self.engine.dialect.loaded_dbapi.Error) as exc:  # the pool's own: unwrapped
            raise SqlUnavailable("cannot connect") from exc
        if options:
            conn.execution_options(**options)
        return conn

    def _run(self, fn: Callable[[Any], T], *, write: bool = True, single: bool = False, pooled: bool = False) -> T:
        """Run ``fn`` in one transaction and commit it: a write transaction,
        a read-only one (``write=False``), or, where ``fn`` sends exactly one
        statement (``single``), the statement's own transaction. With
        ``pooled``, ``fn`` gets the pool's DBAPI connection instead of a
        SQLAlchemy one (see ``_connect``); its commit is then a no-op."""
        self._check_schema()
        kinds = self._transactions
        options = kinds.single if single else kinds.write if write else kinds.read
        for attempt in (1, 2):
            with self._connect(options, pooled=pooled) as conn:
                try:
                    result = fn(conn)
                except (ValueError, sa_exc.DataError) as exc:
                    if not _refuses_nul(exc):
                        raise
                    raise NulRefused(
                        "PostgreSQL cannot store the NUL character (\\u0000) in text; remove it from the request."
                    ) from None
                except sa_exc.DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    if attempt == 2:
                        raise SqlUnavailable("connection lost") from exc
                    log.info("history backend %s: a pooled connection was lost; retrying once", self.name)
                    continue
                # Not retried: a commit that failed may still have happened.
                conn.commit()
                return result
        raise AssertionError("unreachable")

    def _hooked(self) -> bool:
        """Whether anything listens for cursor events on the engine (tracing,
        statement logging, Flask-SQLAlchemy's recorded queries): then every
        statement goes through SQLAlchemy, ``_driver_rows`` is not used, and
        the hooks see them all."""
        dispatch = self.engine.dispatch
        return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)

    def _driver_rows(self, conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement of driver SQL on the DBAPI connection of
        ``conn`` (a SQLAlchemy connection, or the pool's own) and fetch its
        rows, for the two statements every chat turn runs (append its items,
        read the recent ones). Why: SQLAlchemy's connection, execution and
        result layers cost more client time than psycopg itself there
        (profiled: 90-110 µs of a 280 µs read). What they would do on a
        failure is done with their own public parts: the dialect decides
        whether the connection is gone (it is then invalidated, so the pool
        drops it), and the driver's error becomes SQLAlchemy's, so ``_run``
        retries and maps it exactly as for any other statement. Callers check
        ``_hooked`` first."""
        pooled = conn.connection if isinstance(conn, sa.Connection) else conn
        dbapi_connection = pooled.driver_connection
        dialect = self.engine.dialect
        # One cursor per pooled connection, kept in the pool's ``info`` for it
        # (cleared when the connection is closed or invalidated): making one
        # costs about a tenth of the read.
        cursor = pooled.info.get(_CURSOR)
        if cursor is None or cursor.connection is not dbapi_connection:
            cursor = pooled.info[_CURSOR] = dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        except dialect.loaded_dbapi.Error as exc:
            gone = dialect.is_disconnect(exc, dbapi_connection, None)
            if gone:
                conn.invalidate(exc)
            raise sa_exc.DBAPIError.instance(
                sql, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
            ) from exc

    # -- conversations -------------------------------------------------------
    def _conversation_row(self, conn: sa.Connection, owner: str, conversation_id: str) -> sa.Row[Any]:
        t = self.tables.conversations
        row = conn.execute(
            sa.select(*rows.conversation_columns(self.tables)).where(
                t.c.id == conversation_id, t.c.owner == owner, live(t, now())
            )
        ).first()
        if row is None:
            raise NotFound.conversation(conversation_id)
        return row

    def _next_position(self, conn: sa.Connection, owner: str, conversation_id: str) -> int:
        """The next free position of a live conversation of the owner (one
        past its last item's), or ``NotFound``."""
        top = conn.execute(self._next_position_of(owner, conversation_id)).scalar()
        if top is None:
            raise NotFound.conversation(conversation_id)
        return top

    def _next_position_of(self, owner: str, conversation_id: str) -> sa.Select[Any]:
        """``next_position`` of the conversation if the owner's and live, else
        NULL. Only the ID is in the WHERE clause, so the lookup is by primary
        key whatever the planner's statistics (with none, PostgreSQL may
        otherwise walk an (owner, ...) index through all of the owner's
        conversations); owner and expiry are checked on the one row."""
        t = self.tables.conversations
        mine = sa.and_(t.c.owner == owner, live(t, now()))
        return sa.select(sa.case((mine, t.c.next_position))).where(t.c.id == conversation_id)

    def create_conversation(self, conversation, items):
        def tx(conn: sa.Connection) -> list[Item]:
            conn.execute(
                self.tables.conversations.insert().values(
                    id=conversation.id, next_position=len(items), **rows.conversation_values(conversation)
                )
            )
            return self._link(conn, conversation.owner, conversation.id, items, 0)

        return self._run(tx)

    def _link(self, conn: sa.Connection, owner: str, conversation_id: str, items: list[Item], base: int) -> list[Item]:
        """Check and link a batch at ``base``. A batch of new items only skips
        the check: the primary keys refuse a duplicate, and only then is the
        batch checked (after a rollback) to name the offending item. So is a
        batch PostgreSQL refuses for a NUL character: the reference backend's
        refusal, if it has one, comes first (``NulRefused``)."""
        existing: dict = {}
        if any(i.type == "item_reference" for i in items):
            existing = links.check_batch(conn, self.tables, owner, conversation_id, items)
        try:
            return links.link_batch(conn, self.tables, owner, conversation_id, items, base, existing)
        except sa_exc.IntegrityError:
            conn.rollback()
            raise self._diagnose(conn, owner, conversation_id, items) from None
        except (ValueError, sa_exc.DataError) as exc:
            if not existing and _refuses_nul(exc):
                conn.rollback()
                links.check_batch(conn, self.tables, owner, conversation_id, items)
            raise

    def _diagnose(self, conn: sa.Connection, owner: str, conversation_id: str, items: list[Item]) -> InvalidRequest:
        """The error a refused batch deserves, found after its rollback. If
        the check finds nothing (a concurrent writer's item went meanwhile),
        the first new item is reported as existing."""
        links.check_batch(conn, self.tables, owner, conversation_id, items)
        return InvalidRequest.item_exists(next((i.id for i in items if i.type != "item_reference"), items[0].id))

    def get_conversation(self, owner, conversation_id):
        _refuse_nul(conversation_id=conversation_id)
        return self._run(
            lambda conn: rows.conversation(self._conversation_row(conn, owner, conversation_id)), write=False
        )

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        """A replace is one UPDATE. A patch is a read-merge-write under the
        row lock that appends take: the first UPDATE (new times) locks the
        live row (SQLite: the write lock of ``BEGIN IMMEDIATE``), so a
        concurrent patch waits and then reads this one's committed metadata;
        too many merged pairs raise before the commit, so nothing is written."""
        _refuse_nul(conversation_id=conversation_id)
        t = self.tables.conversations
        values: dict[str, Any] = {"updated_at": updated_at, "expires_at": expires_at}
        if replace:
            values["metadata"] = merge_metadata({}, metadata, replace=True)

        def tx(conn: sa.Connection) -> Conversation:
            done = conn.execute(
                t.update().where(t.c.id == conversation_id, t.c.owner == owner, live(t, now())).values(values)
            )
            if done.rowcount == 0:
                raise NotFound.conversation(conversation_id)
            conv = rows.conversation(self._conversation_row(conn, owner, conversation_id))
            if not replace:
                merged = merge_metadata(conv.metadata, metadata, replace=False)
                if merged != conv.metadata:
                    conn.execute(t.update().where(t.c.id == conversation_id).values(metadata=merged))
                conv.metadata = merged
            return conv

        return self._run(tx)

    def _lock_conversation(self, conn: sa.Connection, owner: str, conversation_id: str) -> None:
        """Row-lock a live conversation of the owner (a no-op UPDATE), as an
        append does, or raise ``NotFound``."""
        t = self.tables.conversations
        done = conn.execute(
            t.update()
            .where(t.c.id == conversation_id, t.c.owner == owner, live(t, now()))
            .values(next_position=t.c.next_position)
        )
        if done.rowcount == 0:
            raise NotFound.conversation(conversation_id)

    def delete_conversation(self, owner, conversation_id):
        _refuse_nul(conversation_id=conversation_id)
        t = self.tables.conversations

        def tx(conn: sa.Connection) -> None:
            self._lock_conversation(conn, owner, conversation_id)
            links.unlink_conversation(conn, self.tables, owner, conversation_id)
            conn.execute(t.delete().where(t.c.id == conversation_id))

        self._run(tx)

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        """A keyset range of the (owner, created_at, id) or (owner,
        updated_at, id) index."""
        _refuse_nul(after=after)
        t = self.tables.conversations

        def tx(conn: sa.Connection) -> Page[Conversation]:
            mine = [t.c.owner == owner, live(t, now())]
            query = sa.select(*rows.conversation_columns(self.tables)).where(*mine)
            return _keyset_page(
                conn, t, query, mine, by=t.c[order_by], after=after, limit=limit, order=order, convert=rows.conversation
            )

        return self._run(tx, write=False)

    # -- items ---------------------------------------------------------------
    @staticmethod
    def _append_params(
        owner: str, conversation_id: str, items: list[Item], updated_at: float, expires_at: float | None
    ) -> dict[str, Any]:
        """The parameters of ``_reserve_statement`` (and of
        ``_append_statement``) for appending ``items``."""
        _refuse_nul(conversation_id=conversation_id)
        return {
            "cid": conversation_id,
            "b_owner": owner,
            "now": now(),
            "n": len(items),
            "new_updated_at": updated_at,
            "new_expires_at": expires_at,
        }

    def _append(self, conn: sa.Connection, params: dict[str, Any], items: list[Item]) -> list[Item]:
        """Append in the caller's transaction: reserve the positions (and
        row-lock the conversation, refresh its times) in one statement, then
        check and link the batch there."""
        base = conn.execute(self._reserve_positions, params).scalar()
        if base is None:
            raise NotFound.conversation(params["cid"])
        return self._link(conn, params["b_owner"], params["cid"], items, base)

    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        """The general path: one transaction (``_append``). On PostgreSQL a
        batch of new items (no reference) is the one driver statement of
        ``_append_statement`` instead, atomic by itself: the round trips of a
        bare INSERT + COMMIT, whether it brings one item or twenty (a chat
        turn stores two). A refused one is diagnosed in a read of its own
        (the statement was rolled back by itself)."""
        params = self._append_params(owner, conversation_id, items, updated_at, expires_at)
        if self._append_sql is not None and not any(i.type == "item_reference" for i in items) and not self._hooked():
            # On the pool's own connection where the engine is autocommit, as ``recent_items``.
            try:
                return self._run(
                    lambda conn: self._append_at_once(conn, params, items), single=True, pooled=self._pooled
                )
            except sa_exc.IntegrityError:
                refused = True
            except NulRefused:  # before any check ran: the general path refuses in the reference's order
                refused = False
            if refused:

                def diagnose(conn: sa.Connection) -> NoReturn:
                    raise self._diagnose(conn, owner, conversation_id, items)

                return self._run(diagnose, write=False)

        return self._run(lambda conn: self._append(conn, params, items))

    def _recent_statement(self) -> sa.Select[Any]:
        """``recent_items``' statement, built once with bind parameters (it
        runs on every prompt): the newest ``:n`` linked items at positions of
        at least ``next_position - :window``."""
        c = self.tables.conversations
        mine = sa.and_(c.c.owner == sa.bindparam("b_owner"), live(c, sa.bindparam("now")))
        top = sa.select(sa.case((mine, c.c.next_position))).where(c.c.id == sa.bindparam("cid")).scalar_subquery()
        return links.newest_linked(self.tables, links.item_columns(self.tables), top)

    def _reserve_statement(self) -> sa.Update:
        """``UPDATE conversations SET next_position = next_position + :n ...
        RETURNING next_position - :n``: checks owner and expiry, row-locks the
        conversation and reserves ``n`` positions; it returns the first. Built
        once, as it runs on every append."""
        t = self.tables.conversations
        return (
            t.update()
            .where(
                t.c.id == sa.bindparam("cid"),
                t.c.owner == sa.bindparam("b_owner"),
                sa.or_(t.c.expires_at.is_(None), t.c.expires_at > sa.bindparam("now")),
            )
            .values(
                next_position=t.c.next_position + sa.bindparam("n"),
                updated_at=sa.bindparam("new_updated_at"),
                expires_at=sa.bindparam("new_expires_at"),
            )
            .returning(t.c.next_position - sa.bindparam("n"))
        )

    def list_items(self, owner, conversation_id, *, after, limit, order):
        """A page by position, read through windows of positions (see
        ``_windowed``): beyond the cursor, or from either end of the
        conversation (its ``next_position`` is read with the ownership
        check)."""
        _refuse_nul(conversation_id=conversation_id, after=after)
        link = self.tables.links
        asc = order == "asc"

        def tx(conn: sa.Connection) -> Page[Item]:
            top = self._next_position(conn, owner, conversation_id)
            start = -1 if asc else top
            if after is not None:
                start = conn.execute(
                    sa.select(link.c.position).where(link.c.conversation_id == conversation_id, link.c.item_id == after)
                ).scalar()
                if start is None:
                    raise InvalidRequest.unknown_cursor(after)
            query = links.linked_items(self.tables).where(link.c.conversation_id == conversation_id)
            query = query.order_by(link.c.position.asc() if asc else link.c.position.desc()).limit(limit + 1)

            def fetch(window: int) -> Sequence[sa.Row[Any]]:
                if asc:
                    bounds = (link.c.position > start, link.c.position <= start + window)
                else:
                    bounds = (link.c.position < start, link.c.position >= start - window)
                return conn.execute(query.where(*bounds)).all()

            def exhausted(window: int, found: Sequence[sa.Row[Any]]) -> bool:
                return start + window >= top - 1 if asc else start - window <= 0

            found = _windowed(fetch, limit + 1, exhausted)
            return Page([links.item(r) for r in found[:limit]], has_more=len(found) > limit)

        return self._run(tx, write=False)

    def get_item(self, owner, conversation_id, item_id):
        _refuse_nul(conversation_id=conversation_id, item_id=item_id)
        link = self.tables.links

        def tx(conn: sa.Connection) -> Item:
            self._conversation_row(conn, owner, conversation_id)
            row = conn.execute(
                links.linked_items(self.tables).where(
                    link.c.conversation_id == conversation_id, link.c.item_id == item_id
                )
            ).first()
            if row is None:
                raise NotFound.item(item_id)
            return links.item(row)

        return self._run(tx, write=False)

    def delete_item(self, owner, conversation_id, item_id):
        _refuse_nul(conversation_id=conversation_id, item_id=item_id)
        link = self.tables.links

        def tx(conn: sa.Connection) -> None:
            self._conversation_row(conn, owner, conversation_id)
            done = conn.execute(
                link.delete().where(link.c.conversation_id == conversation_id, link.c.item_id == item_id)
            )
            if done.rowcount == 0:
                raise NotFound.item(item_id)
            links.drop_orphans(conn, self.tables, owner, [item_id])

        self._run(tx)

    def recent_items(self, owner, conversation_id, limit):
        """One query in the common case: the newest ``limit`` items of a live
        conversation of the owner, as the window of positions just below its
        ``next_position``, which the same statement reads (a scalar subquery
        that is also the ownership check: for a missing, expired or foreign
        conversation it is NULL and no row matches). Only a short answer costs
        more: a second query to tell an empty or missing conversation apart,
        and wider windows where deleted items left gaps (``_windowed``)."""
        _refuse_nul(conversation_id=conversation_id)
        params = {"cid": conversation_id, "b_owner": owner, "now": now(), "n": limit}
        if self._recent_sql is not None and not self._hooked():
            # The common case as driver SQL on a pooled connection; anything
            # else (a short answer) is read again by the general path below.
            sql, first = self._recent_sql, {**params, "window": limit}
            found = self._run(lambda conn: self._driver_rows(conn, sql, first), write=False, pooled=True)
            if len(found) >= limit or (found and found[0][-1] - limit <= 0):
                return [links.item(r[:-1]) for r in reversed(found)]

        def tx(conn: sa.Connection) -> list[Item]:
            def fetch(window: int) -> Sequence[sa.Row[Any]]:
                return conn.execute(self._recent, {**params, "window": window}).all()

            def exhausted(window: int, found: Sequence[sa.Row[Any]]) -> bool:
                known = found[0].next_position if found else self._next_position(conn, owner, conversation_id)
                return known - window <= 0

            found = _windowed(fetch, limit, exhausted)
            return [links.item(r[:-1]) for r in reversed(found)]

        return self._run(tx, write=False)

    # -- responses -----------------------------------------------------------
    def _upsert_response(self, conn: sa.Connection, response: Response) -> None:
        t = self.tables.responses
        values = rows.response_values(response)
        done = conn.execute(t.update().where(t.c.id == response.id, t.c.owner == response.owner).values(values))
        if not done.rowcount:
            self._insert_response(conn, response, values)

    def _insert_response(self, conn: sa.Connection, response: Response, values: dict[str, Any] | None = None) -> None:
        """INSERT a response; its primary key refuses an ID already stored,
        whoever's, with ``response_id_taken``."""
        values = rows.response_values(response) if values is None else values
        try:
            conn.execute(self.tables.responses.insert().values(id=response.id, **values))
        except sa_exc.IntegrityError:
            raise InvalidRequest.response_id_taken(response.id) from None

    def store_response(self, response):
        self._run(lambda conn: self._upsert_response(conn, response))

    def store_turn(self, response, items, *, updated_at, expires_at):
        """One transaction: the append of ``add_items`` (the reserving
        UPDATE, then one multi-row INSERT of the new items and one of the
        links), then the response's INSERT, which is never an upsert: its ID
        must be free. That is BEGIN, four statements and COMMIT (references
        add the two checking reads); without a conversation, the INSERT
        alone, as a statement of its own. Any refusal or failure rolls back
        all of it, the reservation and the conversation's times included.

        On PostgreSQL a turn of new items (no reference) is one statement
        instead (``_append_statement``), atomic by itself: one round trip in
        all. A refused one is diagnosed in a read of its own, as an append
        is."""
        if response.conversation_id is None:
            self._run(lambda conn: self._insert_response(conn, response), single=True)
            return []
        owner, conversation_id = response.owner, response.conversation_id
        params = self._append_params(owner, conversation_id, items, updated_at, expires_at)
        if self._turn_sql is not None and not any(i.type == "item_reference" for i in items) and not self._hooked():
            try:
                return self._run(
                    lambda conn: self._append_at_once(conn, params, items, response), single=True, pooled=self._pooled
                )
            except sa_exc.IntegrityError:
                refused = True
            except NulRefused:  # before any check ran: the transaction below refuses in the reference's order
                refused = False
            if refused:

                def diagnose(conn: sa.Connection) -> NoReturn:
                    links.check_batch(conn, self.tables, owner, conversation_id, items)
                    t = self.tables.responses
                    if conn.execute(sa.select(t.c.id).where(t.c.id == response.id)).first() is not None:
                        raise InvalidRequest.response_id_taken(response.id)
                    raise self._diagnose(conn, owner, conversation_id, items)

                return self._run(diagnose, write=False)

        def tx(conn: sa.Connection) -> list[Item]:
            added = self._append(conn, params, items)
            self._insert_response(conn, response)
            return added

        return self._run(tx)

    def _append_statement(self, *, with_response: bool) -> str:
        """PostgreSQL's append of new items as one statement: the reservation
        of ``_reserve_statement`` in a CTE, feeding the INSERT of the items
        (the batch passed as arrays, unnested in order) and that of their
        links at the reserved positions; ``with_response``, a turn's, also
        the response's INSERT. Every part inserts only if the reservation
        found the live conversation; the statement returns the first reserved
        position, or no row. Foreign keys are checked at the end of the
        statement, when every row is in. As driver SQL it skips SQLAlchemy's
        per-call statement handling, a sizeable share of a loopback round
        trip (see ``_driver_rows``)."""
        quote = self.engine.dialect.identifier_preparer
        table = quote.format_table
        c, i, link, r = self.tables.conversations, self.tables.items, self.tables.links, self.tables.responses
        answered = ""
        if with_response:
            columns = ["id", *rows.response_values(Response("", "", 0.0))]
            values = ", ".join(f"%(r_{name})s{_cast(r.c[name])}" for name in columns)
            answered = (
                f", answered AS (INSERT INTO {table(r)} ({', '.join(quote.quote(name) for name in columns)}) "
                f"SELECT {values} FROM reserved)"
            )
        return (
            f"WITH reserved AS (UPDATE {table(c)} SET next_position = next_position + %(n)s, "
            "updated_at = %(new_updated_at)s, expires_at = %(new_expires_at)s "
            "WHERE id = %(cid)s AND owner = %(b_owner)s AND (expires_at IS NULL OR expires_at > %(now)s) "
            "RETURNING next_position - %(n)s AS base), "
            "batch AS (SELECT * FROM unnest(%(ids)s::text[], %(types)s::text[], %(roles)s::text[], "
            "%(statuses)s::text[], %(payloads)s::text[], %(created)s::float8[]) "
            "WITH ORDINALITY AS b(id, type, role, status, payload, created_at, ord)), "
            f"stored AS (INSERT INTO {table(i)} (owner, id, type, role, status, payload, created_at) "
            "SELECT %(b_owner)s, b.id, b.type, b.role, b.status, b.payload::jsonb, b.created_at "
            "FROM reserved, batch b), "
            f"linked AS (INSERT INTO {table(link)} (conversation_id, position, owner, item_id) "
            f"SELECT %(cid)s, reserved.base + b.ord - 1, %(b_owner)s, b.id FROM reserved, batch b){answered} "
            "SELECT base FROM reserved"
        )

    def _append_at_once(
        self, conn: Any, params: dict[str, Any], items: list[Item], response: Response | None = None
    ) -> list[Item]:
        """Run ``_append_statement`` (the turn's, with ``response``) and
        return the items at their positions."""
        batch = {
            "ids": [item.id for item in items],
            "types": [item.type for item in items],
            "roles": [item.role for item in items],
            "statuses": [item.status for item in items],
            "payloads": [jsonfast.dumps(item.payload) for item in items],
            "created": [item.created_at for item in items],
        }
        sql = self._append_sql
        if response is not None:
            table, sql = self.tables.responses, self._turn_sql
            batch.update(
                (f"r_{name}", jsonfast.dumps(value) if value is not None and _cast(table.c[name]) else value)
                for name, value in {"id": response.id, **rows.response_values(response)}.items()
            )
        assert sql is not None
        found = self._driver_rows(conn, sql, {**params, **batch})
        if not found:
            raise NotFound.conversation(params["cid"])
        base = found[0][0]
        return [replace(item, conversation_id=params["cid"], position=base + n) for n, item in enumerate(items)]

    def get_response(self, owner, response_id):
        _refuse_nul(response_id=response_id)
        t = self.tables.responses

        def tx(conn: sa.Connection) -> Response:
            row = conn.execute(sa.select(t).where(t.c.id == response_id, t.c.owner == owner, live(t, now()))).first()
            if row is None:
                raise NotFound.response(response_id)
            return rows.response(row)

        return self._run(tx, write=False)

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        """Newest first, as a keyset range of the (owner, created_at, id)
        index; the filters narrow that range's rows."""
        _refuse_nul(after=after)
        if _has_nul(conversation_id) or _has_nul(model):
            return Page([], has_more=False)
        t = self.tables.responses

        def tx(conn: sa.Connection) -> Page[Response]:
            conditions = [t.c.owner == owner, live(t, now())]
            if model is not None:
                conditions.append(t.c.model == model)
            if conversation_id is not None:
                conditions.append(t.c.conversation_id == conversation_id)
            if since is not None:
                conditions.append(t.c.created_at >= since)
            query = sa.select(t).where(*conditions)
            return _keyset_page(
                conn,
                t,
                query,
                conditions,
                by=t.c.created_at,
                after=after,
                limit=limit,
                order="desc",
                convert=rows.response,
            )

        return self._run(tx, write=False)

    def delete_response(self, owner, response_id):
        _refuse_nul(response_id=response_id)
        t, f = self.tables.responses, self.tables.feedback

        def tx(conn: sa.Connection) -> None:
            done = conn.execute(t.delete().where(t.c.id == response_id, t.c.owner == owner, live(t, now())))
            if done.rowcount == 0:
                raise NotFound.response(response_id)
            conn.execute(f.delete().where(f.c.response_id == response_id))

        self._run(tx)

    # -- feedback ------------------------------------------------------------
    def submit_feedback(self, feedback):
        f = self.tables.feedback
        values = rows.feedback_values(feedback)

        def tx(conn: sa.Connection) -> Feedback:
            mine = sa.and_(f.c.response_id == feedback.response_id, f.c.owner == feedback.owner)
            stored = copy.deepcopy(feedback)
            for attempt in (1, 2):
                existing = conn.execute(sa.select(f.c.id).where(mine)).scalar()
                if existing is not None:
                    conn.execute(f.update().where(f.c.id == existing).values(values))
                    stored.id = existing
                    return stored
                try:
                    conn.execute(f.insert().values(rows.feedback_row(feedback)))
                    return stored
                except sa_exc.IntegrityError:
                    if attempt == 2:
                        raise
                    conn.rollback()  # a concurrent first submission won: replace it instead
            raise AssertionError("unreachable")

        return self._run(tx)

    def get_feedback(self, owner, response_id):
        _refuse_nul(feedback_of=response_id)
        f = self.tables.feedback

        def tx(conn: sa.Connection) -> Feedback:
            row = conn.execute(
                sa.select(*rows.feedback_columns(self.tables)).where(
                    f.c.response_id == response_id, f.c.owner == owner, live(f, now())
                )
            ).first()
            if row is None:
                raise NotFound.feedback(response_id)
            return rows.feedback(row)

        return self._run(tx, write=False)

    def delete_feedback(self, owner, response_id):
        _refuse_nul(feedback_of=response_id)
        f = self.tables.feedback

        def tx(conn: sa.Connection) -> str:
            mine = sa.and_(f.c.response_id == response_id, f.c.owner == owner, live(f, now()))
            feedback_id = conn.execute(sa.select(f.c.id).where(mine)).scalar()
            if feedback_id is None or conn.execute(f.delete().where(f.c.id == feedback_id, mine)).rowcount == 0:
                raise NotFound.feedback(response_id)
            return feedback_id

        return self._run(tx)

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        _refuse_nul(after=after)
        if _has_nul(model):
            return Page([], has_more=False)
        f = self.tables.feedback

        def tx(conn: sa.Connection) -> Page[Feedback]:
            conditions = [f.c.owner == owner, live(f, now())]
            if rating is not None:
                conditions.append(f.c.rating == rating)
            if model is not None:
                conditions.append(f.c.model == model)
            if since is not None:
                conditions.append(f.c.created_at >= since)
            query = sa.select(*rows.feedback_columns(self.tables)).where(*conditions)
            return _keyset_page(
                conn,
                f,
                query,
                conditions,
                by=f.c.created_at,
                after=after,
                limit=limit,
                order="desc",
                convert=rows.feedback,
            )

        return self._run(tx, write=False)

    # -- operations ----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self._connect(self._transactions.read) as conn:
            conn.execute(sa.text("SELECT 1" + (" FROM DUAL" if self.engine.dialect.name == "oracle" else "")))
            revision = migrate.current_revision(self, conn)
        self._schema_ok = False
        self._check_schema()
        return {"dialect": self.engine.dialect.name, "schema_revision": revision}

    def settings_in_use(self) -> dict[str, Any]:
        """The SQLite file in use, when SMG_HISTORY_SQLITE_PATH left it to
        the default in the instance folder."""
        if self.engine.dialect.name != "sqlite" or self.settings.sqlite_path or self.settings.sql_use_app_db:
            return {}
        return {"SMG_HISTORY_SQLITE_PATH": self.engine.url.database}

    def outage_hint(self, exc: BaseException) -> str | None:
        """PostgreSQL's TLS set-up failures (``engine.postgres_tls_hint``)."""
        if self.engine.dialect.name != "postgresql":
            return None
        setting = "SQLALCHEMY_DATABASE_URI" if self.settings.sql_use_app_db else "SMG_HISTORY_POSTGRES_DB_URL"
        return postgres_tls_hint(exc, setting)

    def pool_stats(self) -> dict[str, int]:
        pool = self.engine.pool
        if not isinstance(pool, sa.QueuePool):
            return {}
        return {"in_use": pool.checkedout(), "idle": pool.checkedin()}

    def close(self) -> None:
        self._unhook()
        if self._owned:
            self.engine.dispose()
        if self._closer is not None:
            self._closer()


def _cast(column: sa.Column[Any]) -> str:
    """The cast a JSON column's parameter takes in driver SQL (PostgreSQL
    reads it as text, the JSON of ``jsonfast.dumps``)."""
    return "::jsonb" if isinstance(column.type, JsonDocument) else ""


class NulRefused(InvalidRequest):
    """PostgreSQL refused a NUL character in text. The one-statement append
    meets it when it binds the batch, before any of its checks has run, so
    it hands such a batch to the general transaction, which refuses it only
    after the checks the reference backend makes (a missing conversation, an
    existing ID) have passed."""


def _refuses_nul(exc: Exception) -> bool:
    """The driver refuses NUL in a text parameter (psycopg2 with a
    ValueError, psycopg with a DataError saying so) and JSONB refuses
    ``\\u0000`` (SQLSTATE 22P05, untranslatable character)."""
    if isinstance(exc, sa_exc.DataError):
        code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
        return code == "22P05" or "NUL" in str(exc.orig)
    return "NUL" in str(exc)


def _has_nul(value: str | None) -> bool:
    return value is not None and "\x00" in value


def _refuse_nul(
    *,
    conversation_id: str | None = None,
    item_id: str | None = None,
    response_id: str | None = None,
    feedback_of: str | None = None,
    after: str | None = None,
) -> None:
    """Answer an ID holding NUL as the missing record it is, without a round
    trip: no stored ID holds one (PostgreSQL text cannot), and the driver
    would refuse the parameter (a 500)."""
    if _has_nul(conversation_id):
        raise NotFound.conversation(conversation_id)
    if _has_nul(item_id):
        raise NotFound.item(item_id)
    if _has_nul(response_id):
        raise NotFound.response(response_id)
    if _has_nul(feedback_of):
        raise NotFound.feedback(feedback_of)
    if _has_nul(after):
        raise InvalidRequest.unknown_cursor(after)


def _keyset_page(
    conn: sa.Connection,
    table: sa.Table,
    query: sa.Select[Any],
    conditions: list[sa.ColumnElement[bool]],
    *,
    by: sa.Column[Any],
    after: str | None,
    limit: int,
    order: str,
    convert: Callable[[Any], T],
) -> Page[T]:
    """One page of ``query`` by (``by``, id) in ``order``: an index range
    continuing after the record ``after``, which must itself meet
    ``conditions`` (the listing's owner and filters) or the cursor is unknown.
    The cursor's key is read now, so a page continues after where that record
    is at the time of the call (``updated_at`` moves). Conversations (by
    ``created_at`` or ``updated_at``), responses and feedback are all listed
    this way."""
    if after is not None:
        cursor = conn.execute(sa.select(by).where(table.c.id == after, *conditions)).first()
        if cursor is None:
            raise InvalidRequest.unknown_cursor(after)
        query = query.where(beyond(by, table.c.id, cursor[0], after, order))
    keys = (by, table.c.id)
    query = query.order_by(*(c.asc() if order == "asc" else c.desc() for c in keys)).limit(limit + 1)
    found = conn.execute(query).all()
    return Page([convert(r) for r in found[:limit]], has_more=len(found) > limit)


#: How much wider each further window of ``_windowed`` is than the last.
WINDOW_GROWTH = 16


def _windowed(
    fetch: Callable[[int], Sequence[sa.Row[Any]]],
    want: int,
    exhausted: Callable[[int, Sequence[sa.Row[Any]]], bool],
) -> Sequence[sa.Row[Any]]:
    """Rows of a conversation read through a window of ``want`` positions,
    then ``WINDOW_GROWTH`` times wider each time the window comes back short
    of ``want`` rows while positions remain beyond it (``exhausted`` says
    when none do). Why: positions are dense but for deleted items, so the
    first window almost always holds the page, and every statement is bounded
    by its window whatever plan the database picks; with stale or missing
    statistics PostgreSQL otherwise reads every link of the conversation (a
    bitmap scan and a sort: 30 ms at 10,000 items instead of 0.4 ms)."""
    window = want
    while True:
        found = fetch(window)
        if len(found) >= want or exhausted(window, found):
            return found
        window *= WINDOW_GROWTH
