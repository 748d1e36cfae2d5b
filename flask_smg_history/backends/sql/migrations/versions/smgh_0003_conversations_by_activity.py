"""An owner's conversations by activity: index (owner, updated_at, id).

Revision ID: smgh_0003
Revises: smgh_0002
Create Date: 2026-12-02

``GET /conversations?order_by=updated_at`` pages an owner's conversations by
their last write, newest first by default, as a keyset range of this index,
like the (owner, created_at, id) index ``<prefix>conv_owner`` serves the
listing by creation. Every append and update moves ``updated_at``, so the
index is written on each of them (the cost is in docs/benchmarks.md).
"""

from alembic import context, op

revision = "smgh_0003"
down_revision = "smgh_0002"
branch_labels = None
depends_on = None

#: ``<prefix>conv_updated``: 12 characters after a prefix of at most 15.
NAME = "conv_updated"
COLUMNS = ["owner", "updated_at", "id"]


def _names() -> tuple[str, str | None]:
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def upgrade() -> None:
    p, schema = _names()
    op.create_index(f"{p}{NAME}", f"{p}conversations", COLUMNS, schema=schema)


def downgrade() -> None:
    p, schema = _names()
    op.drop_index(f"{p}{NAME}", table_name=f"{p}conversations", schema=schema)
