"""The history tables, as SQLAlchemy Core tables on a metadata of their own.

Why Core tables built by a function instead of declarative models on the host's
``db.Model``: the table names carry ``SMG_HISTORY_TABLE_PREFIX`` (a per-app
setting) and the schema ``SMG_HISTORY_SQL_SCHEMA``, and the tables must stay out
of the host's metadata so that the host's ``flask db migrate`` never takes
ownership of them (our own Alembic chain in ``migrations/`` does). The same
``MetaData`` works with Flask-SQLAlchemy (``db.metadatas``) if a host wants to
reflect or query them.

Portability rules, checked by ``tests/sql_backend/test_oracle.py``: every type compiles
on SQLite, PostgreSQL and Oracle (JSON is a CLOB holding JSON text on Oracle,
JSONB on PostgreSQL); every identifier, prefix included, fits in 30 characters
(Oracle before 12.2), which ``check_names`` enforces for any prefix; timestamps
are float Unix seconds (UTC by definition), stored as double precision.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from ...errors import ConfigError
from .. import jsonfast
from . import fulltext

ID = sa.String(128)
OWNER = sa.String(255)
SECONDS = sa.Double(asdecimal=False)


class JsonDocument(TypeDecorator):
    """A JSON value: JSONB on PostgreSQL, the JSON type on SQLite, and JSON
    text in a CLOB on Oracle (the native JSON type needs Oracle 21c). Python
    ``None`` is SQL NULL everywhere."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        if dialect.name == "oracle":
            return dialect.type_descriptor(sa.CLOB())
        return dialect.type_descriptor(sa.JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "oracle" and value is not None:
            return json.dumps(value, separators=(",", ":"))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "oracle" and isinstance(value, str):
            return jsonfast.loads(value)
        return value


#: Oracle's identifier limit before 12.2 (later versions allow 128): every
#: name we create must fit, so one schema works on all three dialects.
MAX_IDENTIFIER = 30
#: The longest name built from the prefix is ``<prefix>alembic_version``.
MAX_PREFIX = MAX_IDENTIFIER - len("alembic_version")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


def check_names(prefix: str, schema: str | None) -> None:
    """Reject a table prefix or schema that is not a plain identifier or would
    make a name longer than Oracle allows. The names go into DDL and into the
    PostgreSQL hot path's SQL text, so only ``[A-Za-z0-9_]`` is accepted."""
    if not _IDENTIFIER.fullmatch(prefix) or len(prefix) > MAX_PREFIX:
        raise ConfigError(
            f"SMG_HISTORY_TABLE_PREFIX={prefix!r} is not valid: use letters, digits and _ only, "
            f"at most {MAX_PREFIX} characters (table names must fit Oracle's {MAX_IDENTIFIER}).",
            param="SMG_HISTORY_TABLE_PREFIX",
        )
    if schema is not None and (not _IDENTIFIER.fullmatch(schema) or len(schema) > MAX_IDENTIFIER):
        raise ConfigError(
            f"SMG_HISTORY_SQL_SCHEMA={schema!r} is not valid: use letters, digits and _ only, "
            f"at most {MAX_IDENTIFIER} characters.",
            param="SMG_HISTORY_SQL_SCHEMA",
        )


def live(table: sa.Table, at: float) -> sa.ColumnElement[bool]:
    """Rows of ``table`` not expired at ``at``."""
    return sa.or_(table.c.expires_at.is_(None), table.c.expires_at > at)


def beyond(key: sa.Column[Any], ident: sa.Column[Any], at: float, after: str, order: str) -> sa.ColumnElement[bool]:
    """Rows after the cursor (key, id) in ``order`` (the key is a timestamp:
    created_at or updated_at), spelled without row-value comparison, which
    Oracle lacks."""
    if order == "asc":
        return sa.or_(key > at, sa.and_(key == at, ident > after))
    return sa.or_(key < at, sa.and_(key == at, ident < after))


@dataclass(frozen=True)
class Tables:
    """The history tables of one app (one prefix and schema)."""

    metadata: sa.MetaData
    conversations: sa.Table
    items: sa.Table
    links: sa.Table
    responses: sa.Table
    feedback: sa.Table
    cache_epoch: sa.Table
    #: PostgreSQL's conversation metadata vectors (``fulltext.py``); ``None`` elsewhere.
    conversation_search: sa.Table | None = None


def build_tables(
    prefix: str = "smg_history_", schema: str | None = None, *, search_config: str | None = None
) -> Tables:
    """Define the tables under ``prefix`` in ``schema``. Must describe exactly
    what the migrations in ``flask_smg_history/migrations/versions`` create;
    ``tests/sql_backend/test_migrations.py`` compares the two. With
    ``search_config`` (PostgreSQL's), the items carry the search vector and
    its GIN index, and the conversations' metadata vectors have their table
    (``fulltext.py``); SQLite's search tables are virtual and stay out of
    this metadata."""
    check_names(prefix, schema)
    search = []
    if search_config is not None:
        search = [
            sa.Column(fulltext.VECTOR, TSVECTOR(), sa.Computed(fulltext.pg_vector(search_config), persisted=True)),
            sa.Index(
                f"{prefix}{fulltext.VECTOR_INDEX}",
                fulltext.VECTOR,
                postgresql_using="gin",
                postgresql_with=fulltext.GIN_OPTIONS,
            ),
        ]
    md = sa.MetaData(schema=schema)
    p = prefix
    conversations = sa.Table(
        f"{p}conversations",
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("updated_at", SECONDS, nullable=False),
        sa.Column("metadata", JsonDocument(), nullable=True),
        sa.Column("expires_at", SECONDS, nullable=True),
        # The next free item position: the UPDATE that reserves positions also
        # row-locks the conversation, which is what orders concurrent writers.
        sa.Column("next_position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{p}conv_pk"),
        sa.Index(f"{p}conv_owner", "owner", "created_at", "id"),
        # An owner's conversations by activity (smgh_0003); every append moves it.
        sa.Index(f"{p}conv_updated", "owner", "updated_at", "id"),
        # Export and copy walk every owner's conversations by creation.
        sa.Index(f"{p}conv_created", "created_at", "id"),
    )
    # An item is stored once per owner; conversations hold it through links,
    # so an ``item_reference`` adds a link and copies nothing.
    items = sa.Table(
        f"{p}items",
        md,
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("payload", JsonDocument(), nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.PrimaryKeyConstraint("owner", "id", name=f"{p}items_pk"),
        *search,
    )
    links = sa.Table(
        f"{p}conv_items",
        md,
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "item_id", name=f"{p}citems_pk"),
        sa.ForeignKeyConstraint(
            ["conversation_id"], [conversations.c.id], name=f"{p}citems_conv_fk", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["owner", "item_id"], [items.c.owner, items.c.id], name=f"{p}citems_item_fk"),
        # Pages and recent(): one range scan of this index per call.
        sa.Index(f"{p}citems_pos", "conversation_id", "position", unique=True),
        # "Is this item still linked anywhere?" and erasure by owner.
        sa.Index(f"{p}citems_item", "owner", "item_id"),
    )
    responses = sa.Table(
        f"{p}responses",
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("previous_response_id", ID, nullable=True),
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
        sa.Index(f"{p}resp_prev", "previous_response_id"),
        sa.Index(f"{p}resp_owner", "owner", "created_at", "id"),
        sa.Index(f"{p}resp_created", "created_at", "id"),
    )
    feedback = sa.Table(
        f"{p}feedback",
        md,
        sa.Column("id", ID, nullable=False),
        sa.Column("response_id", ID, nullable=False),
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("rating", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("metadata", JsonDocument(), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("expires_at", SECONDS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}fb_pk"),
        sa.UniqueConstraint("response_id", "owner", name=f"{p}fb_resp_owner"),
        sa.Index(f"{p}fb_owner", "owner", "created_at", "id"),
        sa.Index(f"{p}fb_created", "created_at", "id"),
    )
    # The hybrid backend's record of Redis cache invalidations that failed
    # (smgh_0005, ``backends/hybrid/trust.py``): one row, id 1.
    cache_epoch = sa.Table(
        f"{p}cache_epoch",
        md,
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("synced", sa.BigInteger, nullable=False),
        sa.Column("untrusted_at", SECONDS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}cepoch_pk"),
    )
    conversation_search = None
    if search_config is not None:
        # Written by a trigger on the conversations (smgh_0006, ``fulltext.py``).
        conversation_search = sa.Table(
            f"{p}{fulltext.META}",
            md,
            sa.Column("conversation_id", ID, nullable=False),
            sa.Column(fulltext.VECTOR, TSVECTOR(), nullable=False),
            sa.PrimaryKeyConstraint("conversation_id", name=f"{p}csearch_pk"),
            sa.ForeignKeyConstraint(
                ["conversation_id"], [conversations.c.id], name=f"{p}csearch_conv_fk", ondelete="CASCADE"
            ),
            sa.Index(
                f"{p}{fulltext.META_INDEX}",
                fulltext.VECTOR,
                postgresql_using="gin",
                postgresql_with=fulltext.GIN_OPTIONS,
            ),
        )
    return Tables(md, conversations, items, links, responses, feedback, cache_epoch, conversation_search)
