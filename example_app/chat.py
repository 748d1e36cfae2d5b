"""The app's own JSON routes under ``/chat``: sending a message (the reply
streams back), regenerating or stopping a reply, reading the page's votes in
one request, and deleting a chat.

Everything else the page does (listing, renaming, paging, voting and taking a
vote back) goes to the extension's ``/v1`` blueprint directly. These need the
app: a reply is a turn of ``history.responses.create`` on the chat, with the
app's instructions and tool, translated into the page's events
(``turns.py``), and deleting a chat also deletes the responses its replies
came from, so a vote left open in another tab finds nothing to rate.

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
from flask_smg_history.records import ITEM_ID_PREFIXES, mint_id

from .auth import api_login_required
from .turns import Turn, friendly

bp = Blueprint("chat", __name__, url_prefix="/chat")
log = logging.getLogger(__name__)

#: The newest items searched for the input and output of the reply to regenerate.
REGENERATE_WINDOW = 100
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


def with_id(item: dict[str, Any]) -> dict[str, Any]:
    """An input item with a fresh ID, minted here so the page (and the local
    responder) can know it before the turn is stored."""
    return {**item, "id": mint_id(ITEM_ID_PREFIXES.get(item.get("type", "message"), "item"))}


def user_message(text: str) -> dict[str, Any]:
    return with_id({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})


def new_turn(conversation, items: list[dict[str, Any]], attempt: int = 1, **fields: Any) -> Turn:
    responder = current_app.extensions["example_responder"]
    return Turn(
        model=responder.model,
        registry=current_app.extensions["example_streams"],
        conversation=conversation,
        input=items,
        metadata={**responder.metadata, "attempt": str(attempt)},
        **fields,
    )


def answer(turn: Turn):
    """The reply as server-sent events when the page asks for them, else as
    one JSON answer once it is complete (for scripts and tests)."""
    if request.accept_mimetypes.best == "text/event-stream":
        events = (f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in turn.events())
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return Response(stream_with_context(events), mimetype="text/event-stream", headers=headers)
    *_, (name, data) = turn.events()
    if name == "error":
        return error(502, data["message"], conversation=data["conversation"])
    return jsonify({**data, "conversation": turn.conversation.id})


@bp.post("/messages")
@api_login_required
def start_chat():
    """A new chat with its first message: the chat is created with its title,
    then the turn stores the message with its reply. If no reply comes, the
    chat is deleted again: no empty chat is left behind."""
    text = message_text(json_body())
    conv = history.conversations.create(metadata={"title": title_from(text)})
    return answer(new_turn(conv, [user_message(text)], created=True))


@bp.post("/<conversation_id>/messages")
@api_login_required
def send(conversation_id: str):
    """The next message of a chat and its reply (``turns.Turn``): both are
    stored together when the reply ends, or neither when the model fails."""
    text = message_text(json_body())
    conv = history.conversations.get(conversation_id)
    if not conv.metadata.get("title"):
        conv = history.conversations.update(conv.id, {**conv.metadata, "title": title_from(text)})
    return answer(new_turn(conv, [user_message(text)]))


@bp.post("/<conversation_id>/regenerate")
@api_login_required
def regenerate(conversation_id: str):
    """A new answer to the input of the chat's latest reply. The old reply's
    input and output items leave the conversation, and the same input is sent
    again (with new IDs), so the model sees the same context and the new
    response has the same input as the old one, with ``metadata.regenerates``
    naming it: a preference export pairs the two. If no new answer comes, the
    items are put back. The old response, and any vote on it, stay."""
    body = json_body()
    response_id = body.get("response_id")
    if not isinstance(response_id, str) or not response_id:
        raise ChatError(400, "Say which reply to regenerate: 'response_id'.")
    conv = history.conversations.get(conversation_id)
    old = history.responses.get(response_id)
    if old.conversation_id != conv.id:
        raise ChatError(400, "That reply belongs to another chat.")
    recent = history.items.recent(conv.id, limit=REGENERATE_WINDOW)
    if not recent or recent[-1].payload.get("response_id") != old.id:
        raise ChatError(409, "Only the latest reply of a chat can be regenerated.")
    inputs = {item.get("id") for item in old.input}
    removed = [i.payload for i in recent if i.payload.get("response_id") == old.id or i.id in inputs]
    for item in removed:
        history.items.delete(conv.id, item["id"])
    try:
        attempt = int(old.metadata.get("attempt", "1")) + 1
    except ValueError:
        attempt = 2
    turn = new_turn(conv, [with_id(item) for item in old.input], attempt, replaces=old.id, removed=removed)
    local = current_app.extensions["example_responder"].local
    if local is not None and turn.input:
        local.takes[turn.input[-1]["id"]] = attempt  # it is deterministic: tell it this is another take
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
