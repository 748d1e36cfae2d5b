"""PostgreSQL's own count of the work a benchmark makes it do.

Why on the server: counting in the benchmark process (SQLAlchemy's cursor
events) changes what is measured, since the SQL backend sends its two hot
statements on the DBAPI cursor unless such a listener is registered
(``SqlBackend._hooked``); and ``pg_stat_statements`` is not installed on the
development server. So a run gets a database of its own (``smgb_<hex>``,
dropped at the end), and the figures are deltas of that database's row of
``pg_stat_database``, which no other client of the shared server touches.

PostgreSQL 15 does not publish a backend's counters at once: when it goes
idle after a transaction it publishes them if its last publication is at least
a second old (``MIN_FLUSH``), else by a timer 10 s later (``IDLE_FLUSH``), and
at its exit. So a reading is exact once every connection that worked has
published: after ``IDLE_FLUSH`` seconds with no client working
(``settle``), or, for a benchmark that holds the connections, after one more
statement that reads a table on each of them ``MIN_FLUSH`` after the work
(``benchmarks/hybrid.py``; a statement that reads no table leaves its count
pending, unpublished). Closing the connections instead (they publish as they
exit) would make every timed run start on new server processes, whose first
statements read the system catalogs (about 570 rows fetched and one more
transaction per new connection, measured).

What stays inexact, on a server shared with test suites: an idle backend
that falls behind the other sessions' catalog changes (their CREATE and DROP
SCHEMA) catches up in a transaction of its own, which reads no table and is
published with its next work. Seen on the development machine: 0 to about 50
such transactions per idle connection per 10 s, none when the server is
quiet. They make the transaction counts a little high, never the rows.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, fields
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

#: Seconds after which PostgreSQL 15 has published an idle backend's counters
#: (its idle-stats timeout is 10 s).
IDLE_FLUSH = 10.5
#: Seconds after its last publication from which a backend publishes its
#: counters at the end of its next transaction (PGSTAT_MIN_INTERVAL is 1 s).
MIN_FLUSH = 1.05


@dataclass(frozen=True)
class Work:
    """A delta of ``pg_stat_database`` for one database."""

    #: ``xact_commit + xact_rollback``: an autocommit statement is one, a
    #: BEGIN ... COMMIT of several statements is one.
    transactions: int
    #: ``tup_fetched``: live rows fetched by index scans.
    rows_fetched: int
    #: ``tup_returned``: rows read by sequential scans plus index entries
    #: returned by index scans (system catalogs included).
    rows_returned: int
    #: ``blks_hit``: buffer pages found in shared buffers (a page touched).
    blocks_hit: int

    def __sub__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class RunDatabase:
    """A database of the run's own on the server of ``server_url`` (a
    superuser's URL, trust auth), created now and dropped by ``drop``."""

    def __init__(self, server_url: str) -> None:
        url = make_url(server_url)
        self.name = f"smgb_{secrets.token_hex(4)}"
        self._admin_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._admin: Any = None
        self._execute(f"CREATE DATABASE {self.name}")
        #: The run's database, in the form (and driver) given.
        self.url = url.set(database=self.name).render_as_string(hide_password=False)

    def _execute(self, sql: str, *args: object) -> list[tuple]:
        """On one connection of its own to the server's URL (not the run's
        database, so reading costs it nothing), opened again once if the
        server restarted (``load.py --restart-at``)."""
        for attempt in (1, 2):
            try:
                if self._admin is None or self._admin.closed:
                    self._admin = psycopg2.connect(self._admin_url)
                    self._admin.autocommit = True
                with self._admin.cursor() as cursor:
                    cursor.execute(sql, args)
                    return cursor.fetchall() if cursor.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 2:
                    raise
                self._admin = None
        raise AssertionError("unreachable")

    def work(self) -> Work:
        """The database's counters now (cumulative; subtract two readings)."""
        self._execute("SELECT pg_stat_clear_snapshot()")
        (row,) = self._execute(
            "SELECT xact_commit + xact_rollback, tup_fetched, tup_returned, blks_hit"
            " FROM pg_stat_database WHERE datname = %s",
            self.name,
        )
        return Work(*row)

    def settle(self) -> Work:
        """The counters after ``IDLE_FLUSH`` seconds: every backend that
        worked before this call has published its work (the caller's clients
        must be idle meanwhile)."""
        time.sleep(IDLE_FLUSH)
        return self.work()

    def drop(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self._admin.close()
