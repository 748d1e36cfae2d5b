"""The ``flask smg-history`` command group."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

smg_history_cli = AppGroup("smg-history", help="Inspect and operate the conversation history store.")


@smg_history_cli.command("check")
def check() -> None:
    """Connect to the backend and print its settings (secrets masked)."""
    from .extension import _state
    from .store import guarded

    state = _state(current_app)
    try:
        detail = guarded(state.backend, state.metrics, "health", state.backend.health)
    except Exception as exc:  # noqa: BLE001 - reported, then a non-zero exit
        raise click.ClickException(f"backend {state.backend.name!r} is not usable: {exc}") from exc
    click.echo(f"backend: {state.backend.name}")
    for name, value in state.settings.masked().items():
        click.echo(f"  {name} = {value!r}")
    click.echo(f"status: ok {detail}")


@smg_history_cli.command("init-db")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
def init_db(sql: bool) -> None:
    """Create or upgrade the history tables (SQL backends), for apps without
    Flask-Migrate; with Flask-Migrate, `flask db upgrade` does the same."""
    from .backends import sql_migrate
    from .backends.sql import SqlBackend
    from .extension import _state

    backend = _state(current_app).backend
    if not isinstance(backend, SqlBackend):
        raise click.ClickException(f"backend {backend.name!r} has no tables to create (SQL backends only).")
    try:
        sql_migrate.upgrade(backend, sql=sql)
    except backend.unavailable_errors as exc:
        raise click.ClickException(f"backend {backend.name!r} is unreachable ({type(exc).__name__}).") from exc
    if not sql:
        click.echo(f"history tables at revision {sql_migrate.head_revision()}")
