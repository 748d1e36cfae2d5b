"""The example chat app: a real page on flask-smg-history.

``create_app`` is what ``flask --app example_app run`` calls. The app binds the
history owner to the user signed in to its Flask session, so every store call
and every call the page's JavaScript makes to the ``/v1`` blueprint sees only
that user's records.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, session

from flask_smg_history import SmgHistory

from . import auth, chat, pages
from .responders import make_responder
from .turns import StreamRegistry

#: The backend used when neither the config nor ``SMG_HISTORY_BACKEND`` in the
#: environment names one: a SQLite file in the instance folder, its tables
#: created at start-up, so a first run needs no database server and no command.
DEFAULT_BACKEND = "sqlite"

#: Only the app's own files may run or style the page: whatever a stored
#: message or a model's reply says, it cannot bring in a script, a frame or a
#: remote image.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def create_app(config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the app. ``instance_path`` (default: ``instance/`` beside the
    package) holds the SQLite file and the session key."""
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    config = dict(config or {})
    app.config.update(
        SESSION_COOKIE_SAMESITE="Lax",
        SMG_HISTORY_ALLOW_ANONYMOUS=False,
        EXAMPLE_LLM_BASE_URL=os.environ.get("EXAMPLE_LLM_BASE_URL") or None,
        EXAMPLE_LLM_API_KEY=os.environ.get("EXAMPLE_LLM_API_KEY") or None,
        EXAMPLE_LLM_MODEL=os.environ.get("EXAMPLE_LLM_MODEL") or "gpt-4o-mini",
        EXAMPLE_MAX_MESSAGE_CHARS=32_000,
        EXAMPLE_LOCAL_TOKEN_DELAY=0.02,
    )
    if "SMG_HISTORY_BACKEND" not in os.environ:
        app.config["SMG_HISTORY_BACKEND"] = DEFAULT_BACKEND
    if "SMG_HISTORY_CREATE_TABLES" not in os.environ:
        app.config["SMG_HISTORY_CREATE_TABLES"] = True
    app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ.get("EXAMPLE_SECRET_KEY") or _instance_secret(app)

    ext = SmgHistory()

    @ext.identity_loader
    def signed_in_user() -> str | None:
        return session.get("user")

    chat.register_errors(app)  # before the extension's, which defer to these outside /v1
    responder = make_responder(app.config)
    ext.init_app(app, upstream=responder.local)
    app.extensions["example_responder"] = responder
    app.extensions["example_streams"] = StreamRegistry()
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(chat.bp)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _instance_secret(app: Flask) -> str:
    """A session key kept in the instance folder, so sign-ins survive a restart
    without anyone having to configure a secret for a local demo."""
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
