"""Turns of the Responses API built as records, as the Responses layer
builds them (a freshly minted response ID; the turn's input items, then its
output items, in the response's conversation), and what the tests of
``Backend.store_turn`` check after one."""

from __future__ import annotations

from typing import Any

import pytest

from flask_smg_history import Item, Response, get_state
from flask_smg_history.records import mint_id, now

from .writers import all_items

HOUR = 3600


def message_payload(text: str, role: str = "user", item_id: str | None = None) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {
        "id": item_id or mint_id("msg"),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [{"type": kind, "text": text}],
    }


def item_record(payload: dict[str, Any], conversation_id: str | None, at: float) -> Item:
    """An item record as the store builds one (``HistoryStore._new_items``)."""
    return Item(
        id=payload["id"],
        conversation_id=conversation_id or "",
        type=payload["type"],
        payload=payload,
        created_at=at,
        role=payload.get("role"),
        status=payload.get("status"),
    )


def reference(item_id: str, conversation_id: str, at: float) -> Item:
    return item_record({"type": "item_reference", "id": item_id}, conversation_id, at)


def build_turn(
    owner: str,
    conversation_id: str | None,
    inputs: list[Any],
    outputs: tuple[str, ...] | list[str] = (),
    *,
    response_id: str | None = None,
) -> tuple[Response, list[Item]]:
    """A response and the items of its turn. ``inputs`` are texts, or items
    already built (a reference, an item with a chosen ID)."""
    at = now()
    built = [i if isinstance(i, Item) else item_record(message_payload(i), conversation_id, at) for i in inputs]
    built += [item_record(message_payload(text, "assistant"), conversation_id, at) for text in outputs]
    response = Response(
        id=response_id or mint_id("resp"),
        owner=owner,
        created_at=at,
        model="gpt-test",
        conversation_id=conversation_id,
        input=[i.payload for i in built[: len(inputs)]],
        output=[i.payload for i in built[len(inputs) :]],
        usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        metadata={"turn": "yes"},
        extra={"instructions": "be brief", "temperature": 0.2},
    )
    return response, (built if conversation_id is not None else [])


def store_turn(app, response: Response, items: list[Item], *, at: float | None = None) -> list[Item]:
    at = response.created_at if at is None else at
    return get_state(app).backend.store_turn(response, items, updated_at=at, expires_at=at + HOUR)


def texts_of(items) -> list[str]:
    return [i.payload["content"][0]["text"] for i in items]


def state_of(store, conversation_id: str) -> tuple[Any, ...]:
    """What a refused or failed turn must leave as it was."""
    conv = store.conversations.get(conversation_id)
    items = [(i.id, i.position, i.payload) for i in all_items(store, conversation_id)]
    return conv.updated_at, conv.expires_at, items


def same_response(got: Response, sent: Response) -> None:
    assert got.created_at == pytest.approx(sent.created_at, abs=1e-3)
    assert {**vars(got), "created_at": 0, "expires_at": 0} == {**vars(sent), "created_at": 0, "expires_at": 0}
