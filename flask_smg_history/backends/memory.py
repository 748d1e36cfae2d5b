"""In-process storage: the default backend, for development and tests.

Everything lives in dicts guarded by one lock, so it is thread-safe within a
process and gone when the process ends. Records are deep-copied in and out so a
caller mutating what it got back cannot change what is stored.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..records import Conversation, Feedback, Item, Page, Response, is_live, now
from .base import Backend, page_of


class MemoryBackend(Backend):
    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        self._lock = threading.RLock()
        self._conversations: dict[str, Conversation] = {}
        self._by_owner: dict[str, dict[str, None]] = {}  # owner -> conversation IDs in creation order
        self._items: dict[str, list[Item]] = {}  # conversation ID -> items by position
        self._next_position: dict[str, int] = {}
        self._responses: dict[str, Response] = {}
        self._feedback: dict[tuple[str, str], Feedback] = {}  # (response ID, owner)

    # -- helpers -------------------------------------------------------------
    def _conversation(self, owner: str, conversation_id: str) -> Conversation:
        conv = self._conversations.get(conversation_id)
        if conv is None or conv.owner != owner or not is_live(conv.expires_at, now()):
            raise NotFound.conversation(conversation_id)
        return conv

    def _append(self, conversation_id: str, items: list[Item]) -> list[Item]:
        stored = self._items[conversation_id]
        present = {item.id for item in stored}
        seen: set[str] = set()
        for item in items:
            if item.id in present or item.id in seen:
                raise InvalidRequest(
                    f"Item with id '{item.id}' is already in conversation '{conversation_id}'.",
                    param="items",
                    code="item_already_in_conversation",
                )
            seen.add(item.id)
        out = []
        for item in items:
            item = copy.deepcopy(item)
            item.conversation_id = conversation_id
            item.position = self._next_position[conversation_id]
            self._next_position[conversation_id] += 1
            stored.append(item)
            out.append(copy.deepcopy(item))
        return out

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        with self._lock:
            self._conversations[conversation.id] = copy.deepcopy(conversation)
            self._by_owner.setdefault(conversation.owner, {})[conversation.id] = None
            self._items[conversation.id] = []
            self._next_position[conversation.id] = 0
            return self._append(conversation.id, items)

    def get_conversation(self, owner, conversation_id):
        with self._lock:
            return copy.deepcopy(self._conversation(owner, conversation_id))

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at):
        with self._lock:
            conv = self._conversation(owner, conversation_id)
            conv.metadata = dict(metadata)
            conv.updated_at = updated_at
            conv.expires_at = expires_at
            return copy.deepcopy(conv)

    def delete_conversation(self, owner, conversation_id):
        with self._lock:
            self._conversation(owner, conversation_id)
            del self._conversations[conversation_id]
            del self._items[conversation_id]
            del self._next_position[conversation_id]
            self._by_owner[owner].pop(conversation_id, None)

    def list_conversations(self, owner, *, after, limit, order):
        with self._lock:
            at = now()
            convs = [self._conversations[cid] for cid in self._by_owner.get(owner, {})]
            live = [c for c in convs if is_live(c.expires_at, at)]
            page = page_of(live, after=after, limit=limit, order=order)
            return Page(data=copy.deepcopy(page.data), has_more=page.has_more)

    # -- items ---------------------------------------------------------------
    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        with self._lock:
            conv = self._conversation(owner, conversation_id)
            added = self._append(conversation_id, items)
            conv.updated_at = updated_at
            conv.expires_at = expires_at
            return added

    def list_items(self, owner, conversation_id, *, after, limit, order):
        with self._lock:
            self._conversation(owner, conversation_id)
            page = page_of(self._items[conversation_id], after=after, limit=limit, order=order)
            return Page(data=copy.deepcopy(page.data), has_more=page.has_more)

    def _find_item(self, owner: str, conversation_id: str, item_id: str) -> Item:
        self._conversation(owner, conversation_id)
        for item in self._items[conversation_id]:
            if item.id == item_id:
                return item
        raise NotFound.item(item_id)

    def get_item(self, owner, conversation_id, item_id):
        with self._lock:
            return copy.deepcopy(self._find_item(owner, conversation_id, item_id))

    def delete_item(self, owner, conversation_id, item_id):
        with self._lock:
            item = self._find_item(owner, conversation_id, item_id)
            self._items[conversation_id].remove(item)

    def recent_items(self, owner, conversation_id, limit):
        with self._lock:
            self._conversation(owner, conversation_id)
            return copy.deepcopy(self._items[conversation_id][-limit:])

    # -- responses -----------------------------------------------------------
    def _response(self, owner: str, response_id: str) -> Response:
        resp = self._responses.get(response_id)
        if resp is None or resp.owner != owner or not is_live(resp.expires_at, now()):
            raise NotFound.response(response_id)
        return resp

    def store_response(self, response):
        with self._lock:
            existing = self._responses.get(response.id)
            if existing is not None and existing.owner != response.owner:
                raise InvalidRequest(f"Response id '{response.id}' is not available.", param="id")
            self._responses[response.id] = copy.deepcopy(response)

    def get_response(self, owner, response_id):
        with self._lock:
            return copy.deepcopy(self._response(owner, response_id))

    def delete_response(self, owner, response_id):
        with self._lock:
            self._response(owner, response_id)
            del self._responses[response_id]
            for key in [k for k in self._feedback if k[0] == response_id]:
                del self._feedback[key]

    # -- feedback ------------------------------------------------------------
    def submit_feedback(self, feedback):
        with self._lock:
            key = (feedback.response_id, feedback.owner)
            existing = self._feedback.get(key)
            if existing is not None:
                feedback = copy.copy(feedback)
                feedback.id = existing.id
            self._feedback[key] = copy.deepcopy(feedback)
            return copy.deepcopy(feedback)

    def get_feedback(self, owner, response_id):
        with self._lock:
            fb = self._feedback.get((response_id, owner))
            if fb is None or not is_live(fb.expires_at, now()):
                raise NotFound.feedback(response_id)
            return copy.deepcopy(fb)

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        with self._lock:
            at = now()
            rows = sorted(
                (
                    fb
                    for (_, fb_owner), fb in self._feedback.items()
                    if fb_owner == owner
                    and is_live(fb.expires_at, at)
                    and (rating is None or fb.rating == rating)
                    and (model is None or fb.model == model)
                    and (since is None or fb.created_at >= since)
                ),
                key=lambda fb: (fb.created_at, fb.id),
            )
            page = page_of(rows, after=after, limit=limit, order="desc")
            return Page(data=copy.deepcopy(page.data), has_more=page.has_more)

    # -- operations ----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {}
