"""The Flask extension object: ``SmgHistory(app)`` or ``init_app(app)``.

``SmgHistory`` keeps no per-app state itself: ``init_app`` validates the
settings, builds the backend and stores a ``HistoryState`` (``state.py``) in
``app.extensions["smg_history"]``, then registers the HTTP API and the CLI. One
object serves many apps and the app-factory pattern works. The top of the
layers: it imports the API and the CLI, and nothing imports it but the
package's ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response

from . import metrics
from .api import create_blueprint, register_unrouted
from .backends import Backend, load_backend_class
from .cli import smg_history_cli
from .config import load_settings
from .errors import ConfigError
from .responses import ResponsesService, Upstream
from .state import EXTENSION_KEY, HistoryState, IdentityHooks, get_state
from .store import HistoryStore


class SmgHistory:
    """Durable, queryable conversation history for a Flask app.

    ``SmgHistory(app)`` or ``ext = SmgHistory(); ext.init_app(app)``.
    """

    def __init__(self, app: Flask | None = None, *, upstream: Upstream | None = None) -> None:
        self._identity = IdentityHooks()
        if app is not None:
            self.init_app(app, upstream=upstream)

    def init_app(self, app: Flask, *, upstream: Upstream | None = None) -> None:
        """Set up the history of ``app``. ``upstream`` is an in-process model
        (an object with ``stream(request)``, see ``flask_smg_history.responses``)
        that ``POST /v1/responses`` calls instead of ``SMG_HISTORY_UPSTREAM_URL``."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("SmgHistory is already registered on this app; call init_app once per app.")
        settings = load_settings(app.config)
        backend_cls = load_backend_class(settings.backend)
        backend = backend_cls(settings.backend, settings, app)
        allow_anonymous = settings.allow_anonymous
        if allow_anonymous is None:
            allow_anonymous = settings.backend in ("memory", "none")
        app.extensions[EXTENSION_KEY] = HistoryState(
            app,
            settings,
            backend,
            metrics.Metrics(backend),
            allow_anonymous,
            self._identity,
            ResponsesService(settings, upstream),
        )
        if settings.register_blueprint:
            app.register_blueprint(create_blueprint(settings), url_prefix=settings.url_prefix)
            register_unrouted(app, settings.url_prefix)
        if settings.metrics_route:
            _add_metrics_route(app, settings.metrics_route)
        app.cli.add_command(smg_history_cli)

    def identity_loader(self, fn: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register a callback returning the current owner (e.g. ``current_user.id``)
        or None; it is asked first, before bearer keys, on every app this
        object serves."""
        self._identity.loader = fn
        return fn

    def store_for(self, owner: str, app: Flask | None = None) -> HistoryStore:
        """A store bound to ``owner``, for code outside requests (jobs, CLI)."""
        return get_state(app).store_for(owner)

    def backend(self, app: Flask | None = None) -> Backend:
        return get_state(app).backend


def _add_metrics_route(app: Flask, route: str) -> None:
    if metrics.prometheus_client is None:
        raise ConfigError(
            "SMG_HISTORY_METRICS_ROUTE is set but prometheus_client is not installed: "
            "pip install 'flask-smg-history[metrics]', or unset the key.",
            param="SMG_HISTORY_METRICS_ROUTE",
        )

    def serve_metrics() -> Response:
        body = get_state().metrics.exposition()
        return Response(body, mimetype=metrics.prometheus_client.CONTENT_TYPE_LATEST)

    app.add_url_rule(route, endpoint="smg_history_metrics", view_func=serve_metrics, methods=["GET"])
