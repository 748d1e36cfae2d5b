from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_smg_history import SmgHistory

from . import backends


def build_app(config: dict[str, Any], instance_path: Path | None = None) -> Flask:
    app = Flask("smg_test_app", instance_path=str(instance_path) if instance_path else None)
    app.config.update(TESTING=True, **config)
    SmgHistory(app)
    return app


@pytest.fixture(params=backends.selected())
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def make_app(backend_name: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on the backend under test; extra keyword arguments are added
    to the config. Every app built shares the same fresh database."""
    with backends.FACTORIES[backend_name](tmp_path) as base:
        built: list[Flask] = []

        def factory(**extra: Any) -> Flask:
            app = build_app({**base, **extra}, tmp_path / f"instance{len(built)}")
            built.append(app)
            return app

        yield factory
        for app in built:
            app.extensions["smg_history"].backend.close()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def alice(app):
    return app.extensions["smg_history"].extension.store_for("alice", app)


@pytest.fixture
def bob(app):
    return app.extensions["smg_history"].extension.store_for("bob", app)
