from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_smg_history import SmgHistory, get_state

from .support import backends
from .support.apps import build_app

# Before any test module imports it, so its asserts show both sides on failure.
pytest.register_assert_rewrite("tests.support.errors", "tests.support.turns")


def pytest_collection_modifyitems(config, items) -> None:
    """``scripts/mutation.py`` runs each mutated module against its own tests
    (``SMG_HISTORY_MUTATION_TESTS``: paths joined by ``os.pathsep``) out of
    the union ``[tool.mutmut]`` selects: the others are deselected."""
    wanted = os.environ.get("SMG_HISTORY_MUTATION_TESTS")
    if not wanted:
        return
    paths = tuple(p.rstrip("/") for p in wanted.split(os.pathsep) if p)
    kept, dropped = [], []
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        (kept if any(path == p or path.startswith(p + "/") for p in paths) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=backends.selected())
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def batch_sizes(backend_name: str) -> dict[str, int]:
    """The chunk sizes of the backend under test (``backends.BATCHES``)."""
    return backends.BATCHES[backend_name]


@pytest.fixture
def make_app(backend_name: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on the backend under test; extra keyword arguments are added
    to the config. Every app built shares the same fresh database."""
    with backends.FACTORIES[backend_name](tmp_path) as base:
        built: list[Flask] = []

        def factory(ext: SmgHistory | None = None, upstream: Any = None, **extra: Any) -> Flask:
            app = build_app({**base, **extra}, tmp_path / f"instance{len(built)}", ext, upstream)
            built.append(app)
            return app

        yield factory
        for app in built:
            get_state(app).backend.close()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def alice(app):
    return get_state(app).store_for("alice")


@pytest.fixture
def bob(app):
    return get_state(app).store_for("bob")
