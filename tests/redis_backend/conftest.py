"""Fixtures of the Redis-specific tests: the same apps as the contract suite,
narrowed to the Redis backends (standalone and cluster), plus helpers that
look at the keys the backend wrote."""

from __future__ import annotations

from typing import Any

import pytest

from flask_smg_history import get_state

from ..support import backends

REDIS_BACKENDS = [name for name in backends.selected() if name.startswith("redis")]


@pytest.fixture(params=REDIS_BACKENDS)
def backend_name(request) -> str:
    return request.param


def backend_of(app: Any) -> Any:
    return get_state(app).backend


def store_of(app: Any, owner: str = "alice") -> Any:
    return get_state(app).store_for(owner)


def keys_under(app: Any, pattern: str = "*") -> set[str]:
    """Every key of this app's prefix matching ``pattern`` (SCAN, every master)."""
    backend = backend_of(app)
    return {k.decode() for k in backend.client.scan_iter(match=f"{backend.prefix}{pattern}", count=1000)}
