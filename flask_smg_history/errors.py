"""The error types of the extension, each mapped to one HTTP status in
``api/errors.py``. Backends raise ``NotFound`` and ``InvalidRequest``; the store
turns driver failures into ``HistoryUnavailable``."""

from __future__ import annotations


class HistoryError(Exception):
    """Base class of every error this package raises on purpose."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ConfigError(HistoryError):
    """A ``SMG_HISTORY_*`` setting is missing, of the wrong type or not allowed.
    Raised at ``init_app`` so a misconfigured app fails to start."""


class InvalidRequest(HistoryError):
    status = 400
    type = "invalid_request_error"


class NotFound(HistoryError):
    """A record does not exist, has expired, or belongs to another owner: the
    three are indistinguishable on purpose."""

    status = 404
    type = "invalid_request_error"

    @classmethod
    def conversation(cls, conversation_id: str) -> NotFound:
        return cls(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")

    @classmethod
    def item(cls, item_id: str) -> NotFound:
        return cls(f"Item with id '{item_id}' not found.", param="item_id")

    @classmethod
    def response(cls, response_id: str) -> NotFound:
        return cls(f"Response with id '{response_id}' not found.", param="response_id")

    @classmethod
    def feedback(cls, response_id: str) -> NotFound:
        return cls(f"No feedback for response with id '{response_id}'.", param="response_id")


class Unauthorized(HistoryError):
    status = 401
    type = "invalid_request_error"


class PayloadTooLarge(HistoryError):
    status = 413
    type = "invalid_request_error"


class HistoryUnavailable(HistoryError):
    """The backend cannot be reached or failed; the request may be retried."""

    status = 503
    type = "server_error"


class NotSupported(HistoryError):
    """A feature this backend cannot provide (documented per backend)."""

    status = 501
    type = "invalid_request_error"
