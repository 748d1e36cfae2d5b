"""The quick path of item validation (``schemas._quick_message``) against the
marshmallow path it stands in for: over generated items, valid and not, the
quick path accepts only what the schema accepts and returns the same payload,
key order included, and ``load_item`` answers exactly as the schema path does,
rejections (message and ``param``) included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flask_smg_history import schemas
from flask_smg_history.errors import InvalidRequest

ROLES = st.sampled_from([*schemas.MESSAGE_ROLES, "tool", "User", "", "user\n"])
STATUSES = st.sampled_from([*schemas.MESSAGE_STATUSES, "done", "", "completed\n"])
IDS = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_-]{1,128}\Z"),
    st.sampled_from(["", "a b", "ab\n", "x" * 129, "é", "msg_1/2"]),
)
TEXT = st.one_of(st.text(max_size=60), st.text(min_size=150, max_size=400), st.just("😀" * 30))
JUNK = st.one_of(
    st.none(), st.integers(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)
)
PARTS = st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": TEXT}), max_size=2
)

FIELDS: dict[str, Any] = {
    "type": st.one_of(st.just("message"), st.sampled_from(["function_call", "Message", ""]), JUNK),
    "id": st.one_of(IDS, JUNK),
    "role": st.one_of(ROLES, JUNK),
    "content": st.one_of(TEXT, PARTS, JUNK),
    "status": st.one_of(STATUSES, JUNK),
    "name": st.text(max_size=5),
    "annotations": st.lists(st.integers(), max_size=1),
}


@st.composite
def raw_items(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly near-valid messages: each field present or not, valid or not."""
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=len(FIELDS)))
    if draw(st.booleans()):  # bias towards the common shape
        keys = [k for k in keys if k not in ("name", "annotations")] + ["role", "content"]
    return {key: draw(FIELDS[key]) for key in dict.fromkeys(keys)}


def outcome(fn: Any, raw: Any, max_bytes: int) -> tuple[Any, ...]:
    try:
        return ("stored", json.dumps(fn(raw, "items[0]", max_bytes)))
    except InvalidRequest as exc:
        return ("refused", exc.param, exc.message)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_items(), max_bytes=st.sampled_from([600, 2_000, 1_000_000]))
@example(raw={"role": "user", "content": "hi", "id": "ab\n"}, max_bytes=1_000_000)
@example(raw={"role": "assistant", "content": "x" * 1000}, max_bytes=2_000)
def test_quick_path_agrees_with_the_schema(raw: dict[str, Any], max_bytes: int) -> None:
    reference = outcome(schemas.load_item_by_schema, raw, max_bytes)
    quick = schemas._quick_message(raw, max_bytes)
    if quick is not None:
        assert reference == ("stored", json.dumps(quick))
    assert outcome(schemas.load_item, raw, max_bytes) == reference


def test_the_quick_path_takes_the_common_shapes() -> None:
    """Otherwise the agreement above would hold by never being used."""
    for raw in (
        {"role": "user", "content": "Hello"},
        {"type": "message", "role": "assistant", "content": "Hi!", "status": "completed"},
        {"id": "msg_custom-1", "role": "system", "content": ""},
    ):
        assert schemas._quick_message(raw, 1_000_000) == schemas.load_item_by_schema(raw, "items[0]", 1_000_000)
    assert schemas._quick_message({"role": "user", "content": [{"type": "input_text", "text": "x"}]}, 10**6) is None


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    """``$`` in the ID rule let ``"ab\\n"`` through both paths; ``\\Z`` does not."""
    for fn in (schemas.load_item, schemas.load_item_by_schema):
        refused = outcome(fn, {"role": "user", "content": "hi", "id": "ab\n"}, 10**6)
        assert refused[:2] == ("refused", "items[0].id")


@given(items=st.one_of(st.lists(st.one_of(st.fixed_dictionaries({}), JUNK), max_size=22), JUNK, st.text(max_size=3)))
def test_item_lists_agree_with_the_schema(items: Any) -> None:
    def reference() -> Any:
        return schemas.load(schemas.ItemsAddSchema(), {"items": items})["items"]

    try:
        expected: tuple[Any, ...] = ("ok", reference())
    except InvalidRequest as exc:
        expected = ("refused", exc.param, exc.message)
    try:
        got: tuple[Any, ...] = ("ok", schemas.load_item_list(items))
    except InvalidRequest as exc:
        got = ("refused", exc.param, exc.message)
    assert got == expected


def test_a_type_that_is_not_a_string_is_refused_not_a_crash() -> None:
    """``{"type": []}`` used to raise TypeError (a 500) looking up its schema."""
    refused = outcome(schemas.load_item, {"type": [], "role": "user", "content": "hi"}, 10**6)
    assert refused == ("refused", "items[0].type", "Invalid 'items[0].type': Not a valid string.")
