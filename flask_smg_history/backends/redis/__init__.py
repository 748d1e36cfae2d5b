"""The ``redis`` backend (redis-py; standalone servers and Redis Cluster).

``backend.py`` holds the request paths, ``operations.py`` the bulk operations
(erasure, purge, export, import, stats), ``codec.py`` how records become hash
fields and script arguments, ``scripts.py`` the Lua scripts and key layout,
and ``durability.py`` what a restart of the server would lose (the health
report).
"""

from .backend import RedisBackend

__all__ = ["RedisBackend"]
