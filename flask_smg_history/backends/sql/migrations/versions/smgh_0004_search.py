"""Full-text search: a GIN-indexed tsvector on PostgreSQL, FTS5 on SQLite.

Revision ID: smgh_0004
Revises: smgh_0003
Create Date: 2026-12-09

What each index holds and how it is kept is in ``backends/sql/fulltext.py``.

- PostgreSQL: ``<prefix>items.search_vector``, a stored generated column in
  the text search configuration ``SMG_HISTORY_POSTGRES_SEARCH_CONFIG`` (read
  when this runs: changing it later means running this revision again, see
  docs/backends/sql.md), and its GIN index ``<prefix>items_search``. Adding the
  column rewrites the items table, computing the vector of every stored item;
  both statements hold the table's lock until they finish.
- SQLite: the FTS5 table ``<prefix>search``, its rowid map
  ``<prefix>search_rows`` and their triggers, filled from the stored items
  and conversations. An SQLite built without FTS5 gets nothing (a warning;
  search then answers 501 saying why) and the rest of the schema upgrades.
- Oracle and other dialects: nothing (search answers 501).

The downgrade drops what the upgrade made, on every dialect.
"""

import logging

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import TSVECTOR

from flask_smg_history.backends.sql import fulltext

revision = "smgh_0004"
down_revision = "smgh_0003"
branch_labels = None
depends_on = None

log = logging.getLogger("flask_smg_history")


def _names() -> tuple[str, str | None]:
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def _fts5_missing() -> bool:
    """Whether this SQLite lacks FTS5 (never when only printing SQL: the
    script is for whichever SQLite runs it)."""
    if context.is_offline_mode():
        return False
    return not op.get_bind().exec_driver_sql("SELECT sqlite_compileoption_used('ENABLE_FTS5')").scalar()


def upgrade() -> None:
    p, schema = _names()
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        config = context.config.attributes["smg_search_config"]
        op.add_column(
            f"{p}items",
            sa.Column(fulltext.VECTOR, TSVECTOR(), sa.Computed(fulltext.pg_vector(config), persisted=True)),
            schema=schema,
        )
        op.create_index(
            f"{p}{fulltext.VECTOR_INDEX}",
            f"{p}items",
            [fulltext.VECTOR],
            postgresql_using="gin",
            postgresql_with=fulltext.GIN_OPTIONS,
            schema=schema,
        )
    elif dialect == "sqlite":
        if _fts5_missing():
            log.warning(
                "flask-smg-history: this SQLite has no FTS5 (sqlite_compileoption_used('ENABLE_FTS5') is 0); "
                "search is not set up and answers 501 until the tables are migrated by an SQLite with FTS5."
            )
            return
        for statement in fulltext.sqlite_ddl(p) + fulltext.sqlite_backfill(p):
            op.execute(statement)


def downgrade() -> None:
    p, schema = _names()
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.drop_index(f"{p}{fulltext.VECTOR_INDEX}", table_name=f"{p}items", schema=schema)
        op.drop_column(f"{p}items", fulltext.VECTOR, schema=schema)
    elif dialect == "sqlite":
        for statement in fulltext.sqlite_drop(p):
            op.execute(statement)
