"""Contract: the collisions real data has, on every backend.

Owners whose names differ only in case are different owners; an item ID one
owner chose can be another owner's too; OpenAI timestamps are whole seconds,
so records share ``created_at`` all the time and pages must break the tie by
ID; and bulk operations that work in chunks must be right at exactly one
chunk and at one more (``batch_sizes``, from each backend's own constants).
A backend that folds case, matches items by ID alone, drops the keyset
tie-break or is off by one at a chunk boundary fails here.

The shared item ID is checked on every read that joins items: the item read
itself, search, usage statistics, the training export and the context
``responses.create`` sends the model.
"""

from __future__ import annotations

import json
import time

import pytest

from flask_smg_history import Conversation, Feedback, InvalidRequest, NotFound, get_state
from flask_smg_history.responses import Finish, Usage

from ..support.errors import missing, raises

#: Owners who differ only in case, and one who differs in nothing but a letter.
CASE_OWNERS = ("alice", "Alice", "ALICE", "alicE")
#: An item ID several owners choose for their own items.
SHARED_ID = "msg_shared"


def _store(app, owner):
    return get_state(app).store_for(owner)


def _walk(list_page, **kwargs) -> list[str]:
    """Every ID of a listing, page after page, following ``last_id``."""
    seen, after = [], None
    while True:
        page = list_page(after=after, **kwargs)
        seen += [record.id for record in page.data]
        if not page.has_more:
            return seen
        after = page.last_id


def _text(item) -> str:
    return item.payload["content"][0]["text"]


# -- owners that differ only in case -------------------------------------------
def test_owners_differing_only_in_case_are_strangers(app):
    stores = {owner: _store(app, owner) for owner in CASE_OWNERS}
    convs, responses = {}, {}
    for owner, store in stores.items():
        conv = store.conversations.create(
            metadata={"owner": owner}, items=[{"id": SHARED_ID, "role": "user", "content": f"of {owner}"}]
        )
        convs[owner] = conv
        responses[owner] = store.responses.store({"model": f"m-{owner}", "input": owner, "conversation": conv.id})
        store.feedback.submit(responses[owner].id, "positive", comment=owner)

    for owner, store in stores.items():
        mine = convs[owner]
        assert [c.id for c in store.conversations.list().data] == [mine.id]
        assert store.conversations.get(mine.id).metadata == {"owner": owner}
        assert _text(store.items.get(mine.id, SHARED_ID)) == f"of {owner}"
        assert [r.id for r in store.responses.list().data] == [responses[owner].id]
        assert [(f.response_id, f.comment) for f in store.feedback.list().data] == [(responses[owner].id, owner)]
        for other in CASE_OWNERS:
            if other == owner:
                continue
            theirs = convs[other].id
            message, param = missing("conversation", theirs)
            with raises(NotFound, message=message, param=param):
                store.conversations.get(theirs)
            with raises(NotFound, message=message, param=param):
                store.items.get(theirs, SHARED_ID)
            message, param = missing("response", responses[other].id)
            with raises(NotFound, message=message, param=param):
                store.responses.get(responses[other].id)
            message, param = missing("feedback", responses[other].id)
            with raises(NotFound, message=message, param=param):
                store.feedback.get(responses[other].id)

    backend = get_state(app).backend
    assert list(backend.owners()) == sorted(CASE_OWNERS)
    assert backend.stats("Alice")["conversations"] == 1

    assert stores["alice"].erase_owner() == {"conversations": 1, "items": 1, "responses": 1, "feedback": 1}
    assert list(backend.owners()) == sorted(o for o in CASE_OWNERS if o != "alice")
    for owner in CASE_OWNERS[1:]:
        assert _text(stores[owner].items.get(convs[owner].id, SHARED_ID)) == f"of {owner}"
        assert stores[owner].feedback.get(responses[owner].id).comment == owner
        assert [type(r).__name__ for r in backend.export(owner, None)] == [
            "Conversation",
            "Item",
            "Response",
            "Feedback",
        ]


def test_an_item_reference_never_crosses_a_case_difference(app):
    alice, upper = _store(app, "alice"), _store(app, "Alice")
    alice.conversations.create(items=[{"id": "msg_only_lower", "role": "user", "content": "x"}])
    conv = upper.conversations.create()
    message, param = missing("item", "msg_only_lower")
    with raises(NotFound, message=message, param=param):
        upper.items.add(conv.id, [{"type": "item_reference", "id": "msg_only_lower"}])
    # and the same ID is free for "Alice" to use for an item of her own
    added = upper.items.add(conv.id, [{"id": "msg_only_lower", "role": "user", "content": "hers"}])
    assert [_text(i) for i in upper.items.list(conv.id).data] == [_text(added[0])] == ["hers"]


def test_owners_differing_only_in_case_over_http(make_app):
    keys = {"sk-lower": "alice", "sk-upper": "Alice"}
    client = make_app(SMG_HISTORY_API_KEYS=keys, SMG_HISTORY_ALLOW_ANONYMOUS=False).test_client()
    lower = {"Authorization": "Bearer sk-lower"}
    upper = {"Authorization": "Bearer sk-upper"}
    body = {"items": [{"id": SHARED_ID, "role": "user", "content": "lower"}]}
    conv = client.post("/v1/conversations", json=body, headers=lower).get_json()
    assert client.get("/v1/conversations", headers=upper).get_json()["data"] == []
    assert client.get(f"/v1/conversations/{conv['id']}", headers=upper).status_code == 404
    assert client.get(f"/v1/conversations/{conv['id']}/items/{SHARED_ID}", headers=upper).status_code == 404
    erased = client.delete("/v1/history/owner", headers=upper).get_json()["deleted"]
    assert erased == {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
    item = client.get(f"/v1/conversations/{conv['id']}/items/{SHARED_ID}", headers=lower).get_json()
    assert item["content"] == [{"type": "input_text", "text": "lower"}]


# -- item IDs shared between owners ------------------------------------------------
def _shared_world(app):
    """alice and bob each hold an item with ID ``SHARED_ID``, linked into two
    of their conversations (once by reference)."""
    alice, bob = _store(app, "alice"), _store(app, "bob")
    out = {}
    for owner, store in (("alice", alice), ("bob", bob)):
        first = store.conversations.create(items=[{"id": SHARED_ID, "role": "user", "content": f"{owner}'s"}])
        second = store.conversations.create(items=[{"type": "item_reference", "id": SHARED_ID}])
        out[owner] = (store, first, second)
    return out


def test_erasing_an_owner_leaves_no_item_behind_when_another_owner_shares_its_id(app):
    world = _shared_world(app)
    alice, *_ = world["alice"]
    bob, bob_first, bob_second = world["bob"]
    assert alice.erase_owner() == {"conversations": 2, "items": 1, "responses": 0, "feedback": 0}
    backend = get_state(app).backend
    assert list(backend.export("alice", None)) == []
    # a left-over row of alice's would make the ID taken, or a reference to it resolve
    fresh = alice.conversations.create()
    message, param = missing("item", SHARED_ID)
    with raises(NotFound, message=message, param=param):
        alice.items.add(fresh.id, [{"type": "item_reference", "id": SHARED_ID}])
    again = alice.items.add(fresh.id, [{"id": SHARED_ID, "role": "user", "content": "alice again"}])
    assert _text(again[0]) == "alice again"
    # bob's item, linked twice, is untouched
    for conv in (bob_first, bob_second):
        assert _text(bob.items.get(conv.id, SHARED_ID)) == "bob's"
    assert backend.stats("bob")["items"] == 2


def test_deleting_a_conversation_or_item_keeps_the_other_owners_item_of_that_id(app):
    world = _shared_world(app)
    alice, first, second = world["alice"]
    bob, bob_first, _ = world["bob"]
    alice.items.delete(first.id, SHARED_ID)
    alice.conversations.delete(second.id)  # the last link of alice's item: it goes
    assert _text(bob.items.get(bob_first.id, SHARED_ID)) == "bob's"
    conv = alice.conversations.create()
    message, param = missing("item", SHARED_ID)
    with raises(NotFound, message=message, param=param):
        alice.items.add(conv.id, [{"type": "item_reference", "id": SHARED_ID}])
    with raises(
        InvalidRequest,
        message=(
            f"Item with id '{SHARED_ID}' already exists; to add it to this conversation too, send "
            f'{{"type": "item_reference", "id": "{SHARED_ID}"}}.'
        ),
        param="items",
        code="item_already_exists",
    ):
        bob.items.add(bob.conversations.create().id, [{"id": SHARED_ID, "role": "user", "content": "dup"}])


#: The text of each owner's item under ``SHARED_ID`` in ``_shared_reads``:
#: both hold the word searched for, and bob's is an assistant's.
SHARED_TEXT = {"alice": "zeppelin hangar of alice", "bob": "zeppelin walrus of bob"}


def _shared_reads(app):
    """``_shared_world`` for the reads that join items: alice's item is a
    user's message, bob's (same ID) an assistant's, each linked into two
    conversations of its owner (once by reference)."""
    out = {}
    for owner, role in (("alice", "user"), ("bob", "assistant")):
        store = _store(app, owner)
        item = {"id": SHARED_ID, "type": "message", "role": role, "content": SHARED_TEXT[owner]}
        first = store.conversations.create(items=[item])
        second = store.conversations.create(items=[{"type": "item_reference", "id": SHARED_ID}])
        out[owner] = (store, first, second)
    return out


def test_search_finds_only_the_callers_item_when_another_owner_shares_its_id(app, backend_name):
    if backend_name == "oracle":
        pytest.skip("Oracle answers NotSupported for search (tests/contract/test_search.py)")
    world = _shared_reads(app)
    for owner, (store, first, second) in world.items():
        other = "bob" if owner == "alice" else "alice"
        role = "user" if owner == "alice" else "assistant"
        page = store.search("zeppelin")
        # one hit per link, newest conversation first, each the caller's own item
        assert [(h.conversation_id, h.item_id, h.role) for h in page.data] == [
            (second.id, SHARED_ID, role),
            (first.id, SHARED_ID, role),
        ], owner
        for hit in page.data:
            assert owner in hit.snippet and other not in hit.snippet, hit.snippet
            assert "<mark>zeppelin</mark>" in hit.snippet.lower(), hit.snippet
        assert store.search("walrus" if owner == "alice" else "hangar").data == []
        only = store.search("zeppelin", conversation=first.id).data
        assert [(h.item_id, h.role) for h in only] == [(SHARED_ID, role)]
        assert owner in only[0].snippet and other not in only[0].snippet


def test_usage_statistics_count_only_the_callers_item_when_another_owner_shares_its_id(app):
    world = _shared_reads(app)
    figures = {
        "alice": {"total": 2, "by_type": {"message": 2}, "by_role": {"user": 2}},
        "bob": {"total": 2, "by_type": {"message": 2}, "by_role": {"assistant": 2}},
    }
    for owner, (store, *_) in world.items():
        stats = store.stats()
        assert stats["items"] == figures[owner], owner
        assert stats["conversations"]["total"] == 2
    whole = get_state(app).backend.usage_stats(None, since=None)
    assert whole["items"] == {"total": 4, "by_type": {"message": 4}, "by_role": {"assistant": 2, "user": 2}}


def test_the_training_export_holds_only_the_callers_item_when_another_owner_shares_its_id(app):
    """Each owner's rated turn in a conversation, its input an item under the
    shared ID, and a second turn after it: every line holds its own owner's
    texts only."""
    for owner in ("alice", "bob"):
        store = _store(app, owner)
        conv = store.conversations.create()
        question = {"id": SHARED_ID, "type": "message", "role": "user", "content": f"question of {owner}"}
        first = store.responses.store(
            {
                "model": "m",
                "input": [question],
                "output": [{"type": "message", "role": "assistant", "content": f"answer to {owner}"}],
                "conversation": conv.id,
            }
        )
        second = store.responses.store(
            {
                "model": "m",
                "input": f"again, {owner}",
                "output": [{"type": "message", "role": "assistant", "content": f"again to {owner}"}],
                "conversation": conv.id,
                "previous_response_id": first.id,
            }
        )
        store.feedback.submit(first.id, "positive")
        store.feedback.submit(second.id, "negative")

    def lines(*args: str) -> list[list[tuple[str, str]]]:
        result = app.test_cli_runner().invoke(args=["smg-history", "export", "--format", "chat-jsonl", *args])
        assert result.exit_code == 0, result.output
        return sorted(
            [(m["role"], m["content"]) for m in json.loads(line)["messages"]] for line in result.stdout.splitlines()
        )

    def expected(owner: str) -> list[list[tuple[str, str]]]:
        one = [("user", f"question of {owner}"), ("assistant", f"answer to {owner}")]
        return [one, [*one, ("user", f"again, {owner}"), ("assistant", f"again to {owner}")]]

    for owner in ("alice", "bob"):
        assert lines("--owner", owner) == sorted(expected(owner)), owner
    assert lines() == sorted(expected("alice") + expected("bob"))


class _Recorder:
    """An in-process upstream that records each request and answers ``ok``."""

    def __init__(self) -> None:
        self.requests: list = []

    def stream(self, request):
        self.requests.append(request)
        yield "ok"
        yield Usage(input_tokens=1, output_tokens=1)
        yield Finish("stop")


def _input_texts(request) -> list[tuple[str, str]]:
    out = []
    for item in request.input:
        content = item.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        out.append((item.get("role"), text))
    return out


def test_the_responses_context_holds_only_the_callers_item_when_another_owner_shares_its_id(make_app):
    model = _Recorder()
    app = make_app(upstream=model)
    world = _shared_reads(app)
    for owner, (store, first, second) in world.items():
        role = "user" if owner == "alice" else "assistant"
        for conv in (first, second):
            model.requests.clear()
            store.responses.create(model="m", input=f"next, {owner}", conversation=conv.id)
            assert _input_texts(model.requests[0]) == [(role, SHARED_TEXT[owner]), ("user", f"next, {owner}")]
            model.requests.clear()
            store.responses.create(model="m", input="and then", conversation=conv.id)
            assert _input_texts(model.requests[0]) == [
                (role, SHARED_TEXT[owner]),
                ("user", f"next, {owner}"),
                ("assistant", "ok"),
                ("user", "and then"),
            ], owner


# -- equal timestamps ----------------------------------------------------------------
TIE_IDS = ["b", "d", "a", "e", "c"]  # inserted out of ID order on purpose


def _expect_ties(walk, asc: list[str]) -> None:
    for limit in (1, 2, 3, 100):
        assert walk(limit=limit, order="asc") == asc, limit
        assert walk(limit=limit, order="desc") == asc[::-1], limit


def test_conversations_with_equal_created_at_page_in_id_order(app, alice):
    base = float(int(time.time()) - 1000)
    records = [Conversation(f"conv_tie_{x}", "alice", base + 10, base + 10) for x in TIE_IDS]
    records.insert(2, Conversation("conv_tie_new", "alice", base + 20, base + 20))
    records.insert(0, Conversation("conv_tie_old", "alice", base, base))
    get_state(app).backend.import_records(records)
    asc = ["conv_tie_old", *sorted(f"conv_tie_{x}" for x in TIE_IDS), "conv_tie_new"]

    def walk(**kwargs):
        return _walk(alice.conversations.list, **kwargs)

    _expect_ties(walk, asc)
    page = alice.conversations.list(after="conv_tie_b", order="asc", limit=2)
    assert [c.id for c in page.data] == ["conv_tie_c", "conv_tie_d"] and page.has_more


def test_responses_with_equal_created_at_page_in_id_order(alice):
    at = float(int(time.time()) - 1000)
    for x in TIE_IDS:
        alice.responses.store({"id": f"resp_tie_{x}", "model": "m", "input": x, "created_at": at})
    alice.responses.store({"id": "resp_tie_0", "model": "m", "input": "older", "created_at": at - 1})
    alice.responses.store({"id": "resp_tie_z", "model": "m", "input": "newer", "created_at": at + 1})
    newest_first = ["resp_tie_z", *sorted((f"resp_tie_{x}" for x in TIE_IDS), reverse=True), "resp_tie_0"]
    for limit in (1, 2, 3, 100):
        assert _walk(alice.responses.list, limit=limit) == newest_first, limit
        assert _walk(alice.responses.list, limit=limit, model="m", since=at) == newest_first[:-1], limit
    assert {r.created_at for r in alice.responses.list(limit=100).data} == {at - 1, at, at + 1}


def test_feedback_with_equal_created_at_pages_in_id_order(app, alice):
    at = float(int(time.time()) - 1000)
    for x in TIE_IDS:
        alice.responses.store({"id": f"resp_fb_{x}", "model": "m", "input": x})
    get_state(app).backend.import_records(
        [Feedback(f"fb_tie_{x}", f"resp_fb_{x}", "alice", "positive", at, model="m") for x in TIE_IDS]
    )
    newest_first = sorted((f"fb_tie_{x}" for x in TIE_IDS), reverse=True)
    for limit in (1, 2, 3, 100):
        assert _walk(alice.feedback.list, limit=limit) == newest_first, limit
        assert _walk(alice.feedback.list, limit=limit, rating="positive") == newest_first, limit
    assert alice.feedback.stats()["by_rating"] == {"positive": 5, "negative": 0}


# -- chunk boundaries ----------------------------------------------------------------
def _conversations(store, n: int) -> list[str]:
    return [store.conversations.create(items=[{"role": "user", "content": str(k)}]).id for k in range(n)]


def _responses(store, n: int, feedback: bool = True) -> list[str]:
    ids = []
    for k in range(n):
        resp = store.responses.store({"model": "m", "input": str(k)})
        if feedback:
            store.feedback.submit(resp.id, "positive" if k % 2 else "negative")
        ids.append(resp.id)
    return ids


@pytest.mark.parametrize("extra", [0, 1], ids=["one-chunk", "chunk-plus-one"])
@pytest.mark.parametrize("what", ["conversations", "responses", "both"])
def test_erasure_at_an_exact_chunk_boundary(app, alice, bob, batch_sizes, what, extra):
    """An owner with exactly one erase chunk of records (and one more), of
    conversations, of responses, or split between the two."""
    chunk = batch_sizes["erase"]
    n_conv = {"conversations": chunk + extra, "responses": 0, "both": chunk // 2}[what]
    n_resp = {"conversations": 0, "responses": chunk + extra, "both": chunk - chunk // 2 + extra}[what]
    _conversations(alice, n_conv)
    _responses(alice, n_resp)
    kept = _conversations(bob, 2), _responses(bob, 2)
    counts = alice.erase_owner()
    assert counts == {"conversations": n_conv, "items": n_conv, "responses": n_resp, "feedback": n_resp}
    backend = get_state(app).backend
    assert list(backend.export("alice", None)) == []
    assert list(backend.owners()) == ["bob"]
    assert alice.erase_owner() == {"conversations": 0, "items": 0, "responses": 0, "feedback": 0}
    assert _walk(bob.conversations.list, order="asc") == kept[0]
    assert _walk(bob.responses.list)[::-1] == kept[1]


@pytest.mark.parametrize("extra", [0, 1], ids=["one-chunk", "chunk-plus-one"])
def test_export_and_import_at_an_exact_chunk_boundary(app, alice, batch_sizes, extra):
    """Exactly one export chunk of conversations, of one conversation's items
    and of responses and feedback (and one more of each) come out whole, in
    order, and go back in as they were."""
    backend = get_state(app).backend
    convs = _conversations(alice, batch_sizes["conversations"] + extra - 1)
    long = alice.conversations.create()
    n_items = batch_sizes["items"] + extra
    for start in range(0, n_items, 20):
        alice.items.add(long.id, [{"role": "user", "content": str(k)} for k in range(start, min(start + 20, n_items))])
    convs.append(long.id)
    resps = _responses(alice, batch_sizes["responses"] + extra)

    exported = list(backend.export("alice", None))
    by_kind: dict[str, list] = {}
    for record in exported:
        by_kind.setdefault(type(record).__name__, []).append(record)
    assert [c.id for c in by_kind["Conversation"]] == convs
    assert [_text(i) for i in by_kind["Item"][-n_items:]] == [str(k) for k in range(n_items)]
    assert len(by_kind["Item"]) == len(convs) - 1 + n_items
    assert [r.id for r in by_kind["Response"]] == resps
    assert sorted(f.response_id for f in by_kind["Feedback"]) == sorted(resps)
    assert _walk(alice.conversations.list, limit=100, order="asc") == convs
    assert _walk(alice.items.list, conversation_id=long.id, limit=100, order="asc") == [
        i.id for i in by_kind["Item"][-n_items:]
    ]
    assert _walk(alice.responses.list, limit=100)[::-1] == resps
    stats = backend.stats("alice")
    assert (stats["conversations"], stats["items"], stats["responses"]) == (
        len(convs),
        len(by_kind["Item"]),
        len(resps),
    )

    alice.erase_owner()
    counts = backend.import_records(exported)
    assert counts == {
        "conversations": len(convs),
        "items": len(by_kind["Item"]),
        "responses": len(resps),
        "feedback": len(resps),
    }
    assert list(backend.export("alice", None)) == exported


@pytest.mark.parametrize("extra", [0, 1], ids=["one-chunk", "chunk-plus-one"])
def test_purge_at_an_exact_chunk_boundary(app, alice, bob, batch_sizes, extra):
    n = batch_sizes["purge"] + extra
    old_convs = _conversations(alice, n)
    old_resps = _responses(alice, n, feedback=False)
    time.sleep(0.02)
    cutoff = time.time()
    time.sleep(0.02)
    kept_conv, kept_resp = _conversations(bob, 1), _responses(bob, 1, feedback=False)
    removed = get_state(app).backend.purge(before=cutoff, dry_run=False)
    assert {k: removed[k] for k in ("conversations", "items", "responses", "feedback")} == {
        "conversations": len(old_convs),
        "items": len(old_convs),
        "responses": len(old_resps),
        "feedback": 0,
    }
    assert alice.conversations.list().data == [] and alice.responses.list().data == []
    assert _walk(bob.conversations.list) == kept_conv and _walk(bob.responses.list) == kept_resp
