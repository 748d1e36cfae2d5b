"""The SQL backend's usage statistics (``usage_stats``): four aggregate
queries in one read transaction.

Every figure is a ``GROUP BY`` in the database, so what comes back is one row
per group (item type and role, model and day, model and rating) however many
records are counted. For one owner each query is a range of an index that
leads with the owner (conversations, responses and feedback by (owner,
created_at); item links by (owner, item_id)); for the whole store (the CLI)
it reads every live row, once.

Two expressions are spelled per dialect, as constructs compiled for each
(``tests/sql_backend/test_stats_sql.py`` compiles the statements for Oracle):

- ``UtcDay(created_at)`` is ``floor(created_at / 86400)``, the UTC day as
  days since 1970: ``FLOOR`` on PostgreSQL and Oracle, ``CAST(... AS
  INTEGER)`` on SQLite (which truncates: the same for the positive times
  stored, and SQLite has ``FLOOR`` only when built with its math functions).
  The divisor is written into the SQL, not bound, so the GROUP BY expression
  is the select list's text exactly (Oracle compares the two as text).
- ``JsonNumber(usage, field)`` is one field of the stored usage JSON as a
  number, NULL when it is missing or not a number: ``jsonb_typeof`` on
  PostgreSQL's JSONB, ``json_type``/``json_extract`` on SQLite,
  ``JSON_VALUE(... RETURNING NUMBER NULL ON ERROR)`` on Oracle's JSON text.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ...records import now
from ..usage import SECONDS_PER_DAY, TOKEN_FIELDS, UsageTally
from .tables import Tables, live

_FIELD = re.compile(r"[a-z_]+")


class UtcDay(FunctionElement):
    """``floor(seconds / 86400)``: the UTC day number of a Unix time."""

    inherit_cache = True


class JsonNumber(FunctionElement):
    """A top-level field of a JSON column as a number, or NULL. The field
    name is written into the SQL (Oracle's JSON path must be a literal), so
    only ``[a-z_]+`` names, which are ours, are accepted."""

    #: The field is an attribute, not a clause: no statement cache, which
    #: costs nothing for the few statistics queries.
    inherit_cache = False

    def __init__(self, column: sa.ColumnElement[Any], field: str) -> None:
        if not _FIELD.fullmatch(field):
            raise ValueError(f"not a JSON field name this construct accepts: {field!r}")
        self.field = field
        super().__init__(column)


def _only(element: FunctionElement, compiler: Any, **kw: Any) -> str:
    (column,) = element.clauses
    return compiler.process(column, **kw)


@compiles(UtcDay)
def _utc_day_sqlite(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"CAST({_only(element, compiler, **kw)} / {SECONDS_PER_DAY} AS INTEGER)"


@compiles(UtcDay, "postgresql")
def _utc_day_postgres(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({_only(element, compiler, **kw)} / {SECONDS_PER_DAY}) AS BIGINT)"


@compiles(UtcDay, "oracle")
def _utc_day_oracle(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"FLOOR({_only(element, compiler, **kw)} / {SECONDS_PER_DAY})"


@compiles(JsonNumber)
def _json_number_sqlite(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    column, path = _only(element, compiler, **kw), f"'$.{element.field}'"
    return f"CASE WHEN json_type({column}, {path}) IN ('integer', 'real') THEN json_extract({column}, {path}) END"


@compiles(JsonNumber, "postgresql")
def _json_number_postgres(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    column, field = _only(element, compiler, **kw), f"'{element.field}'"
    return f"CASE WHEN jsonb_typeof({column} -> {field}) = 'number' THEN CAST({column} ->> {field} AS NUMERIC) END"


@compiles(JsonNumber, "oracle")
def _json_number_oracle(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    return f"JSON_VALUE({_only(element, compiler, **kw)}, '$.{element.field}' RETURNING NUMBER NULL ON ERROR)"


def statements(tables: Tables, owner: str | None, since: float | None, at: float) -> list[sa.Select[Any]]:
    """The four queries: conversations (count, first and last creation),
    item links by (type, role), responses by (model, day) with token sums,
    feedback by (model, rating). Live records of ``owner`` (or everyone's)
    created at or after ``since``."""
    c, link, i, r, f = tables.conversations, tables.links, tables.items, tables.responses, tables.feedback

    def scope(table: sa.Table) -> list[sa.ColumnElement[bool]]:
        conditions = [live(table, at)]
        if owner is not None:
            conditions.append(table.c.owner == owner)
        if since is not None:
            conditions.append(table.c.created_at >= since)
        return conditions

    count = sa.func.count()
    items = [live(c, at)]
    if owner is not None:
        items.append(link.c.owner == owner)
    if since is not None:
        items.append(i.c.created_at >= since)
    day = UtcDay(r.c.created_at)
    tokens = [sa.func.sum(JsonNumber(r.c.usage, name)) for name in TOKEN_FIELDS]
    return [
        sa.select(count, sa.func.min(c.c.created_at), sa.func.max(c.c.created_at)).where(*scope(c)),
        sa.select(i.c.type, i.c.role, count)
        .select_from(link)
        .join(c, c.c.id == link.c.conversation_id)
        .join(i, sa.and_(i.c.owner == link.c.owner, i.c.id == link.c.item_id))
        .where(*items)
        .group_by(i.c.type, i.c.role),
        sa.select(r.c.model, day, count, *tokens).where(*scope(r)).group_by(r.c.model, day),
        sa.select(f.c.model, f.c.rating, count).where(*scope(f)).group_by(f.c.model, f.c.rating),
    ]


class SqlStats:
    """Mixed into ``SqlBackend``; uses its ``_run`` and tables through ``self``."""

    def usage_stats(self, owner: str | None, *, since: float | None) -> dict[str, Any]:
        conversations, items, responses, feedback = statements(self.tables, owner, since, now())

        def tx(conn: sa.Connection) -> dict[str, Any]:
            tally = UsageTally()
            tally.add_conversations(*conn.execute(conversations).one())
            for kind, role, n in conn.execute(items):
                tally.add_items(kind, role, n)
            for model, day, n, *tokens in conn.execute(responses):
                tally.add_responses(model, day, n, tuple(tokens))
            for model, rating, n in conn.execute(feedback):
                tally.add_feedback(model, rating, n)
            return tally.result()

        return self._run(tx, write=False)
