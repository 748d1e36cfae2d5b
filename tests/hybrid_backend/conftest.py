"""Fixtures of the hybrid-backend tests: apps on ``sqlite+redis`` and
``postgres+redis`` (the contract suite's registrations), a helper that counts
the SQL statements an app runs, and one that waits for the apps' cache fills."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support import backends

HYBRID_BACKENDS = [name for name in backends.selected() if name.endswith("+redis")]


@pytest.fixture(params=HYBRID_BACKENDS)
def hybrid_name(request) -> str:
    return request.param


@pytest.fixture
def hybrid_config(hybrid_name: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The config of a fresh hybrid store: its own SQL schema or file and Redis prefix."""
    with backends.FACTORIES[hybrid_name](tmp_path) as config:
        yield config


@pytest.fixture
def make_app(hybrid_config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    """Apps on the same store (as separate app processes would be), each with
    its own backend: its own pools, cache client and trust state."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> Flask:
            app = Flask(f"hybrid_{len(stack._exit_callbacks)}")
            app.config.update({**hybrid_config, **overrides})
            SmgHistory(app)
            stack.callback(get_state(app).backend.close)
            return app

        yield make


def backend_of(app: Flask) -> Any:
    return get_state(app).backend


def store_of(app: Flask, owner: str = "alice") -> Any:
    return get_state(app).store_for(owner)


def settle(*apps: Flask) -> None:
    """Wait until the fills that the apps' misses left to the background
    (``fills.py``) have run: the next read of those conversations hits."""
    for app in apps:
        assert backend_of(app).fills.wait(10), "a cache fill did not finish in 10 s"


@contextmanager
def counted_statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements the app's backend sends while the block runs."""
    seen: list[str] = []
    engine = backend_of(app).sql.engine

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
