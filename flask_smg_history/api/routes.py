"""The blueprint's routes. Each parses the request, calls ``history`` and
renders the result; validation and limits live in the store."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, jsonify, request, stream_with_context
from flask import Response as FlaskResponse

from ..config import Settings
from ..errors import InvalidRequest, PayloadTooLarge
from ..records import Response
from ..responses import PARAMETERS
from ..state import get_state, history
from . import errors, render
from .openapi import INCLUDE_VALUES, build_openapi

_BODY = "_smg_history_body"


def _json_body(allowed: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object, size-checked, with unknown fields refused."""
    limit = get_state().settings.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise InvalidRequest("The request body must be JSON, sent with 'Content-Type: application/json'.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"Unknown parameter: '{name}'.", param=name)
    return body


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}': expected an integer, got {value[:40]!r}.", param=name) from None


def _page_args() -> dict[str, Any]:
    include = request.args.getlist("include") + request.args.getlist("include[]")
    for value in include:
        if value not in INCLUDE_VALUES:
            raise InvalidRequest(f"Invalid 'include': {value[:80]!r} is not a supported value.", param="include")
    return {
        "after": request.args.get("after") or None,
        "limit": _int_arg("limit", 20),
        "order": request.args.get("order", "desc"),
    }


def _since_arg() -> float | None:
    value = request.args.get("since")
    if value is None:
        return None
    try:
        return float(int(value))
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest("Invalid 'since': expected Unix seconds or an ISO 8601 date.", param="since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _filtered_page_args() -> dict[str, Any]:
    """``since``, ``after`` and ``limit`` of our filtered, newest-first listings."""
    return {"since": _since_arg(), "after": request.args.get("after") or None, "limit": _int_arg("limit", 20)}


def _server_sent(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Events as SSE frames. Closing this (the client went away) closes the
    turn's events, which keeps the turn as ``incomplete``."""
    try:
        for event in events:
            yield f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def create_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint(settings.blueprint_name, __name__)
    errors.register(bp)

    # -- conversations ---------------------------------------------------------
    @bp.post("/conversations")
    def create_conversation():
        body = _json_body(("metadata", "items"))
        conv = history.conversations.create(metadata=body.get("metadata"), items=body.get("items"))
        return jsonify(render.conversation(conv))

    @bp.get("/conversations")
    def list_conversations():
        args = _page_args()
        order_by = request.args.get("order_by", "created_at")
        return jsonify(render.page(history.conversations.list(**args, order_by=order_by), render.conversation))

    @bp.get("/conversations/<conversation_id>")
    def get_conversation(conversation_id: str):
        return jsonify(render.conversation(history.conversations.get(conversation_id)))

    @bp.post("/conversations/<conversation_id>")
    def update_conversation(conversation_id: str):
        body = _json_body(("metadata",))
        if "metadata" not in body:
            raise InvalidRequest("Missing required parameter: 'metadata'.", param="metadata")
        return jsonify(render.conversation(history.conversations.update(conversation_id, body["metadata"])))

    @bp.delete("/conversations/<conversation_id>")
    def delete_conversation(conversation_id: str):
        history.conversations.delete(conversation_id)
        return jsonify(render.deleted(conversation_id, "conversation.deleted"))

    # -- items -------------------------------------------------------------------
    @bp.post("/conversations/<conversation_id>/items")
    def add_items(conversation_id: str):
        body = _json_body(("items",))
        _page_args()  # validates ``include``, which the create call also accepts
        added = history.items.add(conversation_id, body.get("items"))
        return jsonify(
            {
                "object": "list",
                "data": [render.item(i) for i in added],
                "first_id": added[0].id,
                "last_id": added[-1].id,
                "has_more": False,
            }
        )

    @bp.get("/conversations/<conversation_id>/items")
    def list_items(conversation_id: str):
        args = _page_args()
        return jsonify(render.page(history.items.list(conversation_id, **args), render.item))

    @bp.get("/conversations/<conversation_id>/items/<item_id>")
    def get_item(conversation_id: str, item_id: str):
        _page_args()
        return jsonify(render.item(history.items.get(conversation_id, item_id)))

    @bp.delete("/conversations/<conversation_id>/items/<item_id>")
    def delete_item(conversation_id: str, item_id: str):
        return jsonify(render.conversation(history.items.delete(conversation_id, item_id)))

    # -- responses ---------------------------------------------------------------
    @bp.post("/responses")
    def create_response():
        """A turn of the stateful Responses API (``responses/turn.py``):
        JSON, or with ``stream: true`` server-sent events as OpenAI sends
        them. Refusals come before the first event, as HTTP errors."""
        body = _json_body(PARAMETERS)
        result = history.responses.create(**body)
        if isinstance(result, Response):
            return jsonify(render.response(result))
        return FlaskResponse(
            stream_with_context(_server_sent(result)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @bp.get("/responses")
    def list_responses():
        page = history.responses.list(
            model=request.args.get("model"), conversation=request.args.get("conversation"), **_filtered_page_args()
        )
        return jsonify(render.page(page, render.response))

    @bp.get("/responses/<response_id>")
    def get_response(response_id: str):
        _page_args()
        return jsonify(render.response(history.responses.get(response_id)))

    @bp.delete("/responses/<response_id>")
    def delete_response(response_id: str):
        history.responses.delete(response_id)
        return jsonify(render.deleted(response_id, "response"))

    @bp.get("/responses/<response_id>/input_items")
    def list_input_items(response_id: str):
        args = _page_args()
        return jsonify(render.page(history.responses.input_items(response_id, **args), render.item))

    # -- feedback ----------------------------------------------------------------
    @bp.post("/responses/<response_id>/feedback")
    def submit_feedback(response_id: str):
        body = _json_body(("rating", "comment", "metadata"))
        fb = history.feedback.submit(
            response_id, rating=body.get("rating"), comment=body.get("comment"), metadata=body.get("metadata")
        )
        return jsonify(render.feedback(fb))

    @bp.get("/responses/<response_id>/feedback")
    def get_feedback(response_id: str):
        return jsonify(render.feedback(history.feedback.get(response_id)))

    @bp.delete("/responses/<response_id>/feedback")
    def delete_feedback(response_id: str):
        feedback_id = history.feedback.delete(response_id)
        return jsonify(render.deleted(feedback_id, "response.feedback.deleted"))

    @bp.get("/feedback")
    def list_feedback():
        page = history.feedback.list(
            rating=request.args.get("rating"), model=request.args.get("model"), **_filtered_page_args()
        )
        return jsonify(render.page(page, render.feedback))

    @bp.get("/feedback/stats")
    def feedback_stats():
        return jsonify({"object": "feedback.stats", **history.feedback.stats(since=_since_arg())})

    # -- search ------------------------------------------------------------------
    @bp.get("/search")
    def search():
        query = request.args.get("q")
        if query is None:
            raise InvalidRequest("Missing required parameter: 'q'.", param="q")
        page = history.search(
            query,
            limit=_int_arg("limit", 20),
            after=request.args.get("after") or None,
            conversation=request.args.get("conversation") or None,
        )
        return jsonify(render.page(page, render.search_hit))

    # -- operations --------------------------------------------------------------
    @bp.get("/history/health")
    def health():
        state = get_state()
        detail = state.call("health", state.backend.health)
        return jsonify(
            {
                "object": "history.health",
                "status": "ok" if state.backend.persistent else "disabled",
                "enabled": state.backend.persistent,
                "backend": state.backend.name,
                "detail": detail,
            }
        )

    @bp.get("/history/stats")
    def usage_stats():
        return jsonify(render.usage_stats(history.stats(since=_since_arg())))

    @bp.delete("/history/owner")
    def erase_owner():
        counts = history.erase_owner()
        return jsonify({"object": "history.owner.deleted", "owner": history.owner, "deleted": counts})

    @bp.get("/openapi.json")
    def openapi():
        return jsonify(build_openapi(settings))

    return bp
