"""The history tables: conversations, items, responses, feedback.

Revision ID: smgh_0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import context, op

from flask_smg_history.backends.sql.tables import JsonDocument

revision = "smgh_0001"
down_revision = None
branch_labels = ("smg_history",)
depends_on = None

SECONDS = sa.Double(asdecimal=False)


def _names() -> tuple[str, str | None]:
    """The table prefix and schema of the app being migrated (read when the
    migration runs: the module is also imported just to list revisions)."""
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def upgrade() -> None:
    p, schema = _names()
    op.create_table(
        f"{p}conversations",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("updated_at", SECONDS, nullable=False),
        sa.Column("metadata", JsonDocument(), nullable=True),
        sa.Column("expires_at", SECONDS, nullable=True),
        sa.Column("next_position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{p}conv_pk"),
        schema=schema,
    )
    op.create_index(f"{p}conv_owner", f"{p}conversations", ["owner", "created_at", "id"], schema=schema)
    op.create_table(
        f"{p}items",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("payload", JsonDocument(), nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "id", name=f"{p}items_pk"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            [f"{schema}.{p}conversations.id" if schema else f"{p}conversations.id"],
            name=f"{p}items_conv_fk",
            ondelete="CASCADE",
        ),
        schema=schema,
    )
    op.create_index(f"{p}items_pos", f"{p}items", ["conversation_id", "position"], unique=True, schema=schema)
    op.create_table(
        f"{p}responses",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=True),
        sa.Column("previous_response_id", sa.String(128), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("input", JsonDocument(), nullable=True),
        sa.Column("output", JsonDocument(), nullable=True),
        sa.Column("usage", JsonDocument(), nullable=True),
        sa.Column("metadata", JsonDocument(), nullable=True),
        sa.Column("extra", JsonDocument(), nullable=True),
        sa.Column("safety_identifier", sa.String(255), nullable=True),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("expires_at", SECONDS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}resp_pk"),
        schema=schema,
    )
    op.create_index(f"{p}resp_prev", f"{p}responses", ["previous_response_id"], schema=schema)
    op.create_table(
        f"{p}feedback",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("response_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("rating", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("metadata", JsonDocument(), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("expires_at", SECONDS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}fb_pk"),
        sa.UniqueConstraint("response_id", "owner", name=f"{p}fb_resp_owner"),
        schema=schema,
    )
    op.create_index(f"{p}fb_owner", f"{p}feedback", ["owner", "created_at", "id"], schema=schema)


def downgrade() -> None:
    prefix, schema = _names()
    for table in ("feedback", "responses", "items", "conversations"):
        op.drop_table(f"{prefix}{table}", schema=schema)
