"""The lease protocol of ``hybrid/trust.py`` step by step, on a real SQL
epoch row and a real Redis namespace, with the process's clocks and sleep
under the test's control: when the SQL row is read, when Redis is synced,
how long Redis is left alone after an error, and how long a lost
invalidation waits."""

from __future__ import annotations

import logging

import pytest

from flask_smg_history.backends.hybrid.trust import Trust
from flask_smg_history.backends.sql import epoch as sql_epoch

from .conftest import backend_of, counted_statements

RECHECK = 10.0


class Clocks:
    """A monotonic clock, a wall clock and a sleep that moves both."""

    def __init__(self) -> None:
        self.now, self.wall, self.slept = 100.0, 1_000_000.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.wall += seconds


@pytest.fixture
def setup(make_app):
    app = make_app()
    backend, clocks = backend_of(app), Clocks()
    trust = Trust(
        backend.sql, backend.cache, RECHECK, clock=lambda: clocks.now, wall=lambda: clocks.wall, sleep=clocks.sleep
    )
    return app, backend, trust, clocks


def _namespace(backend) -> tuple[bytes | None, bytes | None]:
    return tuple(backend.cache.client.hmget(backend.cache.state_key, "ns", "sql"))


def _reads(statements: list[str]) -> int:
    return sum("cache_epoch" in s and s.lstrip().upper().startswith("SELECT") for s in statements)


def test_a_fresh_process_syncs_first_then_reads_the_row_once_per_recheck(setup):
    app, backend, trust, clocks = setup
    row = sql_epoch.read(backend.sql)
    before = _namespace(backend)
    assert trust.epoch() == row.epoch
    ns, synced_for = _namespace(backend)
    assert ns != before[0] and synced_for == str(row.epoch).encode()  # a fresh namespace, made for the row
    assert sql_epoch.read(backend.sql).synced == row.epoch
    with counted_statements(app) as sql:
        clocks.now += RECHECK - 0.01
        assert trust.epoch() == row.epoch  # inside the lease: no SQL
        assert _reads(sql) == 0
        clocks.now += 0.01
        assert trust.epoch() == row.epoch  # the lease ran out: the row once, no new sync
        assert _reads(sql) == 1
    assert _namespace(backend)[0] == ns


def test_after_a_redis_error_the_cache_is_left_alone_for_recheck_then_synced(setup):
    _, backend, trust, clocks = setup
    assert trust.epoch() is not None
    ns = _namespace(backend)[0]
    trust.redis_failed()
    assert trust.skipping()
    clocks.now += RECHECK - 0.01
    assert trust.epoch() is None and trust.skipping()
    clocks.now += 0.01
    assert not trust.skipping()
    assert trust.epoch() == sql_epoch.read(backend.sql).epoch
    assert _namespace(backend)[0] != ns  # synced again before use


def test_a_process_refused_by_redis_syncs_at_its_next_lease(setup):
    _, backend, trust, clocks = setup
    assert trust.epoch() is not None
    ns = _namespace(backend)[0]
    trust.refused()
    assert not trust.skipping()
    assert trust.epoch() is not None  # no waiting: at once
    assert _namespace(backend)[0] != ns


def test_a_lost_invalidation_raises_the_epoch_and_waits_out_the_leases(setup, caplog):
    _, backend, trust, clocks = setup
    first = trust.epoch()
    with caplog.at_level(logging.INFO, logger="flask_smg_history"):
        trust.lost_invalidation()
    row = sql_epoch.read(backend.sql)
    assert (row.epoch, row.synced, row.untrusted_at) == (first + 1, first, 1_000_000.0)
    assert clocks.slept == [RECHECK]  # every lease granted while trusted has run out by now
    assert "a write could not invalidate its entry; waiting 10.00 s for leases" in caplog.text

    clocks.wall += 3
    trust.lost_invalidation()  # still untrusted: the wait counts from the first loss
    row = sql_epoch.read(backend.sql)
    assert (row.epoch, row.untrusted_at) == (first + 2, 1_000_000.0)
    assert clocks.slept == [RECHECK]  # the first wait already outlasted every lease

    assert trust.epoch() == first + 2  # the next lease syncs the new epoch
    assert sql_epoch.read(backend.sql).trusted
    clocks.slept.clear()
    clocks.wall += 100
    trust.lost_invalidation()
    assert clocks.slept == [RECHECK] and sql_epoch.read(backend.sql).untrusted_at == clocks.wall - RECHECK


def test_a_sync_that_a_lost_invalidation_overtakes_is_not_trusted(setup, make_app, monkeypatch):
    """A lost invalidation between the sync's row read and its mark: the
    mark fails, so nothing is trusted and Redis is left alone a while."""
    _, backend, trust, clocks = setup
    other = backend_of(make_app())
    sync = backend.cache.sync

    def sync_then_lose(epoch: int) -> None:
        sync(epoch)
        sql_epoch.raise_epoch(other.sql, clocks.wall)

    monkeypatch.setattr(backend.cache, "sync", sync_then_lose)
    assert trust.epoch() is None and trust.skipping()
    monkeypatch.undo()
    assert trust.epoch() is None  # left alone until recheck
    clocks.now += RECHECK
    assert trust.epoch() == sql_epoch.read(backend.sql).epoch and sql_epoch.read(backend.sql).trusted


def test_without_the_epoch_row_the_cache_is_off_and_says_why(setup, caplog):
    app, backend, trust, clocks = setup
    t = backend.sql.tables.cache_epoch
    with backend.sql.engine.begin() as conn:
        conn.execute(t.delete())
    with caplog.at_level(logging.WARNING, logger="flask_smg_history"):
        assert trust.epoch() is None
    assert "the hybrid cache is off: the cache epoch row is missing (run `flask db upgrade`)" in caplog.text
    with counted_statements(app) as sql:
        clocks.now += RECHECK - 0.01
        assert trust.epoch() is None
    assert _reads(sql) == 0  # not asked again before recheck
    trust.lost_invalidation()  # nothing to raise, nothing to wait for
    assert clocks.slept == []
