"""Plain-file storage: pretty-printed JSON documents in a folder, for
development, inspection and a handful of users on one host.

Why it is shaped this way (the folder layout is in ``layout.py``, the disk
rules in ``storage.py``, the figures in ``docs/backends/file.md``):

- A folder per owner, a lock per owner: every call takes the owner's lock,
  shared to read and exclusive to write, so the processes and threads of one
  host append to one conversation in one total order. Several hosts sharing
  the folder over a network file system are not supported (flock is not
  reliable there).
- Every file is replaced atomically (temporary file, fsync, rename), and a
  write that spans files writes the conversation's file last, so a crash
  leaves each call done or not done (``layout.py`` says how).
- A file that is not what this backend writes (broken JSON, a hand-edited
  field of the wrong type) is reported for that record, naming the file
  (``CorruptFile``, a 503); it is never skipped or overwritten.
- Records are kept per owner, as on Redis: two owners may each hold a
  conversation or response with the same ID.
- Search reads the files (``search.scan``): whole words, case-insensitively,
  as the memory backend matches.

Erasure, purge, export and import are in ``operations.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ...errors import InvalidRequest, NotFound, shown_id
from ...records import Conversation, Item, Page, Response, is_live, now
from ...search import scan
from ..base import Backend, merge_metadata, page_of
from .codec import Turn
from .layout import OwnerFolder
from .operations import FileOperations
from .storage import Folder, disk_problem, safe_id

#: The folder under the app's instance folder when ``SMG_HISTORY_FILE_PATH`` is unset.
DEFAULT_FOLDER = "smg_history_files"


class FileBackend(FileOperations, Backend):
    #: The disk failed or refused: permissions, a full disk, a read-only or
    #: vanished folder. ``outage_hint`` names the cause it recognises.
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        root = Path(settings.file_path or Path(app.instance_path) / DEFAULT_FOLDER)
        self.folder = Folder(root.absolute(), settings.file_backups)

    def _owner(self, owner: str) -> OwnerFolder:
        return OwnerFolder(self.folder, owner)

    def _live_conversation(self, files: OwnerFolder, conversation_id: str) -> tuple[Conversation, int]:
        found = files.conversation(conversation_id)
        if found is None or not is_live(found[0].expires_at, now()):
            raise NotFound.conversation(conversation_id)
        return found

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        files = self._owner(conversation.owner)
        with self.folder.locked(conversation.owner, exclusive=True):
            if files.conversation(conversation.id) is not None or not safe_id(conversation.id):
                raise InvalidRequest(f"Conversation id '{shown_id(conversation.id)}' is not available.", param="id")
            added = self._check(files, conversation.id, items)
            files.ensure()
            self._link(files, added)
            files.write_conversation(conversation, len(added))  # the commit point
            return added

    def get_conversation(self, owner, conversation_id):
        with self.folder.locked(owner, exclusive=False):
            return self._live_conversation(self._owner(owner), conversation_id)[0]

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            conv, next_position = self._live_conversation(files, conversation_id)
            conv.metadata = merge_metadata(conv.metadata, metadata, replace=replace)
            conv.updated_at, conv.expires_at = updated_at, expires_at
            files.write_conversation(conv, next_position)
            return conv

    def delete_conversation(self, owner, conversation_id):
        """Its folder goes in one rename; the links into it are left to
        fail their check (``layout.py``) and be dropped later."""
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            self._live_conversation(files, conversation_id)
            self.folder.remove_tree(files.conversation_dir(conversation_id))

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        with self.folder.locked(owner, exclusive=False):
            live = [conv for conv, _ in self._conversations(self._owner(owner))]
        live.sort(key=lambda c: (getattr(c, order_by), c.id))
        return page_of(live, after=after, limit=limit, order=order)

    def _conversations(self, files: OwnerFolder) -> list[tuple[Conversation, int]]:
        """The owner's live conversations with their ``next_position``, unordered."""
        at = now()
        found = (files.conversation(cid) for cid in files.conversation_ids())
        return [(conv, n) for conv, n in filter(None, found) if is_live(conv.expires_at, at)]

    # -- items ---------------------------------------------------------------
    def _check(self, files: OwnerFolder, conversation_id: str, items: list[Item], start: int = 0) -> list[Item]:
        """Check a whole batch before anything is written, resolving
        references to the item they name, and place it from ``start``."""
        seen: set[str] = set()
        next_positions: dict[str, int] = {conversation_id: start}
        out = []
        for offset, item in enumerate(items):
            if item.id in seen:
                raise InvalidRequest.already_in_conversation(item.id, conversation_id)
            seen.add(item.id)
            linked = files.live_links(item.id, next_positions) if safe_id(item.id) else {}
            if conversation_id in linked:
                raise InvalidRequest.already_in_conversation(item.id, conversation_id)
            if item.type == "item_reference":
                if not linked:
                    raise NotFound.item(item.id)
                item = next(iter(linked.values()))
            elif linked:
                raise InvalidRequest.item_exists(item.id)
            elif not safe_id(item.id):
                raise InvalidRequest(f"Invalid 'id': {shown_id(item.id)!r} cannot name an item.", param="items")
            out.append(replace(item, conversation_id=conversation_id, position=start + offset))
        return out

    def _link(self, files: OwnerFolder, items: list[Item]) -> None:
        """Write checked items and their links (before the conversation's
        file, which commits them)."""
        for item in items:
            files.write_item(item)
            links = files.links(item.id)
            links[item.conversation_id] = item.position
            files.write_links(item.id, links)

    def _appending(self, files: OwnerFolder, conversation_id: str, items: list[Item]) -> _Append:
        """An append to a live conversation, checked whole; nothing written."""
        conv, next_position = self._live_conversation(files, conversation_id)
        return _Append(conv, next_position, self._check(files, conversation_id, items, next_position))

    def _commit_append(
        self,
        files: OwnerFolder,
        append: _Append,
        updated_at: float,
        expires_at: float | None,
        turn: Turn | None = None,
    ) -> list[Item]:
        """Write a checked append: its items and links, then the
        conversation's file (with ``turn``, when a turn's response commits it)."""
        self._link(files, append.items)
        conv = append.conversation
        conv.updated_at, conv.expires_at = updated_at, expires_at
        files.write_conversation(conv, append.next_position + len(append.items), turn)
        return append.items

    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            append = self._appending(files, conversation_id, items)
            return self._commit_append(files, append, updated_at, expires_at)

    def _position(self, files: OwnerFolder, conversation_id: str, next_position: int, item_id: str) -> int | None:
        """Where ``item_id`` is in this conversation, if it is."""
        position = files.links(item_id).get(conversation_id)
        if position is None:
            return None
        found = files.placed(item_id, conversation_id, position, {conversation_id: next_position})
        return None if found is None else position

    def list_items(self, owner, conversation_id, *, after, limit, order):
        files = self._owner(owner)
        step = 1 if order == "asc" else -1
        with self.folder.locked(owner, exclusive=False):
            _, next_position = self._live_conversation(files, conversation_id)
            start = 0 if order == "asc" else next_position - 1
            if after is not None:
                cursor = self._position(files, conversation_id, next_position, after)
                if cursor is None:
                    raise InvalidRequest.unknown_cursor(after)
                start = cursor + step
            found = files.walk(conversation_id, next_position, start, step, limit + 1)
        return Page(data=found[:limit], has_more=len(found) > limit)

    def get_item(self, owner, conversation_id, item_id):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=False):
            _, next_position = self._live_conversation(files, conversation_id)
            position = self._position(files, conversation_id, next_position, item_id)
            item = None if position is None else files.item(conversation_id, position)
            if item is None:
                raise NotFound.item(item_id)
            return item

    def delete_item(self, owner, conversation_id, item_id):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            _, next_position = self._live_conversation(files, conversation_id)
            position = self._position(files, conversation_id, next_position, item_id)
            if position is None:
                raise NotFound.item(item_id)
            self.folder.remove(files.item_file(conversation_id, position))  # the commit point
            self.folder.sync_folder(files.item_file(conversation_id, position).parent)
            links = files.links(item_id)
            links.pop(conversation_id, None)
            files.write_links(item_id, links)

    def recent_items(self, owner, conversation_id, limit):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=False):
            _, next_position = self._live_conversation(files, conversation_id)
            return files.walk(conversation_id, next_position, next_position - 1, -1, limit)[::-1]

    # -- responses -----------------------------------------------------------
    def _live_response(self, files: OwnerFolder, response_id: str):
        resp = files.response(response_id)
        if resp is None or not is_live(resp.expires_at, now()):
            raise NotFound.response(response_id)
        return resp

    @staticmethod
    def _check_response_id(response: Response) -> None:
        if not safe_id(response.id):
            raise InvalidRequest(f"Invalid 'id': {shown_id(response.id)!r} cannot name a response.", param="id")

    def store_response(self, response):
        self._check_response_id(response)
        files = self._owner(response.owner)
        with self.folder.locked(response.owner, exclusive=True):
            files.ensure()
            files.write_response(response)

    def store_turn(self, response, items, *, updated_at, expires_at):
        """Under the owner's lock: the append's checks, then the response
        ID's (it must be free: the response is inserted, never replaced);
        then the append as ``add_items`` writes it, its conversation's file
        carrying the ``turn`` that undoes it, and last the response's file,
        the commit point of the whole turn (``layout.py``)."""
        self._check_response_id(response)
        files = self._owner(response.owner)
        conversation_id = response.conversation_id
        with self.folder.locked(response.owner, exclusive=True):
            append = None if conversation_id is None else self._appending(files, conversation_id, items)
            if files.response_file(response.id).exists():
                raise InvalidRequest.response_id_taken(response.id)
            files.ensure()
            added: list[Item] = []
            if append is not None:
                conv = append.conversation
                undo = Turn(response.id, append.next_position, conv.updated_at, conv.expires_at)
                added = self._commit_append(files, append, updated_at, expires_at, undo)
            files.write_response(response)  # the commit point
            return added

    def get_response(self, owner, response_id):
        with self.folder.locked(owner, exclusive=False):
            return self._live_response(self._owner(owner), response_id)

    def delete_response(self, owner, response_id):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            resp = self._live_response(files, response_id)
            if resp.conversation_id is not None:
                files.settle_turn(resp.conversation_id, response_id)
            self.folder.remove(files.feedback_file(response_id))
            self.folder.remove(files.response_file(response_id))

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=False):
            found = [files.response(rid) for rid in files.response_ids()]
        return _newest_first(found, after=after, limit=limit, since=since, model=model, conversation_id=conversation_id)

    # -- feedback ------------------------------------------------------------
    def submit_feedback(self, feedback):
        files = self._owner(feedback.owner)
        with self.folder.locked(feedback.owner, exclusive=True):
            existing = files.feedback(feedback.response_id)
            if existing is not None:
                feedback = replace(feedback, id=existing.id)
            files.ensure()
            files.write_feedback(feedback)
            return feedback

    def _live_feedback(self, files: OwnerFolder, response_id: str):
        fb = files.feedback(response_id)
        if fb is None or not is_live(fb.expires_at, now()):
            raise NotFound.feedback(response_id)
        return fb

    def get_feedback(self, owner, response_id):
        with self.folder.locked(owner, exclusive=False):
            return self._live_feedback(self._owner(owner), response_id)

    def delete_feedback(self, owner, response_id):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=True):
            fb = self._live_feedback(files, response_id)
            self.folder.remove(files.feedback_file(response_id))
            return fb.id

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=False):
            found = [files.feedback(rid) for rid in files.feedback_ids()]
        return _newest_first(found, after=after, limit=limit, since=since, rating=rating, model=model)

    # -- search --------------------------------------------------------------
    def search(self, owner, query, *, conversation_id, after, limit):
        """The scan the memory backend runs (``search.scan``), over the files:
        its cost is that of the files it reads before the page is full."""
        files = self._owner(owner)
        with self.folder.locked(owner, exclusive=False):
            if conversation_id is not None:
                found = [self._live_conversation(files, conversation_id)]
            else:
                found = self._conversations(files)
            next_positions = {conv.id: n for conv, n in found}
            conversations = sorted((conv for conv, _ in found), key=lambda c: (c.updated_at, c.id), reverse=True)

            def newest_first(conv: Conversation) -> Iterator[tuple[int, Callable[[], Item | None]]]:
                for position in reversed(files.positions(conv.id, next_positions[conv.id])):
                    yield position, partial(files.item, conv.id, position)

            return scan(query, conversations, newest_first, after=after, limit=limit)

    # -- operations ----------------------------------------------------------
    def settings_in_use(self) -> dict[str, Any]:
        """The folder in use, when SMG_HISTORY_FILE_PATH left it to the
        default in the instance folder."""
        return {} if self.settings.file_path else {"SMG_HISTORY_FILE_PATH": str(self.folder.root)}

    def health(self) -> dict[str, Any]:
        """Write and remove a probe file: the folder must be writable, not
        only there."""
        probe = self.folder.root / ".health.json"
        self.folder.write(probe, {"probe": now()})
        self.folder.remove(probe)
        usage = shutil.disk_usage(self.folder.root)
        return {
            "path": str(self.folder.root),
            "writable": True,
            "free_bytes": usage.free,
            "backups": self.folder.backups,
        }

    def outage_hint(self, exc: BaseException) -> str | None:
        problem = disk_problem(exc)
        if problem is None:
            return None
        return f"{problem}; check the folder that SMG_HISTORY_FILE_PATH names (by default the app's instance folder)."


class _Append(NamedTuple):
    """A checked append: the live conversation, its ``next_position`` and the
    items placed from there (references resolved)."""

    conversation: Conversation
    next_position: int
    items: list[Item]


def _newest_first(records: list[Any], *, after: str | None, limit: int, since: float | None, **equal: Any) -> Page[Any]:
    """One page, newest first, of the live records created at or after
    ``since`` whose fields equal each value of ``equal`` that is not None."""
    at = now()
    kept = [
        record
        for record in records
        if record is not None
        and is_live(record.expires_at, at)
        and (since is None or record.created_at >= since)
        and all(value is None or getattr(record, name) == value for name, value in equal.items())
    ]
    kept.sort(key=lambda record: (record.created_at, record.id))
    return page_of(kept, after=after, limit=limit, order="desc")
