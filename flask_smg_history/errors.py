"""The error types of the extension, each mapped to one HTTP status in
``api/errors.py``. Backends raise ``NotFound``, ``InvalidRequest``,
``NotSupported`` and ``CorruptRecord``; the store turns driver failures into ``HistoryUnavailable``.

The messages that several backends raise are built here, once, by the
classmethods (``NotFound.conversation``, ``InvalidRequest.unknown_cursor``...),
so every backend says the same words with the same ``param`` and ``code``."""

from __future__ import annotations

import re

#: The longest ID a message repeats whole; a longer one is cut (``shown_id``).
SHOWN_ID_CHARS = 128
#: A quoted text longer than that, in a phrase naming a record.
_LONG_QUOTED = re.compile(rf"'([^']{{{SHOWN_ID_CHARS + 1},}})'")


def shown_id(value: object) -> str:
    """An ID as a message repeats it: whole up to ``SHOWN_ID_CHARS``
    characters, else its start and "…", so a 5,000-character ID does not
    fill the answer (or a log line)."""
    text = str(value)
    return text if len(text) <= SHOWN_ID_CHARS else text[:SHOWN_ID_CHARS] + "…"


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

    @classmethod
    def unknown_cursor(cls, after: str) -> InvalidRequest:
        """A page was asked for after a record the listing does not hold."""
        return cls(f"No record with id '{shown_id(after)}' to list after.", param="after")

    @classmethod
    def too_much_metadata(cls, pairs: int, maximum: int) -> InvalidRequest:
        """A metadata patch whose result, merged with what is stored, would
        exceed the cap; nothing is written."""
        return cls(
            f"Invalid 'metadata': the update would leave the conversation with {pairs} metadata key-value pairs, "
            f"more than the {maximum} allowed; remove keys by setting them to null in the same update.",
            param="metadata",
        )

    @classmethod
    def previous_response_not_found(cls, response_id: str) -> InvalidRequest:
        """OpenAI's answer to a ``previous_response_id`` this caller cannot
        continue from: unknown, expired, stored with ``store: false`` or
        another owner's (a 400, not a 404, as OpenAI answers)."""
        return cls(
            f"Previous response with id '{shown_id(response_id)}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )

    @classmethod
    def response_id_taken(cls, response_id: str) -> InvalidRequest:
        """A stored response's ID is held by another owner's response."""
        return cls(f"Response id '{shown_id(response_id)}' is not available.", param="id")

    @classmethod
    def already_in_conversation(cls, item_id: str, conversation_id: str) -> InvalidRequest:
        return cls(
            f"Item with id '{shown_id(item_id)}' is already in conversation '{shown_id(conversation_id)}'.",
            param="items",
            code="item_already_in_conversation",
        )

    @classmethod
    def item_exists(cls, item_id: str) -> InvalidRequest:
        """A new item reuses the ID of one the owner has elsewhere."""
        return cls(
            f"Item with id '{shown_id(item_id)}' already exists; to add it to this conversation too, send "
            f'{{"type": "item_reference", "id": "{shown_id(item_id)}"}}.',
            param="items",
            code="item_already_exists",
        )


class NotFound(HistoryError):
    """A record does not exist, has expired, or belongs to another owner: the
    three are indistinguishable on purpose."""

    status = 404
    type = "invalid_request_error"

    @classmethod
    def conversation(cls, conversation_id: str) -> NotFound:
        return cls(f"Conversation with id '{shown_id(conversation_id)}' not found.", param="conversation_id")

    @classmethod
    def item(cls, item_id: str) -> NotFound:
        return cls(f"Item with id '{shown_id(item_id)}' not found.", param="item_id")

    @classmethod
    def response(cls, response_id: str) -> NotFound:
        return cls(f"Response with id '{shown_id(response_id)}' not found.", param="response_id")

    @classmethod
    def feedback(cls, response_id: str) -> NotFound:
        return cls(f"No feedback for response with id '{shown_id(response_id)}'.", param="response_id")


class Unauthorized(HistoryError):
    status = 401
    type = "invalid_request_error"


class PayloadTooLarge(HistoryError):
    """A request body larger than ``SMG_HISTORY_MAX_REQUEST_BYTES``."""

    status = 413
    type = "invalid_request_error"


class HistoryUnavailable(HistoryError):
    """The backend cannot be reached or failed; the request may be retried."""

    status = 503
    type = "server_error"


class NotSupported(HistoryError):
    """A feature this backend cannot provide (search on Oracle, for one): a
    documented, permanent answer for this deployment, not an outage, so
    clients are told not to retry it."""

    status = 501
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = "not_supported"):
        super().__init__(message, param=param, code=code)

    @classmethod
    def no_upstream(cls) -> NotSupported:
        """``POST /v1/responses`` on an app with no model server to call."""
        return cls(
            "Creating responses needs a model server: set SMG_HISTORY_UPSTREAM_URL to an OpenAI-compatible "
            "server's base URL (or give init_app an in-process upstream).",
            code="upstream_not_configured",
        )

    @classmethod
    def search(cls, backend: str, reason: str) -> NotSupported:
        """Full-text search on a backend that has none."""
        return cls(f"Search is not supported by the {backend} backend: {reason}")


class CorruptRecord(HistoryError):
    """A stored value is not in the form this backend writes (on Redis: a key
    of ours holding something else). Reported for that one record, as a 500."""

    status = 500
    type = "server_error"

    @classmethod
    def of(cls, what: str, reason: str = "") -> CorruptRecord:
        """``what`` names the record (``Conversation 'conv_…'``); an ID in it
        longer than ``SHOWN_ID_CHARS`` is cut here, so backends build it
        cheaply on every call and only a failure pays for the cut."""
        detail = f" ({reason})" if reason else ""
        what = _LONG_QUOTED.sub(lambda m: f"'{shown_id(m.group(1))}'", what)
        return cls(f"{what} is stored in a form this backend cannot read{detail}.")


class UpstreamError(HistoryError):
    """The model server behind ``POST /v1/responses`` refused or failed.

    An answer of the upstream's own (a 404 for an unknown model, a 400 for a
    too long context) keeps its status and OpenAI error fields; a connection
    failure is a 502 and a timeout a 504. Messages name the setting to check
    and never carry the upstream's URL or key. ``context_too_long`` marks the
    answer ``truncation: "auto"`` retries with fewer items."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str = "server_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = type

    @property
    def context_too_long(self) -> bool:
        text = self.message.lower()
        return self.status == 400 and (
            self.code == "context_length_exceeded" or "context length" in text or "context window" in text
        )
