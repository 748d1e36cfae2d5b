"""The full-text index of the SQL backends, as SQL: what the migrations
``smgh_0004`` and ``smgh_0006`` create, what ``tables.py`` declares and what
the search queries (``search.py``) read, written once here.

Both indexes hold the strings ``search.SEARCHED_FIELDS`` names, and are kept
by the database itself, so no write path of the backend changes for them.

- **PostgreSQL**: ``<prefix>items.search_vector``, a stored generated
  ``tsvector`` of the item's text in the configuration
  ``SMG_HISTORY_POSTGRES_SEARCH_CONFIG``, with a GIN index. The vector also
  holds one lexeme naming the owner (``#`` and the MD5 of the owner, which no
  typed query can produce: the parser drops ``#``), and every search asks for
  it with the words, so the GIN index returns only the caller's items: the
  cost follows the caller's matches, not everyone's.
  Conversation metadata has a table of its own, ``<prefix>conv_search``
  (smgh_0006): one row per conversation, its vector (the owner lexeme and
  the metadata's string values) with a GIN index, written by a trigger on
  the conversation's insert and on updates that set its metadata, and
  deleted with the conversation (its foreign key cascades). Not a column
  of the conversations: every append rewrites the conversation row (its
  ``updated_at``), and with it every index on it.
- **SQLite**: an FTS5 table ``<prefix>search`` with one row per item and per
  conversation (its metadata values), the same owner token in its ``tag``
  column, and ``<prefix>search_rows`` mapping each FTS rowid to its item or
  conversation (an explicit integer key: SQLite may renumber the implicit
  rowids of our tables on VACUUM). Triggers on inserts, payload and metadata
  updates and deletes of items and conversations keep both in step, whatever
  deletes the rows (a delete, an unlinked item's last link, purge, erasure).
"""

from __future__ import annotations

import hashlib

from ...config import SEARCH_CONFIG_NAME

#: The generated column's name.
VECTOR = "search_vector"
#: The GIN index's storage parameters. Fast update stays on (an insert adds
#: its lexemes to a pending list, merged into the index in bulk: much cheaper
#: for an answer of hundreds of words than one index insertion per word), but
#: the list is capped at 512 kB instead of 4 MB: every search also reads the
#: pending list, which holds every owner's newest writes, so the cap bounds
#: what a search can pay for other owners' data.
GIN_OPTIONS = {"gin_pending_list_limit": 512}
#: Index and table name stems (after the table prefix).
VECTOR_INDEX = "items_search"
FTS = "search"
FTS_ROWS = "search_rows"
#: PostgreSQL's metadata vectors: the table, its GIN index, and the trigger
#: and its function (one name) that write it.
META = "conv_search"
META_INDEX = "conv_search_gin"
META_PUT = "conv_search_put"

_STRING_FIELDS = " || ".join(f'@.key == "{name}"' for name in ("content", "summary", "arguments", "input", "output"))
_PART_FIELDS = " || ".join(f'@.key == "{name}"' for name in ("content", "summary", "output"))


def pg_texts(payload: str) -> str:
    """A jsonb array of the searched strings of ``payload`` (a jsonb SQL
    expression): string fields first, then the text of content parts."""
    strings = f'$.keyvalue() ? (@.value.type() == "string" && ({_STRING_FIELDS})).value'
    parts = (
        f'$.keyvalue() ? (@.value.type() == "array" && ({_PART_FIELDS}))'
        '.value[*] ? (@.type() == "object" && @.text.type() == "string").text'
    )
    return f"(jsonb_path_query_array({payload}, '{strings}') || jsonb_path_query_array({payload}, '{parts}'))"


def pg_vector(config: str) -> str:
    """The generated column's expression: the owner lexeme and the text."""
    if not SEARCH_CONFIG_NAME.fullmatch(config):
        raise ValueError(f"not a text search configuration name: {config!r}")
    return f"array_to_tsvector(ARRAY['#' || md5(owner)]) || to_tsvector('{config}'::regconfig, {pg_texts('payload')})"


def pg_metadata_vector(config: str, row: str) -> str:
    """The metadata vector of the conversation row ``row`` (``NEW`` in the
    trigger): the owner lexeme and the metadata's string values."""
    if not SEARCH_CONFIG_NAME.fullmatch(config):
        raise ValueError(f"not a text search configuration name: {config!r}")
    return (
        f"array_to_tsvector(ARRAY['#' || md5({row}.owner)]) "
        f"|| to_tsvector('{config}'::regconfig, COALESCE({row}.metadata, '{{}}'::jsonb))"
    )


def pg_name(prefix: str, schema: str | None, stem: str) -> str:
    """A table's or function's name in SQL, quoted as SQLAlchemy created it (case kept)."""
    return (f'"{schema}".' if schema else "") + f'"{prefix}{stem}"'


def pg_metadata_ddl(prefix: str, schema: str | None, config: str) -> list[str]:
    """The trigger that writes a conversation's metadata vector when the
    conversation is inserted or its metadata set, and the backfill of the
    conversations already stored."""
    meta, convs, put = (pg_name(prefix, schema, stem) for stem in (META, "conversations", META_PUT))
    return [
        f"CREATE FUNCTION {put}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO {meta} (conversation_id, {VECTOR}) VALUES (NEW.id, {pg_metadata_vector(config, 'NEW')}) "
        f"ON CONFLICT (conversation_id) DO UPDATE SET {VECTOR} = EXCLUDED.{VECTOR}; RETURN NULL; END $$",
        f'CREATE TRIGGER "{prefix}{META_PUT}" AFTER INSERT OR UPDATE OF metadata ON {convs} '
        f"FOR EACH ROW EXECUTE FUNCTION {put}()",
        f"INSERT INTO {meta} (conversation_id, {VECTOR}) "
        f"SELECT c.id, {pg_metadata_vector(config, 'c')} FROM {convs} AS c",
    ]


def pg_metadata_drop(prefix: str, schema: str | None) -> list[str]:
    """Drop the trigger and its function (the table goes with its index)."""
    convs, put = pg_name(prefix, schema, "conversations"), pg_name(prefix, schema, META_PUT)
    return [f'DROP TRIGGER IF EXISTS "{prefix}{META_PUT}" ON {convs}', f"DROP FUNCTION IF EXISTS {put}()"]


def pg_owner_query(owner: str) -> str:
    """The tsquery (text) of the owner lexeme, ANDed with every search."""
    return "'#" + hashlib.md5(owner.encode("utf-8")).hexdigest() + "'"


def sqlite_tag(owner: str) -> str:
    """SQL of the owner's token in the FTS ``tag`` column (``owner`` is a SQL
    expression): ``o``, the owner's UTF-8 in hex, ``0`` (a digit last, so the
    porter stemmer never shortens it)."""
    return f"('o' || lower(hex({owner})) || '0')"


def sqlite_owner_tag(owner: str) -> str:
    """``sqlite_tag`` of an owner, computed here for a query."""
    return "o" + owner.encode("utf-8").hex() + "0"


def sqlite_item_text(payload: str) -> str:
    """SQL of an item's searched strings, one per line (``payload`` is a SQL
    expression of JSON text)."""
    return (
        "(SELECT group_concat(t, char(10)) FROM ("
        f"SELECT j.value AS t FROM json_each({payload}) AS j "
        "WHERE j.type = 'text' AND j.key IN ('content', 'summary', 'arguments', 'input', 'output') "
        "UNION ALL "
        f"SELECT json_extract(p.value, '$.text') FROM json_each({payload}) AS j, json_each(j.value) AS p "
        "WHERE j.type = 'array' AND j.key IN ('content', 'summary', 'output') "
        "AND p.type = 'object' AND json_type(p.value, '$.text') = 'text'))"
    )


def sqlite_metadata_text(metadata: str) -> str:
    """SQL of a conversation's metadata values, one per line."""
    return f"(SELECT group_concat(j.value, char(10)) FROM json_each({metadata}) AS j WHERE j.type = 'text')"


#: FTS5's tokenizer: words of letters and digits, case and diacritics folded,
#: English stems (as PostgreSQL's default ``english`` configuration does).
SQLITE_TOKENIZER = "porter unicode61 remove_diacritics 2"


def sqlite_ddl(prefix: str) -> list[str]:
    """The FTS5 table, its rowid map and the triggers that keep them in step
    with ``<prefix>items`` and ``<prefix>conversations``."""
    p = prefix
    fts, rows, items, convs = f"{p}{FTS}", f"{p}{FTS_ROWS}", f"{p}items", f"{p}conversations"
    item_rid = f"(SELECT rid FROM {rows} WHERE owner = old.owner AND item_id = old.id)"
    conv_rid = f"(SELECT rid FROM {rows} WHERE conversation_id = old.id)"
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(tag, body, tokenize = '{SQLITE_TOKENIZER}')",
        f"CREATE TABLE {rows} (rid INTEGER PRIMARY KEY, owner VARCHAR(255) NOT NULL, "
        "item_id VARCHAR(128), conversation_id VARCHAR(128))",
        f"CREATE UNIQUE INDEX {p}search_item ON {rows} (owner, item_id)",
        f"CREATE UNIQUE INDEX {p}search_conv ON {rows} (conversation_id)",
        f"CREATE TRIGGER {p}search_item_new AFTER INSERT ON {items} BEGIN "
        f"INSERT INTO {rows} (owner, item_id) VALUES (new.owner, new.id); "
        f"INSERT INTO {fts} (rowid, tag, body) VALUES (last_insert_rowid(), {sqlite_tag('new.owner')}, "
        f"{sqlite_item_text('new.payload')}); END",
        f"CREATE TRIGGER {p}search_item_edit AFTER UPDATE OF payload ON {items} BEGIN "
        f"UPDATE {fts} SET body = {sqlite_item_text('new.payload')} WHERE rowid = {item_rid}; END",
        f"CREATE TRIGGER {p}search_item_gone AFTER DELETE ON {items} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = {item_rid}; "
        f"DELETE FROM {rows} WHERE owner = old.owner AND item_id = old.id; END",
        f"CREATE TRIGGER {p}search_conv_new AFTER INSERT ON {convs} BEGIN "
        f"INSERT INTO {rows} (owner, conversation_id) VALUES (new.owner, new.id); "
        f"INSERT INTO {fts} (rowid, tag, body) VALUES (last_insert_rowid(), {sqlite_tag('new.owner')}, "
        f"{sqlite_metadata_text('new.metadata')}); END",
        f"CREATE TRIGGER {p}search_conv_edit AFTER UPDATE OF metadata ON {convs} BEGIN "
        f"UPDATE {fts} SET body = {sqlite_metadata_text('new.metadata')} WHERE rowid = {conv_rid}; END",
        f"CREATE TRIGGER {p}search_conv_gone AFTER DELETE ON {convs} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = {conv_rid}; DELETE FROM {rows} WHERE conversation_id = old.id; END",
    ]


def sqlite_backfill(prefix: str) -> list[str]:
    """Index the items and conversations already stored."""
    p = prefix
    fts, rows = f"{p}{FTS}", f"{p}{FTS_ROWS}"
    return [
        f"INSERT INTO {rows} (owner, item_id) SELECT owner, id FROM {p}items",
        f"INSERT INTO {rows} (owner, conversation_id) SELECT owner, id FROM {p}conversations",
        f"INSERT INTO {fts} (rowid, tag, body) SELECT r.rid, {sqlite_tag('r.owner')}, "
        f"{sqlite_item_text('i.payload')} FROM {rows} AS r JOIN {p}items AS i "
        "ON i.owner = r.owner AND i.id = r.item_id",
        f"INSERT INTO {fts} (rowid, tag, body) SELECT r.rid, {sqlite_tag('r.owner')}, "
        f"{sqlite_metadata_text('c.metadata')} FROM {rows} AS r JOIN {p}conversations AS c "
        "ON c.id = r.conversation_id",
    ]


def sqlite_tables(prefix: str) -> set[str]:
    """Every SQLite table of the index: ours and FTS5's shadow tables (which
    a host's autogenerate must leave alone, like the rest of ours)."""
    fts = f"{prefix}{FTS}"
    return {
        fts,
        f"{prefix}{FTS_ROWS}",
        *(f"{fts}_{shadow}" for shadow in ("data", "idx", "content", "docsize", "config")),
    }


def sqlite_drop(prefix: str) -> list[str]:
    p = prefix
    triggers = ("item_new", "item_edit", "item_gone", "conv_new", "conv_edit", "conv_gone")
    return [
        *(f"DROP TRIGGER IF EXISTS {p}search_{name}" for name in triggers),
        f"DROP TABLE IF EXISTS {p}{FTS}",
        f"DROP TABLE IF EXISTS {p}{FTS_ROWS}",
    ]
