"""Plain records that cross the backend interface, and the small helpers every
layer shares about them: ID minting, the expiry check, the record kinds and
batching.

Backends, the store and the HTTP layer all speak in these dataclasses, so no
backend knows about Flask or HTTP and no route knows about rows or keys. An
item's ``payload`` is the item as OpenAI shapes it: the store validates it
(``schemas.py``), backends keep it as an opaque JSON document and index only
the fields copied out of it (``type``, ``role``, ``status``). Timestamps are
float Unix seconds (sub-second precision keeps creation order stable); the HTTP
layer renders them as integer seconds, as OpenAI does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: OpenAI-style ID prefixes for each stored item type. An item that arrives
#: without an ``id`` gets one minted under its type's prefix.
ITEM_ID_PREFIXES: dict[str, str] = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "mcp_call": "mcp",
    "mcp_list_tools": "mcpl",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "web_search_call": "ws",
    "file_search_call": "fs",
    "computer_call": "cu",
    "computer_call_output": "cuo",
    "code_interpreter_call": "ci",
    "image_generation_call": "ig",
    "local_shell_call": "lsh",
    "local_shell_call_output": "lsho",
    "shell_call": "sh",
    "shell_call_output": "sho",
    "apply_patch_call": "apc",
    "apply_patch_call_output": "apco",
    "tool_search_call": "tsc",
    "tool_search_output": "tso",
    "compaction": "cmp",
}


def mint_id(prefix: str) -> str:
    """Return ``prefix_`` followed by 192 random bits in hex: unguessable, so
    IDs cannot be probed across owners."""
    return f"{prefix}_{secrets.token_hex(24)}"


def now() -> float:
    return time.time()


@dataclass
class Conversation:
    id: str
    owner: str
    created_at: float
    updated_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    expires_at: float | None = None


@dataclass
class Item:
    """One conversation item. ``payload`` is the whole item as OpenAI shapes it
    (``id`` and ``type`` included); ``type``, ``role`` and ``status`` are copied
    out of it so backends can index them. ``position`` is assigned by the
    backend when the item is appended and is strictly increasing per
    conversation."""

    id: str
    conversation_id: str
    type: str
    payload: dict[str, Any]
    created_at: float
    role: str | None = None
    status: str | None = None
    position: int = -1


@dataclass
class Response:
    """A stored model response. ``input`` and ``output`` are lists of item
    payloads; ``extra`` holds the remaining fields of the OpenAI response object
    (instructions, tools, temperature...) exactly as given."""

    id: str
    owner: str
    created_at: float
    model: str = ""
    status: str = "completed"
    conversation_id: str | None = None
    previous_response_id: str | None = None
    input: list[dict[str, Any]] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    safety_identifier: str | None = None
    expires_at: float | None = None

    @property
    def output_text(self) -> str:
        """The text of the output's assistant messages, joined (as the
        ``openai`` client's ``Response.output_text``)."""
        return "".join(
            part.get("text", "")
            for item in self.output
            if item.get("type") == "message"
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        )


RATINGS = ("positive", "negative")

#: OpenAI's cap on a record's metadata pairs. The store checks what a caller
#: sends; a backend merging a metadata patch checks the merged result.
MAX_METADATA_PAIRS = 16


@dataclass
class Feedback:
    """A rating of one response by one owner; resubmitting replaces it.
    ``model`` is copied from the response so feedback can be filtered and
    counted per model without a join."""

    id: str
    response_id: str
    owner: str
    rating: str
    created_at: float
    comment: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    model: str = ""
    expires_at: float | None = None


@dataclass
class Page(Generic[T]):
    """One page of a cursor-paginated listing."""

    data: list[T]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return getattr(self.data[0], "id", None) if self.data else None

    @property
    def last_id(self) -> str | None:
        return getattr(self.data[-1], "id", None) if self.data else None


#: Anything ``export`` yields and ``import_records`` takes.
Record = Conversation | Item | Response | Feedback

#: The kinds of record, as the counts of erasure, purge, import and stats name them.
RECORD_KINDS = ("conversations", "items", "responses", "feedback")


def is_live(expires_at: float | None, at: float) -> bool:
    """True while a record with this expiry is visible at time ``at``."""
    return expires_at is None or expires_at > at


def batched(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` values (the last may be shorter), taken lazily, so a
    stream of records or IDs of any length is handled in constant memory."""
    iterator = iter(values)
    while batch := list(islice(iterator, size)):
        yield batch
