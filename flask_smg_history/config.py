"""Every ``SMG_HISTORY_*`` setting in one place, read and validated once.

``Settings`` is the table: one typed field per key (``backend`` is
``SMG_HISTORY_BACKEND``), whose default, documentation, environment names and
limits ride in the field's metadata, so an IDE completes ``settings.redis_url``
and the docs table (``scripts/config_table.py``) is made from the same source.

``load_settings`` runs at ``init_app``: it fills defaults into ``app.config``
(so the app shows its effective settings), falls back to environment variables
(the key's own name, then SMG's ``ATP_*`` names for Oracle), converts strings
from the environment, and raises ``ConfigError`` naming the key and what it
accepts. Nothing else in the package reads ``app.config``: the CLI's ``copy``
derives its target's settings from the source's (``Settings.as_config``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

PREFIX = "SMG_HISTORY_"


@dataclass(frozen=True)
class Key:
    """One setting as the loader and the docs see it."""

    name: str
    default: Any
    kind: str  # str | int | float | bool | dict
    doc: str
    env: tuple[str, ...] = ()
    optional: bool = False  # None is an accepted value
    minimum: float | None = None
    secret: bool = False
    check: Callable[[Any], None] | None = None  # raises ValueError on a value the type alone allows

    @property
    def attribute(self) -> str:
        """The ``Settings`` attribute of this key."""
        return self.name[len(PREFIX) :].lower()


def _retention_days(value: float | None) -> None:
    if value is not None and value != -1 and value <= 0:
        raise ValueError("use a positive number of days, or -1 to keep data forever (0 would expire data at once)")


#: What ``SMG_HISTORY_METADATA_UPDATE`` (and ``conversations.update(mode=...)``) accepts.
METADATA_UPDATE_MODES = ("patch", "replace")


def _metadata_update(value: str) -> None:
    if value not in METADATA_UPDATE_MODES:
        raise ValueError("use 'patch' (SMG: merge the given keys, null removes one) or 'replace' (OpenAI)")


#: What ``SMG_HISTORY_UPSTREAM_API`` accepts.
UPSTREAM_APIS = ("chat", "responses")


def _upstream_api(value: str) -> None:
    if value not in UPSTREAM_APIS:
        raise ValueError("use 'chat' (Chat Completions) or 'responses' (the Responses API)")


def _upstream_url(value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError("use the server's base URL, such as http://127.0.0.1:8000/v1")


#: A PostgreSQL text search configuration name, as ``SMG_HISTORY_POSTGRES_SEARCH_CONFIG``
#: accepts it (it is written into the search index's DDL).
SEARCH_CONFIG_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _search_config(value: str) -> None:
    if not SEARCH_CONFIG_NAME.fullmatch(value):
        raise ValueError("use the name of a PostgreSQL text search configuration, such as english or simple")


def _setting(default: Any, doc: str, **spec: Any) -> Any:
    """A field of ``Settings``; its kind and optionality come from the type."""
    return dataclasses.field(default=default, metadata={"doc": doc, **spec})


@dataclass(frozen=True)
class Settings:
    """The validated settings of one app, one attribute per key."""

    backend: str = _setting(
        "memory",
        (
            "Storage backend: one of memory, none, sqlite, postgres, redis, oracle, file, postgres+redis, "
            "sqlite+redis, an entry point name or a dotted path to a Backend class."
        ),
    )
    url_prefix: str = _setting(
        "/v1",
        "Where the blueprint is mounted.",
    )
    register_blueprint: bool = _setting(
        True,
        "Register the HTTP API. False keeps only `history` and the CLI.",
    )
    blueprint_name: str = _setting(
        "smg_history",
        "Name of the blueprint (for `url_for`).",
    )
    api_keys: dict[str, str] | None = _setting(
        None,
        "Bearer keys and the owner each maps to: a dict, or `key1=owner1,key2=owner2` from the environment.",
        secret=True,
    )
    allow_anonymous: bool | None = _setting(
        None,
        "Serve callers without identity as owner `anonymous`. Default: true for memory and none, false otherwise.",
    )
    max_request_bytes: int = _setting(
        1024 * 1024,
        "Largest request body the API accepts (413 above).",
        minimum=1,
    )
    max_item_bytes: int = _setting(
        256 * 1024,
        "Largest single item, as JSON (400 above).",
        minimum=1,
    )
    metadata_update: str = _setting(
        "patch",
        (
            "How `POST /conversations/{id}` and `conversations.update` apply `metadata`: `patch` (SMG's router: "
            "the given keys are set, a key set to null is removed, the others stay) or `replace` (the new map "
            "replaces the old, as OpenAI documents it)."
        ),
        check=_metadata_update,
    )
    retention_days: float | None = _setting(
        None,
        (
            "Days a conversation or response is kept after its last write "
            "(every backend; on Redis the shorter of this and SMG_HISTORY_REDIS_RETENTION_DAYS applies). "
            "None keeps forever."
        ),
        minimum=0.00001,
    )
    sqlite_path: str | None = _setting(
        None,
        "SQLite file (default: `smg_history.sqlite3` in the app's instance folder).",
    )
    postgres_db_url: str | None = _setting(
        None,
        "PostgreSQL URL, `postgres://` or `postgresql://`, query parameters passed to the driver (psycopg).",
        secret=True,
    )
    postgres_search_config: str = _setting(
        "english",
        (
            "PostgreSQL text search configuration of the search index and of queries (`english`: English stems "
            "and stop words; `simple`: every word as written, for any language). The index is built with it by "
            "`flask db upgrade`; changing it later needs the index rebuilt (see the SQL backend's page)."
        ),
        check=_search_config,
    )
    postgres_pool_max_size: int = _setting(
        16,
        "Connections in the PostgreSQL pool.",
        minimum=1,
    )
    postgres_prepared_statements: bool = _setting(
        True,
        (
            "Let psycopg prepare the statements a connection runs often (planned once, not on every call). "
            "Turn off behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21)."
        ),
    )
    sql_pool_timeout_secs: float = _setting(
        30.0,
        (
            "Seconds a SQL call waits for a free pooled connection (or, on SQLite, for the write lock) "
            "before it answers 503."
        ),
        minimum=0.001,
    )
    sql_use_app_db: bool = _setting(
        False,
        (
            "Keep the history tables in the host's `SQLALCHEMY_DATABASE_URI` "
            "(the host's Flask-SQLAlchemy engine) instead of a database of their own."
        ),
    )
    create_tables: bool = _setting(
        False,
        "Create missing tables at start-up instead of requiring `flask db upgrade` / `flask smg-history init-db`.",
    )
    table_prefix: str = _setting(
        "smg_history_",
        (
            "Prefix of every SQL table, index and version-table name: letters, digits and _, at most 15 characters "
            "(names must fit Oracle's 30)."
        ),
    )
    sql_schema: str | None = _setting(
        None,
        "SQL schema of the tables (PostgreSQL, Oracle): letters, digits and _, at most 30 characters.",
    )
    oracle_dsn: str | None = _setting(
        None,
        "Oracle connect string (host:port/service or a full descriptor).",
        env=("ATP_DSN",),
    )
    oracle_wallet_path: str | None = _setting(
        None,
        "Directory of an Oracle wallet (with `ORACLE_TNS_ALIAS`).",
        env=("ATP_WALLET_PATH",),
    )
    oracle_tns_alias: str | None = _setting(
        None,
        "TNS alias in the wallet's tnsnames.ora.",
        env=("ATP_TNS_ALIAS",),
    )
    oracle_user: str | None = _setting(
        None,
        "Oracle user.",
        env=("ATP_USER",),
    )
    oracle_password: str | None = _setting(
        None,
        "Oracle password (also the wallet password).",
        env=("ATP_PASSWORD",),
        secret=True,
    )
    oracle_external_auth: bool = _setting(
        False,
        "Use external authentication (needs python-oracledb thick mode).",
        env=("ATP_EXTERNAL_AUTH",),
    )
    oracle_pool_min: int = _setting(
        1,
        "Minimum sessions in the Oracle pool.",
        env=("ATP_POOL_MIN",),
        minimum=0,
    )
    oracle_pool_max: int = _setting(
        16,
        "Maximum sessions in the Oracle pool.",
        env=("ATP_POOL_MAX",),
        minimum=1,
    )
    oracle_pool_timeout_secs: int = _setting(
        30,
        "Seconds to wait for a free Oracle session.",
        env=("ATP_POOL_TIMEOUT_SECS",),
        minimum=0,
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "`redis://[:password@]host[:port][/db]`, `rediss://` (TLS) or `unix://`.",
        secret=True,
    )
    redis_pool_max_size: int = _setting(
        16,
        "Connections in the Redis pool; callers wait for a free one.",
        minimum=1,
    )
    redis_retention_days: float = _setting(
        30,
        (
            "Days every key of a conversation lives after its last write (fractions allowed); -1 keeps forever. "
            "When SMG_HISTORY_RETENTION_DAYS is also set, the shorter of the two applies."
        ),
        check=_retention_days,
    )
    redis_pool_timeout: float = _setting(
        5.0,
        "Seconds a caller waits for a free Redis connection when the pool is full (then 503).",
        minimum=0,
    )
    redis_key_prefix: str = _setting(
        "smg:",
        "Prefix of every Redis key, so apps can share one Redis: 1 to 64 of `A-Z a-z 0-9 _ : . -`.",
    )
    redis_cluster: bool = _setting(
        False,
        "Connect with redis-py's RedisCluster.",
    )
    redis_socket_timeout: float = _setting(
        5.0,
        "Seconds before a Redis command or connect gives up (then 503).",
        minimum=0.001,
    )
    file_path: str | None = _setting(
        None,
        "Folder of the file backend (default: `smg_history_files` in the app's instance folder).",
    )
    file_backups: int = _setting(
        0,
        "Earlier versions the file backend keeps of a file it rewrites (`name.json.bak1` is the newest); 0 keeps none.",
        minimum=0,
    )
    cache_ttl: float = _setting(
        3600.0,
        (
            "Hybrid backends (postgres+redis, sqlite+redis): seconds a cached conversation (its record and newest "
            "items) lives in Redis after it was filled; never beyond the conversation's own expiry."
        ),
        minimum=1,
    )
    cache_window: int = _setting(
        100,
        "Hybrid backends: how many of a conversation's newest items the Redis cache holds.",
        minimum=1,
    )
    cache_recheck: float = _setting(
        1.0,
        (
            "Hybrid backends: seconds an app process trusts the cache before it reads the SQL cache epoch again; "
            "a write whose invalidation could not reach Redis waits this long before it returns."
        ),
        minimum=0.01,
    )
    cache_socket_timeout: float = _setting(
        0.25,
        (
            "Hybrid backends: seconds before a cache command or connect gives up; the call then uses SQL "
            "(a slow Redis costs at most this)."
        ),
        minimum=0.001,
    )
    metrics_route: str | None = _setting(
        None,
        "Route of the Prometheus metrics (needs `prometheus_client`); off when None.",
    )
    upstream_url: str | None = _setting(
        None,
        (
            "Base URL of the OpenAI-compatible model server that `POST /v1/responses` and "
            "`history.responses.create` call (vLLM, SGLang, Ollama, llama.cpp, TGI, LiteLLM, OpenAI), ending in "
            "`/v1`. Unset (and no in-process upstream given to `init_app`): those answer 501."
        ),
        check=_upstream_url,
    )
    upstream_api: str = _setting(
        "chat",
        (
            "What the upstream speaks: `chat` (Chat Completions, which every server above serves) or `responses` "
            "(the Responses API; it is always sent `store: false` and the whole context)."
        ),
        check=_upstream_api,
    )
    upstream_api_key: str | None = _setting(
        None,
        "Bearer key sent to the upstream (never to clients, never logged).",
        secret=True,
    )
    upstream_timeout: float = _setting(
        60.0,
        "Seconds to wait for the upstream to answer, and between two pieces of a streamed answer (then 504).",
        minimum=0.001,
    )
    upstream_context_items: int = _setting(
        100,
        (
            "Most stored items sent to the upstream as context: a conversation's newest, or a "
            "`previous_response_id` chain's newest (the new input always goes whole). Bounds the read and "
            "the request, whatever a conversation's length; the default matches the hybrid backends' "
            "SMG_HISTORY_CACHE_WINDOW, so a turn's read is a cache hit there."
        ),
        minimum=1,
    )

    def masked(self) -> dict[str, Any]:
        """The settings by key name with secrets hidden, for ``check`` output
        and logs."""
        return {key.name: "***" if key.secret and value else value for key, value in self._items()}

    def as_config(self) -> dict[str, Any]:
        """The settings by key name, as ``app.config`` would hold them."""
        return {key.name: value for key, value in self._items()}

    def _items(self) -> list[tuple[Key, Any]]:
        return [(key, getattr(self, key.attribute)) for key in KEYS]


def _key(field: dataclasses.Field[Any]) -> Key:
    annotation = str(field.type)
    optional = annotation.endswith(" | None")
    kind = annotation.removesuffix(" | None").split("[")[0]
    spec = dict(field.metadata)
    name = PREFIX + field.name.upper()
    return Key(
        name=name,
        default=field.default,
        kind=kind,
        doc=spec.pop("doc"),
        env=(name, *spec.pop("env", ())),
        optional=optional,
        **spec,
    )


#: Every key, in the order of ``Settings``' fields (and of the docs table).
KEYS: tuple[Key, ...] = tuple(_key(f) for f in dataclasses.fields(Settings))
KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_api_keys(text: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, owner = part.partition("=")
        if not sep or not key.strip() or not owner.strip():
            raise ValueError("expected key1=owner1,key2=owner2")
        pairs[key.strip()] = owner.strip()
    return pairs


def _convert(key: Key, value: Any, from_env: bool) -> Any:
    """Return ``value`` converted to the key's kind, or raise ValueError."""
    if value is None:
        if key.optional:
            return None
        raise ValueError("must be set")
    kind = key.kind
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ValueError("expected a non-empty string")
        if key.check is not None:
            key.check(value)
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(f"expected {'an integer' if kind == 'int' else 'a number'}")
        if from_env and isinstance(value, str):
            value = value.strip()
            value = int(value) if kind == "int" else float(value)
        convert: Callable[[Any], Any] = int if kind == "int" else float
        if kind == "int" and not isinstance(value, int):
            raise ValueError("expected an integer")
        if kind == "float" and not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        value = convert(value)
        if key.minimum is not None and value < key.minimum:
            raise ValueError(f"must be at least {key.minimum:g}")
        if key.check is not None:
            key.check(value)
        return value
    if kind == "dict":
        if isinstance(value, str):
            return _parse_api_keys(value)
        if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return dict(value)
        raise ValueError("expected a dict of strings, or 'key1=owner1,key2=owner2'")
    raise AssertionError(kind)


#: Every name a setting is read under (its key, and its environment
#: fallbacks such as ``ATP_DSN``), by its upper-case form.
_NAMES_FOLDED: dict[str, tuple[str, Key]] = {name.upper(): (name, key) for key in KEYS for name in (key.name, *key.env)}


def _closest_setting(name: str) -> str | None:
    """The setting a mistyped key most likely meant (``SMG_HISTORY_BACKEN``:
    ``SMG_HISTORY_BACKEND``), compared without the prefix all share, or
    ``None`` when none is close."""
    wanted = name.upper()[len(PREFIX) :]
    close = difflib.get_close_matches(wanted, [key.name[len(PREFIX) :] for key in KEYS], n=1, cutoff=0.6)
    return PREFIX + close[0] if close else None


def _refuse_unknown_names(config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Refuse a config key under our prefix that names no setting, in any
    case, and a config key or environment variable that is a case variant of
    a real name (``SMG_HISTORY_Api_Keys``): both would be ignored, so a host
    would run without the keys or limits it believes it set. The error names
    the real key."""
    for name in config:
        if not isinstance(name, str) or not name.upper().startswith(PREFIX) or name in KEYS_BY_NAME:
            continue
        real = _NAMES_FOLDED.get(name.upper())
        if real is not None:
            raise ConfigError(
                f"{name} is not a setting of flask-smg-history: setting names are upper case, "
                f"did you mean {real[1].name}?",
                param=real[1].name,
            )
        close = _closest_setting(name)
        hint = f": did you mean {close}?" if close else " (see the configuration reference)."
        raise ConfigError(f"{name} is not a setting of flask-smg-history{hint}", param=name)
    for name in environ:
        real = _NAMES_FOLDED.get(name.upper())
        if real is not None and name != real[0]:
            raise ConfigError(
                f"The environment variable {name} is not read: environment names are case-sensitive, "
                f"did you mean {real[0]}?",
                param=real[1].name,
            )


def load_settings(config: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Validate every key in ``config`` (a Flask ``app.config``), filling in
    environment fallbacks and defaults with ``setdefault``."""
    environ = os.environ if environ is None else environ
    _refuse_unknown_names(config, environ)
    values: dict[str, Any] = {}
    for key in KEYS:
        from_env = False
        if key.name in config:
            raw = config[key.name]
        else:
            raw = key.default
            for env_name in key.env:
                if env_name in environ:
                    raw, from_env = environ[env_name], True
                    break
        try:
            value = _convert(key, raw, from_env)
        except ValueError as exc:
            shown = "***" if key.secret else repr(raw)
            raise ConfigError(f"{key.name}={shown} is not valid: {exc}. {key.doc}", param=key.name) from None
        values[key.attribute] = value
        config.setdefault(key.name, value)
    return Settings(**values)
