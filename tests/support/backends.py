"""The backends the contract suite runs on, each a context manager that yields
the app config for a fresh, empty store and cleans up afterwards.

A backend module's tests register here; ``SMG_HISTORY_TEST_BACKENDS`` (comma
separated) narrows a run to some of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

BackendFactory = Callable[[Path], AbstractContextManager[dict[str, Any]]]
FACTORIES: dict[str, BackendFactory] = {}

#: The chunk sizes a backend's bulk operations cut their work into, read from
#: the backend's own constants so the boundary tests follow them: ``erase``
#: (records per erase step), ``conversations``, ``items`` (of one
#: conversation) and ``responses`` (per export read), ``purge`` (records per
#: purge step). A backend that does not chunk an operation gets the default:
#: the largest page a listing serves, itself a boundary of every listing.
DEFAULT_BATCHES = {"erase": 20, "conversations": 100, "items": 100, "responses": 100, "purge": 100}
BATCHES: dict[str, dict[str, int]] = {}
#: Backends that keep conversation and response IDs per owner, so two owners
#: may each hold one under the same ID (the others refuse the second).
PER_OWNER_IDS = {"redis", "redis-cluster", "file"}


def register(name: str, batches: dict[str, int] | None = None) -> Callable[[BackendFactory], BackendFactory]:
    def decorate(factory: BackendFactory) -> BackendFactory:
        FACTORIES[name] = factory
        BATCHES[name] = {**DEFAULT_BATCHES, **(batches or {})}
        return factory

    return decorate


@register("memory")
@contextmanager
def memory(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {"SMG_HISTORY_BACKEND": "memory"}


def selected() -> list[str]:
    from . import backends_file, backends_hybrid, backends_redis, backends_sql  # noqa: F401 - they register their backends

    wanted = os.environ.get("SMG_HISTORY_TEST_BACKENDS")
    names = sorted(FACTORIES)
    if wanted:
        names = [n for n in names if n in {w.strip() for w in wanted.split(",")}]
    return names
