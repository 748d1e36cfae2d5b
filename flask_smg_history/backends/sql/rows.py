"""Records to row values, and rows back to records, for the SQL tables.

One function per kind and direction, shared by the request path
(``backend.py``), the bulk operations (``admin.py``) and import
(``importing.py``), so a column is mapped in one place. Items are read through
their links, so their columns and reader live with the linking statements
(``items.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ...records import Conversation, Feedback, Response
from .tables import Tables


def conversation_values(record: Conversation) -> dict[str, Any]:
    """The columns of a conversation but its ID and ``next_position``."""
    return {
        "owner": record.owner,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "metadata": record.metadata,
        "expires_at": record.expires_at,
    }


def conversation_columns(tables: Tables) -> list[sa.Column[Any]]:
    """The columns ``conversation`` reads, in its order."""
    c = tables.conversations
    return [c.c.id, c.c.owner, c.c.created_at, c.c.updated_at, c.c["metadata"], c.c.expires_at]


def conversation(row: Sequence[Any]) -> Conversation:
    cid, owner, created_at, updated_at, metadata, expires_at = row
    return Conversation(cid, owner, created_at, updated_at, metadata or {}, expires_at)


def response_values(record: Response) -> dict[str, Any]:
    """The columns of a response but its ID."""
    return {
        "owner": record.owner,
        "conversation_id": record.conversation_id,
        "previous_response_id": record.previous_response_id,
        "model": record.model,
        "status": record.status,
        "input": record.input,
        "output": record.output,
        "usage": record.usage,
        "metadata": record.metadata,
        "extra": record.extra,
        "safety_identifier": record.safety_identifier,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
    }


def response(row: sa.Row[Any]) -> Response:
    """A response from a row of every column of the responses table."""
    m = row._mapping
    return Response(
        id=m["id"],
        owner=m["owner"],
        created_at=m["created_at"],
        model=m["model"] or "",  # Oracle stores '' as NULL
        status=m["status"] or "",
        conversation_id=m["conversation_id"],
        previous_response_id=m["previous_response_id"],
        input=m["input"] or [],
        output=m["output"] or [],
        usage=m["usage"],
        metadata=m["metadata"] or {},
        extra=m["extra"] or {},
        safety_identifier=m["safety_identifier"],
        expires_at=m["expires_at"],
    )


def feedback_values(record: Feedback) -> dict[str, Any]:
    """The columns a resubmission replaces: all but the ID, the response and
    the owner, which identify the row."""
    return {
        "rating": record.rating,
        "comment": record.comment,
        "metadata": record.metadata,
        "model": record.model,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
    }


def feedback_row(record: Feedback) -> dict[str, Any]:
    """Every column of a feedback row."""
    return {"id": record.id, "response_id": record.response_id, "owner": record.owner, **feedback_values(record)}


def feedback_columns(tables: Tables) -> list[sa.Column[Any]]:
    """The columns ``feedback`` reads, in its order."""
    f = tables.feedback
    return [
        f.c.id,
        f.c.response_id,
        f.c.owner,
        f.c.rating,
        f.c.created_at,
        f.c.comment,
        f.c["metadata"],
        f.c.model,
        f.c.expires_at,
    ]


def feedback(row: Sequence[Any]) -> Feedback:
    fid, response_id, owner, rating, created_at, comment, metadata, model, expires_at = row
    return Feedback(fid, response_id, owner, rating, created_at, comment, metadata or {}, model or "", expires_at)
