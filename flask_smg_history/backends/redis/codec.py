"""How the Redis backend writes records into hash fields and script arguments,
and reads them back.

Kept apart from the backend so the request paths (``backend.py``) and the
bulk operations (``operations.py``) parse values the same way: a value this backend
did not write becomes ``CorruptRecord`` for a direct read, and ``None`` (a
record to skip and log) in a listing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis.exceptions as rex

from ...errors import CorruptRecord
from ...records import Conversation, Feedback, Item, Response
from .. import jsonfast

log = logging.getLogger("flask_smg_history")


def is_corruption(exc: rex.ResponseError) -> bool:
    """WRONGTYPE, or a script that failed on a value it could not read. Any
    other reply error (CROSSSLOT, a bad command) is a bug, not bad data."""
    message = str(exc)
    return message.startswith("WRONGTYPE") or "user_script" in message


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ms(deadline: float | None) -> str:
    """A deadline as a PEXPIREAT argument; empty means keep forever."""
    return "" if deadline is None else str(int(deadline * 1000))


def stamp(value: float | None) -> str:
    """A float for the store, exactly (``repr``); empty means none."""
    return "" if value is None else repr(value)


def when(ts: float) -> str:
    """A timestamp for a report line (UTC, seconds)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def optional_float(value: str) -> float | None:
    return float(value) if value else None


def item_json(item: Item) -> str:
    return jsonfast.dumps({"p": item.payload, "t": item.type, "r": item.role, "s": item.status, "c": item.created_at})


def item_args(items: list[Item]) -> list[str]:
    """(ID, JSON) pairs for the append scripts; a reference's JSON is empty."""
    out = []
    for item in items:
        out.append(item.id)
        out.append("" if item.type == "item_reference" else item_json(item))
    return out


def item(conversation_id: str, item_id: str, score: Any, raw: Any) -> Item | None:
    try:
        doc = jsonfast.loads(raw)
        payload = doc["p"]
        if not isinstance(payload, dict):
            raise TypeError("payload is not an object")
        return Item(item_id, conversation_id, doc["t"], payload, float(doc["c"]), doc["r"], doc["s"], int(float(score)))
    except (KeyError, TypeError, ValueError):
        return None


def items(conversation_id: str, scored: list[Any], values: list[Any]) -> list[Item]:
    """The items of a script's reply (IDs with their positions, then their
    JSON), in its order; an unreadable one is logged and left out. Every read
    of a prompt's context comes through here, so it stays lean (about 1.8 µs
    an item for a chat message, 1 of it orjson's parse)."""
    out = []
    for item_id, score, raw in zip(scored[::2], scored[1::2], values):
        parsed = item(conversation_id, text(item_id), score, raw)
        if parsed is None:
            log.error(
                "Redis history: item '%s' of conversation '%s' is unreadable; skipped", text(item_id), conversation_id
            )
            continue
        out.append(parsed)
    return out


def conversation(conversation_id: str, fields: dict[Any, Any]) -> Conversation | None:
    """A conversation from its meta hash; None when there is none, and
    ``CorruptRecord`` when the hash is not one this backend wrote."""
    if not fields:
        return None
    get = {text(k): text(v) for k, v in fields.items()}.get
    try:
        metadata = jsonfast.loads(get("m") or "")
        if not isinstance(metadata, dict):
            raise TypeError("metadata is not an object")
        return Conversation(
            id=conversation_id,
            owner=get("o") or "",
            created_at=float(get("c") or ""),
            updated_at=float(get("u") or ""),
            metadata=metadata,
            expires_at=optional_float(get("e") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise CorruptRecord.of(f"Conversation '{conversation_id}'") from exc


def response_doc(response: Response) -> str:
    return jsonfast.dumps({k: v for k, v in vars(response).items() if k not in ("id", "owner")})


def response(response_id: str, owner: str, fields: dict[Any, Any]) -> Response:
    try:
        return Response(id=response_id, owner=owner, **jsonfast.loads(fields[b"d"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord.of(f"Response '{response_id}'") from exc


def feedback_doc(fb: Feedback) -> str:
    return jsonfast.dumps({k: v for k, v in vars(fb).items() if k not in ("id", "response_id")})


def feedback(response_id: str, fields: dict[Any, Any]) -> Feedback | None:
    try:
        return Feedback(id=text(fields[b"i"]), response_id=response_id, **jsonfast.loads(fields[b"d"]))
    except (KeyError, TypeError, ValueError):
        return None
