"""The ``file`` backend: pretty-printed JSON files in a folder, one folder per
owner and per conversation.

``backend.py`` holds the request paths and ``operations.py`` the bulk
operations (erasure, purge, export, import), on ``layout.py`` (where each
record's file is), ``codec.py`` (records to JSON documents and back) and
``storage.py`` (names, locks, atomic writes, backups).
"""

from .backend import FileBackend

__all__ = ["FileBackend"]
