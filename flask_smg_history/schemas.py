"""Marshmallow schemas for everything a caller can send, used by the store.

Validation lives here rather than in the HTTP layer so host code calling
``history.items.add(...)`` gets exactly the checks an HTTP client gets; the
API's OpenAPI document is built from the same schemas. ``load`` turns
marshmallow's nested error dict into one ``InvalidRequest`` whose ``param``
names the field the way OpenAI does (``items[3].role``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from .errors import InvalidRequest
from .records import ITEM_ID_PREFIXES, MAX_METADATA_PAIRS, RATINGS

MAX_ITEMS_PER_ADD = 20
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_COMMENT = 4096
MAX_ID = 128
MAX_DEPTH = 64
MESSAGE_ROLES = ("user", "assistant", "system", "developer")
MESSAGE_STATUSES = ("in_progress", "completed", "incomplete")

#: Item types a conversation accepts, in the order error messages list them.
SUPPORTED_ITEM_TYPES = (*ITEM_ID_PREFIXES, "item_reference")

#: Messages worded as SMG words them, which clients match on: ``load`` passes
#: them on as they are, without the usual ``Invalid '<param>': `` in front.
_SMG_WORDED = ("Unsupported item type", "Cannot add more than")

#: IDs a client may choose: letters, digits, ``_`` and ``-``, up to 128 chars,
#: so an ID is safe in a URL path, a SQL bind and a Redis key alike.
#: (``\Z``, not ``$``, which would let a trailing newline through.)
ID_RULE = validate.Regexp(r"^[A-Za-z0-9_-]{1,128}\Z", error="must be 1 to 128 letters, digits, '_' or '-'.")


class MetadataField(fields.Dict):
    """OpenAI metadata: at most 16 string pairs, keys <= 64, values <= 512."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.Str(), values=fields.Str(), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if len(result) > MAX_METADATA_PAIRS:
            raise ValidationError(f"Metadata can have at most {MAX_METADATA_PAIRS} key-value pairs, got {len(result)}.")
        for key, val in result.items():
            if len(key) > MAX_METADATA_KEY:
                raise ValidationError(f"Metadata keys must be at most {MAX_METADATA_KEY} characters: {key[:80]!r}.")
            if len(val) > MAX_METADATA_VALUE:
                raise ValidationError(f"Metadata value of {key!r} must be at most {MAX_METADATA_VALUE} characters.")
        return result


class MetadataPatchField(fields.Dict):
    """A metadata patch, as SMG's router applies it: each key is set to its
    string value, or removed when its value is null; keys not named stay. The
    merged result must fit 16 pairs, which only the backend can check (it
    holds the stored map); here: keys <= 64, values <= 512, at most 16 keys
    set (more could never fit) and at most 32 named in all (16 set and 16
    removed replace a full map)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.Str(), values=fields.Str(allow_none=True), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        setting = sum(1 for val in result.values() if val is not None)
        if setting > MAX_METADATA_PAIRS:
            raise ValidationError(f"Metadata can have at most {MAX_METADATA_PAIRS} key-value pairs, got {setting}.")
        if len(result) > 2 * MAX_METADATA_PAIRS:
            raise ValidationError(
                f"A metadata patch can name at most {2 * MAX_METADATA_PAIRS} keys, set or removed, got {len(result)}."
            )
        for key, val in result.items():
            if len(key) > MAX_METADATA_KEY:
                raise ValidationError(f"Metadata keys must be at most {MAX_METADATA_KEY} characters: {key[:80]!r}.")
            if val is not None and len(val) > MAX_METADATA_VALUE:
                raise ValidationError(f"Metadata value of {key!r} must be at most {MAX_METADATA_VALUE} characters.")
        return result


class _StrOrParts(fields.Field):
    """Message content: a string, or a list of content parts (objects with a
    string ``type``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(part, dict) and isinstance(part.get("type"), str) for part in value
        ):
            return value
        raise ValidationError("must be a string or a list of content parts, each an object with a 'type'.")


class MessageItemSchema(Schema):
    """A message, in OpenAI's easy form (``{"role", "content"}``) or in full.
    ``post_load`` returns the full stored shape."""

    class Meta:
        unknown = INCLUDE

    type = fields.Str(validate=validate.Equal("message"))
    id = fields.Str(validate=ID_RULE)
    role = fields.Str(required=True, validate=validate.OneOf(MESSAGE_ROLES))
    content = _StrOrParts(required=True)
    status = fields.Str(validate=validate.OneOf(MESSAGE_STATUSES))

    @post_load
    def to_stored(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return _stored_message(data)


def _stored_message(data: dict[str, Any]) -> dict[str, Any]:
    """A valid message as it is stored: content as a list of parts (string
    content becomes one ``input_text``, or ``output_text`` for the assistant),
    ``output_text`` parts with OpenAI's empty ``annotations`` and ``logprobs``,
    ``type`` and ``status`` filled in."""
    assistant = data["role"] == "assistant"
    content = data["content"]
    if isinstance(content, str):
        content = [{"type": "output_text" if assistant else "input_text", "text": content}]
    parts = []
    for part in content:
        if part["type"] == "output_text":
            part = {"annotations": [], "logprobs": [], **part}
        parts.append(part)
    stored = {**data, "type": "message", "content": parts}
    stored.setdefault("status", "completed")
    return stored


#: The fields of ``MessageItemSchema`` in its order, which is the order of the
#: keys of the payload it loads.
_MESSAGE_FIELDS = ("type", "id", "role", "content", "status")
_QUICK_KEYS = frozenset(_MESSAGE_FIELDS)
_ID_PATTERN = re.compile(ID_RULE.regex.pattern)
#: What a message's JSON holds beside its text, at most: keys, punctuation,
#: role, status, a 128-character ID and the empty ``annotations``/``logprobs``.
_MESSAGE_JSON_OVERHEAD = 512
#: The most characters ``json.dumps`` writes for one character of text (an
#: astral character becomes two ``\uXXXX`` escapes).
_JSON_CHAR_MAX = 12


def _quick_message(raw: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """The stored payload of the commonest item, a message with string
    content (``{"role", "content"}`` with optional ``type``, ``id`` and
    ``status``), checked without marshmallow, whose per-call machinery costs
    more than the rest of an append; ``None`` for anything else, which then
    takes the full path. It accepts only what ``MessageItemSchema`` and the
    size limit accept and returns the same payload, key order included
    (``tests/test_quick_validation.py`` checks both over generated items);
    text that might be near the size limit takes the full path, which
    measures it."""
    if not raw.keys() <= _QUICK_KEYS:
        return None
    role, content = raw.get("role"), raw.get("content")
    if type(role) is not str or role not in MESSAGE_ROLES or type(content) is not str:
        return None
    if "type" in raw and not (type(raw["type"]) is str and raw["type"] == "message"):
        return None
    if "id" in raw and not (type(raw["id"]) is str and _ID_PATTERN.match(raw["id"])):
        return None
    if "status" in raw and not (type(raw["status"]) is str and raw["status"] in MESSAGE_STATUSES):
        return None
    if _JSON_CHAR_MAX * len(content) + _MESSAGE_JSON_OVERHEAD > max_bytes:
        return None
    return _stored_message({key: raw[key] for key in _MESSAGE_FIELDS if key in raw})


#: Item types whose OpenAI resource schema requires ``status``; one sent
#: without it is stored as ``completed`` so clients that validate strictly
#: can parse it back.
STATUS_REQUIRED = frozenset(
    {
        "function_call",
        "function_call_output",
        "file_search_call",
        "web_search_call",
        "image_generation_call",
        "computer_call",
        "computer_call_output",
        "tool_search_call",
        "tool_search_output",
        "code_interpreter_call",
        "local_shell_call",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
    }
)


class OtherItemSchema(Schema):
    """Any other item type of the Conversations API, stored as given (plus a
    default ``status`` where OpenAI's schema requires one)."""

    class Meta:
        unknown = INCLUDE

    type = fields.Str(
        required=True,
        validate=validate.OneOf(
            [t for t in ITEM_ID_PREFIXES if t != "message"],
            error="Unsupported item type {input!r}. Supported types: " + ", ".join(SUPPORTED_ITEM_TYPES) + ".",
        ),
    )
    id = fields.Str(validate=ID_RULE)

    @post_load
    def default_status(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data["type"] in STATUS_REQUIRED and "status" not in data:
            return {**data, "status": "completed"}
        return data


class ItemReferenceSchema(Schema):
    """``{"type": "item_reference", "id": ...}``: link an item the caller
    already has, from another conversation, without copying it."""

    class Meta:
        unknown = RAISE

    type = fields.Str(required=True, validate=validate.Equal("item_reference"))
    id = fields.Str(required=True, validate=ID_RULE)


def load_item_list(items: Any) -> list[Any]:
    """The list ``items.add`` takes: 1 to 20 objects. A plainly good list (the
    usual case) passes without marshmallow; any other goes through
    ``ItemsAddSchema`` for its error."""
    if type(items) is list and 0 < len(items) <= MAX_ITEMS_PER_ADD and all(type(item) is dict for item in items):
        return items
    return load(_ITEMS_ADD, {"items": items})["items"]


def _at_most_per_add(items: list[Any]) -> None:
    if len(items) > MAX_ITEMS_PER_ADD:
        raise ValidationError(f"Cannot add more than {MAX_ITEMS_PER_ADD} items at once; got {len(items)}.")


class ConversationCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    metadata = MetadataField(allow_none=True, load_default=None)
    items = fields.List(fields.Dict(), allow_none=True, load_default=None, validate=_at_most_per_add)


class ConversationUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    metadata = MetadataField(required=True, allow_none=True)


class ConversationPatchSchema(Schema):
    """An update in patch mode (``SMG_HISTORY_METADATA_UPDATE=patch``):
    ``metadata`` is a patch; null or ``{}`` changes no key."""

    class Meta:
        unknown = RAISE

    metadata = MetadataPatchField(required=True, allow_none=True)


class ItemsAddSchema(Schema):
    class Meta:
        unknown = RAISE

    items = fields.List(fields.Dict(), required=True, validate=[validate.Length(min=1), _at_most_per_add])


class FeedbackSubmitSchema(Schema):
    class Meta:
        unknown = RAISE

    rating = fields.Str(required=True, validate=validate.OneOf(RATINGS))
    comment = fields.Str(allow_none=True, load_default=None, validate=validate.Length(max=MAX_COMMENT))
    metadata = MetadataField(allow_none=True, load_default=None)


class ResponseStoreSchema(Schema):
    """What a host passes to ``responses.store``: an OpenAI response object
    (``id`` optional), plus ``input`` items and the ``conversation`` it belongs
    to. Fields not named here are kept as given."""

    class Meta:
        unknown = INCLUDE

    id = fields.Str(validate=ID_RULE)
    model = fields.Str(load_default="")
    status = fields.Str(load_default="completed")
    previous_response_id = fields.Str(allow_none=True, load_default=None, validate=ID_RULE)
    conversation = fields.Raw(allow_none=True, load_default=None)
    input = fields.Raw(load_default=list)
    output = fields.List(fields.Dict(), load_default=list)
    usage = fields.Dict(allow_none=True, load_default=None)
    metadata = MetadataField(allow_none=True, load_default=None)
    safety_identifier = fields.Str(allow_none=True, load_default=None)
    user = fields.Str(allow_none=True)

    @validates_schema
    def check_input(self, data: dict[str, Any], **kwargs: Any) -> None:
        value = data.get("input")
        if not isinstance(value, (str, list)):
            raise ValidationError("must be a string or a list of items.", "input")


def _param(messages: Any, path: str = "") -> tuple[str, str]:
    """The first error in marshmallow's nested messages, as (param, message)."""
    if isinstance(messages, list):
        if messages and isinstance(messages[0], str):
            return path, messages[0]
        return path, str(messages)
    key, sub = next(iter(messages.items()))
    if isinstance(key, int):
        child = f"{path}[{key}]"
    elif key == "_schema":
        child = path
    else:
        child = f"{path}.{key}" if path else str(key)
    return _param(sub, child)


def load(schema: Schema, data: Any, *, param_prefix: str = "") -> dict[str, Any]:
    """Validate ``data`` with ``schema``; raise ``InvalidRequest`` naming the
    first bad field."""
    if not isinstance(data, dict):
        raise InvalidRequest("Expected a JSON object.", param=param_prefix or None)
    try:
        return schema.load(data)
    except ValidationError as exc:
        param, message = _param(exc.messages, param_prefix)
        if message == "Unknown field.":  # in OpenAI's words, as the HTTP layer says it for a body's field
            raise InvalidRequest(f"Unknown parameter: '{param}'.", param=param or None) from None
        if message.startswith(_SMG_WORDED):
            raise InvalidRequest(message, param=param or None) from None
        raise InvalidRequest(f"Invalid '{param}': {message}" if param else message, param=param or None) from None


_ITEMS_ADD = ItemsAddSchema()
_MESSAGE = MessageItemSchema()
_OTHER = OtherItemSchema()
_REFERENCE = ItemReferenceSchema()


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (a hostile value must
    not exhaust the stack while being measured)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def load_item(raw: Any, param: str, max_bytes: int) -> dict[str, Any]:
    """Validate one input item and return its stored payload (without ``id``
    when the caller gave none: the store mints it). An item reference comes
    back as is, for the backend to resolve."""
    if type(raw) is dict:
        quick = _quick_message(raw, max_bytes)
        if quick is not None:
            return quick
    return load_item_by_schema(raw, param, max_bytes)


def load_item_by_schema(raw: Any, param: str, max_bytes: int) -> dict[str, Any]:
    """``load_item`` without the quick path: the reference it is held to."""
    if not isinstance(raw, dict):
        raise InvalidRequest(f"Invalid '{param}': expected an object.", param=param)
    if _depth(raw) > MAX_DEPTH:
        raise InvalidRequest(f"Invalid '{param}': nested more than {MAX_DEPTH} levels deep.", param=param)
    kind = raw.get("type", "message")
    schema = {"message": _MESSAGE, "item_reference": _REFERENCE}.get(kind, _OTHER) if isinstance(kind, str) else _OTHER
    payload = load(schema, raw, param_prefix=param)
    if len(json.dumps(payload, separators=(",", ":"))) > max_bytes:
        raise InvalidRequest(f"Invalid '{param}': the item is larger than {max_bytes} bytes.", param=param)
    return payload
