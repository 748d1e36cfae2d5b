"""Every ``SMG_HISTORY_*`` setting in one table, read and validated once.

``load_settings`` runs at ``init_app``: it fills defaults into ``app.config``
(so the app shows its effective settings), falls back to environment variables
(the key's own name, then SMG's ``ATP_*`` names for Oracle), converts strings
from the environment, and raises ``ConfigError`` naming the key and what it
accepts. Nothing else in the package reads ``app.config``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    kind: str  # str | int | float | bool | dict | choice
    doc: str
    env: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is an accepted value
    minimum: float | None = None
    secret: bool = False
    check: Callable[[Any], None] | None = None  # raises ValueError on a value the type alone allows


def _retention_days(value: float | None) -> None:
    if value is not None and value != -1 and value <= 0:
        raise ValueError("use a positive number of days, or -1 to keep data forever (0 would expire data at once)")


def _k(name: str, default: Any, kind: str, doc: str, **kw: Any) -> Key:
    full = f"SMG_HISTORY_{name}"
    env = (full, *kw.pop("env", ()))
    return Key(full, default, kind, doc, env=env, **kw)


KEYS: tuple[Key, ...] = (
    _k(
        "BACKEND",
        "memory",
        "str",
        "Storage backend: one of memory, none, sqlite, postgres, redis, oracle, "
        "an entry point name or a dotted path to a Backend class.",
    ),
    _k("URL_PREFIX", "/v1", "str", "Where the blueprint is mounted."),
    _k("REGISTER_BLUEPRINT", True, "bool", "Register the HTTP API. False keeps only `history` and the CLI."),
    _k("BLUEPRINT_NAME", "smg_history", "str", "Name of the blueprint (for `url_for`)."),
    _k(
        "API_KEYS",
        None,
        "dict",
        "Bearer keys and the owner each maps to: a dict, or `key1=owner1,key2=owner2` from the environment.",
        optional=True,
        secret=True,
    ),
    _k(
        "ALLOW_ANONYMOUS",
        None,
        "bool",
        "Serve callers without identity as owner `anonymous`. Default: true for memory and none, false otherwise.",
        optional=True,
    ),
    _k("MAX_REQUEST_BYTES", 1024 * 1024, "int", "Largest request body the API accepts (413 above).", minimum=1),
    _k("MAX_ITEM_BYTES", 256 * 1024, "int", "Largest single item, as JSON (400 above).", minimum=1),
    _k(
        "RETENTION_DAYS",
        None,
        "float",
        "Days a conversation or response is kept after its last write "
        "(every backend; on Redis the shorter of this and SMG_HISTORY_REDIS_RETENTION_DAYS applies). "
        "None keeps forever.",
        optional=True,
        minimum=0.00001,
    ),
    _k(
        "SQLITE_PATH",
        None,
        "str",
        "SQLite file (default: `smg_history.sqlite3` in the app's instance folder).",
        optional=True,
    ),
    _k(
        "POSTGRES_DB_URL",
        None,
        "str",
        "PostgreSQL URL, `postgres://` or `postgresql://`, query parameters passed to psycopg2.",
        optional=True,
        secret=True,
    ),
    _k("POSTGRES_POOL_MAX_SIZE", 16, "int", "Connections in the PostgreSQL pool.", minimum=1),
    _k(
        "SQL_POOL_TIMEOUT_SECS",
        30.0,
        "float",
        "Seconds a SQL call waits for a free pooled connection (or, on SQLite, for the write lock) "
        "before it answers 503.",
        minimum=0.001,
    ),
    _k(
        "SQL_USE_APP_DB",
        False,
        "bool",
        "Keep the history tables in the host's `SQLALCHEMY_DATABASE_URI` "
        "(the host's Flask-SQLAlchemy engine) instead of a database of their own.",
    ),
    _k(
        "CREATE_TABLES",
        False,
        "bool",
        "Create missing tables at start-up instead of requiring `flask db upgrade` / `flask smg-history init-db`.",
    ),
    _k(
        "TABLE_PREFIX",
        "smg_history_",
        "str",
        "Prefix of every SQL table, index and version-table name: letters, digits and _, at most 15 characters "
        "(names must fit Oracle's 30).",
    ),
    _k(
        "SQL_SCHEMA",
        None,
        "str",
        "SQL schema of the tables (PostgreSQL, Oracle): letters, digits and _, at most 30 characters.",
        optional=True,
    ),
    _k(
        "ORACLE_DSN",
        None,
        "str",
        "Oracle connect string (host:port/service or a full descriptor).",
        optional=True,
        env=("ATP_DSN",),
    ),
    _k(
        "ORACLE_WALLET_PATH",
        None,
        "str",
        "Directory of an Oracle wallet (with `ORACLE_TNS_ALIAS`).",
        optional=True,
        env=("ATP_WALLET_PATH",),
    ),
    _k(
        "ORACLE_TNS_ALIAS",
        None,
        "str",
        "TNS alias in the wallet's tnsnames.ora.",
        optional=True,
        env=("ATP_TNS_ALIAS",),
    ),
    _k("ORACLE_USER", None, "str", "Oracle user.", optional=True, env=("ATP_USER",)),
    _k(
        "ORACLE_PASSWORD",
        None,
        "str",
        "Oracle password (also the wallet password).",
        optional=True,
        env=("ATP_PASSWORD",),
        secret=True,
    ),
    _k(
        "ORACLE_EXTERNAL_AUTH",
        False,
        "bool",
        "Use external authentication (needs python-oracledb thick mode).",
        env=("ATP_EXTERNAL_AUTH",),
    ),
    _k("ORACLE_POOL_MIN", 1, "int", "Minimum sessions in the Oracle pool.", env=("ATP_POOL_MIN",), minimum=0),
    _k("ORACLE_POOL_MAX", 16, "int", "Maximum sessions in the Oracle pool.", env=("ATP_POOL_MAX",), minimum=1),
    _k(
        "ORACLE_POOL_TIMEOUT_SECS",
        30,
        "int",
        "Seconds to wait for a free Oracle session.",
        env=("ATP_POOL_TIMEOUT_SECS",),
        minimum=0,
    ),
    _k(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "str",
        "`redis://[:password@]host[:port][/db]`, `rediss://` (TLS) or `unix://`.",
        secret=True,
    ),
    _k("REDIS_POOL_MAX_SIZE", 16, "int", "Connections in the Redis pool; callers wait for a free one.", minimum=1),
    _k(
        "REDIS_RETENTION_DAYS",
        30,
        "float",
        "Days every key of a conversation lives after its last write (fractions allowed); -1 keeps forever. "
        "When SMG_HISTORY_RETENTION_DAYS is also set, the shorter of the two applies.",
        check=_retention_days,
    ),
    _k(
        "REDIS_POOL_TIMEOUT",
        5.0,
        "float",
        "Seconds a caller waits for a free Redis connection when the pool is full (then 503).",
        minimum=0,
    ),
    _k(
        "REDIS_KEY_PREFIX",
        "smg:",
        "str",
        "Prefix of every Redis key, so apps can share one Redis: 1 to 64 of `A-Z a-z 0-9 _ : . -`.",
    ),
    _k("REDIS_CLUSTER", False, "bool", "Connect with redis-py's RedisCluster."),
    _k(
        "REDIS_SOCKET_TIMEOUT",
        5.0,
        "float",
        "Seconds before a Redis command or connect gives up (then 503).",
        minimum=0.001,
    ),
    _k(
        "METRICS_ROUTE",
        None,
        "str",
        "Route of the Prometheus metrics (needs `prometheus_client`); off when None.",
        optional=True,
    ),
)

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


class Settings:
    """The validated settings of one app. Read them as attributes named after
    the key without its prefix: ``settings.backend``, ``settings.redis_url``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[f"SMG_HISTORY_{name.upper()}"]
        except KeyError:
            raise AttributeError(name) from None

    def masked(self) -> dict[str, Any]:
        """The settings with secrets hidden, for ``check`` output and logs."""
        out = {}
        for name, value in self._values.items():
            key = KEYS_BY_NAME[name]
            out[name] = "***" if key.secret and value else value
        return out


def load_settings(config: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Validate every key in ``config`` (a Flask ``app.config``), filling in
    environment fallbacks and defaults with ``setdefault``."""
    environ = os.environ if environ is None else environ
    for name in config:
        if name.startswith("SMG_HISTORY_") and name not in KEYS_BY_NAME:
            raise ConfigError(f"{name} is not a setting of flask-smg-history (see the configuration reference).")
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
        values[key.name] = value
        config.setdefault(key.name, value)
    return Settings(values)
