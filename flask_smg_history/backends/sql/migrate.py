"""Our Alembic chain, and how the host's ``flask db upgrade`` runs it.

The design (see docs/backends/sql.md): the package ships an Alembic version
directory (``migrations/`` beside this module, branch label ``smg_history``)
whose revision is kept in a version table of its own,
``<SMG_HISTORY_TABLE_PREFIX>alembic_version``. It is therefore never a second
head in the host's chain, and ``flask db upgrade`` as typed (target ``head``)
keeps working for a host with or without migrations of its own. To make that
plain ``flask db upgrade`` also apply our chain, the app's ``db`` command group
(Flask-Migrate's) is replaced, for this app only, by a copy whose ``upgrade``
first brings the history tables to our head and then runs the host's upgrade
unchanged; ``downgrade smg_history@<target>`` moves only our chain. The host's
autogenerate is told to ignore our tables (``include_name``), so its ``flask
db migrate`` never proposes to drop them.

The same functions serve ``flask smg-history init-db`` for apps without
Flask-Migrate, ``SMG_HISTORY_CREATE_TABLES`` and the start-up schema check.
They take the backend as a ``MigrationTarget`` (what a chain run needs of it),
so this module imports nothing of ``backend.py``, which imports it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Protocol

import click
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, appcontext_pushed, current_app
from flask.cli import with_appcontext

from ...config import Settings
from . import fulltext
from .tables import Tables

BRANCH = "smg_history"
SCRIPT_LOCATION = "flask_smg_history.backends.sql:migrations"


class MigrationTarget(Protocol):
    """What running the chain needs of a SQL backend."""

    settings: Settings
    engine: sa.Engine
    tables: Tables
    write_options: dict[str, Any]

    def schema_changed(self) -> None:
        """Forget the checked schema revision: the chain just moved it."""


def _config(backend: MigrationTarget, connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes.update(
        smg_prefix=backend.settings.table_prefix,
        smg_schema=backend.settings.sql_schema,
        smg_version_table=version_table(backend.settings.table_prefix),
        smg_dialect=backend.engine.dialect.name,
        smg_search_config=backend.settings.postgres_search_config,
        smg_connection=connection,
    )
    return config


def version_table(prefix: str) -> str:
    return f"{prefix}alembic_version"


@functools.cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    """The newest revision this version of the package ships."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def is_known(revision: str) -> bool:
    """Whether this version of the package ships ``revision`` (a database
    migrated by a newer version holds one it does not know)."""
    return any(script.revision == revision for script in _scripts().walk_revisions())


def current_revision(backend: MigrationTarget, connection: sa.Connection) -> str | None:
    """The revision the database is at (None: our tables were never created)."""
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": version_table(backend.settings.table_prefix),
            "version_table_schema": backend.settings.sql_schema,
        },
    )
    return context.get_current_revision()


def upgrade(backend: MigrationTarget, revision: str = "heads", *, sql: bool = False) -> None:
    """Bring the history tables to ``revision`` (default: the newest), or
    print the SQL for it with ``sql=True``."""
    _run(backend, lambda config: command.upgrade(config, revision, sql=sql), sql)


def downgrade(backend: MigrationTarget, revision: str, *, sql: bool = False) -> None:
    """Move the history tables back to ``revision`` (``smg_history@base``
    drops them)."""
    _run(backend, lambda config: command.downgrade(config, revision, sql=sql), sql)


def _run(backend: MigrationTarget, fn: Callable[[Config], None], offline: bool) -> None:
    if offline:
        fn(_config(backend))
        return
    with backend.engine.connect() as connection:
        connection.execution_options(**backend.write_options)
        if connection.dialect.name == "postgresql":
            # Several app processes starting at once (gunicorn workers with
            # SMG_HISTORY_CREATE_TABLES) must not run the chain side by side:
            # the first migrates, the others wait here and find nothing to do.
            # (SQLite's BEGIN IMMEDIATE serializes them already.)
            key = f"{backend.settings.sql_schema or ''}.{version_table(backend.settings.table_prefix)}"
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
        fn(_config(backend, connection))
        connection.commit()
    backend.schema_changed()


# -- Flask-Migrate integration ---------------------------------------------------
def upgrade_command(app: Flask) -> str | None:
    """``flask db upgrade`` (under the name Flask-Migrate was given) when the
    app has Flask-Migrate's command group, else ``None``: what to tell a host
    whose tables are missing, asked when the message is built (``Migrate``
    may be set up after ``SmgHistory``)."""
    state = app.extensions.get("migrate")
    name = getattr(getattr(state, "migrate", None), "command", None)
    if not isinstance(name, str) or name not in app.cli.commands:
        return None
    return f"flask {name} upgrade"


def install_flask_migrate_hook(app: Flask, backend: MigrationTarget) -> Callable[[], None]:
    """Make the app's ``flask db upgrade`` apply our chain, whether Migrate was
    initialised before or after SmgHistory: if it is not there yet, retry when
    the CLI pushes the app context (Flask loads the app and pushes its context
    before it looks up the ``db`` command). Returns what stops retrying."""

    def stop() -> None:
        appcontext_pushed.disconnect(retry, app)

    def retry(sender: Flask, **extra: Any) -> None:
        if _install(app, backend):
            stop()

    if not _install(app, backend):
        appcontext_pushed.connect(retry, app, weak=False)
    return stop


def _install(app: Flask, backend: MigrationTarget) -> bool:
    state = app.extensions.get("migrate")
    if state is None:
        return False
    name = state.migrate.command
    group = app.cli.commands.get(name)
    if group is None or getattr(group, "smg_history_wrapped", False):
        return group is not None
    assert isinstance(group, click.Group)
    ours = click.Group(
        name=group.name,
        commands=dict(group.commands),
        params=group.params,
        callback=group.callback,
        help=group.help,
    )
    ours.smg_history_wrapped = True  # type: ignore[attr-defined]
    ours.add_command(_wrapped_upgrade(group.commands["upgrade"], backend))
    ours.add_command(_wrapped_downgrade(group.commands["downgrade"], backend))
    app.cli.add_command(ours, name)
    _exclude_from_autogenerate(state.configure_args, backend)
    return True


def _wrapped_upgrade(original: click.Command, backend: MigrationTarget) -> click.Command:
    @click.pass_context
    def upgrade_both(ctx: click.Context, **params: Any) -> None:
        upgrade(backend, sql=params["sql"])
        if not params["sql"]:
            click.echo(f"flask-smg-history: history tables at revision {head_revision()}.")
        directory = params["directory"] or current_app.extensions["migrate"].directory
        if os.path.isfile(os.path.join(directory, "env.py")):
            ctx.invoke(original.callback, **params)  # type: ignore[arg-type]
        else:
            click.echo(f"No migrations directory {directory!r} for the app itself: nothing else to upgrade.")

    return click.Command(
        original.name,
        params=original.params,
        callback=with_appcontext(upgrade_both),
        help=f"{(original.help or '').rstrip('.')}; also the flask-smg-history tables (their own Alembic chain).",
    )


def _wrapped_downgrade(original: click.Command, backend: MigrationTarget) -> click.Command:
    @click.pass_context
    def downgrade_either(ctx: click.Context, **params: Any) -> None:
        if params["revision"].startswith(f"{BRANCH}@"):
            downgrade(backend, params["revision"], sql=params["sql"])
        else:
            ctx.invoke(original.callback, **params)  # type: ignore[arg-type]

    return click.Command(
        original.name,
        params=original.params,
        callback=with_appcontext(downgrade_either),
        help=f"{(original.help or '').rstrip('.')}. '{BRANCH}@base' (or '{BRANCH}@-1') moves only the "
        "flask-smg-history tables.",
    )


def _exclude_from_autogenerate(configure_args: dict[str, Any], backend: MigrationTarget) -> None:
    """Keep the host's ``flask db migrate`` from proposing to drop our tables
    when they live in the host's database."""
    ours = {t.name for t in backend.tables.metadata.tables.values()}
    ours.add(version_table(backend.settings.table_prefix))
    ours |= fulltext.sqlite_tables(backend.settings.table_prefix)
    previous = configure_args.get("include_name")

    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "table" and name in ours:
            return False
        return previous(name, type_, parent_names) if previous else True

    configure_args["include_name"] = include_name
