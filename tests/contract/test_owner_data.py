"""Contract: responses by user, erasure of one owner, and the operations the
CLI is built on (owners, stats, purge, export and import)."""

import dataclasses
import re
import time

import pytest

from flask_smg_history import Conversation, Feedback, InvalidRequest, Item, NotFound, Response, get_state, portable

from ..support.backends import PER_OWNER_IDS
from ..support.errors import raises


def _fill(store, n_conv=3, n_items=4, model="m"):
    convs = []
    for c in range(n_conv):
        conv = store.conversations.create(
            metadata={"n": str(c)}, items=[{"role": "user", "content": f"{c}:{i}"} for i in range(n_items)]
        )
        resp = store.responses.store({"model": model, "input": "q", "conversation": conv.id})
        store.feedback.submit(resp.id, "positive" if c % 2 == 0 else "negative", comment=f"c{c}")
        convs.append(conv)
    return convs


def test_list_responses_newest_first_with_filters(alice, bob):
    conv = alice.conversations.create()
    ids = []
    for n in range(25):
        ids.append(alice.responses.store({"model": "m1" if n % 2 else "m2", "input": str(n)}).id)
        time.sleep(0.002)
    in_conv = alice.responses.store({"model": "m1", "input": "c", "conversation": conv.id, "safety_identifier": "u-1"})
    bob.responses.store({"model": "m1", "input": "bob"})
    page = alice.responses.list(limit=20)
    assert [r.id for r in page.data] == [in_conv.id, *reversed(ids[-19:])] and page.has_more
    rest = alice.responses.list(after=page.last_id, limit=20)
    assert [r.id for r in rest.data] == list(reversed(ids[:6])) and not rest.has_more
    assert [r.id for r in alice.responses.list(conversation=conv.id).data] == [in_conv.id]
    assert {r.model for r in alice.responses.list(model="m2", limit=100).data} == {"m2"}
    assert len(alice.responses.list(model="m2", limit=100).data) == 13
    assert alice.responses.list(since=time.time() + 60).data == []
    assert alice.responses.get(in_conv.id).safety_identifier == "u-1"
    assert len(bob.responses.list().data) == 1


def test_erase_owner_removes_everything_of_one_owner(app, alice, bob):
    _fill(alice)
    kept = _fill(bob, n_conv=2)
    counts = alice.erase_owner()
    assert counts == {"conversations": 3, "items": 12, "responses": 3, "feedback": 3}
    backend = get_state(app).backend
    assert list(backend.export("alice", None)) == []
    assert "alice" not in list(backend.owners())
    assert alice.conversations.list().data == [] and alice.feedback.list().data == []
    assert alice.erase_owner() == {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
    assert [c.id for c in bob.conversations.list(order="asc").data] == [c.id for c in kept]
    assert len(bob.items.list(kept[0].id).data) == 4 and len(bob.feedback.list().data) == 2


def test_stats_and_owners(app, alice, bob):
    _fill(alice)
    _fill(bob, n_conv=1)
    backend = get_state(app).backend
    assert list(backend.owners()) == ["alice", "bob"]
    stats = backend.stats("alice")
    assert {k: stats[k] for k in ("conversations", "items", "responses", "feedback")} == {
        "conversations": 3,
        "items": 12,
        "responses": 3,
        "feedback": {"positive": 2, "negative": 1},
    }
    assert stats["oldest"] <= stats["newest"]
    assert backend.stats(None)["conversations"] == 4


#: A response as a host stores it, with the fields of OpenAI's response
#: object that the record keeps in ``extra``.
FULL_RESPONSE = {
    "model": "gpt-test",
    "status": "incomplete",
    "input": [{"role": "user", "content": "Hi"}],
    "output": [
        {
            "type": "message",
            "id": "msg_out",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        }
    ],
    "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    "metadata": {"k": "v"},
    "safety_identifier": "user-1",
    "instructions": "be nice",
    "temperature": 0.2,
    "top_p": 0.9,
    "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
    "tool_choice": "auto",
    "incomplete_details": {"reason": "max_output_tokens"},
    "max_output_tokens": 64,
    "text": {"format": {"type": "text"}},
}
EXTRA = {k: FULL_RESPONSE[k] for k in FULL_RESPONSE if k not in ("model", "status", "input", "output", "usage")}
del EXTRA["metadata"], EXTRA["safety_identifier"]

#: Timestamps a backend keeps to the millisecond at least; the rest exactly.
_TIMES = ("created_at", "updated_at", "expires_at")


def _same_record(got, want) -> None:
    assert type(got) is type(want), (got, want)
    a, b = dataclasses.asdict(got), dataclasses.asdict(want)
    for name in _TIMES:
        if name in a:
            found, wanted = a.pop(name), b.pop(name)
            assert (found is None) == (wanted is None), name
            if wanted is not None:
                assert found == pytest.approx(wanted, abs=1e-3), name
    assert a == b


def _originals(store):
    """Records of what the store was given and answered, the truth the
    export must reproduce (not another export, which could lose the same
    fields as the first)."""
    first = store.conversations.create(metadata={"title": "one"}, items=[{"role": "user", "content": "a"}])
    first_items = store.items.list(first.id, order="asc").data
    second = store.conversations.create(
        items=[{"id": "fc_given", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    )
    more = store.items.add(second.id, [{"type": "item_reference", "id": first_items[0].id}])
    first, second = store.conversations.get(first.id), store.conversations.get(second.id)
    resp = store.responses.store({**FULL_RESPONSE, "conversation": first.id})
    follow = store.responses.store({"model": "m2", "input": "again", "previous_response_id": resp.id})
    fb = store.feedback.submit(resp.id, "negative", comment="meh", metadata={"ui": "thumbs"})
    items_of_second = store.items.list(second.id, order="asc").data
    assert [i.id for i in items_of_second] == ["fc_given", more[0].id]
    return [first, *first_items, second, *items_of_second, resp, follow, fb]


def test_export_keeps_every_field_the_store_was_given(app, alice):
    originals = _originals(alice)
    resp = originals[-3]
    assert resp.extra == EXTRA  # the store kept them: the export must too
    exported = list(get_state(app).backend.export("alice", None))
    assert len(exported) == len(originals)
    for got, want in zip(exported, originals):
        _same_record(got, want)
    # and through the JSON Lines form the CLI writes and reads
    for got, want in zip((portable.loads(portable.dumps(r)) for r in exported), originals):
        _same_record(got, want)


def test_export_import_roundtrip_is_exact_and_idempotent(app, alice):
    originals = _originals(alice)
    _fill(alice)
    backend = get_state(app).backend
    exported = list(backend.export(None, None))
    kinds = [type(r).__name__ for r in exported]
    assert kinds.count("Conversation") == 5 and kinds.count("Item") == 15
    assert kinds.index("Response") > max(i for i, k in enumerate(kinds) if k == "Item")
    # a conversation comes right before its items
    assert isinstance(exported[0], Conversation) and isinstance(exported[1], Item)

    lines = [portable.dumps(r) for r in exported]
    alice.erase_owner()
    assert list(backend.export(None, None)) == []
    counts = backend.import_records(portable.loads(line) for line in lines)
    assert counts == {"conversations": 5, "items": 15, "responses": 5, "feedback": 4}
    assert backend.import_records(portable.loads(line) for line in lines) == counts
    reimported = list(backend.export(None, None))
    assert len(reimported) == len(exported)
    for got, want in zip(reimported, exported):
        _same_record(got, want)

    # compared with what the store was given, not only with the first export
    def key(record):
        return type(record).__name__, record.id, getattr(record, "conversation_id", None)

    by_key = {key(r): r for r in reimported}
    for want in originals:
        _same_record(by_key[key(want)], want)
    assert alice.responses.get(originals[-3].id).extra == EXTRA
    conv = originals[0]
    added = alice.items.add(conv.id, [{"role": "user", "content": "after import"}])
    assert added[0].position > max(i.position for i in exported if isinstance(i, Item) and i.conversation_id == conv.id)


def test_export_filters(app, alice, bob):
    _fill(alice, n_conv=2)
    _fill(bob, n_conv=1)
    backend = get_state(app).backend
    mine = list(backend.export("bob", None))
    assert {getattr(r, "owner", "bob") for r in mine} == {"bob"}
    assert sum(isinstance(r, Conversation) for r in mine) == 1
    assert sum(isinstance(r, Feedback) for r in mine) == 1
    assert list(backend.export(None, time.time() + 60)) == []
    assert sum(isinstance(r, Response) for r in backend.export(None, None)) == 3


def test_purge_removes_old_and_expired(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=1 / 86400)
    backend = get_state(app).backend
    store = get_state(app).store_for("alice")
    _fill(store, n_conv=2)
    time.sleep(1.2)
    if getattr(backend, "expires_by_ttl", False):  # Redis: the keys expired on their own, nothing is left to purge
        assert backend.purge(before=None, dry_run=False)["conversations"] == 0
        assert backend.stats(None)["conversations"] == 0 and list(backend.owners()) == []
        return
    preview = backend.purge(before=None, dry_run=True)
    assert preview["conversations"] == 2 and preview["responses"] == 2
    assert backend.purge(before=None, dry_run=False)["conversations"] == 2
    assert backend.purge(before=None, dry_run=False)["conversations"] == 0


def test_purge_older_than(app, alice):
    old = _fill(alice, n_conv=1)[0]
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    new = _fill(alice, n_conv=1)[0]
    backend = get_state(app).backend
    removed = backend.purge(before=cutoff, dry_run=False)
    assert removed["conversations"] == 1 and removed["items"] == 4 and removed["responses"] == 1
    assert [c.id for c in alice.conversations.list().data] == [new.id]
    assert old.id not in [c.id for c in alice.conversations.list().data]


def test_owners_counts_an_owner_with_only_responses_or_only_feedback(app):
    backend = get_state(app).backend
    at = time.time()
    backend.import_records(
        [
            Response("resp_of_carol", "carol", at, model="m"),
            Feedback("fb_of_dave", "resp_of_carol", "dave", "positive", at, model="m"),
        ]
    )
    get_state(app).store_for("erin").conversations.create()
    assert list(backend.owners()) == ["carol", "dave", "erin"]


def test_erasing_an_owner_takes_their_feedback_on_another_owners_response(app):
    """Feedback is one per (response, owner); an import can bring dave's
    vote on carol's response. Erasing dave takes the vote, not the response."""
    backend = get_state(app).backend
    at = time.time()
    backend.import_records(
        [
            Response("resp_of_carol", "carol", at, model="m"),
            Response("resp_of_carol_2", "carol", at, model="m"),
            Feedback("fb_of_dave", "resp_of_carol", "dave", "positive", at, model="m"),
            Feedback("fb_of_dave_2", "resp_of_carol_2", "dave", "negative", at, model="m"),
            Feedback("fb_of_carol", "resp_of_carol", "carol", "negative", at, model="m"),
        ]
    )
    dave = get_state(app).store_for("dave")
    assert dave.erase_owner() == {"conversations": 0, "items": 0, "responses": 0, "feedback": 2}
    assert list(backend.owners()) == ["carol"]
    carol = get_state(app).store_for("carol")
    assert carol.responses.get("resp_of_carol").model == "m"
    assert [f.id for f in carol.feedback.list().data] == ["fb_of_carol"]
    assert carol.erase_owner() == {"conversations": 0, "items": 0, "responses": 2, "feedback": 1}


def test_import_keeps_positions_and_appends_after_the_highest(app, alice):
    backend = get_state(app).backend
    at = time.time()
    payload = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    records = [
        Conversation("conv_imp", "alice", at, at),
        Item("msg_a", "conv_imp", "message", {**payload, "id": "msg_a"}, at, position=3),
        Item("msg_b", "conv_imp", "message", {**payload, "id": "msg_b"}, at, position=7),
    ]
    assert backend.import_records(records) == {"conversations": 1, "items": 2, "responses": 0, "feedback": 0}
    assert backend.import_records(records) == {"conversations": 1, "items": 2, "responses": 0, "feedback": 0}
    assert [(i.id, i.position) for i in alice.items.list("conv_imp", order="asc").data] == [("msg_a", 3), ("msg_b", 7)]
    (added,) = alice.items.add("conv_imp", [{"role": "user", "content": "next"}])
    assert added.position == 8
    backend.import_records([Conversation("conv_imp_empty", "alice", at, at)])
    (first,) = alice.items.add("conv_imp_empty", [{"role": "user", "content": "first"}])
    assert first.position == 0  # as in a conversation created empty
    # the re-import linked nothing twice: one delete unlinks each item
    alice.items.delete("conv_imp", "msg_a")
    alice.conversations.delete("conv_imp")
    fresh = alice.conversations.create()
    with raises(NotFound, message="Item with id 'msg_b' not found.", param="item_id"):
        alice.items.add(fresh.id, [{"type": "item_reference", "id": "msg_b"}])


def test_reimporting_a_conversation_alone_keeps_its_items(app, alice):
    """An import that brings a conversation's record without its items (a
    filtered export, a hand-made file) updates the record and leaves the
    items and the next position as they are."""
    conv = alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(3)])
    backend = get_state(app).backend
    record = alice.conversations.get(conv.id)
    record.metadata = {"k": "imported"}
    assert backend.import_records([record])["conversations"] == 1
    assert alice.conversations.get(conv.id).metadata == {"k": "imported"}
    texts = [i.payload["content"][0]["text"] for i in alice.items.list(conv.id, order="asc").data]
    assert texts == ["0", "1", "2"]
    assert alice.items.add(conv.id, [{"role": "user", "content": "3"}])[0].position == 3


def test_an_imported_item_already_in_its_conversation_keeps_its_place(app, alice):
    """An import that names an item the conversation holds, at another
    position, leaves it where it is: no second copy. The next append still
    comes after the highest position the import named, as after any import
    (``test_import_keeps_positions_and_appends_after_the_highest``)."""
    conv = alice.conversations.create(
        items=[{"id": "msg_here", "role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    )
    held = alice.items.get(conv.id, "msg_here")
    moved = Item(held.id, conv.id, held.type, held.payload, held.created_at, held.role, held.status, position=7)
    assert get_state(app).backend.import_records([moved])["items"] == 1
    assert [(i.id, i.position) for i in alice.items.list(conv.id, order="asc").data][0] == ("msg_here", 0)
    assert len(alice.items.list(conv.id).data) == 2
    assert alice.items.add(conv.id, [{"role": "user", "content": "c"}])[0].position == 8


def test_import_of_a_conversation_id_another_owner_holds_never_touches_theirs(app, backend_name):
    """SQL and memory hold one conversation per ID and refuse the import;
    Redis and file keep conversations per owner (docs/backends/redis.md,
    docs/backends/file.md), so the importing owner gets a conversation of
    their own under that ID. Either
    way the other owner's conversation is untouched and stays theirs."""
    backend = get_state(app).backend
    bob, alice = get_state(app).store_for("bob"), get_state(app).store_for("alice")
    theirs = bob.conversations.create(metadata={"k": "bob's"}, items=[{"id": "msg_b", "role": "user", "content": "b"}])
    claimed = Conversation(theirs.id, "alice", theirs.created_at, theirs.updated_at, {"k": "alice's"})
    if backend_name in PER_OWNER_IDS:
        backend.import_records([claimed])
        assert alice.conversations.get(theirs.id).metadata == {"k": "alice's"}
        assert alice.items.list(theirs.id).data == []
    else:
        with raises(InvalidRequest, message=re.compile(rf"Conversation '?{theirs.id}'? .*"), param="id"):
            backend.import_records([claimed])
        with raises(NotFound, message=f"Conversation with id '{theirs.id}' not found.", param="conversation_id"):
            alice.conversations.get(theirs.id)
    assert bob.conversations.get(theirs.id).metadata == {"k": "bob's"}
    assert [i.id for i in bob.items.list(theirs.id).data] == ["msg_b"]


def test_import_of_items_of_an_unknown_conversation_is_refused(app):
    at = time.time()
    orphan = Item("msg_x", "conv_nowhere", "message", {"id": "msg_x", "type": "message"}, at, position=0)
    with raises(NotFound, message="Conversation with id 'conv_nowhere' not found.", param="conversation_id"):
        get_state(app).backend.import_records([orphan])


def test_purge_preview_counts_what_the_purge_removes(app, alice):
    """A dry run counts what a purge would remove, and removes nothing: an
    item also linked into a kept conversation is not counted (it stays), and
    the feedback on old responses is. A record written exactly at the cutoff
    stays."""
    at = float(int(time.time()) - 1000)
    backend = get_state(app).backend
    msg = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}

    def item(item_id, conversation_id, position):
        return Item(item_id, conversation_id, "message", {**msg, "id": item_id}, at - 10, position=position)

    backend.import_records(
        [
            Conversation("conv_old", "alice", at - 10, at - 10),
            item("msg_only_old", "conv_old", 0),
            item("msg_only_old_2", "conv_old", 1),
            item("msg_shared", "conv_old", 2),
            Conversation("conv_old_2", "alice", at - 9, at - 9),
            item("msg_only_old_3", "conv_old_2", 0),
            Conversation("conv_at_cutoff", "alice", at - 5, at),
            item("msg_shared", "conv_at_cutoff", 0),
            Response("resp_old", "alice", at - 10, model="m"),
            Response("resp_old_2", "alice", at - 9, model="m"),
            Response("resp_at_cutoff", "alice", at, model="m"),
            Feedback("fb_old", "resp_old", "alice", "positive", at - 10, model="m"),
            Feedback("fb_old_2", "resp_old_2", "alice", "positive", at - 9, model="m"),
            Feedback("fb_at_cutoff", "resp_at_cutoff", "alice", "negative", at, model="m"),
        ]
    )
    before = list(backend.export(None, None))
    preview = backend.purge(before=at, dry_run=True)
    counts = {k: preview[k] for k in ("conversations", "items", "responses", "feedback")}
    assert counts == {"conversations": 2, "items": 3, "responses": 2, "feedback": 2}
    assert list(backend.export(None, None)) == before  # a dry run removes nothing
    removed = backend.purge(before=at, dry_run=False)
    assert {k: removed[k] for k in counts} == counts
    assert [c.id for c in alice.conversations.list().data] == ["conv_at_cutoff"]
    assert [i.id for i in alice.items.list("conv_at_cutoff").data] == ["msg_shared"]
    assert [r.id for r in alice.responses.list().data] == ["resp_at_cutoff"]
    assert [f.id for f in alice.feedback.list().data] == ["fb_at_cutoff"]


def test_a_response_id_another_owner_holds_never_touches_theirs(alice, bob, backend_name):
    """SQL and memory hold one response per ID and refuse a second owner's;
    Redis and file keep responses per owner (docs/backends/redis.md,
    docs/backends/file.md), so bob gets a response of his own under that ID. Alice's stays hers either way."""
    theirs = alice.responses.store({"model": "m", "input": "alice's"})
    if backend_name in PER_OWNER_IDS:
        bob.responses.store({"id": theirs.id, "model": "bob's", "input": "bob's"})
        assert [(r.id, r.model) for r in bob.responses.list().data] == [(theirs.id, "bob's")]
    else:
        with raises(InvalidRequest, message=f"Response id '{theirs.id}' is not available.", param="id"):
            bob.responses.store({"id": theirs.id, "model": "bob's", "input": "bob's"})
        assert bob.responses.list().data == []
    assert alice.responses.get(theirs.id).model == "m"
    assert [r.id for r in alice.responses.list().data] == [theirs.id]


def test_what_a_write_returns_is_a_copy(alice):
    conv = alice.conversations.create(metadata={"k": "v"}, items=[{"id": "msg_1", "role": "user", "content": "x"}])
    conv.metadata["k"] = "changed"
    (added,) = alice.items.add(conv.id, [{"id": "msg_2", "role": "user", "content": "y"}])
    added.payload["content"][0]["text"] = "changed"
    resp = alice.responses.store({"model": "m", "input": "q", "metadata": {"k": "v"}})
    resp.metadata["k"] = "changed"
    fb = alice.feedback.submit(resp.id, "positive", metadata={"k": "v"})
    fb.metadata["k"] = "changed"
    again = alice.feedback.submit(resp.id, "negative", metadata={"k": "w"})
    again.metadata["k"] = "changed"
    assert alice.conversations.get(conv.id).metadata == {"k": "v"}
    assert alice.items.get(conv.id, "msg_2").payload["content"][0]["text"] == "y"
    assert alice.responses.get(resp.id).metadata == {"k": "v"}
    assert (alice.feedback.get(resp.id).rating, alice.feedback.get(resp.id).metadata) == ("negative", {"k": "w"})
