"""The Flask extension object and the request-scoped ``history`` proxy.

``SmgHistory`` keeps no per-app state itself: each app's settings and backend
live in ``app.extensions["smg_history"]`` (an ``_AppState``), so one object
serves many apps and the app-factory pattern works.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request
from werkzeug.local import LocalProxy

from .backends.base import Backend, load_backend_class
from .config import Settings, load_settings
from .errors import ConfigError, Unauthorized
from .metrics import Metrics
from .store import HistoryStore

EXTENSION_KEY = "smg_history"
ANONYMOUS = "anonymous"


@dataclass
class _AppState:
    extension: SmgHistory
    settings: Settings
    backend: Backend
    allow_anonymous: bool
    metrics: Metrics

    def store(self, owner: str, app: Flask) -> HistoryStore:
        return HistoryStore(owner, self.backend, self.settings, metrics=self.metrics, sender=app)


class SmgHistory:
    """Durable, queryable conversation history for a Flask app.

    ``SmgHistory(app)`` or ``ext = SmgHistory(); ext.init_app(app)``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._identity_loader: Callable[[], str | None] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("SmgHistory is already registered on this app; call init_app once per app.")
        settings = load_settings(app.config)
        backend_cls = load_backend_class(settings.backend)
        backend = backend_cls(settings.backend, settings, app)
        allow_anonymous = settings.allow_anonymous
        if allow_anonymous is None:
            allow_anonymous = settings.backend in ("memory", "none")
        app.extensions[EXTENSION_KEY] = _AppState(self, settings, backend, allow_anonymous, Metrics(backend))
        if settings.register_blueprint:
            from .api import create_blueprint
            from .api.errors import register_unrouted

            app.register_blueprint(create_blueprint(settings), url_prefix=settings.url_prefix)
            register_unrouted(app, settings.url_prefix)
        if settings.metrics_route:
            _add_metrics_route(app, settings.metrics_route)
        from .cli import smg_history_cli

        app.cli.add_command(smg_history_cli)

    def identity_loader(self, fn: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register a callback returning the current owner (e.g. ``current_user.id``)
        or None; it is asked first, before bearer keys."""
        self._identity_loader = fn
        return fn

    def store_for(self, owner: str, app: Flask | None = None) -> HistoryStore:
        """A store bound to ``owner``, for code outside requests (jobs, CLI)."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        if not isinstance(owner, str) or not owner:
            raise ValueError("owner must be a non-empty string")
        return _state(app).store(owner, app)

    def backend(self, app: Flask | None = None) -> Backend:
        return _state(app).backend


def _add_metrics_route(app: Flask, route: str) -> None:
    from . import metrics

    if metrics.prometheus_client is None:
        raise ConfigError(
            "SMG_HISTORY_METRICS_ROUTE is set but prometheus_client is not installed: "
            "pip install 'flask-smg-history[metrics]', or unset the key.",
            param="SMG_HISTORY_METRICS_ROUTE",
        )

    def serve_metrics() -> Response:
        body = _state().metrics.exposition()
        return Response(body, mimetype=metrics.prometheus_client.CONTENT_TYPE_LATEST)

    app.add_url_rule(route, endpoint="smg_history_metrics", view_func=serve_metrics, methods=["GET"])


def _state(app: Flask | None = None) -> _AppState:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("SmgHistory is not initialised on this app: call SmgHistory(app) first.") from None


def _bearer_owner(settings: Settings) -> str | None:
    """The owner of the request's bearer key. Every configured key is compared
    in constant time, so timing reveals nothing about which keys exist."""
    keys = settings.api_keys
    header = request.headers.get("Authorization", "")
    if not keys or not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
    supplied = token.strip().encode()
    match = None
    for key, owner in keys.items():
        if hmac.compare_digest(supplied, key.encode()):
            match = owner
    if match is None:
        raise Unauthorized("Incorrect API key provided.")
    return match


def current_owner() -> str:
    """Resolve the caller's identity: identity loader, then bearer key, then
    ``anonymous`` when allowed. Raises ``Unauthorized`` otherwise."""
    state = _state()
    loader = state.extension._identity_loader
    if loader is not None:
        owner = loader()
        if owner is not None:
            return str(owner)
    owner = _bearer_owner(state.settings)
    if owner is not None:
        return owner
    if state.allow_anonymous:
        return ANONYMOUS
    raise Unauthorized("Missing credentials: send 'Authorization: Bearer <key>' with a key from SMG_HISTORY_API_KEYS.")


def _current_store() -> HistoryStore:
    store = g.get("_smg_history_store")
    if store is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        store = _state(app).store(current_owner(), app)
        g._smg_history_store = store
    return store


#: The history of the current request's caller.
history: HistoryStore = LocalProxy(_current_store)  # type: ignore[assignment]


def settings_of(app: Flask | None = None) -> Settings:
    return _state(app).settings
