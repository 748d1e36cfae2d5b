"""Search: an index of conversation metadata on PostgreSQL.

Revision ID: smgh_0006
Revises: smgh_0005
Create Date: 2026-12-06

A search whose words are rare or absent reads its page from the full-text
index (``backends/sql/search.py``). Items have theirs since smgh_0004; the
conversations' metadata was matched by computing the vector of every one of
the caller's conversations, a cost that grows with them (about 15 ms for
10,000 conversations). This gives it an index, on PostgreSQL:

- the table ``<prefix>conv_search``: per conversation, the owner lexeme and
  the vector of its metadata in ``SMG_HISTORY_POSTGRES_SEARCH_CONFIG`` (read
  when this runs, as in smgh_0004), with a GIN index
  ``<prefix>conv_search_gin``, and a foreign key that deletes the row with
  its conversation;
- the trigger ``<prefix>conv_search_put`` (and its function), which writes
  the row when a conversation is inserted or its metadata set. Appends,
  which update the conversation row without its metadata, do not fire it;
- the rows of the conversations already stored.

SQLite's FTS5 table holds metadata since smgh_0004; Oracle has no search.
Nothing on either. The downgrade drops what the upgrade made.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import TSVECTOR

from flask_smg_history.backends.sql import fulltext

revision = "smgh_0006"
down_revision = "smgh_0005"
branch_labels = None
depends_on = None


def _names() -> tuple[str, str | None]:
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def upgrade() -> None:
    p, schema = _names()
    if op.get_context().dialect.name != "postgresql":
        return
    op.create_table(
        f"{p}{fulltext.META}",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column(fulltext.VECTOR, TSVECTOR(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name=f"{p}csearch_pk"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            [f"{schema}.{p}conversations.id" if schema else f"{p}conversations.id"],
            name=f"{p}csearch_conv_fk",
            ondelete="CASCADE",
        ),
        schema=schema,
    )
    for statement in fulltext.pg_metadata_ddl(p, schema, context.config.attributes["smg_search_config"]):
        op.execute(statement)
    # after the backfill: one GIN build instead of an insertion per conversation
    op.create_index(
        f"{p}{fulltext.META_INDEX}",
        f"{p}{fulltext.META}",
        [fulltext.VECTOR],
        postgresql_using="gin",
        postgresql_with=fulltext.GIN_OPTIONS,
        schema=schema,
    )


def downgrade() -> None:
    p, schema = _names()
    if op.get_context().dialect.name != "postgresql":
        return
    for statement in fulltext.pg_metadata_drop(p, schema):
        op.execute(statement)
    op.drop_table(f"{p}{fulltext.META}", schema=schema)
