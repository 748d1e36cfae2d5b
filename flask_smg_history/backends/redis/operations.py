"""The Redis backend's bulk operations: erasure, owners, stats, purge, export
and import (what ``flask smg-history`` and ``erase_owner`` run).

They walk the owners' indexes in windows (``_WINDOW`` entries, one pipeline
of reads each), so memory stays flat however much is stored. Every owner's
keys share one hash tag, so erasing an owner is a loop of scripts on that
owner's slot, and finding owners is one ``SCAN`` for that tag.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from itertools import groupby
from typing import Any

from ...errors import NotFound
from ...records import RECORD_KINDS, Conversation, Feedback, Item, Record, Response, batched, is_live, now
from .. import jsonfast
from . import codec
from .codec import log

#: Index entries read per round trip by the walks below.
_WINDOW = 200
#: Items per script call when exporting or importing one conversation.
_ITEM_CHUNK = 500
#: Conversations (then responses) removed per erase script run.
_ERASE_CHUNK = 20
#: Conversation -> owner, remembered for the items that follow in an import.
_OWNER_MEMORY = 100_000

_GLOB = re.compile(r"([*?\[\]\\])")
_TAG = re.compile(r"\{o:(\d+):")


def _glob(text: str) -> str:
    """``text`` as a literal in a SCAN ``MATCH`` pattern."""
    return _GLOB.sub(r"\\\1", text)


class RedisOperations:
    """Mixed into ``RedisBackend`` (``backend.py``), whose keys, scripts and
    reads it uses through ``self``; it imports nothing of that module, so the
    imports run one way."""

    def _windows(self, owner: str, kind: str) -> Iterator[tuple[list[str], list[float]]]:
        """An owner index, ascending, one window at a time."""
        skip = 0
        while True:
            members, scores = self._index_window(owner, kind, None, skip, _WINDOW, "asc")
            if members:
                yield members, scores
            if len(members) < _WINDOW:
                return
            skip += len(members)

    def _conversations(self, owner: str) -> Iterator[Conversation]:
        """The owner's stored conversations (expired ones too), by creation."""
        for members, _ in self._windows(owner, "convs"):
            replies = self._pipelined([("hgetall", self._conv_keys(owner, cid)[0]) for cid in members])
            for cid, reply in zip(members, replies):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    conv = codec.conversation(cid, reply)
                except Exception as exc:
                    log.error("Redis history: conversation '%s' is unreadable (%s); skipped", cid, exc)
                    continue
                if conv is not None:
                    yield conv

    def _responses(self, owner: str) -> Iterator[Response]:
        for members, _ in self._windows(owner, "resps"):
            replies = self._pipelined([("hgetall", self._resp_keys(owner, rid)[0]) for rid in members])
            for rid, reply in zip(members, replies):
                if not reply:
                    continue  # expired: the index entry outlives it
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    yield codec.response(rid, owner, reply)
                except Exception as exc:
                    log.error("Redis history: response '%s' is unreadable (%s); skipped", rid, exc)

    def _feedback(self, owner: str) -> Iterator[Feedback]:
        ref_key = self._owner_key(owner, "fbref")
        for members, _ in self._windows(owner, "fb"):
            refs = [codec.text(r) if r is not None else None for r in self.client.hmget(ref_key, members)]
            pairs = [(m, r) for m, r in zip(members, refs) if r is not None]
            replies = self._pipelined([("hgetall", self._resp_keys(owner, r)[1]) for _, r in pairs])
            for (member, ref), reply in zip(pairs, replies):
                fb = None if isinstance(reply, Exception) or not reply else codec.feedback(ref, reply)
                if fb is not None and fb.id == member:
                    yield fb

    # -- erasure -------------------------------------------------------------
    def erase_owner(self, owner):
        """Scripts of ``_ERASE_CHUNK`` conversations or responses each, until
        the owner has no key left. Each run is atomic; the whole is
        idempotent, so an interrupted erasure is finished by running it again."""
        totals = [0, 0, 0, 0]
        while True:
            result = self._run("erase", owner, [_ERASE_CHUNK], f"The history of owner '{owner}'")
            totals = [t + int(n) for t, n in zip(totals, result[1])]
            if self._status(result) == "done":
                break
        return dict(zip(RECORD_KINDS, totals))

    def owners(self) -> Iterator[str]:
        """Owners with at least one key, found by one ``SCAN`` of the owner
        tags (on every master of a cluster); sorted."""
        found: set[str] = set()
        start = len(self.prefix)
        for key in self.client.scan_iter(match=f"{_glob(self.prefix)}{{o:*", count=1000):
            owner = _owner_of(codec.text(key), start)
            if owner is not None:
                found.add(owner)
        yield from sorted(found)

    # -- stats and purge -----------------------------------------------------
    def stats(self, owner):
        """Counts from the indexes and ``ZCARD``, without reading any item."""
        counts: dict[str, Any] = {"conversations": 0, "items": 0, "responses": 0}
        feedback: Counter[str] = Counter()
        oldest = newest = None
        at = now()
        for name in [owner] if owner is not None else list(self.owners()):
            live = [c for c in self._conversations(name) if is_live(c.expires_at, at)]
            sizes = self._pipelined([("zcard", self._conv_keys(name, c.id)[1]) for c in live])
            counts["conversations"] += len(live)
            counts["items"] += sum(n for n in sizes if isinstance(n, int))
            for conv in live:
                oldest = conv.created_at if oldest is None else min(oldest, conv.created_at)
                newest = conv.created_at if newest is None else max(newest, conv.created_at)
            counts["responses"] += sum(is_live(r.expires_at, at) for r in self._responses(name))
            feedback.update(fb.rating for fb in self._feedback(name) if is_live(fb.expires_at, at))
        counts["feedback"] = {"positive": feedback["positive"], "negative": feedback["negative"]}
        counts["oldest"], counts["newest"] = oldest, newest
        return counts

    def purge(self, *, before, dry_run):
        """Redis removes expired records itself (key TTL), so there is nothing
        expired to purge; with ``before``, conversations last written and
        responses created before it go (with their items and feedback).
        Without ``dry_run``, what expiry left in the indexes goes too. The
        result also says when the earliest and latest remaining TTL ends."""
        counts: dict[str, Any] = {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
        first = last = None

        def remaining(deadline: float | None) -> None:
            nonlocal first, last
            if deadline is not None:
                first = deadline if first is None else min(first, deadline)
                last = deadline if last is None else max(last, deadline)

        for owner in list(self.owners()):
            # Deleting while walking would shift the index windows: list them first.
            for conv in list(self._conversations(owner)) if before is not None else self._conversations(owner):
                if before is not None and conv.updated_at < before:
                    counts["conversations"] += 1
                    counts["items"] += self._purge_conversation(owner, conv.id, dry_run)
                else:
                    remaining(conv.expires_at)
            for resp in list(self._responses(owner)) if before is not None else self._responses(owner):
                if before is not None and resp.created_at < before:
                    counts["responses"] += 1
                    counts["feedback"] += self._purge_response(owner, resp.id, dry_run)
                else:
                    remaining(resp.expires_at)
            if not dry_run:
                counts["stale_entries"] = counts.get("stale_entries", 0) + self._compact(owner)
        counts["ttl_first_ends"] = "-" if first is None else codec.when(first)
        counts["ttl_last_ends"] = "-" if last is None else codec.when(last)
        return counts

    def _compact(self, owner: str) -> int:
        """Remove what TTL expiry left in the owner's indexes and item
        directory (readers skip it; this bounds it for an owner who stays
        active for years), and bring ``T:activity`` in step with ``T:convs``
        and the conversations' updated_at. One script per window, each entry
        rechecked there."""
        removed = 0
        for kind in ("convs", "activity", "resps", "fb"):
            index, skip = self._owner_key(owner, kind), 0
            while True:
                members, _ = self._index_window(owner, kind, None, skip, _WINDOW, "asc")
                if members:
                    result = self._run("compact", owner, [repr(now()), kind, *members], "An owner index", index)
                    removed += int(result[1])
                    skip += len(members) - int(result[1])
                if len(members) < _WINDOW:
                    break
        directory = self._owner_key(owner, "items")
        ids = (item_id for item_id, _ in self.client.hscan_iter(directory, count=_WINDOW))
        for chunk in batched(ids, _WINDOW):
            result = self._run("compact", owner, [repr(now()), "items", *chunk], "An item directory", directory)
            removed += int(result[1])
        return removed

    def _purge_conversation(self, owner: str, conversation_id: str, dry_run: bool) -> int:
        """Delete one conversation; returns the items that go (or would)."""
        if not dry_run:
            result = self._run("delete", owner, [conversation_id, repr(now())], f"Conversation '{conversation_id}'")
            return int(result[1]) if self._status(result) == "ok" else 0
        _, _, data, shared = self._conv_keys(owner, conversation_id)
        own, members = self._pipelined([("hlen", data), ("smembers", shared)])
        links = self._pipelined([("hlen", f"{self._tag(owner)}:s:{codec.text(m)}") for m in members])
        return own + sum(1 for n in links if n == 2)  # the item and this one link

    def _purge_response(self, owner: str, response_id: str, dry_run: bool) -> int:
        """Delete one response; returns 1 when it had feedback."""
        had = self.client.exists(self._resp_keys(owner, response_id)[1])
        if not dry_run:
            self._run("delete_response", owner, [response_id, repr(now())], f"Response '{response_id}'")
        return had

    # -- export and import ---------------------------------------------------
    def export(self, owner, since):
        owners = [owner] if owner is not None else list(self.owners())
        for name in owners:
            yield from self._export_conversations(name, since)
        at = now()
        for name in owners:
            for resp in self._responses(name):
                if is_live(resp.expires_at, at) and (since is None or resp.created_at >= since):
                    yield resp
        for name in owners:
            for fb in self._feedback(name):
                if is_live(fb.expires_at, at) and (since is None or fb.created_at >= since):
                    yield fb

    def _export_conversations(self, owner: str, since: float | None) -> Iterator[Record]:
        for conv in self._conversations(owner):
            if not is_live(conv.expires_at, now()) or (since is not None and conv.updated_at < since):
                continue
            yield conv
            position = -1  # a position cursor: deleting the last item exported does not lose the place
            while True:
                try:
                    args = ["", _ITEM_CHUNK + 1, "asc", position]
                    page, position = self._item_page(owner, conv.id, args, None, _ITEM_CHUNK)
                except NotFound:
                    break  # deleted while exporting
                yield from page.data
                if not page.has_more:
                    break

    def import_records(self, records):
        counts = dict.fromkeys(RECORD_KINDS, 0)
        for is_item, run in groupby(records, key=lambda r: isinstance(r, Item)):
            if is_item:
                for conversation_id, items in groupby(run, key=lambda i: i.conversation_id):
                    for chunk in batched(items, _ITEM_CHUNK):  # a long conversation is never held whole
                        counts["items"] += self._import_items(conversation_id, chunk)
                continue
            for record in run:
                if isinstance(record, Conversation):
                    self._import_conversation(record)
                    counts["conversations"] += 1
                elif isinstance(record, Response):
                    self.store_response(record)
                    counts["responses"] += 1
                elif isinstance(record, Feedback):
                    self._import_feedback(record)
                    counts["feedback"] += 1
        return counts

    def _import_conversation(self, conv: Conversation) -> None:
        deadline = self._deadline(conv.updated_at, conv.expires_at)
        self._run(
            "import_conversation",
            conv.owner,
            [
                conv.id,
                conv.owner,
                repr(conv.created_at),
                repr(conv.updated_at),
                jsonfast.dumps(conv.metadata),
                codec.stamp(deadline),
                codec.ms(deadline),
            ],
            f"Conversation '{conv.id}'",
        )
        if len(self._import_owners) >= _OWNER_MEMORY:
            self._import_owners.clear()
        self._import_owners[conv.id] = conv.owner

    def _import_items(self, conversation_id: str, items: list[Item]) -> int:
        """One script for up to ``_ITEM_CHUNK`` items of one conversation."""
        owner = self._import_owners.get(conversation_id) or self._find_owner(conversation_id)
        if owner is None:
            raise NotFound.conversation(conversation_id)
        args: list[Any] = [conversation_id, repr(now())]
        for item in items:
            args += [item.id, item.position, codec.item_json(item)]
        result = self._run("import_items", owner, args, f"Conversation '{conversation_id}'")
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        return len(items)

    def _find_owner(self, conversation_id: str) -> str | None:
        """The owner of a conversation imported earlier (another run): one
        ``SCAN`` for its meta key, as only the owner's tag names its slot."""
        pattern = f"{_glob(self.prefix)}{{o:*}}:c:{_glob(conversation_id)}:meta"
        for key in self.client.scan_iter(match=pattern, count=1000):
            owner = _owner_of(codec.text(key), len(self.prefix))
            if owner is not None and self._conv_keys(owner, conversation_id)[0] == codec.text(key):
                self._import_owners[conversation_id] = owner
                return owner
        return None

    def _import_feedback(self, fb: Feedback) -> None:
        """Feedback takes its response's expiry here, as when submitted."""
        expires = self.client.hget(self._resp_keys(fb.owner, fb.response_id)[0], "e")
        if expires is not None:
            fb = dataclasses.replace(fb, expires_at=codec.optional_float(codec.text(expires)))
        self._run(
            "submit_feedback",
            fb.owner,
            [fb.response_id, "", fb.id, codec.feedback_doc(fb), repr(fb.created_at), codec.ms(fb.expires_at)],
            f"Feedback on response '{fb.response_id}'",
        )


def _owner_of(key: str, start: int) -> str | None:
    """The owner named by a key's tag (``{o:<length>:<owner>}``), or None for
    a key that is not an owner's."""
    match = _TAG.match(key, start)
    if match is None:
        return None
    begin = match.end()
    owner = key[begin : begin + int(match.group(1))]
    return owner if key.startswith("}", begin + len(owner)) else None
