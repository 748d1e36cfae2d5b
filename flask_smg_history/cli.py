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
