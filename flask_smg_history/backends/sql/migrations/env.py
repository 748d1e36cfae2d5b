"""Alembic environment of flask-smg-history's own migration chain.

It is run by ``flask_smg_history.backends.sql.migrate`` (from ``flask db
upgrade`` or ``flask smg-history init-db``), never by the host's ``env.py``:
the chain keeps its revision in a version table of its own
(``<prefix>alembic_version``), so it is never a second head in the host's.
Everything it needs arrives in ``config.attributes``.
"""

from alembic import context

attributes = context.config.attributes
options = {
    "version_table": attributes["smg_version_table"],
    "version_table_schema": attributes["smg_schema"],
}

if context.is_offline_mode():
    context.configure(dialect_name=attributes["smg_dialect"], literal_binds=True, **options)
else:
    context.configure(connection=attributes["smg_connection"], **options)

with context.begin_transaction():
    context.run_migrations()
