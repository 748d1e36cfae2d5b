"""Records to the JSON documents of the file backend's folder, and back.

A document is the record in the JSON Lines form of ``portable.py`` (its kind
under ``record``, then its fields), pretty-printed, less what the file's path
already says: the owner (the owner's folder has it, in ``owner.json``) and,
for an item, its conversation and position (``conversations/<id>/items/
<position>.json``). A conversation's document adds ``next_position``, the
position its next item gets, and, when a Responses API turn wrote it, the
``turn`` that says how to undo it (``Turn``).

Reading checks each field's JSON type against the record's annotation, so
a hand-edited file with ``"created_at": "yesterday"`` is refused here, with
the field named, instead of failing later in a sort.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Any

from ... import portable
from ...records import Conversation, Feedback, Item, Record, Response
from .storage import SAFE_ID

#: Fields a document leaves out because its path says them.
_FROM_PATH: dict[type, tuple[str, ...]] = {
    Conversation: ("owner",),
    Item: ("conversation_id", "position"),
    Response: ("owner",),
    Feedback: ("owner",),
}


def document(record: Record, **extra: Any) -> dict[str, Any]:
    """The document of a record, with ``extra`` fields after its own."""
    doc = portable.as_dict(record)
    for name in _FROM_PATH[type(record)]:
        del doc[name]
    doc.update(extra)
    return doc


def record_of(kind: type, doc: Any, **from_path: Any) -> Record:
    """The record of ``kind`` a document holds, its path's fields added;
    ``ValueError`` saying what is wrong (the caller names the file)."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    doc = dict(doc)
    record_id = from_path.get("id")
    if record_id is not None and doc.get("id", record_id) != record_id:
        raise ValueError(f"its 'id' is {doc.get('id')!r}, not {record_id!r} as its file name says")
    for name in _FROM_PATH[kind]:
        if name in doc:
            raise ValueError(f"field '{name}' is set by where the file is, not in it")
    doc.update(from_path)
    if portable.KINDS.get(doc.get("record")) is not kind:
        raise ValueError(f"'record' should be {_name(kind)!r}, found {doc.get('record')!r}")
    for name, (types, what, strings) in _field_types(kind).items():
        value = doc.get(name)
        if name in doc and not (_is(value, types) and (not strings or all(isinstance(v, str) for v in value.values()))):
            raise ValueError(f"field '{name}' should be {what}, found {value!r:.60}")
    record = portable.from_dict(doc)
    for field in dataclasses.fields(kind):  # an integer time read from JSON is still a float
        if field.type in ("float", "float | None") and isinstance(getattr(record, field.name), int):
            setattr(record, field.name, float(getattr(record, field.name)))
    return record


@dataclass(frozen=True)
class Turn:
    """The ``turn`` of a conversation's document written by ``store_turn``:
    that document holds the turn's items (``next_position`` and the times
    moved on) but counts only once the turn's response file exists, its
    commit point. Until then the conversation is as it was before the turn:
    ``next_position``, ``updated_at`` and ``expires_at`` as kept here."""

    response: str
    next_position: int
    updated_at: float
    expires_at: float | None

    def document(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def conversation_of(doc: Any, owner: str, conversation_id: str) -> tuple[Conversation, int, Turn | None]:
    """A conversation, its ``next_position`` and its ``turn``, if any."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    doc = dict(doc)
    next_position = doc.pop("next_position", None)
    if not _whole(next_position):
        raise ValueError(f"field 'next_position' should be a whole number of 0 or more, found {next_position!r}")
    turn = _turn_of(doc.pop("turn")) if "turn" in doc else None
    conversation = record_of(Conversation, doc, id=conversation_id, owner=owner)
    assert isinstance(conversation, Conversation)
    return conversation, next_position, turn


def _turn_of(doc: Any) -> Turn:
    fields = {"response", "next_position", "updated_at", "expires_at"}
    if not (
        isinstance(doc, dict)
        and set(doc) == fields
        and isinstance(doc["response"], str)
        and SAFE_ID.fullmatch(doc["response"])
        and _whole(doc["next_position"])
        and _is(doc["updated_at"], (int, float))
        and _is(doc["expires_at"], (int, float, type(None)))
    ):
        raise ValueError(
            'field \'turn\' should be {"response": a response ID, "next_position": a whole number, '
            f'"updated_at": a number, "expires_at": a number or null}}, found {doc!r:.80}'
        )
    expires_at = doc["expires_at"]
    return Turn(
        doc["response"],
        doc["next_position"],
        float(doc["updated_at"]),
        None if expires_at is None else float(expires_at),
    )


def _whole(value: Any) -> bool:
    return _is(value, (int,)) and value >= 0


def _name(kind: type) -> str:
    return next(name for name, cls in portable.KINDS.items() if cls is kind)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


@cache
def _field_types(kind: type) -> dict[str, tuple[tuple[type, ...], str, bool]]:
    """For each field, the JSON types its annotation allows, how to say it,
    and whether it is a map of strings (metadata)."""
    out = {}
    for field in dataclasses.fields(kind):
        annotation = str(field.type)
        optional = annotation.endswith(" | None")
        base = annotation.removesuffix(" | None").split("[")[0]
        types, what = {
            "str": ((str,), "a string"),
            "float": ((int, float), "a number"),
            "int": ((int,), "a whole number"),
            "dict": ((dict,), "an object" if annotation != "dict[str, str]" else "an object of strings"),
            "list": ((list,), "a list"),
        }[base]
        if optional:
            types, what = (*types, type(None)), f"{what} or null"
        out[field.name] = (types, what, annotation == "dict[str, str]")
    return out
