"""The hybrid backends ``postgres+redis`` and ``sqlite+redis``: SQL is the
store of record, Redis a cache of hot conversations in front of it.

``backend.py`` delegates every call to an ``SqlBackend`` and serves the hot
reads from the cache; ``cache.py`` is the Redis window cache and its Lua
scripts; ``fills.py`` runs the fills misses leave behind (the window read by
``sql/window.py``); ``trust.py`` decides when a process may trust the cache
after Redis failed (the SQL cache epoch, ``sql/epoch.py``).
"""

from .backend import HybridBackend

__all__ = ["HybridBackend"]
