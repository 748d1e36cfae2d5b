"""Contract: ``history.responses.create`` keeps each turn whole, on every backend.

The model is an in-process upstream that records what it was sent, so each
test sees the context a backend's reads produced, and can fail at a chosen
point, so each test sees what a failure leaves stored (nothing).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flask_smg_history import InvalidRequest, NotFound, UpstreamError, get_state
from flask_smg_history.responses import Finish, Usage

from ..support.errors import raises


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


class Recorder:
    """Answers ``"<n> items, last: <text>"``; ``fail_after`` deltas raises."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.fail_after: int | None = None
        self.gate: threading.Event | None = None

    def stream(self, request):
        self.requests.append(request)
        last = _text(request.input[-1]) if request.input else ""
        pieces = [f"{len(request.input)} items, ", "last: ", last]
        for index, piece in enumerate(pieces):
            if self.fail_after is not None and index >= self.fail_after:
                raise UpstreamError("the model broke off", status=502, code="upstream_error")
            if self.gate is not None:
                self.gate.wait(5)
            yield piece
        yield Usage(input_tokens=len(request.input), output_tokens=len(pieces))
        yield Finish("stop")


@pytest.fixture
def model() -> Recorder:
    return Recorder()


@pytest.fixture
def turn_app(make_app, model):
    return make_app(upstream=model)


@pytest.fixture
def alice_t(turn_app):
    return get_state(turn_app).store_for("alice")


@pytest.fixture
def bob_t(turn_app):
    return get_state(turn_app).store_for("bob")


def _items(store, conv_id: str) -> list[dict[str, Any]]:
    return [item.payload for item in store.items.list(conv_id, order="asc", limit=100).data]


def test_a_conversation_turn_sends_the_history_and_stores_input_and_output(alice_t, model):
    conv = alice_t.conversations.create(items=[{"role": "user", "content": "first"}])
    before = alice_t.conversations.get(conv.id).updated_at
    resp = alice_t.responses.create(model="m", input="second", conversation=conv.id, instructions="be brief")
    assert [_text(i) for i in model.requests[0].input] == ["first", "second"]
    assert model.requests[0].instructions == "be brief"
    assert resp.status == "completed" and resp.conversation_id == conv.id
    assert resp.output_text == "2 items, last: second"
    stored = alice_t.responses.get(resp.id)
    assert stored.output == resp.output and stored.input == resp.input
    assert stored.usage == {
        "input_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }
    items = _items(alice_t, conv.id)
    assert [(i["role"], _text(i)) for i in items] == [
        ("user", "first"),
        ("user", "second"),
        ("assistant", "2 items, last: second"),
    ]
    assert items[1]["id"] == resp.input[0]["id"] and items[2]["id"] == resp.output[0]["id"]
    assert items[2]["response_id"] == resp.id and items[2]["model"] == "m"
    assert alice_t.conversations.get(conv.id).updated_at >= before
    again = alice_t.responses.create(model="m", input="third", conversation={"id": conv.id})
    assert [_text(i) for i in model.requests[1].input] == ["first", "second", "2 items, last: second", "third"]
    assert model.requests[1].instructions is None  # never carried over
    assert again.output_text == "4 items, last: third"


def test_a_previous_response_chain_is_the_context(alice_t, model):
    first = alice_t.responses.create(model="m", input="one", instructions="only once")
    second = alice_t.responses.create(model="m", input="two", previous_response_id=first.id)
    third = alice_t.responses.create(model="m", input="three", previous_response_id=second.id)
    assert [_text(i) for i in model.requests[2].input] == [
        "one",
        "1 items, last: one",
        "two",
        "3 items, last: two",
        "three",
    ]
    assert model.requests[2].instructions is None
    assert third.previous_response_id == second.id and third.conversation_id is None
    assert [r.id for r in alice_t.responses.chain(third.id)] == [first.id, second.id, third.id]


def test_store_false_keeps_nothing(alice_t, model):
    conv = alice_t.conversations.create(items=[{"role": "user", "content": "kept"}])
    resp = alice_t.responses.create(model="m", input="not kept", conversation=conv.id, store=False)
    assert resp.output_text == "2 items, last: not kept"
    with raises(NotFound, message=f"Response with id '{resp.id}' not found.", param="response_id"):
        alice_t.responses.get(resp.id)
    assert [_text(i) for i in _items(alice_t, conv.id)] == ["kept"]
    with raises(
        InvalidRequest,
        message=f"Previous response with id '{resp.id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    ):
        alice_t.responses.create(model="m", input="next", previous_response_id=resp.id)


def test_another_owners_records_are_not_found(alice_t, bob_t, model):
    conv = alice_t.conversations.create(items=[{"role": "user", "content": "secret"}])
    resp = alice_t.responses.create(model="m", input="hi")
    with raises(NotFound, message=f"Conversation with id '{conv.id}' not found.", param="conversation_id"):
        bob_t.responses.create(model="m", input="x", conversation=conv.id)
    with raises(
        InvalidRequest,
        message=f"Previous response with id '{resp.id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    ):
        bob_t.responses.create(model="m", input="x", previous_response_id=resp.id)
    assert len(model.requests) == 1  # refused before the model was called
    assert bob_t.responses.list().data == [] and [_text(i) for i in _items(alice_t, conv.id)] == ["secret"]


def test_an_upstream_failure_mid_answer_stores_nothing(alice_t, model):
    conv = alice_t.conversations.create(items=[{"role": "user", "content": "before"}])
    model.fail_after = 2
    with raises(UpstreamError, message="the model broke off", param=None, code="upstream_error"):
        alice_t.responses.create(model="m", input="lost", conversation=conv.id)
    events = list(alice_t.responses.create(model="m", input="lost too", conversation=conv.id, stream=True))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "the model broke off"}
    assert [_text(i) for i in _items(alice_t, conv.id)] == ["before"]
    assert alice_t.responses.list().data == []


def test_a_refused_turn_leaves_nothing_after_the_model_answered(alice_t, model):
    alice_t.conversations.create(items=[{"id": "msg_taken", "role": "user", "content": "a"}])
    other = alice_t.conversations.create()
    with pytest.raises(InvalidRequest) as caught:
        alice_t.responses.create(
            model="m", input=[{"id": "msg_taken", "role": "user", "content": "b"}], conversation=other.id
        )
    assert caught.value.code == "item_already_exists"
    assert caught.value.message.startswith("The model answered, but the turn could not be stored")
    assert len(model.requests) == 1
    assert _items(alice_t, other.id) == [] and alice_t.responses.list().data == []


def test_a_stream_closed_early_keeps_the_turn_incomplete(alice_t, model):
    conv = alice_t.conversations.create()
    events = alice_t.responses.create(model="m", input="stop me", conversation=conv.id, stream=True)
    seen = []
    for event in events:
        seen.append(event)
        if event["type"] == "response.output_text.delta":
            break
    events.close()
    response_id = seen[0]["response"]["id"]
    stored = alice_t.responses.get(response_id)
    assert stored.status == "incomplete"
    assert stored.output[0]["status"] == "incomplete" and stored.output_text == "1 items, "
    items = _items(alice_t, conv.id)
    assert [(i["role"], _text(i)) for i in items] == [("user", "stop me"), ("assistant", "1 items, ")]


def test_turns_sent_at_once_are_all_kept_each_contiguous(turn_app, model):
    store = get_state(turn_app).store_for("alice")
    conv = store.conversations.create()
    errors: list[BaseException] = []

    def turn(n: int) -> None:
        try:
            mine = get_state(turn_app).store_for("alice")
            mine.responses.create(
                model="m",
                input=[{"role": "user", "content": f"t{n}-a"}, {"role": "user", "content": f"t{n}-b"}],
                conversation=conv.id,
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    texts = [_text(i) for i in _items(store, conv.id)]
    assert len(texts) == 18
    for start in range(0, 18, 3):
        a, b, reply = texts[start : start + 3]
        n = a.split("-")[0]
        assert (a, b) == (f"{n}-a", f"{n}-b") and reply.endswith(f"last: {n}-b")
    assert len(store.responses.list(limit=100).data) == 6


def test_a_stream_closed_before_its_first_event_keeps_an_empty_incomplete_turn(alice_t, model):
    conv = alice_t.conversations.create()
    events = alice_t.responses.create(model="m", input="never read", conversation=conv.id, stream=True)
    events.close()
    [stored] = alice_t.responses.list().data
    assert stored.status == "incomplete" and stored.output == []
    assert [(i["role"], _text(i)) for i in _items(alice_t, conv.id)] == [("user", "never read")]
