"""The file backend's bulk operations: erasure, owners, purge, export and
import (what ``flask smg-history`` and ``erase_owner`` run).

Each works one owner's folder at a time under that owner's lock, and never
holds a lock while it hands records to its caller, so an export can be
copied into another folder of the same kind without waiting on itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import count, groupby
from typing import TYPE_CHECKING, Any

from ...errors import InvalidRequest, NotFound, shown_id
from ...records import RECORD_KINDS, Conversation, Feedback, Item, Record, Response, is_live, now
from .layout import OwnerFolder, read_owner
from .storage import CorruptFile, listing, safe_id

if TYPE_CHECKING:
    from .storage import Folder


class FileOperations:
    """Mixed into ``FileBackend``, whose ``folder``, ``_owner`` and
    ``_position`` it uses."""

    folder: Folder

    def _owner_folders(self) -> Iterator[OwnerFolder]:
        for name in sorted(listing(self.folder.root)):
            path = self.folder.root / name
            if path.is_dir():
                files = read_owner(self.folder, path)
                if files is not None:
                    yield files

    def owners(self) -> Iterator[str]:
        yield from sorted(files.owner for files in self._owner_folders() if files.has_records())

    # -- erasure -------------------------------------------------------------
    def erase_owner(self, owner: str) -> dict[str, int]:
        """Count what is there, then remove the owner's folder in one rename.
        A file too broken to read is counted, not a reason to keep the data."""
        files = self._owner(owner)
        counts = dict.fromkeys(RECORD_KINDS, 0)
        with self.folder.locked(owner, exclusive=True):
            item_ids: set[str] = set()
            for conversation_id in files.conversation_ids():
                counts["conversations"] += 1
                items_dir = files.conversation_dir(conversation_id) / "items"
                for name in listing(items_dir, ".json"):
                    try:
                        item = files.item(conversation_id, int(name)) if name.isdigit() else None
                    except CorruptFile:
                        item = None
                    item_ids.add(item.id if item is not None else f"{conversation_id}/{name}")
            counts["items"] = len(item_ids)
            counts["responses"] = len(files.response_ids())
            counts["feedback"] = len(files.feedback_ids())
            self.folder.remove_tree(files.path)
        return counts

    # -- purge ---------------------------------------------------------------
    def purge(self, *, before: float | None, dry_run: bool) -> dict[str, Any]:
        at = now()
        counts = dict.fromkeys(RECORD_KINDS, 0)
        for files in self._owner_folders():
            with self.folder.locked(files.owner, exclusive=not dry_run):
                self._purge_owner(files, at, before, dry_run, counts)
        return counts

    def _purge_owner(
        self, files: OwnerFolder, at: float, before: float | None, dry_run: bool, counts: dict[str, int]
    ) -> None:
        found = [files.conversation(cid) for cid in files.conversation_ids()]
        next_positions = {conv.id: n for conv, n in filter(None, found)}
        doomed = {
            conv.id
            for conv, _ in filter(None, found)
            if not is_live(conv.expires_at, at) or (before is not None and conv.updated_at < before)
        }
        # An item goes with the last conversation that links it.
        gone: set[str] = set()
        for conversation_id in doomed:
            for item in files.items(conversation_id, next_positions[conversation_id]):
                if set(files.live_links(item.id, dict(next_positions))) <= doomed:
                    gone.add(item.id)
        counts["conversations"] += len(doomed)
        counts["items"] += len(gone)
        for response_id in files.response_ids():
            resp = files.response(response_id)
            if resp is None or (is_live(resp.expires_at, at) and (before is None or resp.created_at >= before)):
                continue
            counts["responses"] += 1
            counts["feedback"] += files.feedback_file(response_id).exists()
            if not dry_run:
                if resp.conversation_id is not None:
                    files.settle_turn(resp.conversation_id, response_id)  # its turn's items stay
                self.folder.remove(files.feedback_file(response_id))
                self.folder.remove(files.response_file(response_id))
        if dry_run:
            return
        for conversation_id in doomed:
            self.folder.remove_tree(files.conversation_dir(conversation_id))
        self._sweep(files)

    def _sweep(self, files: OwnerFolder) -> None:
        """Drop link entries that no longer hold (their conversation or item
        is gone), and the remains of removals a crash interrupted."""
        next_positions: dict[str, int] = {}
        for item_id in files.link_ids():
            links = files.links(item_id)
            live = {cid: links[cid] for cid in files.live_links(item_id, next_positions)}
            if live != links:
                files.write_links(item_id, live)
        for path in (files.path / "conversations").glob(".*.deleted"):
            self.folder.remove_tree(path)

    # -- export and import ---------------------------------------------------
    def export(self, owner: str | None, since: float | None) -> Iterator[Record]:
        """Conversations by creation (over every owner), each with its items
        by position, then responses, then feedback: the order every backend
        exports in."""
        owners = [self._owner(owner)] if owner is not None else list(self._owner_folders())
        heads: list[tuple[float, str, str, OwnerFolder]] = []
        responses: list[Response] = []
        feedback: list[Feedback] = []
        at = now()
        for files in owners:
            with self.folder.locked(files.owner, exclusive=False):
                for conv, _ in filter(None, (files.conversation(cid) for cid in files.conversation_ids())):
                    if since is None or conv.updated_at >= since:
                        heads.append((conv.created_at, conv.id, files.owner, files))
                responses += filter(None, (files.response(rid) for rid in files.response_ids()))
                feedback += filter(None, (files.feedback(rid) for rid in files.feedback_ids()))
        heads.sort(key=lambda head: head[:3])
        for _, conversation_id, _, files in heads:
            with self.folder.locked(files.owner, exclusive=False):
                found = files.conversation(conversation_id)
                if found is None or not is_live(found[0].expires_at, now()):
                    continue
                conv, next_position = found
                batch = [conv, *files.items(conversation_id, next_position)]
            yield from batch
        for records in (responses, feedback):
            records.sort(key=lambda record: (record.created_at, record.id, record.owner))
            yield from (r for r in records if is_live(r.expires_at, at) and (since is None or r.created_at >= since))

    def import_records(self, records) -> dict[str, int]:
        """Upsert records as they are. A run of items of one conversation is
        written under one lock, its conversation's file last (the commit
        point), so no append can slip in between and reuse their positions."""
        counts = dict.fromkeys(RECORD_KINDS, 0)
        owner_of: dict[str, str] = {}  # conversation ID -> owner, from this import
        for _, run in groupby(records, key=_runs()):
            first, *rest = run
            if isinstance(first, Item):
                owner = owner_of.get(first.conversation_id) or self._owner_of(first.conversation_id)
                counts["items"] += self._import_items(self._owner(owner), [first, *rest])
                continue
            record = first
            if not safe_id(record.id) or (isinstance(record, Feedback) and not safe_id(record.response_id)):
                raise InvalidRequest(f"Invalid 'id': {shown_id(record.id)!r} cannot name a record here.", param="id")
            files = self._owner(record.owner)
            with self.folder.locked(record.owner, exclusive=True):
                files.ensure()
                if isinstance(record, Conversation):
                    existing = files.conversation(record.id)
                    files.write_conversation(record, 0 if existing is None else existing[1])
                    owner_of[record.id] = record.owner
                    counts["conversations"] += 1
                elif isinstance(record, Response):
                    files.write_response(record)
                    counts["responses"] += 1
                else:
                    files.write_feedback(record)
                    counts["feedback"] += 1
        return counts

    def _owner_of(self, conversation_id: str) -> str:
        """The owner holding a conversation, for items imported without it."""
        if safe_id(conversation_id):
            for files in self._owner_folders():
                if files.conversation_file(conversation_id).exists():
                    return files.owner
        raise NotFound.conversation(conversation_id)

    def _import_items(self, files: OwnerFolder, items: list[Item]) -> int:
        conversation_id = items[0].conversation_id
        with self.folder.locked(files.owner, exclusive=True):
            found = files.conversation(conversation_id)
            if found is None:
                raise NotFound.conversation(conversation_id)
            conv, next_position = found
            committed = next_position
            for item in items:
                if not safe_id(item.id):
                    raise InvalidRequest(f"Invalid 'id': {shown_id(item.id)!r} cannot name an item.", param="id")
                # Already here: it keeps its place, as on every backend.
                position = self._position(files, conversation_id, next_position, item.id)
                placed = item if position is None else replace(item, position=position)
                files.write_item(placed)
                links = files.links(item.id)
                links[conversation_id] = placed.position
                files.write_links(item.id, links)
                next_position = max(next_position, item.position + 1)  # after the highest imported, as everywhere
            if next_position != committed:
                files.write_conversation(conv, next_position)
        return len(items)


def _runs() -> Callable[[Record], Any]:
    """A ``groupby`` key: consecutive items of one conversation share one;
    any other record is a run of its own."""
    others = count()
    return lambda record: ("items", record.conversation_id) if isinstance(record, Item) else next(others)
