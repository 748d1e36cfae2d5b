"""In-process storage: the default backend, for development and tests.

Everything lives in dicts guarded by one lock, so it is thread-safe within a
process and gone when the process ends. Records are deep-copied in and out so a
caller mutating what it got back cannot change what is stored.

Items are stored once per owner and linked into conversations at a position,
so an ``item_reference`` links an existing item without copying it; an item is
removed when its last link goes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

from ..errors import InvalidRequest, NotFound, shown_id
from ..records import Conversation, Feedback, Item, Page, Record, Response, is_live, now
from ..search import scan
from .base import Backend, merge_metadata, page_of
from .usage import UsageTally


class MemoryBackend(Backend):
    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        self._lock = threading.RLock()
        self._conversations: dict[str, Conversation] = {}
        self._by_owner: dict[str, dict[str, None]] = {}  # owner -> conversation IDs in creation order
        self._items: dict[tuple[str, str], Item] = {}  # (owner, item ID) -> the item, stored once
        self._links: dict[str, list[tuple[int, str]]] = {}  # conversation ID -> (position, item ID), by position
        self._refcount: dict[tuple[str, str], int] = {}
        self._next_position: dict[str, int] = {}
        self._responses: dict[str, Response] = {}
        self._feedback: dict[tuple[str, str], Feedback] = {}  # (response ID, owner)

    # -- helpers -------------------------------------------------------------
    def _conversation(self, owner: str, conversation_id: str) -> Conversation:
        conv = self._conversations.get(conversation_id)
        if conv is None or conv.owner != owner or not is_live(conv.expires_at, now()):
            raise NotFound.conversation(conversation_id)
        return conv

    def _materialize(self, owner: str, conversation_id: str, position: int, item_id: str) -> Item:
        item = copy.deepcopy(self._items[(owner, item_id)])
        item.conversation_id, item.position = conversation_id, position
        return item

    def _conversation_items(self, conv: Conversation) -> list[Item]:
        return [self._materialize(conv.owner, conv.id, pos, iid) for pos, iid in self._links[conv.id]]

    def _append(self, conv: Conversation, items: list[Item]) -> list[Item]:
        """Resolve references and check the whole batch, then link it."""
        self._check(conv, items)
        return self._link_checked(conv, items)

    def _check(self, conv: Conversation, items: list[Item]) -> None:
        """Refuse the batch if any item of it may not be appended to ``conv``."""
        linked = {iid for _, iid in self._links[conv.id]}
        seen: set[str] = set()
        for item in items:
            if item.id in linked or item.id in seen:
                raise InvalidRequest.already_in_conversation(item.id, conv.id)
            seen.add(item.id)
            exists = (conv.owner, item.id) in self._items
            if item.type == "item_reference" and not exists:
                raise NotFound.item(item.id)
            if item.type != "item_reference" and exists:
                raise InvalidRequest.item_exists(item.id)

    def _link_checked(self, conv: Conversation, items: list[Item]) -> list[Item]:
        """Store and link a batch ``_check`` passed, at the next positions."""
        out = []
        for item in items:
            key = (conv.owner, item.id)
            if item.type != "item_reference":
                self._items[key] = copy.deepcopy(item)
            self._refcount[key] = self._refcount.get(key, 0) + 1
            position = self._next_position[conv.id]
            self._next_position[conv.id] += 1
            self._links[conv.id].append((position, item.id))
            out.append(self._materialize(conv.owner, conv.id, position, item.id))
        return out

    def _unlink(self, owner: str, item_id: str) -> int:
        """Drop one link to an item; remove the item with its last link.
        Returns 1 when the item itself went."""
        key = (owner, item_id)
        self._refcount[key] -= 1
        if self._refcount[key] == 0:
            del self._refcount[key], self._items[key]
            return 1
        return 0

    def _drop_conversation(self, conv: Conversation) -> int:
        removed = sum(self._unlink(conv.owner, iid) for _, iid in self._links.pop(conv.id))
        del self._conversations[conv.id], self._next_position[conv.id]
        self._by_owner[conv.owner].pop(conv.id, None)
        return removed

    def _drop_response(self, resp: Response) -> int:
        del self._responses[resp.id]
        keys = [k for k in self._feedback if k[0] == resp.id]
        for key in keys:
            del self._feedback[key]
        return len(keys)

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        with self._lock:
            conv = copy.deepcopy(conversation)
            self._conversations[conv.id] = conv
            self._by_owner.setdefault(conv.owner, {})[conv.id] = None
            self._links[conv.id] = []
            self._next_position[conv.id] = 0
            try:
                return self._append(conv, items)
            except Exception:
                self._drop_conversation(conv)
                raise

    def get_conversation(self, owner, conversation_id):
        with self._lock:
            return copy.deepcopy(self._conversation(owner, conversation_id))

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        with self._lock:
            conv = self._conversation(owner, conversation_id)
            conv.metadata = merge_metadata(conv.metadata, metadata, replace=replace)
            conv.updated_at = updated_at
            conv.expires_at = expires_at
            return copy.deepcopy(conv)

    def delete_conversation(self, owner, conversation_id):
        with self._lock:
            self._drop_conversation(self._conversation(owner, conversation_id))

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        with self._lock:
            at = now()
            convs = [self._conversations[cid] for cid in self._by_owner.get(owner, {})]
            live = [c for c in convs if is_live(c.expires_at, at)]
            # Sorted, not in insertion order: an import adds older records
            # last, and equal times must break by ID as on every backend.
            live.sort(key=lambda c: (getattr(c, order_by), c.id))
            page = page_of(live, after=after, limit=limit, order=order)
            return Page(data=copy.deepcopy(page.data), has_more=page.has_more)

    # -- items ---------------------------------------------------------------
    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        with self._lock:
            conv = self._conversation(owner, conversation_id)
            added = self._append(conv, items)
            conv.updated_at = updated_at
            conv.expires_at = expires_at
            return added

    def list_items(self, owner, conversation_id, *, after, limit, order):
        with self._lock:
            conv = self._conversation(owner, conversation_id)
            return page_of(self._conversation_items(conv), after=after, limit=limit, order=order)

    def _link(self, owner: str, conversation_id: str, item_id: str) -> tuple[int, str]:
        self._conversation(owner, conversation_id)
        for link in self._links[conversation_id]:
            if link[1] == item_id:
                return link
        raise NotFound.item(item_id)

    def get_item(self, owner, conversation_id, item_id):
        with self._lock:
            position, _ = self._link(owner, conversation_id, item_id)
            return self._materialize(owner, conversation_id, position, item_id)

    def delete_item(self, owner, conversation_id, item_id):
        with self._lock:
            link = self._link(owner, conversation_id, item_id)
            self._links[conversation_id].remove(link)
            self._unlink(owner, item_id)

    def recent_items(self, owner, conversation_id, limit):
        with self._lock:
            self._conversation(owner, conversation_id)
            links = self._links[conversation_id][-limit:]
            return [self._materialize(owner, conversation_id, pos, iid) for pos, iid in links]

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
                raise InvalidRequest.response_id_taken(response.id)
            self._responses[response.id] = copy.deepcopy(response)

    def store_turn(self, response, items, *, updated_at, expires_at):
        """Under the lock: every check (conversation, batch, response ID),
        then every write, so a refusal leaves nothing to undo. The
        response is inserted, never replaced: its ID must be free."""
        with self._lock:
            conv = None
            if response.conversation_id is not None:
                conv = self._conversation(response.owner, response.conversation_id)
                self._check(conv, items)
            if response.id in self._responses:
                raise InvalidRequest.response_id_taken(response.id)
            added = []
            if conv is not None:
                added = self._link_checked(conv, items)
                conv.updated_at = updated_at
                conv.expires_at = expires_at
            self._responses[response.id] = copy.deepcopy(response)
            return added

    def get_response(self, owner, response_id):
        with self._lock:
            return copy.deepcopy(self._response(owner, response_id))

    def delete_response(self, owner, response_id):
        with self._lock:
            self._drop_response(self._response(owner, response_id))

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        with self._lock:
            at = now()
            return _newest_first(
                (
                    r
                    for r in self._responses.values()
                    if r.owner == owner
                    and is_live(r.expires_at, at)
                    and (model is None or r.model == model)
                    and (conversation_id is None or r.conversation_id == conversation_id)
                    and (since is None or r.created_at >= since)
                ),
                after=after,
                limit=limit,
            )

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

    def delete_feedback(self, owner, response_id):
        with self._lock:
            fb = self._feedback.get((response_id, owner))
            if fb is None or not is_live(fb.expires_at, now()):
                raise NotFound.feedback(response_id)
            del self._feedback[(response_id, owner)]
            return fb.id

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        with self._lock:
            at = now()
            return _newest_first(
                (
                    fb
                    for (_, fb_owner), fb in self._feedback.items()
                    if fb_owner == owner
                    and is_live(fb.expires_at, at)
                    and (rating is None or fb.rating == rating)
                    and (model is None or fb.model == model)
                    and (since is None or fb.created_at >= since)
                ),
                after=after,
                limit=limit,
            )

    # -- search --------------------------------------------------------------
    def search(self, owner, query, *, conversation_id, after, limit):
        """``search.scan`` over the owner's live conversations: whole words,
        case-insensitively, stopping as soon as the page is full."""
        with self._lock:
            if conversation_id is not None:
                conversations = [self._conversation(owner, conversation_id)]
            else:
                at = now()
                mine = (self._conversations[cid] for cid in self._by_owner.get(owner, {}))
                conversations = [conv for conv in mine if is_live(conv.expires_at, at)]
            conversations.sort(key=lambda conv: (conv.updated_at, conv.id), reverse=True)

            def newest_first(conv: Conversation) -> Iterator[tuple[int, Callable[[], Item]]]:
                # A shallow copy placed in the conversation: the scan only reads it.
                for position, item_id in reversed(self._links[conv.id]):
                    stored = self._items[(owner, item_id)]
                    yield position, partial(replace, stored, conversation_id=conv.id, position=position)

            return scan(query, conversations, newest_first, after=after, limit=limit)

    # -- erasure and operations ---------------------------------------------
    def erase_owner(self, owner):
        with self._lock:
            counts = {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
            for cid in list(self._by_owner.get(owner, {})):
                counts["items"] += self._drop_conversation(self._conversations[cid])
                counts["conversations"] += 1
            self._by_owner.pop(owner, None)
            for resp in [r for r in self._responses.values() if r.owner == owner]:
                counts["feedback"] += self._drop_response(resp)
                counts["responses"] += 1
            for key in [k for k in self._feedback if k[1] == owner]:
                del self._feedback[key]
                counts["feedback"] += 1
            return counts

    def owners(self) -> Iterator[str]:
        with self._lock:
            found = {c.owner for c in self._conversations.values()}
            found |= {r.owner for r in self._responses.values()}
            found |= {owner for _, owner in self._feedback}
        yield from sorted(found)

    def purge(self, *, before, dry_run):
        with self._lock:
            at = now()
            counts = {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
            for conv in list(self._conversations.values()):
                if not is_live(conv.expires_at, at) or (before is not None and conv.updated_at < before):
                    counts["conversations"] += 1
                    if dry_run:
                        counts["items"] += sum(
                            self._refcount[(conv.owner, iid)] == 1 for _, iid in self._links[conv.id]
                        )
                    else:
                        counts["items"] += self._drop_conversation(conv)
            for resp in list(self._responses.values()):
                if not is_live(resp.expires_at, at) or (before is not None and resp.created_at < before):
                    counts["responses"] += 1
                    counts["feedback"] += sum(1 for k in self._feedback if k[0] == resp.id)
                    if not dry_run:
                        self._drop_response(resp)
            return counts

    def export(self, owner, since):
        with self._lock:
            conv_ids = [
                c.id
                for c in sorted(self._conversations.values(), key=lambda c: (c.created_at, c.id))
                if (owner is None or c.owner == owner) and (since is None or c.updated_at >= since)
            ]
        for cid in conv_ids:
            with self._lock:
                conv = self._conversations.get(cid)
                if conv is None or not is_live(conv.expires_at, now()):
                    continue
                batch: list[Record] = [copy.deepcopy(conv), *self._conversation_items(conv)]
            yield from batch
        with self._lock:
            at = now()
            responses = [
                copy.deepcopy(r)
                for r in sorted(self._responses.values(), key=lambda r: (r.created_at, r.id))
                if (owner is None or r.owner == owner)
                and is_live(r.expires_at, at)
                and (since is None or r.created_at >= since)
            ]
            feedback = [
                copy.deepcopy(f)
                for f in sorted(self._feedback.values(), key=lambda f: (f.created_at, f.id))
                if (owner is None or f.owner == owner)
                and is_live(f.expires_at, at)
                and (since is None or f.created_at >= since)
            ]
        yield from responses
        yield from feedback

    def import_records(self, records):
        with self._lock:
            counts = {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
            for record in records:
                if isinstance(record, Conversation):
                    existing = self._conversations.get(record.id)
                    if existing is None:
                        self._by_owner.setdefault(record.owner, {})[record.id] = None
                        self._links[record.id] = []
                        self._next_position[record.id] = 0
                    elif existing.owner != record.owner:
                        raise InvalidRequest(
                            f"Conversation '{shown_id(record.id)}' belongs to another owner.", param="id"
                        )
                    self._conversations[record.id] = copy.deepcopy(record)
                    counts["conversations"] += 1
                elif isinstance(record, Item):
                    conv = self._conversations.get(record.conversation_id)
                    if conv is None:
                        raise NotFound.conversation(record.conversation_id)
                    key = (conv.owner, record.id)
                    self._items[key] = copy.deepcopy(record)
                    links = self._links[conv.id]
                    if all(iid != record.id for _, iid in links):
                        links.append((record.position, record.id))
                        links.sort()
                        self._refcount[key] = self._refcount.get(key, 0) + 1
                    self._next_position[conv.id] = max(self._next_position[conv.id], record.position + 1)
                    counts["items"] += 1
                elif isinstance(record, Response):
                    self.store_response(record)
                    counts["responses"] += 1
                elif isinstance(record, Feedback):
                    self._feedback[(record.response_id, record.owner)] = copy.deepcopy(record)
                    counts["feedback"] += 1
            return counts

    # -- usage statistics ----------------------------------------------------
    def usage_stats(self, owner, *, since):
        """Counted over the dicts under the lock, without copying a record."""
        tally = UsageTally()
        with self._lock:
            at = now()
            for conv in self._conversations.values():
                if (owner is None or conv.owner == owner) and is_live(conv.expires_at, at):
                    tally.add_record(conv, since)
                    for _, item_id in self._links[conv.id]:
                        tally.add_record(self._items[(conv.owner, item_id)], since)
            for record in (*self._responses.values(), *self._feedback.values()):
                if (owner is None or record.owner == owner) and is_live(record.expires_at, at):
                    tally.add_record(record, since)
        return tally.result()

    def health(self) -> dict[str, Any]:
        return {}


def _newest_first(records: Iterable[Any], *, after: str | None, limit: int) -> Page[Any]:
    """One page of records by creation time, newest first, copied out."""
    ordered = sorted(records, key=lambda record: (record.created_at, record.id))
    page = page_of(ordered, after=after, limit=limit, order="desc")
    return Page(data=copy.deepcopy(page.data), has_more=page.has_more)
