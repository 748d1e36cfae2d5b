"""The app's own JSON routes under ``/chat``: sending a message (the reply
streams back), regenerating or stopping a reply, reading the page's votes in
one request, and deleting a chat.

Everything else the page does (listing, renaming, paging, voting and taking a
vote back) goes to the extension's ``/v1`` blueprint directly. These need the
app: a reply has to be generated and stored as a response plus conversation
items, and deleting a chat also deletes the responses its replies came from,
so a vote left open in another tab finds nothing to rate.

Every answer, errors included, is JSON (or, for a reply asked for with
``Accept: text/event-stream``, a stream of server-sent events); bodies are
refused above the extension's ``SMG_HISTORY_MAX_REQUEST_BYTES``, as on ``/v1``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, stream_with_context
from werkzeug.exceptions import HTTPException

from flask_smg_history import HistoryError, NotFound, get_state, history

from .auth import api_login_required
from .turns import Turn, friendly

bp = Blueprint("chat", __name__, url_prefix="/chat")
log = logging.getLogger(__name__)

CONTEXT_ITEMS = 40
TITLE_CHARS = 60
#: Response IDs one ``GET /chat/votes`` may ask about: a page of items at most.
MAX_VOTE_IDS = 100


class ChatError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str, **extra: Any):
    return jsonify({"error": {"message": message}, **extra}), status


@bp.errorhandler(ChatError)
def chat_error(exc: ChatError):
    return error(exc.status, exc.message)


@bp.errorhandler(HistoryError)
def history_error(exc: HistoryError):
    if exc.status >= 500:
        log.warning("history call failed: %s", exc.message)
    return error(exc.status, friendly(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return error(exc.code or 500, exc.description or exc.name)


def register_errors(app: Flask) -> None:
    """Answer 404, 405 and 413 under ``/chat/`` in JSON, also when no route
    matched (a blueprint's own handlers never see those). Registered before
    the extension, whose handlers for its own prefix then defer to these."""
    for code in (404, 405, 413):

        def handle(exc: HTTPException):
            if request.path.startswith("/chat/"):
                return http_error(exc)
            return exc

        app.register_error_handler(code, handle)


@bp.before_request
def refuse_large_bodies():
    """Refuse a too large body from its Content-Length, before reading it."""
    limit = get_state().settings.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ChatError(413, too_large(limit))


def too_large(limit: int) -> str:
    return f"The request is larger than the server accepts ({limit:,} bytes). Send a shorter message."


def json_body() -> dict[str, Any]:
    """The request's JSON object; at most ``SMG_HISTORY_MAX_REQUEST_BYTES``
    are read, also from a body sent without a Content-Length."""
    limit = get_state().settings.max_request_bytes
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise ChatError(413, too_large(limit))
    if request.mimetype != "application/json":
        raise ChatError(400, "Send the request as JSON, with 'Content-Type: application/json'.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ChatError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ChatError(400, "The request body must be a JSON object.")
    return body


def message_text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ChatError(400, "Type a message first: an empty message is not sent.")
    limit = current_app.config["EXAMPLE_MAX_MESSAGE_CHARS"]
    if len(text) > limit:
        raise ChatError(400, f"Your message is {len(text):,} characters long; the limit is {limit:,}. Shorten it.")
    return text


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def last_response_id(items: list[Any]) -> str | None:
    """The response the latest reply came from: the next one continues it."""
    for item in reversed(items):
        if item.payload.get("response_id"):
            return item.payload["response_id"]
    return None


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def new_turn(conversation, context, **fields: Any) -> Turn:
    return Turn(
        responder=current_app.extensions["example_responder"],
        registry=current_app.extensions["example_streams"],
        conversation=conversation,
        context=context,
        **fields,
    )


def answer(turn: Turn):
    """The reply as server-sent events when the page asks for them, else as
    one JSON answer once it is complete (for scripts and tests)."""
    if request.accept_mimetypes.best == "text/event-stream":
        events = (f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in turn.events())
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return Response(stream_with_context(events), mimetype="text/event-stream", headers=headers)
    done, failure = None, None
    for name, data in turn.events():
        if name == "done":
            done = data
        elif name == "error":
            failure = data
    user = [turn.user_item] if turn.user_item else []
    if done is None:
        message = failure["message"] if failure else "No reply came."
        return error(502, message, items=user, conversation=turn.conversation.id)
    return jsonify({**done, "items": [*user, *done["items"]], "conversation": turn.conversation.id})


@bp.post("/messages")
@api_login_required
def start_chat():
    """A new chat with its first message, stored in one write: no chat exists
    before its first message does."""
    text = message_text(json_body())
    conv = history.conversations.create(metadata={"title": title_from(text)}, items=[user_message(text)])
    [user_item] = history.items.recent(conv.id, limit=1)
    turn = new_turn(conv, [user_item], input=[user_item.payload], previous_response_id=None)
    turn.user_item, turn.created = user_item.payload, True
    return answer(turn)


@bp.post("/<conversation_id>/messages")
@api_login_required
def send(conversation_id: str):
    """Store the user's message, then stream the reply (``turns.Turn``)."""
    text = message_text(json_body())
    conv = history.conversations.get(conversation_id)
    context = history.items.recent(conv.id, limit=CONTEXT_ITEMS)
    [user_item] = history.items.add(conv.id, [user_message(text)])
    if not conv.metadata.get("title"):
        conv = history.conversations.update(conv.id, {**conv.metadata, "title": title_from(text)})
    turn = new_turn(
        conv, [*context, user_item], input=[user_item.payload], previous_response_id=last_response_id(context)
    )
    turn.user_item = user_item.payload
    return answer(turn)


@bp.post("/<conversation_id>/regenerate")
@api_login_required
def regenerate(conversation_id: str):
    """A new answer to the input of the chat's latest reply, stored as a second
    response with the same input and ``previous_response_id`` (and
    ``metadata.regenerates`` naming the first), so an export can pair them. The
    old reply's items leave the conversation; its response, and any vote on
    it, stay."""
    body = json_body()
    response_id = body.get("response_id")
    if not isinstance(response_id, str) or not response_id:
        raise ChatError(400, "Say which reply to regenerate: 'response_id'.")
    conv = history.conversations.get(conversation_id)
    old = history.responses.get(response_id)
    if old.conversation_id != conv.id:
        raise ChatError(400, "That reply belongs to another chat.")
    recent = history.items.recent(conv.id, limit=CONTEXT_ITEMS + 20)
    tail = []
    while recent and recent[-1].payload.get("response_id") == response_id:
        tail.append(recent.pop())
    if not tail:
        raise ChatError(409, "Only the latest reply of a chat can be regenerated.")
    try:
        attempt = int(old.metadata.get("attempt", "1")) + 1
    except ValueError:
        attempt = 2
    turn = new_turn(
        conv,
        recent[-CONTEXT_ITEMS:],
        input=old.input,
        previous_response_id=old.previous_response_id,
        attempt=attempt,
        replaces=old.id,
        replaced_items=[item.id for item in reversed(tail)],
    )
    return answer(turn)


@bp.post("/streams/<stream_id>/stop")
@api_login_required
def stop(stream_id: str):
    """Stop a streaming reply. It ends at its next token and stores what was
    sent; the page reads on until the stream's last event. Stopping a reply
    that has already finished is no error (the answer says ``stopping: false``),
    so a late click logs nothing in the console."""
    stopping = current_app.extensions["example_streams"].stop(history.owner, stream_id)
    return jsonify({"id": stream_id, "stopping": stopping})


@bp.get("/votes")
@api_login_required
def votes():
    """The caller's votes on the given responses (``?response_id=`` repeated),
    in one answer: the page asks once per page of items, and a reply nobody
    voted on is simply absent (no 404 per reply in the console)."""
    ids = request.args.getlist("response_id")
    if len(ids) > MAX_VOTE_IDS:
        raise ChatError(400, f"Ask about at most {MAX_VOTE_IDS} replies at once.")
    found: dict[str, Any] = {}
    for response_id in dict.fromkeys(ids):
        try:
            fb = history.feedback.get(response_id)
        except NotFound:
            continue
        found[response_id] = {"rating": fb.rating, "comment": fb.comment}
    return jsonify({"object": "votes", "data": found})


@bp.delete("/<conversation_id>")
@api_login_required
def delete(conversation_id: str):
    """Delete a chat and every response stored for it (the replies shown and
    those replaced by a regeneration), with their feedback."""
    history.conversations.get(conversation_id)
    response_ids: list[str] = []
    after = None
    while True:
        page = history.responses.list(conversation=conversation_id, after=after, limit=100)
        response_ids += [response.id for response in page.data]
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
