"""Per-app state, identity resolution and the ``history`` proxy.

Below the HTTP API (``api/``) and the CLI (``cli.py``), which both read it, and
above the store and the backends, which it wires together. ``SmgHistory``
(``extension.py``) builds one ``HistoryState`` per app at ``init_app`` and keeps
it in ``app.extensions["smg_history"]``; everything else reaches it through
``get_state``, the documented accessor, so the key stays an implementation
detail.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from werkzeug.local import LocalProxy

from .backends import Backend
from .config import Settings
from .errors import Unauthorized
from .metrics import Metrics
from .responses import ResponsesService
from .store import HistoryStore, guarded

T = TypeVar("T")

EXTENSION_KEY = "smg_history"
ANONYMOUS = "anonymous"
_STORE = "_smg_history_store"


class IdentityHooks:
    """The host's identity loader, shared by every app one ``SmgHistory``
    serves: ``@ext.identity_loader`` may run after ``init_app``, and the apps
    see it at once."""

    def __init__(self) -> None:
        self.loader: Callable[[], str | None] | None = None


@dataclass
class HistoryState:
    """What one app's history runs on. Read it with ``get_state(app)``."""

    app: Flask
    settings: Settings
    backend: Backend
    metrics: Metrics
    allow_anonymous: bool
    identity: IdentityHooks
    responses: ResponsesService

    def store_for(self, owner: str) -> HistoryStore:
        """A store bound to ``owner``, for code inside or outside requests
        (jobs, the CLI). The app is the sender of its signals."""
        if not isinstance(owner, str) or not owner:
            raise ValueError("owner must be a non-empty string")
        if not owner.isascii():  # a lone surrogate (JSON can carry one) no database, file or key can store
            try:
                owner.encode()
            except UnicodeEncodeError:
                raise ValueError("owner must be valid Unicode text (it has a lone surrogate)") from None
        return HistoryStore(
            owner, self.backend, self.settings, metrics=self.metrics, sender=self.app, responder=self.responses
        )

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A backend call outside any owner's store (health, the CLI), with
        the store's failure handling, metrics and logs."""
        return guarded(self.backend, self.metrics, operation, fn, *args, **kwargs)


def get_state(app: Flask | None = None) -> HistoryState:
    """The history state of ``app`` (default: the current app)."""
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
    state = get_state()
    loader = state.identity.loader
    if loader is not None:
        owner = loader()
        if owner is not None:
            return str(owner)
    owner = _bearer_owner(state.settings)
    if owner is not None:
        return owner
    if state.allow_anonymous:
        return ANONYMOUS
    raise _no_identity(signs_in=loader is not None, takes_keys=bool(state.settings.api_keys))


def _no_identity(*, signs_in: bool, takes_keys: bool) -> Unauthorized:
    """The 401 of a caller with no identity, in the app's own terms: an app
    whose users sign in (an identity loader) says so, and names the bearer
    key only when it accepts keys."""
    header, keys = "'Authorization: Bearer <key>'", "with a key from SMG_HISTORY_API_KEYS"
    if not signs_in:
        return Unauthorized(f"Missing credentials: send {header} {keys}.")
    not_signed_in = "Not signed in: this app's identity loader found no user for this request"
    if takes_keys:
        return Unauthorized(f"{not_signed_in}, and it sent no {header} header {keys}.")
    return Unauthorized(f"{not_signed_in}.")


def _current_store() -> HistoryStore:
    store = g.get(_STORE)
    if store is None:
        store = get_state().store_for(current_owner())
        setattr(g, _STORE, store)
    return store


#: The history of the current request's caller.
history: HistoryStore = LocalProxy(_current_store)  # type: ignore[assignment]
