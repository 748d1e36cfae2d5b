"""``backends.jsonfast.loads`` reads exactly what ``json.loads`` reads, with
the same values, whether orjson takes the document or hands it back."""

from __future__ import annotations

import datetime
import enum
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_smg_history.backends import jsonfast

#: Integers at the edges of the 64-bit ranges orjson reads as integers
#: (int64 below zero, uint64 above), a few either side: just outside them,
#: orjson reads a float, so these must reach ``json``. ``-(2**63) - 1`` has
#: 19 digits, ``2**64`` has 20.
EDGES = sorted({edge + step for edge in (-(2**64), -(2**63), 2**63, 2**64, -(10**19), 10**19) for step in range(-3, 4)})
edge_integers = st.sampled_from(EDGES) | st.integers(min_value=-(2**64) - 3, max_value=-(2**63) - 1)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | edge_integers
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values, st.booleans())
def test_same_values_as_json(value, as_bytes):
    text = json.dumps(value, ensure_ascii=False)
    got = jsonfast.loads(text.encode() if as_bytes else text)
    assert got == json.loads(text)
    assert json.dumps(got) == json.dumps(json.loads(text))  # same types (int vs float) and key order


@pytest.mark.parametrize("number", EDGES + [-(10**18), 10**18, -(2**63) - 10**6], ids=str)
def test_integers_just_outside_64_bits_stay_integers(number):
    """On both sides of int64 and uint64, alone and inside a document: the
    value and its type are ``json``'s (a 19-digit negative below ``-2**63``
    is the case a 20-digit threshold for the fallback would miss)."""
    for text in (str(number), f'{{"n": [{number}]}}', f"[1.5, {number}, -{number}]".replace("--", "")):
        got = jsonfast.loads(text)
        assert got == json.loads(text) and json.dumps(got) == json.dumps(json.loads(text)), text


@pytest.mark.parametrize(
    "text",
    ['{"x": NaN}', "[Infinity, -Infinity]", "123456789012345678901234567890", '"\\ud800"', '{"a": 1, "a": 2}'],
)
def test_what_only_json_reads_falls_back_to_it(text):
    got, expected = jsonfast.loads(text), json.loads(text)
    if isinstance(expected, dict) and isinstance(expected.get("x"), float) and math.isnan(expected["x"]):
        assert math.isnan(got["x"])
    else:
        assert got == expected


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{'a': 1}", "nul"])
def test_bad_json_is_the_same_error(text):
    with pytest.raises(json.JSONDecodeError):
        jsonfast.loads(text)


def test_the_fast_parser_is_in_use():
    """The extras install orjson; a plain ``json`` fallback would pass the
    tests above and silently lose the speed."""
    assert jsonfast.orjson is not None


written = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities included
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5) | st.booleans() | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(written)
def test_dumps_writes_what_json_writes(value):
    """Read back, ``dumps``' text is ``json.dumps``' (same values, types and
    key order), NaN, big integers and non-string keys included."""
    expected = json.dumps(value, separators=(",", ":"))
    got = jsonfast.dumps(value)
    assert json.dumps(json.loads(got)) == json.dumps(json.loads(expected))


class Text(str):
    pass


class Level(enum.IntEnum):
    HIGH = 1


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        [math.inf, -math.inf],
        2**70,
        {1: "one", None: "none"},
        "\ud800",
        [Text("a"), Level.HIGH],
        {"a": None},
    ],
)
def test_dumps_hands_what_orjson_writes_otherwise_to_json(value):
    assert jsonfast.dumps(value) == json.dumps(value, separators=(",", ":"))


def test_dumps_refuses_what_json_refuses():
    for value in (datetime.datetime(2026, 11, 30), object()):
        with pytest.raises(TypeError):
            jsonfast.dumps(value)


def test_dumps_of_a_message_is_orjsons():
    """The common case takes the fast writer: non-ASCII as is, where json
    escapes it."""
    assert jsonfast.dumps({"role": "user", "content": "héllo"}) == '{"role":"user","content":"héllo"}'
