"""The OpenAI error envelope, and the one place errors become HTTP answers."""

from __future__ import annotations

import logging

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import HistoryError

log = logging.getLogger("flask_smg_history")

_HTTP_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error"}


def envelope(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> Response:
    response = jsonify({"error": {"message": message, "type": type_, "param": param, "code": code}})
    response.status_code = status
    if 400 <= status < 500 or status == 501:
        # 4xx answers and 501 (not supported here) are final; the openai client
        # would otherwise retry 409s and every 5xx.
        response.headers["x-should-retry"] = "false"
    return response


def history_error_response(exc: HistoryError) -> Response:
    """The answer the HTTP API gives for ``exc``: its status and OpenAI's
    error envelope (and ``x-should-retry: false`` on 4xx and 501). Public so
    a host's own routes answer the same with one line, without touching its
    other error pages::

        app.register_error_handler(HistoryError, history_error_response)
    """
    if exc.status >= 500:
        log.warning("history request failed: %s", exc.message)
    return envelope(exc.status, exc.message, exc.type, exc.param, exc.code)


def http_error(exc: HTTPException):
    status = exc.code or 500
    type_ = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return envelope(status, exc.description or exc.name, type_)


def unexpected_error(exc: Exception):
    log.exception("unexpected error in the history API")
    return envelope(500, "The history service failed unexpectedly.", "server_error")


def register(blueprint) -> None:
    blueprint.register_error_handler(HistoryError, history_error_response)
    blueprint.register_error_handler(HTTPException, http_error)
    blueprint.register_error_handler(Exception, unexpected_error)


def register_unrouted(app, url_prefix: str) -> None:
    """Answer 404 and 405 in the envelope for URLs under the API's prefix
    that match no route (a blueprint's own handlers never see those), and
    leave every other URL to the host's handler or Flask's default."""
    prefix = url_prefix.rstrip("/") + "/"
    for code in (404, 405):
        previous = app.error_handler_spec.get(None, {}).get(code, {})
        host_handler = next(iter(previous.values()), None)

        def handle(exc: HTTPException, _host=host_handler):
            if request.path.startswith(prefix):
                return http_error(exc)
            return _host(exc) if _host is not None else exc

        app.register_error_handler(code, handle)
