"""The file backend's record format read back field by field: a document a
person edited by hand is either the record it says or refused with the
field named, and every JSON type a field does not allow is refused, never
stored to fail later in a sort or a sum.

The types each field allows are written out here by hand (from the record
classes and docs/backends/file.md), not taken from the codec, so a codec
that accepts a wrong type or says the wrong thing fails."""

from __future__ import annotations

import pytest

from flask_smg_history.backends.file import codec
from flask_smg_history.records import Conversation, Feedback, Item, Response

CONVERSATION = Conversation("conv_1", "alice", 10.5, 11.5, {"title": "t"}, 99.5)
ITEM = Item("msg_1", "conv_1", "message", {"id": "msg_1", "type": "message"}, 10.5, "user", "completed", 3)
RESPONSE = Response(
    "resp_1", "alice", 10.5, "m", "completed", "conv_1", "resp_0", [{"a": 1}], [{"b": 2}],
    {"total_tokens": 3}, {"k": "v"}, {"temperature": 0.5}, "sid", 99.5,
)  # fmt: skip
FEEDBACK = Feedback("fb_1", "resp_1", "alice", "positive", 10.5, "good", {"k": "v"}, "m", 99.5)

#: Each kind's record, the fields its file's path gives, and what each field
#: written in the file may hold (the JSON kinds below).
CASES = {
    Conversation: (
        CONVERSATION,
        {"id": "conv_1", "owner": "alice"},
        {"id": "str", "created_at": "num", "updated_at": "num", "metadata": "strings", "expires_at": "num?"},
    ),
    Item: (
        ITEM,
        {"id": "msg_1", "conversation_id": "conv_1", "position": 3},
        {"id": "str", "type": "str", "payload": "obj", "created_at": "num", "role": "str?", "status": "str?"},
    ),
    Response: (
        RESPONSE,
        {"id": "resp_1", "owner": "alice"},
        {
            "id": "str",
            "created_at": "num",
            "model": "str",
            "status": "str",
            "conversation_id": "str?",
            "previous_response_id": "str?",
            "input": "list",
            "output": "list",
            "usage": "obj?",
            "metadata": "strings",
            "extra": "obj",
            "safety_identifier": "str?",
            "expires_at": "num?",
        },
    ),
    Feedback: (
        FEEDBACK,
        {"id": "fb_1", "owner": "alice"},
        {
            "id": "str",
            "response_id": "str",
            "rating": "str",
            "created_at": "num",
            "comment": "str?",
            "metadata": "strings",
            "model": "str",
            "expires_at": "num?",
        },
    ),
}
#: A JSON kind: the values of every JSON type it takes, and how the error says it.
KINDS = {
    "str": ({"text"}, "a string"),
    "num": ({"int", "float"}, "a number"),
    "obj": ({"object", "strings"}, "an object"),
    "strings": ({"strings"}, "an object of strings"),
    "list": ({"list"}, "a list"),
}
SAMPLES = {
    "text": "x",
    "int": 7,
    "float": 7.25,
    "bool": True,
    "null": None,
    "list": [1],
    "object": {"k": 1},
    "strings": {"k": "v"},
}
FIELDS = [(kind, name, json_kind) for kind, (_, _, fields) in CASES.items() for name, json_kind in fields.items()]


def _doc(kind):
    record, from_path, _ = CASES[kind]
    return codec.document(record), from_path


@pytest.mark.parametrize("kind", CASES, ids=lambda k: k.__name__)
def test_a_document_reads_back_as_its_record(kind):
    doc, from_path = _doc(kind)
    assert set(from_path) - {"id"} <= set(CASES[kind][0].__dataclass_fields__) - set(doc)  # the path says them
    assert codec.record_of(kind, doc, **from_path) == CASES[kind][0]
    assert codec.record_of(kind, doc, **{k: v for k, v in from_path.items() if k != "id"}) == CASES[kind][0]


@pytest.mark.parametrize(("kind", "name", "json_kind"), FIELDS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_json_type_a_field_does_not_take_is_refused_with_the_field_named(kind, name, json_kind):
    doc, from_path = _doc(kind)
    if name == "id":
        from_path = {k: v for k, v in from_path.items() if k != "id"}
    optional = json_kind.endswith("?")
    takes, what = KINDS[json_kind.rstrip("?")]
    takes = takes | ({"null"} if optional else set())
    what = f"{what} or null" if optional else what
    for sample, value in SAMPLES.items():
        edited = {**doc, name: value}
        if sample in takes:
            record = codec.record_of(kind, edited, **from_path)
            assert getattr(record, name) == value, sample
        else:
            with pytest.raises(ValueError) as info:
                codec.record_of(kind, edited, **from_path)
            assert str(info.value) == f"field '{name}' should be {what}, found {value!r}", sample


def test_a_whole_number_refuses_a_fraction_and_a_boolean():
    doc, from_path = _doc(Item)
    for position, shown in ((2.5, "2.5"), (True, "True"), ("3", "'3'"), (None, "None")):
        with pytest.raises(ValueError) as info:
            codec.record_of(Item, doc, **{**from_path, "position": position})
        assert str(info.value) == f"field 'position' should be a whole number, found {shown}"


def test_a_long_wrong_value_is_shown_cut_to_sixty_characters():
    doc, from_path = _doc(Conversation)
    with pytest.raises(ValueError) as info:
        codec.record_of(Conversation, {**doc, "created_at": "y" * 200}, **from_path)
    assert str(info.value) == "field 'created_at' should be a number, found '" + "y" * 59


def test_integer_times_read_as_floats():
    doc, from_path = _doc(Response)
    record = codec.record_of(Response, {**doc, "created_at": 12, "expires_at": 40}, **from_path)
    assert (record.created_at, record.expires_at) == (12.0, 40.0)
    assert type(record.created_at) is float and type(record.expires_at) is float
    assert codec.record_of(Response, {**doc, "expires_at": None}, **from_path).expires_at is None
    item_doc, item_path = _doc(Item)
    assert type(codec.record_of(Item, item_doc, **item_path).position) is int  # a whole number stays one


def test_what_the_path_says_is_refused_in_the_file():
    for kind, (_, from_path, _) in CASES.items():
        doc, _ = _doc(kind)
        for name in set(from_path) - {"id"}:
            with pytest.raises(ValueError) as info:
                codec.record_of(kind, {**doc, name: from_path[name]}, **from_path)
            assert str(info.value) == f"field '{name}' is set by where the file is, not in it"


def test_the_id_must_be_the_one_the_file_name_says():
    doc, from_path = _doc(Feedback)
    with pytest.raises(ValueError) as info:
        codec.record_of(Feedback, {**doc, "id": "fb_2"}, **from_path)
    assert str(info.value) == "its 'id' is 'fb_2', not 'fb_1' as its file name says"


@pytest.mark.parametrize(("record", "shown"), [("item", "'item'"), (None, "None"), ("Conversation", "'Conversation'")])
def test_the_record_kind_must_be_the_file_s(record, shown):
    doc, from_path = _doc(Conversation)
    edited = {k: v for k, v in doc.items() if k != "record"} if record is None else {**doc, "record": record}
    with pytest.raises(ValueError) as info:
        codec.record_of(Conversation, edited, **from_path)
    assert str(info.value) == f"'record' should be 'conversation', found {shown}"


@pytest.mark.parametrize("doc", [[], "x", None, 3])
def test_a_document_that_is_not_an_object_is_refused(doc):
    with pytest.raises(ValueError, match="^expected a JSON object$"):
        codec.record_of(Conversation, doc, id="conv_1", owner="alice")
    with pytest.raises(ValueError, match="^expected a JSON object$"):
        codec.conversation_of(doc, "alice", "conv_1")


def test_the_document_is_not_changed_by_reading_it():
    doc, from_path = _doc(Conversation)
    kept = dict(doc)
    codec.record_of(Conversation, doc, **from_path)
    conv_doc = codec.document(CONVERSATION, next_position=4, turn={"response": "r"})
    conv_kept = dict(conv_doc)
    with pytest.raises(ValueError):
        codec.conversation_of(conv_doc, "alice", "conv_1")
    assert doc == kept and conv_doc == conv_kept


TURN = codec.Turn("resp_1", 5, 20.5, None)


def test_a_conversation_document_with_its_next_position_and_turn():
    doc = codec.document(CONVERSATION, next_position=4)
    assert list(doc)[-1] == "next_position" and "owner" not in doc
    assert codec.conversation_of(doc, "alice", "conv_1") == (CONVERSATION, 4, None)
    with_turn = codec.document(CONVERSATION, next_position=4, turn=TURN.document())
    assert codec.conversation_of(with_turn, "alice", "conv_1") == (CONVERSATION, 4, TURN)
    timed = {**with_turn, "turn": {**TURN.document(), "updated_at": 20, "expires_at": 30}}
    turn = codec.conversation_of(timed, "alice", "conv_1")[2]
    assert turn == codec.Turn("resp_1", 5, 20.0, 30.0) and type(turn.updated_at) is type(turn.expires_at) is float


@pytest.mark.parametrize("next_position", [-1, 1.5, True, "4", None, "missing"])
def test_next_position_must_be_a_whole_number_of_zero_or_more(next_position):
    doc = codec.document(CONVERSATION, next_position=next_position)
    if next_position == "missing":
        del doc["next_position"]
        next_position = None
    with pytest.raises(ValueError) as info:
        codec.conversation_of(doc, "alice", "conv_1")
    assert str(info.value) == (f"field 'next_position' should be a whole number of 0 or more, found {next_position!r}")
    assert codec.conversation_of({**doc, "next_position": 0}, "alice", "conv_1")[1] == 0


@pytest.mark.parametrize(
    "turn",
    [
        {**TURN.document(), "response": "resp/../x"},
        {**TURN.document(), "response": ""},
        {**TURN.document(), "response": 5},
        {**TURN.document(), "next_position": -1},
        {**TURN.document(), "next_position": 1.0},
        {**TURN.document(), "next_position": True},
        {**TURN.document(), "updated_at": "now"},
        {**TURN.document(), "updated_at": None},
        {**TURN.document(), "updated_at": False},
        {**TURN.document(), "expires_at": "later"},
        {**TURN.document(), "expires_at": True},
        {**TURN.document(), "extra": 1},
        {k: v for k, v in TURN.document().items() if k != "expires_at"},
        ["resp_1", 5, 20.5, None],
        None,
    ],
)
def test_a_hand_broken_turn_is_refused_saying_its_form(turn):
    doc = codec.document(CONVERSATION, next_position=4, turn=turn)
    with pytest.raises(ValueError) as info:
        codec.conversation_of(doc, "alice", "conv_1")
    assert str(info.value) == (
        'field \'turn\' should be {"response": a response ID, "next_position": a whole number, '
        f'"updated_at": a number, "expires_at": a number or null}}, found {turn!r:.80}'
    )
