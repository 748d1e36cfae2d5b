"""The fill thread (``backends/hybrid/fills.py``) on its own: one fill per
conversation queued, with the newest token; a bounded backlog; a failing fill
that does not stop the others; waits; close; and a forked child that starts
afresh."""

from __future__ import annotations

import logging
import threading

import pytest

from flask_smg_history.backends.hybrid import fills as fills_module
from flask_smg_history.backends.hybrid.fills import Fills


@pytest.fixture
def fills():
    made = Fills()
    yield made
    made.close(5)


def _blocker(fills: Fills) -> threading.Event:
    """Occupy the thread until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        assert release.wait(10)

    fills.submit("blocker", "t", block)
    assert started.wait(10)
    return release


def test_one_fill_per_key_is_queued_with_the_newest_token_and_wait_for_waits_for_it(fills):
    release = _blocker(fills)
    ran: list[str] = []
    fills.submit("a", "t1", lambda: ran.append("a t1"))
    fills.submit("a", "t1", lambda: ran.append("a t1 again"))  # a miss sharing the token: nothing more
    fills.submit("b", "t1", lambda: ran.append("b"))
    fills.submit("a", "t2", lambda: ran.append("a t2"))  # t1 was revoked: t2's fill takes its place
    fills.submit("blocker", "t", lambda: ran.append("blocker again"))  # running with that token: nothing more
    assert not fills.wait(0.05)  # still pending
    fills.wait_for("a", 0.05)  # gives up after its timeout
    assert ran == []
    release.set()
    fills.wait_for("a", 10)
    assert ran[0] == "a t2"
    assert fills.wait(10) and ran == ["a t2", "b"]
    fills.submit("a", "t2", lambda: ran.append("a t2, later"))  # done: the same token may fill again
    assert fills.wait(10) and ran == ["a t2", "b", "a t2, later"]


def test_the_backlog_is_bounded(fills, monkeypatch):
    monkeypatch.setattr(fills_module, "PENDING", 3)
    release = _blocker(fills)
    ran: list[int] = []
    for n in range(5):
        fills.submit(n, "t", lambda n=n: ran.append(n))
    fills.submit(0, "t2", lambda: ran.append(-1))  # queued already: replaced, not refused
    release.set()
    assert fills.wait(10) and ran == [-1, 1, 2]  # 3 were queued: the rest were not filled


def test_a_failing_fill_is_logged_and_the_next_runs(fills, caplog):
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR, logger="flask_smg_history"):
        fills.submit("a", "t", fail)
        fills.submit("b", "t", lambda: ran.append("b"))
        assert fills.wait(10)
    assert ran == ["b"]
    assert "a fill failed" in caplog.text and "a bug" in caplog.text


def test_close_drops_the_fills_not_started_and_stops_the_thread(fills):
    release = _blocker(fills)
    ran: list[str] = []
    fills.submit("a", "t", lambda: ran.append("a"))
    closing = threading.Thread(target=fills.close, args=(10,))
    closing.start()
    release.set()
    closing.join(10)
    assert not closing.is_alive() and not fills._thread.is_alive()
    assert fills.wait(0) and ran == []
    fills.submit("b", "t", lambda: ran.append("b"))  # closed: nothing is queued
    assert fills.wait(0) and ran == []


def test_a_forked_child_forgets_the_parents_fills_and_starts_its_own_thread(fills, monkeypatch):
    release = _blocker(fills)
    parent_thread = fills._thread
    monkeypatch.setattr(fills_module.os, "getpid", lambda: -1)  # as in a child after os.fork()
    assert fills.wait(0)  # the parent's pending fill is not the child's
    ran: list[str] = []
    fills.submit("a", "t", lambda: ran.append("a"))
    assert fills.wait(10) and ran == ["a"] and fills._thread is not parent_thread
    release.set()  # (a real child has no such thread; this one stops at close)
