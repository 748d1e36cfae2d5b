"""Contract: ``Backend.store_turn``, one turn of ``POST /v1/responses`` kept in
one atomic write (the response, and its items appended to its conversation),
on every backend.

The backend is called directly with records built here, as the Responses
layer builds them: a freshly minted response ID, and the turn's input items
then its output items, in the conversation the response names."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from flask_smg_history import Conversation, InvalidRequest, Item, NotFound, Response, SmgHistory, get_state
from flask_smg_history.records import mint_id, now

from ..support.backends import PER_OWNER_IDS
from ..support.errors import missing, raises
from ..support.turns import (
    HOUR,
    build_turn,
    item_record,
    message_payload,
    reference,
    same_response,
    state_of,
    store_turn,
    texts_of,
)
from ..support.writers import all_items


@pytest.fixture
def conv(alice):
    """A conversation with two items already in it, written a while ago."""
    conv = alice.conversations.create(
        items=[{"role": "user", "content": "old 0"}, {"role": "user", "content": "old 1"}]
    )
    time.sleep(0.01)
    return conv


# -- a turn is kept ------------------------------------------------------------


def test_a_turn_appends_its_items_and_stores_its_response(app, alice, conv):
    before = alice.conversations.get(conv.id)
    response, items = build_turn("alice", conv.id, ["question"], ["thinking", "answer"])
    added = store_turn(app, response, items)

    assert [i.id for i in added] == [i.id for i in items]
    assert [i.position for i in added] == sorted({i.position for i in added})
    assert all(i.conversation_id == conv.id for i in added)
    assert [i.payload for i in added] == [i.payload for i in items]
    stored = all_items(alice, conv.id)
    assert texts_of(stored) == ["old 0", "old 1", "question", "thinking", "answer"]
    assert [(i.id, i.position) for i in stored[2:]] == [(i.id, i.position) for i in added]
    assert stored[1].position < added[0].position
    assert alice.items.get(conv.id, added[1].id).payload == items[1].payload

    same_response(alice.responses.get(response.id), response)
    assert [r.id for r in alice.responses.list(conversation=conv.id).data] == [response.id]
    after = alice.conversations.get(conv.id)
    assert after.updated_at == pytest.approx(response.created_at, abs=1e-3) and after.updated_at > before.updated_at
    assert after.expires_at == pytest.approx(response.created_at + HOUR, abs=1e-3)
    assert [c.id for c in alice.conversations.list(order_by="updated_at").data][0] == conv.id


def test_a_turn_of_many_items_is_one_write_in_order(app, alice, conv):
    """More than the 20 of one ``items.add``: a turn brings every input and
    output item of one exchange with a model (tool calls and their outputs)."""
    inputs = [f"in {n}" for n in range(150)]
    outputs = [f"out {n}" for n in range(130)]
    response, items = build_turn("alice", conv.id, inputs, outputs)
    added = store_turn(app, response, items)
    positions = [i.position for i in added]
    assert len(added) == 280 and positions == sorted(set(positions))
    assert texts_of(all_items(alice, conv.id)) == ["old 0", "old 1", *inputs, *outputs]
    assert texts_of(alice.items.recent(conv.id, limit=3)) == ["out 127", "out 128", "out 129"]
    assert len(alice.responses.get(response.id).output) == 130

    second, more = build_turn("alice", conv.id, ["next"], ["reply"])  # the next turn goes after all of them
    assert [i.position for i in store_turn(app, second, more)][0] > positions[-1]
    assert texts_of(alice.items.recent(conv.id, limit=2)) == ["next", "reply"]


def test_a_turn_without_a_conversation_stores_only_its_response(app, alice, conv):
    before = state_of(alice, conv.id)
    response, items = build_turn("alice", None, ["question"], ["answer"])
    assert items == []
    assert store_turn(app, response, items) == []
    same_response(alice.responses.get(response.id), response)
    assert alice.responses.get(response.id).conversation_id is None
    assert state_of(alice, conv.id) == before


def test_a_turn_links_a_referenced_item_as_add_items_does(app, alice, conv):
    home = alice.conversations.create(items=[{"id": "msg_shared", "role": "user", "content": "shared"}])
    response, items = build_turn(
        "alice", conv.id, ["before", reference("msg_shared", conv.id, now()), "after"], ["answer"]
    )
    added = store_turn(app, response, items)
    assert [i.type for i in added] == ["message"] * 4
    assert added[1].id == "msg_shared" and added[1].payload == alice.items.get(home.id, "msg_shared").payload
    assert added[1].conversation_id == conv.id and added[0].position < added[1].position < added[2].position
    assert texts_of(all_items(alice, conv.id)) == ["old 0", "old 1", "before", "shared", "after", "answer"]
    assert texts_of(all_items(alice, home.id)) == ["shared"]
    alice.items.delete(home.id, "msg_shared")  # the item stays while the turn's conversation links it
    assert alice.items.get(conv.id, "msg_shared").payload["content"][0]["text"] == "shared"


def test_what_a_turn_returns_is_a_copy(app, alice, conv):
    response, items = build_turn("alice", conv.id, ["question"], ["answer"])
    added = store_turn(app, response, items)
    added[0].payload["content"][0]["text"] = "changed"
    response.output[0]["content"][0]["text"] = "changed"
    assert texts_of(all_items(alice, conv.id))[2:] == ["question", "answer"]
    assert alice.responses.get(response.id).output[0]["content"][0]["text"] == "answer"


# -- a refused turn leaves nothing -----------------------------------------------


def _many(at_index: int, offending: Item, total: int = 25) -> list[Any]:
    """``total`` inputs with ``offending`` at ``at_index``: a write that was
    not atomic would have kept the valid ones before it."""
    texts: list[Any] = [f"new {n}" for n in range(total - 1)]
    texts.insert(at_index, offending)
    return texts


def _refused(app, store, conversation_id: str, response: Response, items: list[Item], error) -> None:
    """The turn is refused with exactly ``error`` (class, message, param,
    code), and leaves the conversation (items, times) and the responses as
    they were (``_kept`` then shows that its item IDs were not taken either)."""
    before = state_of(store, conversation_id)
    responses = [r.id for r in store.responses.list(limit=100).data]
    cls, message, param, code = error
    with raises(cls, message=message, param=param, code=code):
        store_turn(app, response, items, at=now() + 5)
    assert state_of(store, conversation_id) == before
    assert [r.id for r in store.responses.list(limit=100).data] == responses
    if response.id not in responses:
        with raises(NotFound, message=missing("response", response.id)[0], param="response_id"):
            store.responses.get(response.id)


def _exists(item_id: str):
    return (
        InvalidRequest,
        f"Item with id '{item_id}' already exists; to add it to this conversation too, send "
        f'{{"type": "item_reference", "id": "{item_id}"}}.',
        "items",
        "item_already_exists",
    )


def _in_conversation(item_id: str, conversation_id: str):
    return (
        InvalidRequest,
        f"Item with id '{item_id}' is already in conversation '{conversation_id}'.",
        "items",
        "item_already_in_conversation",
    )


def _taken(response_id: str):
    return (InvalidRequest, f"Response id '{response_id}' is not available.", "id", None)


def _kept(app, store, conversation_id: str, response: Response, items: list[Item]) -> None:
    """A turn is then kept whole: the refused one took none of these item
    IDs (nor its response ID, when it is the same)."""
    added = store_turn(app, response, items)
    assert [i.id for i in added] == [i.id for i in items]
    assert [i.id for i in all_items(store, conversation_id)][-len(items) :] == [i.id for i in items]
    same_response(store.responses.get(response.id), response)


def _without(items: list[Item], bad: int) -> list[Item]:
    return [item for n, item in enumerate(items) if n != bad]


def test_a_new_item_with_an_id_the_owner_has_refuses_the_whole_turn(app, alice, conv):
    alice.conversations.create(items=[{"id": "msg_elsewhere", "role": "user", "content": "x"}])
    taken = item_record(message_payload("again", item_id="msg_elsewhere"), conv.id, now())
    response, items = build_turn("alice", conv.id, _many(23, taken), ["answer"])
    _refused(app, alice, conv.id, response, items, _exists("msg_elsewhere"))
    _kept(app, alice, conv.id, response, _without(items, 23))


def test_an_id_already_in_the_conversation_refuses_the_whole_turn(app, alice, conv):
    present = alice.items.list(conv.id).data[0].id
    again = item_record(message_payload("again", item_id=present), conv.id, now())
    response, items = build_turn("alice", conv.id, _many(22, again), ["answer"])
    _refused(app, alice, conv.id, response, items, _in_conversation(present, conv.id))
    _kept(app, alice, conv.id, response, _without(items, 22))


def test_an_id_twice_in_the_turn_refuses_the_whole_turn(app, alice, conv):
    twice = item_record(message_payload("twice", item_id="msg_twice"), conv.id, now())
    response, items = build_turn("alice", conv.id, ["first", twice, "middle", twice], ["answer"])
    _refused(app, alice, conv.id, response, items, _in_conversation("msg_twice", conv.id))
    _kept(app, alice, conv.id, response, _without(items, 3))


def test_a_reference_to_no_item_of_the_owner_refuses_the_whole_turn(app, alice, bob, conv):
    bob.conversations.create(items=[{"id": "msg_bobs", "role": "user", "content": "bob's"}])
    for missing_id in ("msg_nowhere", "msg_bobs"):
        dangling = reference(missing_id, conv.id, now())
        response, items = build_turn("alice", conv.id, _many(21, dangling), ["answer"])
        _refused(app, alice, conv.id, response, items, (NotFound, *missing("item", missing_id), None))
    _kept(app, alice, conv.id, response, _without(items, 21))


def test_a_missing_foreign_or_expired_conversation_refuses_the_turn(app, alice, bob, conv):
    bobs = bob.conversations.create(items=[{"role": "user", "content": "bob's"}])
    gone_at = time.time() - 10
    get_state(app).backend.import_records(
        [Conversation("conv_expired", "alice", gone_at - 10, gone_at - 10, {}, gone_at)]
    )
    for conversation_id in ("conv_nowhere", bobs.id, "conv_expired"):
        response, items = build_turn("alice", conversation_id, [f"n{n}" for n in range(25)], ["answer"])
        with raises(NotFound, message=missing("conversation", conversation_id)[0], param="conversation_id"):
            store_turn(app, response, items)
        with raises(NotFound, message=missing("response", response.id)[0], param="response_id"):
            alice.responses.get(response.id)
        free = alice.conversations.create(items=[{"id": items[0].id, "role": "user", "content": "free"}])
        assert [i.id for i in alice.items.list(free.id).data] == [items[0].id]  # not stored anywhere
    assert texts_of(all_items(bob, bobs.id)) == ["bob's"]
    assert bob.responses.list().data == [] and alice.responses.list().data == []
    assert texts_of(all_items(alice, conv.id)) == ["old 0", "old 1"]


def test_a_response_id_the_owner_holds_refuses_the_whole_turn(app, alice, conv):
    """The turn's response is inserted, never replaced: its ID is freshly
    minted, so one already stored means something is wrong."""
    first, items = build_turn("alice", conv.id, ["first"], ["answer"])
    store_turn(app, first, items)
    again, items = build_turn("alice", conv.id, [f"n{n}" for n in range(25)], ["other"], response_id=first.id)
    _refused(app, alice, conv.id, again, items, _taken(first.id))
    same_response(alice.responses.get(first.id), first)
    alone, _ = build_turn("alice", None, ["q"], ["a"], response_id=first.id)
    with raises(InvalidRequest, message=f"Response id '{first.id}' is not available.", param="id"):
        store_turn(app, alone, [])
    same_response(alice.responses.get(first.id), first)
    _kept(app, alice, conv.id, Response(**{**vars(again), "id": mint_id("resp")}), items)


def test_a_response_id_another_owner_holds(app, alice, bob, conv, backend_name):
    """SQL and memory hold one response per ID: bob's turn under alice's
    response ID is refused whole. Redis and file keep responses per owner:
    bob's turn is his own. Alice's response stays hers either way."""
    mine, items = build_turn("alice", None, ["q"], ["a"])
    store_turn(app, mine, items)
    bobs = bob.conversations.create(items=[{"role": "user", "content": "bob's"}])
    theirs, items = build_turn("bob", bobs.id, [f"n{n}" for n in range(25)], ["bob's answer"], response_id=mine.id)
    if backend_name in PER_OWNER_IDS:
        store_turn(app, theirs, items)
        same_response(bob.responses.get(mine.id), theirs)
        assert len(all_items(bob, bobs.id)) == 27
    else:
        _refused(app, bob, bobs.id, theirs, items, _taken(mine.id))
        assert bob.responses.list().data == []
    same_response(alice.responses.get(mine.id), mine)
    assert [r.id for r in alice.responses.list().data] == [mine.id]


# -- owners --------------------------------------------------------------------


def test_another_owner_can_neither_write_into_nor_see_a_turn(app, alice, bob, conv):
    response, items = build_turn("alice", conv.id, ["alice's question"], ["alice's answer"])
    store_turn(app, response, items)
    before = state_of(alice, conv.id)

    intruder, theirs = build_turn("bob", conv.id, ["bob's"], ["reply"])
    with raises(NotFound, message=missing("conversation", conv.id)[0], param="conversation_id"):
        store_turn(app, intruder, theirs)
    assert state_of(alice, conv.id) == before
    for call, kind, record in (
        (lambda: bob.responses.get(response.id), "response", response.id),
        (lambda: bob.responses.get(intruder.id), "response", intruder.id),
        (lambda: alice.responses.get(intruder.id), "response", intruder.id),
        (lambda: bob.items.list(conv.id), "conversation", conv.id),
    ):
        with raises(NotFound, message=missing(kind, record)[0], param=missing(kind, record)[1]):
            call()
    assert bob.responses.list().data == [] and bob.conversations.list().data == []
    own = bob.conversations.create()
    borrowed, refs = build_turn("bob", own.id, [reference(items[0].id, own.id, now())])
    with raises(NotFound, message=missing("item", items[0].id)[0], param="item_id"):
        store_turn(app, borrowed, refs)


# -- concurrency ---------------------------------------------------------------


def test_concurrent_turns_into_one_conversation_are_all_kept_each_in_one_piece(app, alice, conv):
    threads, turns = 4, 5
    errors: list[BaseException] = []
    stored: list[Response] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for k in range(turns):
                response, items = build_turn("alice", conv.id, [f"{n}:{k}:q"], [f"{n}:{k}:r", f"{n}:{k}:a"])
                added = store_turn(app, response, items)
                assert [i.position for i in added] == list(range(added[0].position, added[0].position + 3))
                stored.append(response)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    texts = texts_of(all_items(alice, conv.id))[2:]
    assert len(texts) == threads * turns * 3 == len(set(texts))
    for n in range(threads):
        mine = [t for t in texts if t.startswith(f"{n}:")]
        assert mine == [f"{n}:{k}:{s}" for k in range(turns) for s in "qra"]  # each writer's turns in its order
    for index in range(0, len(texts), 3):  # every turn contiguous: no other turn's item between its own
        head = texts[index].rsplit(":", 1)[0]
        assert texts[index : index + 3] == [f"{head}:q", f"{head}:r", f"{head}:a"]
    positions = [i.position for i in all_items(alice, conv.id)]
    assert positions == sorted(set(positions))
    assert len(stored) == threads * turns
    assert {r.id for r in alice.responses.list(conversation=conv.id, limit=100).data} == {r.id for r in stored}


# -- the none backend ----------------------------------------------------------


def test_the_none_backend_keeps_nothing_and_hands_back_positions(tmp_path):
    from flask import Flask

    app = Flask("none", instance_path=str(tmp_path))
    app.config.update(SMG_HISTORY_BACKEND="none")
    SmgHistory(app)
    response, items = build_turn("alice", "conv_any", ["q"], ["r", "a"])
    added = store_turn(app, response, items)
    assert [(i.id, i.conversation_id, i.position) for i in added] == [
        (i.id, "conv_any", n) for n, i in enumerate(items)
    ]
    assert store_turn(app, *build_turn("alice", None, ["q"], ["a"])) == []
    with raises(NotFound, message=missing("response", response.id)[0], param="response_id"):
        get_state(app).store_for("alice").responses.get(response.id)


def test_a_backend_without_store_turn_answers_not_supported():
    """The base class's default: a custom backend that does not implement it
    refuses the turn (501) instead of storing it in two writes."""
    from flask_smg_history import NotSupported
    from flask_smg_history.backends import Backend
    from flask_smg_history.backends.memory import MemoryBackend

    class Custom(MemoryBackend):
        store_turn = Backend.store_turn

    backend = Custom("custom", None, None)
    message = re.compile(r"The custom backend cannot store a Responses API turn: .*")
    with raises(NotSupported, message=message, param="store", code="not_supported"):
        backend.store_turn(*build_turn("alice", None, ["q"]), updated_at=now(), expires_at=None)
