"""The hybrid backend's cache epoch: one row, ``<prefix>cache_epoch``.

Revision ID: smgh_0005
Revises: smgh_0004
Create Date: 2026-11-30

The ``postgres+redis`` and ``sqlite+redis`` backends keep a Redis cache in
front of these tables. When a write cannot invalidate its cache entry (Redis
unreachable or too slow), it raises ``epoch`` here, in the database every app
process shares, so that no process trusts the cache again before it has moved
Redis to a fresh, empty namespace and recorded that in ``synced``;
``untrusted_at`` is when ``epoch`` last moved ahead of ``synced``. The
protocol is in ``backends/hybrid/trust.py``. Plain SQL backends never read the
row; the table is in every schema so that one chain serves every backend.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "smgh_0005"
down_revision = "smgh_0004"
branch_labels = None
depends_on = None


def _names() -> tuple[str, str | None]:
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def upgrade() -> None:
    p, schema = _names()
    table = op.create_table(
        f"{p}cache_epoch",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("synced", sa.BigInteger, nullable=False),
        sa.Column("untrusted_at", sa.Double(asdecimal=False), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}cepoch_pk"),
        schema=schema,
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0, "synced": 0, "untrusted_at": None}])


def downgrade() -> None:
    p, schema = _names()
    op.drop_table(f"{p}cache_epoch", schema=schema)
