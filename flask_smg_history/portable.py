"""The JSON Lines form of records, for ``export``, ``import`` and ``copy``.

One object per line with a ``record`` discriminator (``conversation``,
``item``, ``response``, ``feedback``) and the record's fields as they are
stored: IDs, owners, float timestamps and item positions survive a round trip
exactly, which is what makes re-importing idempotent.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .records import Conversation, Feedback, Item, Record, Response

KINDS: dict[str, type] = {"conversation": Conversation, "item": Item, "response": Response, "feedback": Feedback}
_NAMES = {cls: name for name, cls in KINDS.items()}


def as_dict(record: Record) -> dict[str, Any]:
    """A record as a JSON object, its kind under ``record``."""
    return {"record": _NAMES[type(record)], **dataclasses.asdict(record)}


def dumps(record: Record) -> str:
    return json.dumps(as_dict(record), separators=(",", ":"))


def loads(line: str) -> Record:
    """Parse one line; raise ``ValueError`` saying what is wrong with it."""
    return from_dict(json.loads(line))


def from_dict(data: Any) -> Record:
    """The record a JSON object holds (``as_dict``'s form); raise
    ``ValueError`` saying what is wrong with it. The object is consumed."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    kind = data.pop("record", None)
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {kind} fields: {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"incomplete {kind}: {exc}") from None
