"""The app's own JSON routes: sending a message and deleting a chat.

Everything else the page does (listing, renaming, paging, voting) goes to the
extension's ``/v1`` blueprint directly. These two need the app: a reply has to
be generated and stored as a response plus conversation items, and deleting a
chat also deletes the responses its replies came from, so a vote left open in
another tab finds nothing to rate.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from flask_smg_history import HistoryError, NotFound, history
from flask_smg_history.schemas import MAX_ITEMS_PER_ADD

from .auth import api_login_required
from .responders import ResponderError

bp = Blueprint("chat", __name__, url_prefix="/chat")

CONTEXT_ITEMS = 40
TITLE_CHARS = 60


def error(status: int, message: str, **extra: Any):
    return jsonify({"error": {"message": message}, **extra}), status


@bp.errorhandler(HistoryError)
def history_error(exc: HistoryError):
    if isinstance(exc, NotFound) and exc.param == "conversation_id":
        return error(404, "This chat no longer exists: it was deleted, perhaps in another tab.")
    return error(exc.status, exc.message)


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def last_response_id(items: list[Any]) -> str | None:
    """The response the latest reply came from: the next one continues it."""
    for item in reversed(items):
        if item.payload.get("response_id"):
            return item.payload["response_id"]
    return None


@bp.post("/<conversation_id>/messages")
@api_login_required
def send(conversation_id: str):
    """Store the user's message, get a reply, store it as a response and as
    conversation items tagged with ``response_id`` and ``model`` (extra item
    fields the store keeps as given) so the page can show the model and vote."""
    body = request.get_json(silent=True)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return error(400, "Type a message first: an empty message is not sent.")
    limit = current_app.config["EXAMPLE_MAX_MESSAGE_CHARS"]
    if len(text) > limit:
        return error(400, f"Your message is {len(text):,} characters long; the limit is {limit:,}. Shorten it.")
    conv = history.conversations.get(conversation_id)
    context = history.items.recent(conv.id, limit=CONTEXT_ITEMS)
    previous = last_response_id(context)
    user_message = {"type": "message", "role": "user", "content": text}
    [user_item] = history.items.add(conv.id, [user_message])
    if not conv.metadata.get("title"):
        history.conversations.update(conv.id, {**conv.metadata, "title": title_from(text)})
    try:
        reply = current_app.extensions["example_responder"].reply([*context, user_item])
    except ResponderError as exc:
        return error(502, str(exc), items=[user_item.payload])
    response = history.responses.store(
        {
            "model": reply.model,
            "conversation": conv.id,
            "previous_response_id": previous,
            "input": [user_item.payload],
            "output": reply.output,
            "usage": reply.usage,
            "metadata": reply.metadata,
        }
    )
    tagged = [{**item, "response_id": response.id, "model": response.model} for item in response.output]
    added = []
    for start in range(0, len(tagged), MAX_ITEMS_PER_ADD):
        added += history.items.add(conv.id, tagged[start : start + MAX_ITEMS_PER_ADD])
    return jsonify(
        {
            "items": [user_item.payload, *(item.payload for item in added)],
            "response_id": response.id,
            "model": response.model,
        }
    )


@bp.delete("/<conversation_id>")
@api_login_required
def delete(conversation_id: str):
    """Delete a chat and the responses (with their feedback) of its replies."""
    history.conversations.get(conversation_id)
    response_ids: set[str] = set()
    after = None
    while True:
        page = history.items.list(conversation_id, after=after, limit=100, order="asc")
        response_ids.update(i.payload["response_id"] for i in page.data if i.payload.get("response_id"))
        if not page.has_more:
            break
        after = page.last_id
    for response_id in response_ids:
        try:
            history.responses.delete(response_id)
        except NotFound:
            pass
    history.conversations.delete(conversation_id)
    return jsonify({"id": conversation_id, "object": "conversation.deleted", "deleted": True})
