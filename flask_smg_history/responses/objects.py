"""A response record as OpenAI's Response object.

The stream events of a turn carry this object, and ``GET /v1/responses/{id}``
answers with it, so it lives here, below the HTTP layer that renders
everything else (``api/render.py`` re-exports it).
"""

from __future__ import annotations

from typing import Any

from ..records import Response

#: Fields the OpenAI spec requires on a response, with the value used when the
#: stored response did not carry them.
RESPONSE_DEFAULTS: dict[str, Any] = {
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "parallel_tool_calls": True,
    "temperature": None,
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
}


def response_object(record: Response) -> dict[str, Any]:
    """The record as OpenAI's ``Response``; ``usage`` is left out while there
    is none (a response in progress, or a model that counts nothing), as the
    spec allows no null for it."""
    shaped = {
        **RESPONSE_DEFAULTS,
        **record.extra,
        "id": record.id,
        "object": "response",
        "created_at": int(record.created_at),
        "status": record.status,
        "model": record.model,
        "output": record.output,
        "usage": record.usage,
        "metadata": record.metadata,
        "previous_response_id": record.previous_response_id,
        "conversation": {"id": record.conversation_id} if record.conversation_id else None,
        "safety_identifier": record.safety_identifier,
    }
    if record.usage is None:
        del shaped["usage"]
    return shaped
