"""The SQL backend: ``sqlite``, ``postgres`` and ``oracle`` through SQLAlchemy.

``backend.py`` holds the request paths and ``admin.py`` the bulk operations
(erasure, purge, export, stats), on the statements of ``items.py`` (items and
their links), ``importing.py`` (upserting exported records) and ``rows.py``
(records to rows and back), over the tables of ``tables.py``. ``engine.py``
builds each dialect's engine (``oracle.py``: python-oracledb's connect
options); ``migrate.py`` runs the Alembic chain in ``migrations/`` and hooks it
into the host's ``flask db upgrade``.
"""

from .backend import SqlBackend

__all__ = ["SqlBackend"]
