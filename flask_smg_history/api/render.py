"""Records rendered as OpenAI's JSON shapes, by marshmallow output schemas
(the OpenAPI document is built from the same schemas)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ..records import Conversation, Feedback, Item, Page
from ..responses.objects import response_object as response  # noqa: F401 - the routes render responses here too
from ..search import SearchHit


class UnixTime(fields.Field):
    """Float seconds rendered as integer Unix seconds, as OpenAI does."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else int(value)


class ConversationOut(Schema):
    id = fields.Str(required=True)
    object = fields.Constant("conversation", required=True)
    created_at = UnixTime(required=True, metadata={"type": "integer"})
    metadata = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True)


class DeletedOut(Schema):
    id = fields.Str(required=True)
    object = fields.Str(required=True)
    deleted = fields.Bool(required=True)


class FeedbackOut(Schema):
    id = fields.Str(required=True)
    object = fields.Constant("response.feedback", required=True)
    response_id = fields.Str(required=True)
    rating = fields.Str(required=True, metadata={"enum": ["positive", "negative"]})
    comment = fields.Str(allow_none=True, required=True)
    metadata = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True)
    model = fields.Str(required=True)
    created_at = UnixTime(required=True, metadata={"type": "integer"})


_CONVERSATION = ConversationOut()
_FEEDBACK = FeedbackOut()


def conversation(conv: Conversation) -> dict[str, Any]:
    return _CONVERSATION.dump(conv)


def item(record: Item) -> dict[str, Any]:
    return record.payload


def feedback(record: Feedback) -> dict[str, Any]:
    return _FEEDBACK.dump(record)


def usage_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """``history.stats()`` as ``GET /history/stats`` answers it: its
    timestamps as integer Unix seconds (null when there is none)."""
    conversations = stats["conversations"]
    return {
        "object": "history.stats",
        **stats,
        "since": _seconds(stats["since"]),
        "conversations": {
            **conversations,
            "first_created_at": _seconds(conversations["first_created_at"]),
            "last_created_at": _seconds(conversations["last_created_at"]),
        },
    }


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def search_hit(hit: SearchHit) -> dict[str, Any]:
    """A search hit: its cursor, the conversation, the item (null for a match
    in the conversation's metadata), the marked snippet and the rank."""
    item = None
    if hit.item_id is not None:
        created = None if hit.item_created_at is None else int(hit.item_created_at)
        item = {"id": hit.item_id, "type": hit.item_type, "role": hit.role, "created_at": created}
    return {
        "id": hit.id,
        "object": "search.hit",
        "conversation": {
            "id": hit.conversation_id,
            "metadata": hit.conversation_metadata,
            "updated_at": int(hit.conversation_updated_at),
        },
        "item": item,
        "snippet": hit.snippet,
        "rank": hit.rank,
    }


def page(result: Page[Any], render) -> dict[str, Any]:
    """A list object. ``first_id``/``last_id`` are null on an empty page, as
    OpenAI answers (the SDK's page types accept it)."""
    return {
        "object": "list",
        "data": [render(record) for record in result.data],
        "first_id": result.first_id,
        "last_id": result.last_id,
        "has_more": result.has_more,
    }


def deleted(object_id: str, kind: str) -> dict[str, Any]:
    return {"id": object_id, "object": kind, "deleted": True}
