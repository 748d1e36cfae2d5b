"""One way to check an error, whole: its class or status, ``type``, ``code``,
``param`` and ``message`` together.

A test that checks only the status (or only ``param``) passes when the
package forgets the ``code``, names the wrong ``param`` or says something
misleading; these helpers make each error test pin all four fields, so a
regression in any of them fails it.

``message`` is the exact text, or a compiled pattern that must match it whole
(for messages that carry a driver's exception name or a minted ID).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flask_smg_history import HistoryError

from .openai_spec import validate

Message = str | re.Pattern[str]


def _same_message(actual: Any, expected: Message) -> bool:
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.fullmatch(actual) is not None
    return actual == expected


def check_error(
    exc: BaseException,
    cls: type[HistoryError],
    *,
    message: Message,
    param: str | None,
    code: str | None = None,
) -> HistoryError:
    """``exc`` is exactly a ``cls`` with this message, param and code (and the
    class's own status and type)."""
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    assert isinstance(exc, HistoryError)
    found = {"message": exc.message, "param": exc.param, "code": exc.code}
    wanted = {"message": expected_text(exc.message, message), "param": param, "code": code}
    assert found == wanted
    return exc


def expected_text(actual: Any, expected: Message) -> Any:
    """``expected`` as it should compare equal to ``actual``: a pattern that
    matches stands for the text it matched (so a failing comparison shows
    both texts side by side)."""
    return actual if _same_message(actual, expected) else expected


@contextmanager
def raises(
    cls: type[HistoryError], *, message: Message, param: str | None, code: str | None = None
) -> Iterator[pytest.ExceptionInfo[HistoryError]]:
    """``pytest.raises(cls)`` that also checks the whole error on the way out."""
    with pytest.raises(cls) as info:
        yield info
    check_error(info.value, cls, message=message, param=param, code=code)


def envelope(
    resp: Any,
    status: int,
    *,
    message: Message,
    param: str | None,
    code: str | None = None,
    type_: str | None = None,
) -> dict[str, Any]:
    """``resp`` (a Flask test response) is ``status`` with exactly this error
    envelope, valid against OpenAI's ``ErrorResponse``, and a 4xx says
    ``x-should-retry: false``. ``type_`` defaults by status, as the API maps
    it: ``server_error`` for 5xx, ``invalid_request_error`` otherwise.
    Returns the ``error`` object."""
    body = resp.get_json(silent=True)
    assert resp.status_code == status, (resp.status_code, body or resp.get_data(as_text=True)[:300])
    assert isinstance(body, dict) and set(body) == {"error"}, body
    validate("ErrorResponse", body)
    error = body["error"]
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    wanted = {
        "message": expected_text(error.get("message"), message),
        "type": type_,
        "param": param,
        "code": code,
    }
    assert error == wanted
    if 400 <= status < 500:
        assert resp.headers.get("x-should-retry") == "false"
    return error


def shown(record_id: str) -> str:
    """An ID as messages repeat it: whole up to 128 characters, else its
    first 128 and "…"."""
    return record_id if len(record_id) <= 128 else record_id[:128] + "…"


def missing(kind: str, record_id: str) -> tuple[str, str]:
    """(message, param) of the 404 for a record that does not exist, is
    expired or is another owner's: the three look alike."""
    record_id = shown(record_id)
    return {
        "conversation": (f"Conversation with id '{record_id}' not found.", "conversation_id"),
        "item": (f"Item with id '{record_id}' not found.", "item_id"),
        "response": (f"Response with id '{record_id}' not found.", "response_id"),
        "feedback": (f"No feedback for response with id '{record_id}'.", "response_id"),
    }[kind]


def malformed(param: str, value: str, prefix: str) -> str:
    """The message of an ID of the wrong kind (400)."""
    return f"Invalid '{param}': '{shown(value)}'. Expected an ID that begins with '{prefix}'."


@contextmanager
def sdk_raises(
    cls: type[Exception], status: int, *, message: Message, param: str | None, code: str | None = None
) -> Iterator[pytest.ExceptionInfo[Exception]]:
    """``pytest.raises`` for the ``openai`` SDK's exception ``cls``, checking
    the status and the whole error body the SDK parsed from the envelope."""
    with pytest.raises(cls) as info:
        yield info
    exc: Any = info.value
    assert exc.status_code == status
    body = exc.body
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    wanted = {"message": expected_text(body.get("message"), message), "type": type_, "param": param, "code": code}
    assert body == wanted
    assert (exc.type, exc.param, exc.code) == (type_, param, code)
