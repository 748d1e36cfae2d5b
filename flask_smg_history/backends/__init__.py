"""The storage backends: the ``Backend`` base class and the registry of them.

One module or subpackage per backend, each on the shared base
(``backends/base.py``): ``memory``, ``none``, ``sql/`` (``sqlite``,
``postgres`` and ``oracle`` through SQLAlchemy), ``redis/`` and ``file/``. A name is
looked up in ``BACKENDS``, then in the ``flask_smg_history.backends`` entry
point group, then as a dotted import path (``package.module.Class`` or
``package.module:Class``), and its module is imported only when selected, so a
``memory`` user needs no database driver.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from werkzeug.utils import import_string

from ..errors import ConfigError
from .base import Backend

__all__ = ["BACKENDS", "ENTRY_POINT_GROUP", "Backend", "load_backend_class"]

#: Built-in backend names and the class that serves each.
BACKENDS: dict[str, str] = {
    "memory": "flask_smg_history.backends.memory:MemoryBackend",
    "none": "flask_smg_history.backends.none:NoneBackend",
    "sqlite": "flask_smg_history.backends.sql:SqlBackend",
    "postgres": "flask_smg_history.backends.sql:SqlBackend",
    "oracle": "flask_smg_history.backends.sql:SqlBackend",
    "redis": "flask_smg_history.backends.redis:RedisBackend",
    "file": "flask_smg_history.backends.file:FileBackend",
    "postgres+redis": "flask_smg_history.backends.hybrid:HybridBackend",
    "sqlite+redis": "flask_smg_history.backends.hybrid:HybridBackend",
}

ENTRY_POINT_GROUP = "flask_smg_history.backends"


def load_backend_class(name: str) -> type[Backend]:
    """Resolve a backend name, entry point name or dotted path to its class."""
    target = BACKENDS.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return ep.load()
    if target is None and "." in name:
        target = name
    if target is None:
        raise ConfigError(
            f"SMG_HISTORY_BACKEND: unknown backend {name!r}; accepted values are "
            f"{', '.join(sorted(set(BACKENDS)))}, an entry point in {ENTRY_POINT_GROUP!r}, or a dotted import path.",
            param="SMG_HISTORY_BACKEND",
        )
    try:
        cls = import_string(target.replace(":", "."))
    except ImportError as exc:
        raise ConfigError(
            f"SMG_HISTORY_BACKEND={name!r} cannot be imported: {exc}", param="SMG_HISTORY_BACKEND"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"SMG_HISTORY_BACKEND={name!r} is not a Backend subclass.", param="SMG_HISTORY_BACKEND")
    return cls
