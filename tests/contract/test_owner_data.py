"""Contract: responses by user, erasure of one owner, and the operations the
CLI is built on (owners, stats, purge, export and import)."""

import time

import pytest

from flask_smg_history import Conversation, Feedback, Item, Response, get_state


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


def test_export_import_roundtrip_is_exact_and_idempotent(make_app):
    source = make_app()
    store = get_state(source).store_for("alice")
    convs = _fill(store)
    store.items.add(convs[1].id, [{"type": "item_reference", "id": store.items.list(convs[0].id).data[0].id}])
    exported = list(get_state(source).backend.export(None, None))
    kinds = [type(r).__name__ for r in exported]
    assert kinds.count("Conversation") == 3 and kinds.count("Item") == 13
    assert kinds.index("Response") > max(i for i, k in enumerate(kinds) if k == "Item")
    # a conversation comes right before its items
    assert isinstance(exported[0], Conversation) and all(isinstance(r, Item) for r in exported[1:5])

    target_backend = get_state(source).backend
    store.erase_owner()
    assert list(target_backend.export(None, None)) == []
    counts = target_backend.import_records(exported)
    assert counts == {"conversations": 3, "items": 13, "responses": 3, "feedback": 3}
    again = target_backend.import_records(exported)
    assert again == counts
    assert list(target_backend.export(None, None)) == exported
    conv = store.conversations.get(convs[0].id)
    assert conv.created_at == pytest.approx(convs[0].created_at, abs=1e-3)
    added = store.items.add(conv.id, [{"role": "user", "content": "after import"}])
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
