"""The JSON Lines record format of ``export``, ``import`` and ``copy``: one
compact object per line that round-trips a record exactly, and a clear
``ValueError`` for every line it cannot read (the CLI reports it with the
line number)."""

from __future__ import annotations

import json

import pytest

from flask_smg_history import Conversation, Feedback, Item, Response, portable

RECORDS = [
    Conversation("conv_1", "alice", 1.5, 2.25, {"title": "t"}, 99.0),
    Item("msg_1", "conv_1", "message", {"id": "msg_1", "type": "message"}, 1.5, "user", "completed", 3),
    Response("resp_1", "alice", 3.0, "m", extra={"instructions": "be nice", "temperature": 0.2}),
    Feedback("fb_1", "resp_1", "alice", "negative", 4.0, "meh", {"ui": "thumbs"}, "m", None),
]


def test_a_line_is_compact_json_of_every_field():
    line = portable.dumps(RECORDS[0])
    assert line == (
        '{"record":"conversation","id":"conv_1","owner":"alice","created_at":1.5,"updated_at":2.25,'
        '"metadata":{"title":"t"},"expires_at":99.0}'
    )
    kinds = [json.loads(portable.dumps(r))["record"] for r in RECORDS]
    assert kinds == ["conversation", "item", "response", "feedback"]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_exactly(record):
    assert portable.loads(portable.dumps(record)) == record


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('"conversation"', "expected a JSON object"),
        ('{"id": "conv_1"}', "unknown record kind None; expected one of conversation, item, response, feedback"),
        ('{"record": "chat"}', "unknown record kind 'chat'; expected one of conversation, item, response, feedback"),
        (
            '{"record": "conversation", "id": "c", "owner": "o", "created_at": 1, "updated_at": 1, "x": 1, "a": 2}',
            "unknown conversation fields: a, x",
        ),
        (
            '{"record": "feedback", "id": "fb_1"}',
            "incomplete feedback: Feedback.__init__() missing 4 required positional arguments: "
            "'response_id', 'owner', 'rating', and 'created_at'",
        ),
    ],
)
def test_a_line_it_cannot_read_says_why(line, message):
    with pytest.raises(ValueError) as info:
        portable.loads(line)
    assert str(info.value) == message
