"""The SQLAlchemy engine of each SQL backend, built from the settings.

Creating an engine never connects, so an app whose database is down still
starts; the first call that needs a connection fails with a 503 instead.

- ``sqlite``: a file (default: ``smg_history.sqlite3`` in the instance folder)
  in WAL mode. Write transactions start with ``BEGIN IMMEDIATE`` so that
  concurrent writers queue on SQLite's busy timeout instead of failing with
  "database is locked" when a read lock cannot be upgraded.
- ``postgres``: psycopg (3) with a pool of ``POSTGRES_POOL_MAX_SIZE`` connections
  and no overflow; callers wait at most ``SQL_POOL_TIMEOUT_SECS`` for one.
  psycopg prepares a statement on the server once a connection has run it
  five times, so the hot statements are planned once per connection, not on
  every call (planning cost more than running them). Its connections are in
  autocommit, and a transaction of several statements begins with an
  explicit ``BEGIN`` (the "begin" event below): reads and one-statement
  writes then cost one round trip, not three. A URL naming another driver
  (``postgresql+psycopg2://``) gets the same by switching each read to
  autocommit. A
  ``connect_timeout`` of 10 s is added when the URL has none, so an unreachable
  server answers 503 in bounded time. TLS is libpq's (``sslmode``,
  ``sslrootcert`` in the URL); ``postgres_tls_hint`` says what to fix when it
  cannot be set up.
- ``oracle``: python-oracledb's own session pool (``oracle.py`` builds its
  options), created at the first connection so start-up never waits for it.
- ``SQL_USE_APP_DB``: the host's Flask-SQLAlchemy engine, used as it is (we add
  no listeners to an engine we do not own).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from ...errors import ConfigError
from .. import jsonfast
from ..base import exception_chain
from . import oracle

if TYPE_CHECKING:
    from flask import Flask

    from ...config import Settings

#: Added to a PostgreSQL URL without its own ``connect_timeout`` (seconds).
DEFAULT_CONNECT_TIMEOUT = 10
#: Execution option naming how a transaction begins on the engines whose
#: "begin" event issues BEGIN: SQLite's ``IMMEDIATE`` (the default) or
#: ``DEFERRED``; PostgreSQL's ``BEGIN`` (the default) or ``""``, none, for
#: work that is one statement or only reads.
BEGIN = "smg_history_begin"
#: Switches a PostgreSQL connection to autocommit for one checkout.
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@dataclass(frozen=True)
class Transactions:
    """The execution options of a backend's three kinds of work: ``write``,
    statements that must commit together; ``read``, statements that only
    read; ``single``, one statement that writes, atomic by itself. On
    PostgreSQL the last two need no transaction of their own: under READ
    COMMITTED each statement takes its own snapshot inside one too."""

    write: dict[str, Any]
    read: dict[str, Any]
    single: dict[str, Any]


@dataclass
class BuiltEngine:
    engine: Engine
    owned: bool  # False for the host's engine, which we must not dispose
    transactions: Transactions
    closer: Any = None  # releases an extra pool (Oracle's), when there is one
    #: Its connections are in autocommit at the driver (our psycopg engine):
    #: a statement sent on a pooled DBAPI connection is its own transaction.
    autocommit: bool = False


def build_engine(name: str, settings: Settings, app: Flask) -> BuiltEngine:
    if settings.sql_use_app_db:
        engine = _host_engine(app)
        # Not our engine: no listeners, so PostgreSQL reads switch to autocommit.
        single = _AUTOCOMMIT if engine.dialect.name == "postgresql" else {}
        return BuiltEngine(engine, owned=False, transactions=Transactions({}, single, single))
    if name == "sqlite":
        immediate = {BEGIN: "IMMEDIATE"}
        return BuiltEngine(_sqlite_engine(settings, app), True, Transactions(immediate, {BEGIN: "DEFERRED"}, immediate))
    if name == "postgres":
        return _postgres_engine(settings)
    if name == "oracle":
        return _oracle_engine(settings)
    raise ConfigError(f"SMG_HISTORY_BACKEND={name!r} is not a SQL backend.", param="SMG_HISTORY_BACKEND")


def _host_engine(app: Flask) -> Engine:
    ext = app.extensions.get("sqlalchemy")
    if ext is None:
        raise ConfigError(
            "SMG_HISTORY_SQL_USE_APP_DB is true but Flask-SQLAlchemy is not initialised on this app: "
            "call db.init_app(app) before SmgHistory(app), or set SMG_HISTORY_SQL_USE_APP_DB=false.",
            param="SMG_HISTORY_SQL_USE_APP_DB",
        )
    with app.app_context():
        return ext.engine


def _sqlite_engine(settings: Settings, app: Flask) -> Engine:
    path = settings.sqlite_path or os.path.join(app.instance_path, "smg_history.sqlite3")
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = sa.create_engine(
        URL.create("sqlite+pysqlite", database=path),
        connect_args={"timeout": settings.sql_pool_timeout_secs, "check_same_thread": False},
        pool_timeout=settings.sql_pool_timeout_secs,
        json_deserializer=jsonfast.loads,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def postgres_url(raw: str | None) -> URL:
    """Accept ``postgres://`` and ``postgresql://`` (SMG's forms) and pick
    psycopg (3) unless the URL names a driver; query parameters are kept and
    go to the driver's ``connect``."""
    if not raw:
        raise ConfigError(
            "The postgres backend needs SMG_HISTORY_POSTGRES_DB_URL, e.g. "
            "'postgresql://user:password@localhost:5432/app?sslmode=prefer' (or the environment variable "
            "of the same name), or SMG_HISTORY_SQL_USE_APP_DB=true to use the app's SQLALCHEMY_DATABASE_URI.",
            param="SMG_HISTORY_POSTGRES_DB_URL",
        )
    try:
        url = make_url(raw)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            "SMG_HISTORY_POSTGRES_DB_URL is not a valid URL (expected postgresql://user:password@host:port/db).",
            param="SMG_HISTORY_POSTGRES_DB_URL",
        ) from exc
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if not url.drivername.startswith("postgresql"):
        raise ConfigError(
            f"SMG_HISTORY_POSTGRES_DB_URL must start with postgres:// or postgresql://, not {url.drivername}://.",
            param="SMG_HISTORY_POSTGRES_DB_URL",
        )
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT)})
    return url


#: libpq's words (English messages) for TLS set-up failures, in the order they
#: are checked, and the fixed sentence shown for each; ``{url}`` is the setting.
_POSTGRES_TLS_CAUSES = (
    (
        ("does not match host name",),
        "the server's TLS certificate does not match the host name; check {url} "
        "(with sslmode=verify-full its host must be a name or address the certificate lists).",
    ),
    (("certificate verify failed",), "TLS certificate verification failed; check {url} (sslrootcert, sslmode)."),
    (
        ("root certificate file",),
        "the CA file to verify the server with cannot be read; check {url} "
        "(sslrootcert; sslmode=verify-ca and verify-full need it).",
    ),
    (("server does not support ssl",), "the server does not support TLS, which {url} requires (sslmode)."),
    (
        ("no pg_hba.conf entry", "no encryption"),
        "the server accepts only TLS connections; set sslmode=require or verify-full in {url}.",
    ),
    (("ssl error",), "the TLS handshake failed; check {url} (sslmode and the ssl* parameters)."),
)


def postgres_tls_hint(exc: BaseException, url_setting: str) -> str | None:
    """The ``outage_hint`` for PostgreSQL TLS set-up failures. psycopg2 gives
    libpq's message only, so the driver errors in the chain are matched
    against known phrases; their text is inspected, never shown."""
    for cause in exception_chain(exc):
        if type(cause).__module__.partition(".")[0] not in ("psycopg2", "psycopg"):
            continue
        text = str(cause).lower()
        for phrases, hint in _POSTGRES_TLS_CAUSES:
            if all(phrase in text for phrase in phrases):
                return hint.format(url=url_setting)
    return None


def _postgres_engine(settings: Settings) -> BuiltEngine:
    url = postgres_url(settings.postgres_db_url)
    psycopg = url.get_driver_name() == "psycopg"
    engine = sa.create_engine(
        url,
        pool_size=settings.postgres_pool_max_size,
        max_overflow=0,
        pool_timeout=settings.sql_pool_timeout_secs,
        # Reuse the most recently returned connection: under light load one
        # warm server process serves every call instead of all in turn.
        pool_use_lifo=True,
        json_deserializer=jsonfast.loads,
        **({"isolation_level": "AUTOCOMMIT"} if psycopg else {}),
    )
    if not psycopg:
        return BuiltEngine(engine, owned=True, transactions=Transactions({}, _AUTOCOMMIT, _AUTOCOMMIT))

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # psycopg's commit() and rollback() follow the server's transaction
        # state, so a BEGIN issued here is committed or rolled back by them.
        mode = conn.get_execution_options().get(BEGIN, "BEGIN")
        if mode:
            conn.exec_driver_sql(mode)

    if not settings.postgres_prepared_statements:

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.prepare_threshold = None

    none = {BEGIN: ""}
    return BuiltEngine(engine, owned=True, transactions=Transactions({}, none, none), autocommit=True)


class _LazyOraclePool:
    """python-oracledb's pool, created at the first connection request."""

    def __init__(self, options: oracle.OracleOptions) -> None:
        self._options = options
        self._pool: Any = None
        self._lock = threading.Lock()

    def acquire(self) -> Any:
        with self._lock:
            if self._pool is None:
                import oracledb

                self._pool = oracledb.create_pool(getmode=oracledb.POOL_GETMODE_TIMEDWAIT, **self._options.pool_args)
        return self._pool.acquire()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close(force=True)
                self._pool = None


def _oracle_engine(settings: Settings) -> BuiltEngine:
    options = oracle.connect_options(settings)
    if options.thick_mode:
        oracle.enable_thick_mode()
    pool = _LazyOraclePool(options)
    engine = sa.create_engine("oracle+oracledb://", creator=pool.acquire, poolclass=NullPool)
    return BuiltEngine(engine, owned=True, transactions=Transactions({}, {}, {}), closer=pool.close)
