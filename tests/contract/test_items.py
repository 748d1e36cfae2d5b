"""Contract: conversation items, on every backend."""

import re
import threading

import pytest

from flask_smg_history import InvalidRequest, NotFound, get_state
from flask_smg_history.schemas import STATUS_REQUIRED

from ..support.errors import missing, raises


def _texts(page):
    return [i.payload["content"][0]["text"] for i in page]


@pytest.fixture
def conv(alice):
    return alice.conversations.create()


def test_easy_messages_become_full_items(alice, conv):
    added = alice.items.add(
        conv.id,
        [
            {"role": "user", "content": "question"},
            {"role": "assistant", "content": "answer"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        ],
    )
    user, assistant, developer = (i.payload for i in added)
    assert user == {
        "id": user["id"],
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "question"}],
    }
    assert user["id"].startswith("msg_")
    assert assistant["content"] == [{"type": "output_text", "text": "answer", "annotations": [], "logprobs": []}]
    assert developer["content"] == [{"type": "input_text", "text": "be brief"}]
    assert [i.payload for i in alice.items.list(conv.id, order="asc").data] == [user, assistant, developer]


TOOL_ITEMS = [
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city": "Oslo"}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": -3}'},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}], "encrypted_content": None},
    {"type": "mcp_call", "server_label": "docs", "name": "search", "arguments": "{}", "output": "ok", "error": None},
    {"type": "mcp_list_tools", "server_label": "docs", "tools": [{"name": "search", "input_schema": {}}]},
    {"type": "mcp_approval_request", "server_label": "docs", "name": "rm", "arguments": "{}"},
    {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_1",
        "request_id": "mcpr_1",
        "approve": False,
        "reason": "no",
    },
    {"type": "custom_tool_call", "call_id": "call_2", "name": "grammar", "input": "x"},
    {"type": "custom_tool_call_output", "call_id": "call_2", "output": "y"},
    {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "q"}},
    {"type": "file_search_call", "status": "completed", "queries": ["q"], "results": None},
    {
        "type": "computer_call",
        "call_id": "c3",
        "action": {"type": "click", "x": 1, "y": 2, "button": "left"},
        "pending_safety_checks": [],
        "status": "completed",
    },
    {"type": "code_interpreter_call", "code": "1+1", "container_id": "cntr", "outputs": [], "status": "completed"},
    {"type": "image_generation_call", "result": None, "status": "completed"},
    {
        "type": "shell_call",
        "call_id": "c4",
        "action": {"commands": ["ls"], "timeout_ms": None, "max_output_length": None},
        "environment": None,
        "status": "completed",
    },
]

PREFIXES = {"function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_", "mcp_call": "mcp_"}


def test_tool_items_are_stored_as_given_with_ids_minted(alice, conv):
    added = []
    for start in range(0, len(TOOL_ITEMS), 5):
        added += alice.items.add(conv.id, TOOL_ITEMS[start : start + 5])
    for given, item in zip(TOOL_ITEMS, added):
        payload = dict(item.payload)
        minted = payload.pop("id")
        assert payload == ({"status": "completed", **given} if given["type"] in STATUS_REQUIRED else given)
        assert item.type == given["type"]
        assert minted.startswith(PREFIXES.get(given["type"], ""))
    listed = alice.items.list(conv.id, order="asc", limit=100).data
    assert [i.payload for i in listed] == [i.payload for i in added]


def test_client_ids_are_kept_and_duplicates_refused_atomically(alice, conv):
    alice.items.add(conv.id, [{"id": "msg_given", "type": "message", "role": "user", "content": "1"}])
    assert alice.items.get(conv.id, "msg_given").payload["content"][0]["text"] == "1"
    for item_id, batch in (
        ("msg_given", [{"role": "user", "content": "2"}, {"id": "msg_given", "role": "user", "content": "dup"}]),
        (
            "msg_twice",
            [{"id": "msg_twice", "role": "user", "content": "a"}, {"id": "msg_twice", "role": "user", "content": "b"}],
        ),
    ):
        with raises(
            InvalidRequest,
            message=f"Item with id '{item_id}' is already in conversation '{conv.id}'.",
            param="items",
            code="item_already_in_conversation",
        ):
            alice.items.add(conv.id, batch)
    assert _texts(alice.items.list(conv.id).data) == ["1"]


@pytest.mark.parametrize(
    ("items", "param", "message"),
    [
        ([], "items", "Invalid 'items': Shorter than minimum length 1."),
        (
            [{"role": "user", "content": str(n)} for n in range(21)],
            "items",
            "Cannot add more than 20 items at once; got 21.",
        ),
        (
            [{"role": "user", "content": "ok"}, {"type": "no_such_type"}],
            "items[1].type",
            re.compile(r"Unsupported item type 'no_such_type'\. Supported types: message, .*, item_reference\."),
        ),
        (
            [{"role": "robot", "content": "x"}],
            "items[0].role",
            "Invalid 'items[0].role': Must be one of: user, assistant, system, developer.",
        ),
        ([{"role": "user"}], "items[0].content", "Invalid 'items[0].content': Missing data for required field."),
        (
            [{"role": "user", "content": 5}],
            "items[0].content",
            "Invalid 'items[0].content': must be a string or a list of content parts, each an object with a 'type'.",
        ),
        (
            [{"role": "user", "content": "ok"}, "not an object"],
            "items[1]",
            "Invalid 'items[1]': Not a valid mapping type.",
        ),
        (
            [{"id": "bad id!", "role": "user", "content": "x"}],
            "items[0].id",
            "Invalid 'items[0].id': must be 1 to 128 letters, digits, '_' or '-'.",
        ),
        ("not a list", "items", "Invalid 'items': Not a valid list."),
    ],
)
def test_bad_batches_write_nothing(alice, conv, items, param, message):
    with raises(InvalidRequest, message=message, param=param):
        alice.items.add(conv.id, items)
    assert alice.items.list(conv.id).data == []


def test_oversized_item_is_refused(make_app):
    app = make_app(SMG_HISTORY_MAX_ITEM_BYTES=1000)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    with raises(InvalidRequest, message="Invalid 'items[0]': the item is larger than 1000 bytes.", param="items[0]"):
        store.items.add(conv.id, [{"role": "user", "content": "x" * 1000}])
    assert store.items.list(conv.id).data == []
    kept = store.items.add(conv.id, [{"role": "user", "content": "x" * 800}])
    assert [i.payload for i in store.items.list(conv.id).data] == [kept[0].payload]
    assert kept[0].payload["content"] == [{"type": "input_text", "text": "x" * 800}]


def test_pagination_both_orders(alice, conv):
    for start in range(0, 45, 15):
        alice.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(start, start + 15)])
    for order, expected in (("asc", [str(n) for n in range(45)]), ("desc", [str(n) for n in reversed(range(45))])):
        seen, after, shape = [], None, []
        while True:
            page = alice.items.list(conv.id, after=after, limit=20, order=order)
            shape.append((len(page.data), page.has_more))
            assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
            seen += _texts(page.data)
            if not page.has_more:
                break
            after = page.last_id
        assert seen == expected
        assert shape == [(20, True), (20, True), (5, False)]
    default = alice.items.list(conv.id)
    assert _texts(default.data)[:2] == ["44", "43"]


def test_pagination_edges(alice, conv):
    empty = alice.items.list(conv.id)
    assert (empty.data, empty.has_more, empty.first_id, empty.last_id) == ([], False, None, None)
    added = alice.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(20)])
    exact = alice.items.list(conv.id, limit=20)
    assert len(exact.data) == 20 and exact.has_more is False
    one = alice.items.list(conv.id, limit=1, order="asc")
    assert _texts(one.data) == ["0"] and one.has_more is True
    after_last = alice.items.list(conv.id, after=added[-1].id, order="asc")
    assert after_last.data == [] and after_last.has_more is False
    after_first_desc = alice.items.list(conv.id, after=added[0].id, order="desc")
    assert after_first_desc.data == [] and after_first_desc.has_more is False
    middle = alice.items.list(conv.id, after=added[9].id, order="asc", limit=5)
    assert _texts(middle.data) == ["10", "11", "12", "13", "14"] and middle.has_more
    with raises(InvalidRequest, message="No record with id 'msg_unknown' to list after.", param="after"):
        alice.items.list(conv.id, after="msg_unknown")
    for limit in (0, 101, "5", None):
        with raises(InvalidRequest, message="Invalid 'limit': must be an integer from 1 to 100.", param="limit"):
            alice.items.list(conv.id, limit=limit)
    with raises(InvalidRequest, message="Invalid 'order': must be 'asc' or 'desc'.", param="order"):
        alice.items.list(conv.id, order="sideways")


def test_after_a_deleted_item_or_an_item_of_another_conversation(alice, conv):
    other = alice.conversations.create(items=[{"role": "user", "content": "elsewhere"}])
    foreign = alice.items.list(other.id).data[0]
    with raises(InvalidRequest, message=f"No record with id '{foreign.id}' to list after.", param="after"):
        alice.items.list(conv.id, after=foreign.id)
    alice.items.delete(other.id, foreign.id)
    with raises(InvalidRequest, message=f"No record with id '{foreign.id}' to list after.", param="after"):
        alice.items.list(other.id, after=foreign.id)


def test_get_delete_and_recent(alice, conv):
    added = alice.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(10)])
    assert alice.items.get(conv.id, added[3].id).payload == added[3].payload
    parent = alice.items.delete(conv.id, added[3].id)
    assert parent.id == conv.id
    message, param = missing("item", added[3].id)
    with raises(NotFound, message=message, param=param):
        alice.items.get(conv.id, added[3].id)
    with raises(NotFound, message=message, param=param):
        alice.items.delete(conv.id, added[3].id)
    assert _texts(alice.items.recent(conv.id, limit=4)) == ["6", "7", "8", "9"]
    assert _texts(alice.items.recent(conv.id, limit=100)) == [str(n) for n in range(10) if n != 3]
    alice.items.add(conv.id, [{"role": "user", "content": "10"}])
    assert _texts(alice.items.recent(conv.id, limit=2)) == ["9", "10"]
    positions = [i.position for i in alice.items.list(conv.id, order="asc", limit=100).data]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_recent_of_empty_conversation(alice, conv):
    assert alice.items.recent(conv.id) == []


def test_concurrent_adds_keep_one_total_order(alice, conv):
    threads, per_thread, errors = 8, 15, []

    def writer(n: int) -> None:
        try:
            for k in range(per_thread):
                alice.items.add(
                    conv.id, [{"role": "user", "content": f"{n}:{k}:a"}, {"role": "user", "content": f"{n}:{k}:b"}]
                )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    items, after = [], None
    while True:
        page = alice.items.list(conv.id, after=after, limit=100, order="asc")
        items += page.data
        if not page.has_more:
            break
        after = page.last_id
    texts = _texts(items)
    assert len(texts) == threads * per_thread * 2 == len(set(texts))
    positions = [i.position for i in items]
    assert positions == sorted(set(positions))
    for n in range(threads):  # each writer's items appear in its own order, batches unsplit
        mine = [t for t in texts if t.startswith(f"{n}:")]
        assert mine == [f"{n}:{k}:{s}" for k in range(per_thread) for s in "ab"]
        for k in range(per_thread):
            a = texts.index(f"{n}:{k}:a")
            assert texts[a + 1] == f"{n}:{k}:b"


def test_pages_and_recent_skip_the_gaps_deleted_items_leave(alice):
    """Deleting items leaves gaps in the positions; reads that look at a
    window of positions (SQL) must widen it until the page is full."""
    conv = alice.conversations.create()
    for start in range(0, 400, 20):
        alice.items.add(conv.id, [{"id": f"m{n}", "role": "user", "content": str(n)} for n in range(start, start + 20)])
    gone = set(range(5, 395)) - {100, 200}  # a long gap, two survivors inside it
    for n in sorted(gone):
        alice.items.delete(conv.id, f"m{n}")
    kept = [f"m{n}" for n in range(400) if n not in gone]
    assert [i.id for i in alice.items.recent(conv.id, 20)] == kept[-20:]
    assert [i.id for i in alice.items.recent(conv.id, 3)] == kept[-3:]
    for order, expected in (("asc", kept), ("desc", kept[::-1])):
        seen, after = [], None
        while True:
            page = alice.items.list(conv.id, after=after, limit=4, order=order)
            seen += [i.id for i in page.data]
            if not page.has_more:
                break
            after = page.last_id
        assert seen == expected, order
