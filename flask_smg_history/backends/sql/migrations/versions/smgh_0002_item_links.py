"""Items stored once per owner and linked into conversations; responses by owner.

Revision ID: smgh_0002
Revises: smgh_0001
Create Date: 2026-11-25

``item_reference`` links an owner's existing item into another conversation
without copying it, so an item can no longer live inside one conversation's
rows. ``<prefix>items`` becomes (owner, id) -> the item, and the new
``<prefix>conv_items`` holds (conversation_id, position, owner, item_id).

The rows move through a constraint-free holding table (``<prefix>items_v1``):
the old and new tables share their name and their index names, and renaming
indexes is not portable, so the old table is copied aside, dropped, and the new
pair filled from the copy. An item ID that one owner had in several
conversations (possible before, when IDs were unique per conversation only)
becomes one item, the oldest copy, linked into each of them.

Also adds ``<prefix>resp_owner`` (owner, created_at, id) for listing an
owner's responses newest first, and (created_at, id) indexes on conversations,
responses and feedback so export walks every owner's records in keyset batches.
"""

import sqlalchemy as sa
from alembic import context, op

from flask_smg_history.backends.sql.tables import JsonDocument

revision = "smgh_0002"
down_revision = "smgh_0001"
branch_labels = None
depends_on = None

SECONDS = sa.Double(asdecimal=False)

#: (name, table, columns) of the indexes this revision adds beside the links.
NEW_INDEXES = (
    ("resp_owner", "responses", ["owner", "created_at", "id"]),  # an owner's responses, newest first
    ("conv_created", "conversations", ["created_at", "id"]),  # export and copy, in keyset batches
    ("resp_created", "responses", ["created_at", "id"]),
    ("fb_created", "feedback", ["created_at", "id"]),
)


def _names() -> tuple[str, str | None]:
    attributes = context.config.attributes
    return attributes["smg_prefix"], attributes["smg_schema"]


def _item_columns() -> list[sa.Column]:
    return [
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("payload", JsonDocument(), nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
    ]


def _old_items_columns() -> list[sa.Column]:
    return [
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        *_item_columns(),
    ]


def _create_old_items(p: str, schema: str | None, ref: str) -> None:
    op.create_table(
        f"{p}items",
        *_old_items_columns(),
        sa.PrimaryKeyConstraint("conversation_id", "id", name=f"{p}items_pk"),
        sa.ForeignKeyConstraint(["conversation_id"], [ref], name=f"{p}items_conv_fk", ondelete="CASCADE"),
        schema=schema,
    )
    op.create_index(f"{p}items_pos", f"{p}items", ["conversation_id", "position"], unique=True, schema=schema)


def _create_new_items(p: str, schema: str | None, ref: str) -> None:
    op.create_table(
        f"{p}items",
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        *_item_columns(),
        sa.PrimaryKeyConstraint("owner", "id", name=f"{p}items_pk"),
        schema=schema,
    )
    items = f"{schema}.{p}items" if schema else f"{p}items"
    op.create_table(
        f"{p}conv_items",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "item_id", name=f"{p}citems_pk"),
        sa.ForeignKeyConstraint(["conversation_id"], [ref], name=f"{p}citems_conv_fk", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner", "item_id"], [f"{items}.owner", f"{items}.id"], name=f"{p}citems_item_fk"),
        schema=schema,
    )
    op.create_index(f"{p}citems_pos", f"{p}conv_items", ["conversation_id", "position"], unique=True, schema=schema)
    op.create_index(f"{p}citems_item", f"{p}conv_items", ["owner", "item_id"], schema=schema)


def _hold_old_items(p: str, schema: str | None) -> sa.Table:
    """Copy the old items into the holding table and drop the original."""
    old = sa.Table(f"{p}items", sa.MetaData(schema=schema), *_old_items_columns())
    held = sa.Table(f"{p}items_v1", sa.MetaData(schema=schema), *_old_items_columns())
    op.create_table(f"{p}items_v1", *_old_items_columns(), schema=schema)
    names = [c.name for c in old.columns]
    op.execute(held.insert().from_select(names, sa.select(*old.columns)))
    op.drop_table(f"{p}items", schema=schema)  # with its indexes
    return held


def upgrade() -> None:
    p, schema = _names()
    ref = f"{schema}.{p}conversations.id" if schema else f"{p}conversations.id"
    held = _hold_old_items(p, schema)
    _create_new_items(p, schema, ref)
    md = sa.MetaData(schema=schema)
    conv = sa.Table(f"{p}conversations", md, sa.Column("id", sa.String(128)), sa.Column("owner", sa.String(255)))
    items = sa.Table(
        f"{p}items", md, sa.Column("owner", sa.String(255)), sa.Column("id", sa.String(128)), *_item_columns()
    )
    links = sa.Table(
        f"{p}conv_items",
        md,
        *(sa.Column(n) for n in ("conversation_id", "position", "owner", "item_id")),
    )
    copies = (
        sa.select(
            conv.c.owner,
            held.c.id,
            held.c.type,
            held.c.role,
            held.c.status,
            held.c.payload,
            held.c.created_at,
            sa.func.row_number()
            .over(partition_by=(conv.c.owner, held.c.id), order_by=(held.c.created_at, held.c.conversation_id))
            .label("copy"),
        )
        .join_from(held, conv, conv.c.id == held.c.conversation_id)
        .subquery()
    )
    item_columns = ["owner", "id", "type", "role", "status", "payload", "created_at"]
    op.execute(
        items.insert().from_select(
            item_columns, sa.select(*(copies.c[n] for n in item_columns)).where(copies.c.copy == 1)
        )
    )
    op.execute(
        links.insert().from_select(
            ["conversation_id", "position", "owner", "item_id"],
            sa.select(held.c.conversation_id, held.c.position, conv.c.owner, held.c.id).join_from(
                held, conv, conv.c.id == held.c.conversation_id
            ),
        )
    )
    op.drop_table(f"{p}items_v1", schema=schema)
    for name, table, columns in NEW_INDEXES:
        op.create_index(f"{p}{name}", f"{p}{table}", columns, schema=schema)


def downgrade() -> None:
    """Back to one row per (conversation, item): each link becomes a copy."""
    p, schema = _names()
    ref = f"{schema}.{p}conversations.id" if schema else f"{p}conversations.id"
    for name, table, _ in NEW_INDEXES:
        op.drop_index(f"{p}{name}", table_name=f"{p}{table}", schema=schema)
    md = sa.MetaData(schema=schema)
    items = sa.Table(
        f"{p}items", md, sa.Column("owner", sa.String(255)), sa.Column("id", sa.String(128)), *_item_columns()
    )
    links = sa.Table(f"{p}conv_items", md, *(sa.Column(n) for n in ("conversation_id", "position", "owner", "item_id")))
    held = sa.Table(f"{p}items_v1", sa.MetaData(schema=schema), *_old_items_columns())
    op.create_table(f"{p}items_v1", *_old_items_columns(), schema=schema)
    op.execute(
        held.insert().from_select(
            [c.name for c in held.columns],
            sa.select(
                links.c.conversation_id,
                links.c.item_id,
                links.c.position,
                items.c.type,
                items.c.role,
                items.c.status,
                items.c.payload,
                items.c.created_at,
            ).join_from(links, items, sa.and_(items.c.owner == links.c.owner, items.c.id == links.c.item_id)),
        )
    )
    op.drop_table(f"{p}conv_items", schema=schema)
    op.drop_table(f"{p}items", schema=schema)
    _create_old_items(p, schema, ref)
    old = sa.Table(f"{p}items", sa.MetaData(schema=schema), *_old_items_columns())
    op.execute(old.insert().from_select([c.name for c in old.columns], sa.select(*held.columns)))
    op.drop_table(f"{p}items_v1", schema=schema)
