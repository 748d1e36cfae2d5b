"""The ``openai`` client both HTTP adapters share, and the one place its
failures become ``UpstreamError``.

The client is the well-kept way to talk to an OpenAI-compatible server: it
owns the connection pool, timeouts, SSE parsing and error types. It is
optional (``pip install 'flask-smg-history[responses]'``), imported only when
``SMG_HISTORY_UPSTREAM_URL`` is set. Retries are off: a generation is not
idempotent, and the caller's own client decides whether to retry our answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UpstreamError

if TYPE_CHECKING:
    from ..config import Settings

#: Upstream answers we pass on as they are: the caller's request was at fault
#: (400, 404, 413, 422) or the upstream is busy (429, 5xx). A 401 or 403 is
#: about *our* key, not the caller's, so it becomes a 502 that says so.
_OWN_CREDENTIALS = (401, 403)


def make_client(settings: Settings) -> Any:
    try:
        import openai
    except ImportError:
        raise ConfigError(
            "SMG_HISTORY_UPSTREAM_URL is set but the openai package is not installed: "
            "pip install 'flask-smg-history[responses]'.",
            param="SMG_HISTORY_UPSTREAM_URL",
        ) from None
    return openai.OpenAI(
        base_url=settings.upstream_url,
        api_key=settings.upstream_api_key or "not-needed",
        timeout=settings.upstream_timeout,
        max_retries=0,
    )


def post(client: Any, path: str, body: dict[str, Any], cast_to: type, event_type: type) -> Any:
    """POST ``body`` as it is, through the client's documented ``post`` for
    endpoints it has no method for: its typed methods first walk every
    message against the client's parameter types (``maybe_transform``),
    about 0.2 ms a message, which at a hundred items of context costs more
    than everything else a turn does (measured by ``benchmarks/responses.py``:
    24 against 3 ms). The adapters build bodies already in the wire's shape.
    Streaming, retries off, timeouts, auth and error types are the client's."""
    import openai

    if body.get("stream"):
        return client.post(path, body=body, cast_to=cast_to, stream=True, stream_cls=openai.Stream[event_type])
    return client.post(path, body=body, cast_to=cast_to)


def _error_fields(body: Any) -> dict[str, Any]:
    """The OpenAI error object in an upstream's error body, if it sent one."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body if isinstance(body, dict) else {}


def _timed_out(exc: BaseException) -> bool:
    """A timeout of the client or of its transport (whose exception types
    depend on the ``openai`` version's HTTP library, so they are known by name)."""
    import openai

    return isinstance(exc, (openai.APITimeoutError, TimeoutError)) or "Timeout" in type(exc).__name__


def translate(exc: Exception, timeout: float) -> UpstreamError:
    """``exc``, raised while calling the upstream or reading its answer, as
    the ``UpstreamError`` a client should see."""
    import openai

    if _timed_out(exc):
        return UpstreamError(
            f"The model server did not answer within {timeout:g} s (SMG_HISTORY_UPSTREAM_TIMEOUT).",
            status=504,
            code="upstream_timeout",
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in _OWN_CREDENTIALS:
            return UpstreamError(
                f"The model server refused this server's credentials ({exc.status_code}); "
                "check SMG_HISTORY_UPSTREAM_API_KEY.",
                status=502,
                code="upstream_unauthorized",
            )
        fields = _error_fields(exc.body)
        message = fields.get("message")
        return UpstreamError(
            message if isinstance(message, str) and message else f"The model server answered {exc.status_code}.",
            status=exc.status_code if 400 <= exc.status_code <= 599 else 502,
            type=fields.get("type") if isinstance(fields.get("type"), str) else "upstream_error",
            param=fields.get("param") if isinstance(fields.get("param"), str) else None,
            code=fields.get("code") if isinstance(fields.get("code"), str) else None,
        )
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
        return UpstreamError(
            "The model server sent an answer this server cannot read.", status=502, code="upstream_error"
        )
    # A connection refused or reset, or a stream that broke off: the HTTP
    # library's own exception, whatever its type.
    return UpstreamError(
        "The model server could not be reached, or its answer broke off; check SMG_HISTORY_UPSTREAM_URL.",
        status=502,
        code="upstream_unreachable",
    )


@contextmanager
def upstream_errors(timeout: float) -> Iterator[None]:
    """Raise what ``translate`` makes of a failure of the block."""
    try:
        yield
    except UpstreamError:
        raise
    except Exception as exc:
        raise translate(exc, timeout) from exc
