"""One owner's folder: where each record's file is, and reading and writing
records there. Callers hold the owner's lock (``Folder.locked``).

::

    <owner>/owner.json                                  {"owner": "<the exact name>"}
    <owner>/conversations/<conv_id>/conversation.json   the conversation, and next_position
    <owner>/conversations/<conv_id>/items/<position>.json  one item (position: 12 digits)
    <owner>/links/<item_id>.json                        {"item": id, "conversations": {conv_id: position}}
    <owner>/responses/<resp_id>.json
    <owner>/feedback/<resp_id>.json                     the owner's feedback on that response

Why one file per item: an append writes only its new items (a file each)
and the conversation's file, whatever the conversation's length, and
``recent(20)`` reads 20 small files; a person opening a conversation's
folder sees its items in order, one readable document each. An item linked
into several conversations (``item_reference``) has a copy in each (items
never change once written); ``links/`` finds an item by ID for references and
for the uniqueness checks.

**What is true after a crash.** The conversation's file is written last: it
is the commit point of an append, and an item file at or beyond its
``next_position`` is ignored (and overwritten by the next append). A link is
only a hint, trusted when the item file it points to is there, below
``next_position``, and holds that item: so a deleted item or conversation
needs no link to be rewritten first, and a stale entry is dropped when its
link file is next written (or by ``purge``).

**A turn of the Responses API** (an append and a response, ``store_turn``)
writes its items, then the conversation's file with a ``turn`` that says
what the conversation was before it (``codec.Turn``), then the response's
file: that is the turn's commit point. While the response's file is missing
(a crash came before it), ``conversation`` answers the conversation as it
was, so the turn's items are invisible and the next append overwrites them.
Every later write of the conversation's file leaves the ``turn`` out (the
turn is settled then, one way or the other); deleting or purging the
response settles it first (``settle_turn``), so its items stay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...records import Conversation, Feedback, Item, Response
from . import codec
from .storage import Folder, listing, owner_folder_name, safe_id

_POSITION_DIGITS = 12
#: Missing item files ``walk`` opens in vain before it lists the folder instead.
_GAPS = 64


class OwnerFolder:
    def __init__(self, folder: Folder, owner: str, path: Path | None = None) -> None:
        self.folder = folder
        self.owner = owner
        self.path = path or folder.root / owner_folder_name(owner)

    # -- paths ---------------------------------------------------------------
    def conversation_dir(self, conversation_id: str) -> Path:
        return self.path / "conversations" / conversation_id

    def conversation_file(self, conversation_id: str) -> Path:
        return self.conversation_dir(conversation_id) / "conversation.json"

    def item_file(self, conversation_id: str, position: int) -> Path:
        return self.conversation_dir(conversation_id) / "items" / f"{position:0{_POSITION_DIGITS}d}.json"

    def link_file(self, item_id: str) -> Path:
        return self.path / "links" / f"{item_id}.json"

    def response_file(self, response_id: str) -> Path:
        return self.path / "responses" / f"{response_id}.json"

    def feedback_file(self, response_id: str) -> Path:
        return self.path / "feedback" / f"{response_id}.json"

    # -- listings ------------------------------------------------------------
    def conversation_ids(self) -> list[str]:
        return sorted(name for name in listing(self.path / "conversations") if safe_id(name))

    def response_ids(self) -> list[str]:
        return sorted(name for name in listing(self.path / "responses", ".json") if safe_id(name))

    def feedback_ids(self) -> list[str]:
        return sorted(name for name in listing(self.path / "feedback", ".json") if safe_id(name))

    def link_ids(self) -> list[str]:
        return sorted(name for name in listing(self.path / "links", ".json") if safe_id(name))

    def positions(self, conversation_id: str, next_position: int) -> list[int]:
        """The committed item positions of a conversation, ascending."""
        names = listing(self.conversation_dir(conversation_id) / "items", ".json")
        return sorted(p for p in (int(n) for n in names if n.isdigit()) if p < next_position)

    def items(self, conversation_id: str, next_position: int) -> list[Item]:
        """Every item of a conversation, by position."""
        return [i for i in (self.item(conversation_id, p) for p in self.positions(conversation_id, next_position)) if i]

    def walk(self, conversation_id: str, next_position: int, start: int, step: int, count: int) -> list[Item]:
        """Up to ``count`` items from position ``start`` on, upwards (``step``
        1) or downwards (-1). Positions are dense unless items were deleted,
        so the files are opened one position after another (a page of a
        10,000-item conversation costs its own files, not a listing of the
        folder); after more gaps than ``count`` plus ``_GAPS``, the folder is
        listed once instead."""
        found: list[Item] = []
        gaps, position = 0, start
        while 0 <= position < next_position and len(found) < count:
            if gaps > count + _GAPS:
                rest = [p for p in self.positions(conversation_id, next_position) if (p - position) * step >= 0]
                if step < 0:
                    rest.reverse()
                found += filter(None, (self.item(conversation_id, p) for p in rest[: count - len(found)]))
                break
            item = self.item(conversation_id, position)
            if item is None:
                gaps += 1
            else:
                found.append(item)
            position += step
        return found

    def has_records(self) -> bool:
        return bool(self.conversation_ids() or self.response_ids() or self.feedback_ids())

    # -- reads ---------------------------------------------------------------
    def _decode(self, path: Path, what: str, decode: Any) -> Any:
        doc = self.folder.read(path, what)
        try:
            return decode(doc)
        except ValueError as exc:
            raise self.folder.corrupt(path, what, str(exc)) from None

    def conversation(self, conversation_id: str) -> tuple[Conversation, int] | None:
        """A conversation, expired or not, with its ``next_position``; None
        when there is none. A file whose turn has no response file is
        answered as the conversation was before that turn."""
        found = self._stored_conversation(conversation_id)
        if found is None:
            return None
        conversation, next_position, turn = found
        if turn is not None and not self.response_file(turn.response).exists():
            conversation.updated_at, conversation.expires_at = turn.updated_at, turn.expires_at
            return conversation, turn.next_position
        return conversation, next_position

    def _stored_conversation(self, conversation_id: str) -> tuple[Conversation, int, codec.Turn | None] | None:
        """The conversation's file as it is, with its ``turn``."""
        if not safe_id(conversation_id):
            return None
        try:
            return self._decode(
                self.conversation_file(conversation_id),
                f"Conversation '{conversation_id}'",
                lambda doc: codec.conversation_of(doc, self.owner, conversation_id),
            )
        except (FileNotFoundError, NotADirectoryError):
            return None

    def item(self, conversation_id: str, position: int) -> Item | None:
        path = self.item_file(conversation_id, position)
        try:
            return self._decode(
                path,
                f"The item at position {position} of conversation '{conversation_id}'",
                lambda doc: codec.record_of(Item, doc, conversation_id=conversation_id, position=position),
            )
        except FileNotFoundError:
            return None

    def response(self, response_id: str) -> Response | None:
        if not safe_id(response_id):
            return None
        try:
            return self._decode(
                self.response_file(response_id),
                f"Response '{response_id}'",
                lambda doc: codec.record_of(Response, doc, id=response_id, owner=self.owner),
            )
        except FileNotFoundError:
            return None

    def feedback(self, response_id: str) -> Feedback | None:
        if not safe_id(response_id):
            return None
        try:
            fb = self._decode(
                self.feedback_file(response_id),
                f"Feedback on response '{response_id}'",
                lambda doc: codec.record_of(Feedback, doc, owner=self.owner),
            )
        except FileNotFoundError:
            return None
        if fb.response_id != response_id:
            raise self.folder.corrupt(
                self.feedback_file(response_id),
                f"Feedback on response '{response_id}'",
                f"its 'response_id' is {fb.response_id!r}",
            )
        return fb

    def links(self, item_id: str) -> dict[str, int]:
        """Where the owner's item ``item_id`` is linked, as the link file
        says (unchecked: see ``placed``)."""
        if not safe_id(item_id):
            return {}
        path = self.link_file(item_id)
        try:
            return self._decode(path, f"The links of item '{item_id}'", _links_of)
        except FileNotFoundError:
            return {}

    def placed(self, item_id: str, conversation_id: str, position: int, next_positions: dict[str, int]) -> Item | None:
        """The item a link points to, if the link holds: the file is there,
        committed, and holds that item. ``next_positions`` caches each
        conversation's ``next_position`` (-1: none)."""
        if conversation_id not in next_positions:
            found = self.conversation(conversation_id)
            next_positions[conversation_id] = -1 if found is None else found[1]
        if position >= next_positions[conversation_id]:
            return None
        item = self.item(conversation_id, position)
        return item if item is not None and item.id == item_id else None

    def live_links(self, item_id: str, next_positions: dict[str, int]) -> dict[str, Item]:
        """The links of ``item_id`` that hold, with the item at each."""
        out = {}
        for conversation_id, position in self.links(item_id).items():
            item = self.placed(item_id, conversation_id, position, next_positions)
            if item is not None:
                out[conversation_id] = item
        return out

    # -- writes --------------------------------------------------------------
    def ensure(self) -> None:
        """Create the folder with its ``owner.json`` on the first write."""
        marker = self.path / "owner.json"
        if not marker.exists():
            self.folder.write(marker, {"owner": self.owner})

    def write_conversation(
        self, conversation: Conversation, next_position: int, turn: codec.Turn | None = None
    ) -> None:
        extra: dict[str, Any] = {"next_position": next_position}
        if turn is not None:
            extra["turn"] = turn.document()
        self.folder.write(self.conversation_file(conversation.id), codec.document(conversation, **extra))

    def settle_turn(self, conversation_id: str, response_id: str) -> None:
        """Before the response ``response_id`` is removed: if the
        conversation's file is its turn's (committed, as the response is
        there), write it again without the ``turn``, so the turn's items do
        not go with the response."""
        found = self._stored_conversation(conversation_id)
        if found is not None and found[2] is not None and found[2].response == response_id:
            self.write_conversation(found[0], found[1])

    def write_item(self, item: Item) -> None:
        self.folder.write(self.item_file(item.conversation_id, item.position), codec.document(item))

    def write_links(self, item_id: str, links: dict[str, int]) -> None:
        path = self.link_file(item_id)
        if links:
            self.folder.write(path, {"item": item_id, "conversations": links})
        else:
            self.folder.remove(path)

    def write_response(self, response: Response) -> None:
        self.folder.write(self.response_file(response.id), codec.document(response))

    def write_feedback(self, feedback: Feedback) -> None:
        self.folder.write(self.feedback_file(feedback.response_id), codec.document(feedback))


def read_owner(folder: Folder, path: Path) -> OwnerFolder | None:
    """The owner whose folder ``path`` is, from its ``owner.json``; None for
    a folder that is not an owner's (one being created or deleted)."""
    marker = path / "owner.json"
    try:
        doc = folder.read(marker, f"The owner folder '{path.name}'")
    except (FileNotFoundError, NotADirectoryError):
        return None
    owner = doc.get("owner") if isinstance(doc, dict) else None
    if not isinstance(owner, str) or owner_folder_name(owner) != path.name:
        raise folder.corrupt(marker, f"The owner folder '{path.name}'", "it does not hold this folder's owner name")
    return OwnerFolder(folder, owner, path)


def _links_of(doc: Any) -> dict[str, int]:
    links = doc.get("conversations") if isinstance(doc, dict) else None
    if not isinstance(links, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in links.items()
    ):
        raise ValueError('expected {"item": ..., "conversations": {conversation ID: position}}')
    return links
