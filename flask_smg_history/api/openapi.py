"""The OpenAPI 3.1 document of the blueprint, built with apispec from the same
marshmallow schemas that validate input and render output."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from .. import schemas
from ..responses.request import CreateResponseSchema
from ..search import MAX_QUERY_CHARS
from ..store import CONVERSATION_ORDER_BY
from ..version import __version__
from . import render

INCLUDE_VALUES = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)

_ERROR = {"$ref": "#/components/responses/Error"}
_PAGE_PARAMS: list[dict[str, Any]] = [
    {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    {"in": "query", "name": "order", "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
    {"in": "query", "name": "after", "schema": {"type": "string"}},
    {
        "in": "query",
        "name": "include",
        "schema": {"type": "array", "items": {"type": "string", "enum": list(INCLUDE_VALUES)}},
        "style": "form",
        "explode": True,
    },
]
#: ``GET /conversations`` only: ``updated_at`` lists by last write (an
#: append or update moves a conversation to the front of ``desc``).
_ORDER_BY: dict[str, Any] = {
    "in": "query",
    "name": "order_by",
    "schema": {"type": "string", "enum": list(CONVERSATION_ORDER_BY), "default": "created_at"},
}
_ITEM = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
}


_COUNT = {"type": "integer", "minimum": 0}
_COUNTS = {"type": "object", "additionalProperties": _COUNT}
#: Sums of the stored usage figures: integers, not checked to be positive.
_TOKENS = {name: {"type": "integer"} for name in ("input_tokens", "output_tokens", "total_tokens")}
_USAGE_ROW = {
    "type": "object",
    "required": ["responses", *_TOKENS],
    "properties": {"responses": _COUNT, **_TOKENS},
}
_BY_RATING = {
    "type": "object",
    "required": ["positive", "negative"],
    "properties": {"positive": _COUNT, "negative": _COUNT},
}
_NULLABLE_TIME = {"type": ["integer", "null"]}
#: ``GET /history/stats`` (``render.usage_stats``); what each figure means is
#: in ``backends/usage.py`` and ``docs/store-api.md``.
_USAGE_STATS: dict[str, Any] = {
    "type": "object",
    "required": ["object", "since", "conversations", "items", "responses", "feedback"],
    "properties": {
        "object": {"type": "string", "enum": ["history.stats"]},
        "since": _NULLABLE_TIME,
        "conversations": {
            "type": "object",
            "required": ["total", "first_created_at", "last_created_at"],
            "properties": {"total": _COUNT, "first_created_at": _NULLABLE_TIME, "last_created_at": _NULLABLE_TIME},
        },
        "items": {
            "type": "object",
            "required": ["total", "by_type", "by_role"],
            "properties": {"total": _COUNT, "by_type": _COUNTS, "by_role": _COUNTS},
        },
        "responses": {
            "type": "object",
            "required": ["total", *_TOKENS, "by_model", "by_day"],
            "properties": {
                "total": _COUNT,
                **_TOKENS,
                "by_model": {"type": "object", "additionalProperties": _USAGE_ROW},
                "by_day": {"type": "object", "additionalProperties": _USAGE_ROW},
            },
        },
        "feedback": {
            "type": "object",
            "required": ["total", "by_rating", "by_model"],
            "properties": {
                "total": _COUNT,
                "by_rating": _BY_RATING,
                "by_model": {"type": "object", "additionalProperties": _BY_RATING},
            },
        },
    },
}


def _path_param(name: str) -> dict[str, Any]:
    return {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}


def _list_of(schema: dict[str, Any]) -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": schema},
            "first_id": nullable_str,
            "last_id": nullable_str,
            "has_more": {"type": "boolean"},
        },
    }


def _op(summary: str, ok: Any, *, params=(), body: Any = None, status: str = "200") -> dict[str, Any]:
    content = {"application/json": {"schema": ok}}
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {status: {"description": "OK", "content": content}, "default": _ERROR},
    }
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def build_openapi(settings) -> dict[str, Any]:
    spec = APISpec(
        title="flask-smg-history",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        servers=[{"url": settings.url_prefix}],
    )
    # the update body as the app's SMG_HISTORY_METADATA_UPDATE reads it (a patch allows nulls)
    replace = settings.metadata_update == "replace"
    update = schemas.ConversationUpdateSchema if replace else schemas.ConversationPatchSchema
    for name, schema in (
        ("ConversationCreate", schemas.ConversationCreateSchema),
        ("ConversationUpdate", update),
        ("ItemsAdd", schemas.ItemsAddSchema),
        ("FeedbackSubmit", schemas.FeedbackSubmitSchema),
        ("ResponseCreate", CreateResponseSchema),
        ("Conversation", render.ConversationOut),
        ("Deleted", render.DeletedOut),
        ("Feedback", render.FeedbackOut),
    ):
        spec.components.schema(name, schema=schema)
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
    )
    spec.components.response(
        "Error",
        {
            "description": "An error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    )
    conv = {"$ref": "#/components/schemas/Conversation"}
    deleted = {"$ref": "#/components/schemas/Deleted"}
    feedback = {"$ref": "#/components/schemas/Feedback"}
    response = {"type": "object", "required": ["id", "object", "created_at", "model", "output"]}
    cid, iid, rid = _path_param("conversation_id"), _path_param("item_id"), _path_param("response_id")
    since = {"in": "query", "name": "since", "schema": {"type": "string"}}
    spec.path(
        "/conversations",
        operations={
            "post": _op("Create a conversation", conv, body={"$ref": "#/components/schemas/ConversationCreate"}),
            "get": _op(
                "List the caller's conversations, newest first, by creation or by last write",
                _list_of(conv),
                params=[*_PAGE_PARAMS[:3], _ORDER_BY],
            ),
        },
    )
    spec.path(
        "/conversations/{conversation_id}",
        operations={
            "get": _op("Retrieve a conversation", conv, params=[cid]),
            "post": _op(
                "Update a conversation's metadata",
                conv,
                params=[cid],
                body={"$ref": "#/components/schemas/ConversationUpdate"},
            ),
            "delete": _op("Delete a conversation", deleted, params=[cid]),
        },
    )
    spec.path(
        "/conversations/{conversation_id}/items",
        operations={
            "post": _op(
                "Add items",
                _list_of(_ITEM),
                params=[cid, _PAGE_PARAMS[3]],
                body={"$ref": "#/components/schemas/ItemsAdd"},
            ),
            "get": _op("List items", _list_of(_ITEM), params=[cid, *_PAGE_PARAMS]),
        },
    )
    spec.path(
        "/conversations/{conversation_id}/items/{item_id}",
        operations={
            "get": _op("Retrieve an item", _ITEM, params=[cid, iid, _PAGE_PARAMS[3]]),
            "delete": _op("Delete an item; answers the parent conversation", conv, params=[cid, iid]),
        },
    )
    create = _op(
        "Create a response: one turn of the stateful Responses API on the configured model server "
        "(JSON, or OpenAI's server-sent events with stream: true); see docs/responses.md",
        response,
        body={"$ref": "#/components/schemas/ResponseCreate"},
    )
    create["responses"]["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    spec.path(
        "/responses",
        operations={
            "post": create,
            "get": _op(
                "List the caller's stored responses, newest first",
                _list_of(response),
                params=[
                    {"in": "query", "name": "model", "schema": {"type": "string"}},
                    {"in": "query", "name": "conversation", "schema": {"type": "string"}},
                    since,
                    _PAGE_PARAMS[0],
                    _PAGE_PARAMS[2],
                ],
            ),
        },
    )
    spec.path(
        "/responses/{response_id}",
        operations={
            "get": _op("Retrieve a stored response", response, params=[rid, _PAGE_PARAMS[3]]),
            "delete": _op("Delete a stored response", deleted, params=[rid]),
        },
    )
    spec.path(
        "/responses/{response_id}/input_items",
        operations={"get": _op("List a response's input items", _list_of(_ITEM), params=[rid, *_PAGE_PARAMS])},
    )
    spec.path(
        "/responses/{response_id}/feedback",
        operations={
            "post": _op(
                "Rate a response", feedback, params=[rid], body={"$ref": "#/components/schemas/FeedbackSubmit"}
            ),
            "get": _op("The caller's feedback on a response", feedback, params=[rid]),
            "delete": _op("Withdraw the caller's feedback on a response", deleted, params=[rid]),
        },
    )
    spec.path(
        "/feedback",
        operations={
            "get": _op(
                "List the caller's feedback, newest first",
                _list_of(feedback),
                params=[
                    {"in": "query", "name": "rating", "schema": {"type": "string", "enum": ["positive", "negative"]}},
                    {"in": "query", "name": "model", "schema": {"type": "string"}},
                    since,
                    _PAGE_PARAMS[0],
                    _PAGE_PARAMS[2],
                ],
            )
        },
    )
    spec.path(
        "/feedback/stats",
        operations={"get": _op("Feedback counts by rating, model and day", {"type": "object"}, params=[since])},
    )
    hit = {
        "type": "object",
        "required": ["id", "object", "conversation", "item", "snippet", "rank"],
        "properties": {
            "id": {"type": "string", "description": "The hit's cursor: pass it as `after` for the hits after it."},
            "object": {"type": "string", "enum": ["search.hit"]},
            "conversation": {
                "type": "object",
                "required": ["id", "metadata", "updated_at"],
                "properties": {
                    "id": {"type": "string"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "updated_at": {"type": "integer"},
                },
            },
            "item": {
                "type": ["object", "null"],
                "description": "The matching item; null when the conversation's metadata matched.",
                "required": ["id", "type", "role", "created_at"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "role": {"type": ["string", "null"]},
                    "created_at": {"type": "integer"},
                },
            },
            "snippet": {
                "type": "string",
                "description": "The matched text around the first match, HTML-escaped, each match in <mark>.",
            },
            "rank": {"type": "number", "description": "The backend's relevance score; higher is more relevant."},
        },
    }
    spec.path(
        "/search",
        operations={
            "get": _op(
                "Search the caller's conversations and items: by conversation activity, newest first, then "
                "newest item first",
                _list_of(hit),
                params=[
                    {
                        "in": "query",
                        "name": "q",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
                        "description": 'Words, "quoted phrases", -excluded words, or between alternatives.',
                    },
                    {"in": "query", "name": "conversation", "schema": {"type": "string"}},
                    _PAGE_PARAMS[0],
                    _PAGE_PARAMS[2],
                ],
            )
        },
    )
    spec.path(
        "/history/owner",
        operations={
            "delete": _op(
                "Erase everything of the caller: conversations, items, responses, feedback", {"type": "object"}
            )
        },
    )
    spec.path(
        "/history/stats",
        operations={
            "get": _op(
                "Usage figures of the caller's live records: conversations, items by type and role, "
                "responses and token usage by model and by UTC day, feedback by rating and model",
                _USAGE_STATS,
                params=[since],
            )
        },
    )
    spec.path("/history/health", operations={"get": _op("Backend health", {"type": "object"})})
    return spec.to_dict()
