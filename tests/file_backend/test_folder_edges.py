"""The file backend's folder at its edges: pages over long runs of deleted
items (where a page stops opening files one by one and lists the folder),
a hand-broken ``owner.json`` or feedback file, the health probe, the sweep
after a purge, and imports of IDs that cannot name a file."""

from __future__ import annotations

import json
import os
import time

import pytest
from flask import Flask

from flask_smg_history import CorruptRecord, InvalidRequest, NotFound, SmgHistory, get_state
from flask_smg_history.backends.file import layout
from flask_smg_history.records import Conversation, Feedback, Item, Response

from ..support.errors import raises
from ..support.turns import build_turn, store_turn
from .conftest import owner_dir, root_of


def _chat(store, n: int):
    conv = store.conversations.create()
    for start in range(0, n, 20):
        store.items.add(conv.id, [{"role": "user", "content": str(k)} for k in range(start, min(n, start + 20))])
    return conv


def _texts(items) -> list[str]:
    return [i.payload["content"][0]["text"] for i in items]


@pytest.mark.parametrize("run", [64, 65, 66, 67, 68, 69])
def test_a_page_right_where_it_starts_listing_the_folder_misses_nothing(app, alice, run):
    """Items 0, then ``run`` deleted ones, then 3 more: pages of 1 and 2 (a
    walk of 2 and 3) cross the gap in both orders, the larger runs past the
    point where a walk lists the folder instead of opening files (64 gaps
    more than it looks for), the smaller ones before it, at each offset."""
    conv = _chat(alice, run + 4)
    folder = owner_dir(app) / "conversations" / conv.id / "items"
    for position in range(1, run + 1):  # a deleted item's file is gone, its link with it
        (folder / f"{position:012d}.json").unlink()
    kept = ["0", *(str(run + k) for k in (1, 2, 3))]
    for limit in (1, 2, 3):
        for order, expected in (("asc", kept), ("desc", kept[::-1])):
            pages, after = [], None
            while True:
                page = alice.items.list(conv.id, order=order, limit=limit, after=after)
                pages.append(_texts(page.data))
                if not page.has_more:
                    break
                after = page.last_id
            assert sum(pages, []) == expected, (limit, order, pages)
            assert all(len(p) == limit for p in pages[:-1])


def test_a_long_run_of_gaps_costs_a_listing_not_a_file_per_position(app, alice, monkeypatch):
    conv = _chat(alice, 1_002)
    folder = owner_dir(app) / "conversations" / conv.id / "items"
    for position in range(1, 1_001):
        (folder / f"{position:012d}.json").unlink()
    opened = []
    item = layout.OwnerFolder.item
    monkeypatch.setattr(layout.OwnerFolder, "item", lambda self, cid, p: opened.append(p) or item(self, cid, p))
    page = alice.items.list(conv.id, order="asc", limit=2)
    assert _texts(page.data) == ["0", "1001"] and not page.has_more
    assert 60 < len(opened) < 80  # the 66 positions probed in vain, then only the files that exist
    assert opened[-1] == 1001


@pytest.mark.parametrize(
    ("marker", "shown"),
    [('["alice"]', None), ('{"owner": 5}', None), ('{"owner": "mallory"}', None), ("{", "Expecting")],
)
def test_an_owner_json_that_does_not_name_its_folder_s_owner_is_reported(app, alice, marker, shown):
    alice.conversations.create()
    folder = owner_dir(app)
    (folder / "owner.json").write_text(marker)
    backend = get_state(app).backend
    with pytest.raises(CorruptRecord) as info:
        list(backend.owners())
    reason = shown or "it does not hold this folder's owner name"
    assert info.value.message.startswith(
        f"The owner folder '{folder.name}' is stored in a form this backend cannot read "
        f"(file {folder.name}/owner.json: {reason}"
    )
    assert info.value.message.endswith(
        "fix the file or restore an earlier version of it (owner.json.bak1 when backups are kept)."
    )


def test_a_folder_being_created_or_deleted_is_not_an_owner(app, alice):
    alice.conversations.create()
    (root_of(app) / "half_made.0000").mkdir()  # no owner.json yet
    (root_of(app) / "stray.txt").write_text("x")
    assert list(get_state(app).backend.owners()) == ["alice"]


def test_a_feedback_file_for_another_response_is_reported(app, alice):
    first, second = (alice.responses.store({"model": "m", "input": t}) for t in "ab")
    alice.feedback.submit(first.id, "positive")
    alice.feedback.submit(second.id, "negative")
    folder = owner_dir(app) / "feedback"
    (folder / f"{first.id}.json").write_text((folder / f"{second.id}.json").read_text())
    with pytest.raises(CorruptRecord) as info:
        alice.feedback.get(first.id)
    assert info.value.message.startswith(
        f"Feedback on response '{first.id}' is stored in a form this backend cannot read "
        f"(file {owner_dir(app).name}/feedback/{first.id}.json: its 'response_id' is '{second.id}');"
    )
    assert alice.feedback.get(second.id).rating == "negative"


def test_health_writes_and_removes_a_probe_and_reports_the_folder(make_app, monkeypatch):
    app = make_app(SMG_HISTORY_FILE_BACKUPS=2)
    backend = get_state(app).backend
    written = []
    write = backend.folder.write
    monkeypatch.setattr(backend.folder, "write", lambda path, doc: written.append((path, doc)) or write(path, doc))
    report = backend.health()
    assert [(path.name, sorted(doc)) for path, doc in written] == [(".health.json", ["probe"])]
    assert isinstance(written[0][1]["probe"], float) and abs(written[0][1]["probe"] - time.time()) < 60
    assert not [name for name in os.listdir(root_of(app)) if name.startswith(".health")]
    assert sorted(report) == ["backups", "free_bytes", "path", "writable"]
    assert (report["path"], report["writable"], report["backups"]) == (str(root_of(app)), True, 2)
    assert report["free_bytes"] > 0


def test_a_purge_drops_the_links_that_no_longer_hold_and_a_crashed_removal(app, alice):
    """An item linked into a kept and a purged conversation stays, its link
    file naming only the kept one; a conversation folder a crash left
    renamed away (``.<id>.<hex>.deleted``) is removed by the next purge."""
    old = alice.conversations.create(items=[{"id": "msg_shared", "role": "user", "content": "s"}])
    kept = alice.conversations.create(items=[{"type": "item_reference", "id": "msg_shared"}])
    folder = owner_dir(app)
    leftover = folder / "conversations" / ".conv_gone.0badc0de.deleted"
    (leftover / "items").mkdir(parents=True)
    (leftover / "items" / "000000000000.json").write_text("{}")
    alice.conversations.update(kept.id, metadata={"k": "v"})  # newer than the cut-off below
    cut = alice.conversations.get(kept.id).updated_at
    backend = get_state(app).backend
    counts = backend.purge(before=cut, dry_run=False)
    assert counts["conversations"] == 1 and counts["items"] == 0
    links = json.loads((folder / "links" / "msg_shared.json").read_text())
    assert links == {"item": "msg_shared", "conversations": {kept.id: 0}}
    assert not leftover.exists()
    assert [i.id for i in alice.items.list(kept.id).data] == ["msg_shared"]
    with raises(NotFound, message=f"Conversation with id '{old.id}' not found.", param="conversation_id"):
        alice.conversations.get(old.id)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (Conversation("conv x", "alice", 1.0, 1.0), "Invalid 'id': 'conv x' cannot name a record here."),
        (Response("resp/../x", "alice", 1.0), "Invalid 'id': 'resp/../x' cannot name a record here."),
        (Feedback("fb_1", "resp x", "alice", "positive", 1.0), "Invalid 'id': 'fb_1' cannot name a record here."),
        (Feedback("fb 1", "resp_1", "alice", "positive", 1.0), "Invalid 'id': 'fb 1' cannot name a record here."),
    ],
)
def test_an_import_of_an_id_that_cannot_name_a_file_is_refused(app, alice, record, message):
    backend = get_state(app).backend
    with raises(InvalidRequest, message=message, param="id"):
        backend.import_records([record])
    assert list(backend.export(None, None)) == []


def test_an_import_of_an_item_id_that_cannot_name_a_file_is_refused_and_keeps_the_conversation(app, alice):
    conv = alice.conversations.create(items=[{"role": "user", "content": "a"}])
    backend = get_state(app).backend
    bad = Item("msg x", conv.id, "message", {"id": "msg x", "type": "message"}, 1.0, "user", None, 5)
    with raises(InvalidRequest, message="Invalid 'id': 'msg x' cannot name an item.", param="id"):
        backend.import_records([bad])
    assert _texts(alice.items.list(conv.id).data) == ["a"]
    assert alice.items.add(conv.id, [{"role": "user", "content": "b"}])[0].position == 1


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"item": "msg_a"},
        {"item": "msg_a", "conversations": []},
        {"item": "msg_a", "conversations": {"conv_x": "0"}},
        {"item": "msg_a", "conversations": {"conv_x": True}},
        {"item": "msg_a", "conversations": {"conv_x": 1.0}},
    ],
)
def test_a_broken_links_file_is_reported_naming_the_item(app, alice, doc):
    conv = alice.conversations.create(items=[{"id": "msg_a", "role": "user", "content": "a"}])
    path = owner_dir(app) / "links" / "msg_a.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptRecord) as info:
        alice.items.get(conv.id, "msg_a")
    assert info.value.message.startswith(
        f"The links of item 'msg_a' is stored in a form this backend cannot read (file {owner_dir(app).name}"
        '/links/msg_a.json: expected {"item": ..., "conversations": {conversation ID: position}});'
    )


def test_a_link_to_a_position_that_holds_another_item_is_not_followed(app, alice):
    conv = alice.conversations.create(
        items=[{"id": "msg_a", "role": "user", "content": "a"}, {"id": "msg_b", "role": "user", "content": "b"}]
    )
    path = owner_dir(app) / "links" / "msg_a.json"
    path.write_text(json.dumps({"item": "msg_a", "conversations": {conv.id: 1}}))  # msg_b's place
    with raises(NotFound, message="Item with id 'msg_a' not found.", param="item_id"):
        alice.items.get(conv.id, "msg_a")
    other = alice.conversations.create()
    with raises(NotFound, message="Item with id 'msg_a' not found.", param="item_id"):
        alice.items.add(other.id, [{"type": "item_reference", "id": "msg_a"}])


def test_an_item_file_past_the_committed_positions_is_never_read(app, alice):
    """A crash after an item's file but before its conversation's file
    leaves a file at ``next_position``: no listing, export or search sees it."""
    conv = alice.conversations.create(items=[{"role": "user", "content": "kept"}])
    items = owner_dir(app) / "conversations" / conv.id / "items"
    doc = json.loads((items / "000000000000.json").read_text())
    doc["id"] = doc["payload"]["id"] = "msg_uncommitted"
    doc["payload"]["content"][0]["text"] = "uncommitted"
    (items / "000000000001.json").write_text(json.dumps(doc))
    backend = get_state(app).backend
    exported = [r for r in backend.export(None, None) if isinstance(r, Item)]
    assert [r.payload["content"][0]["text"] for r in exported] == ["kept"]
    assert _texts(alice.items.list(conv.id).data) == ["kept"]
    assert alice.search("uncommitted").data == []


def test_a_response_file_holding_another_response_is_reported(app, alice):
    first, second = (alice.responses.store({"model": "m", "input": t}) for t in "ab")
    folder = owner_dir(app) / "responses"
    (folder / f"{first.id}.json").write_text((folder / f"{second.id}.json").read_text())
    with pytest.raises(CorruptRecord) as info:
        alice.responses.get(first.id)
    assert f"its 'id' is '{second.id}', not '{first.id}' as its file name says" in info.value.message


def test_a_turn_s_response_outlives_its_conversation(app, alice):
    conv = alice.conversations.create()
    response, items = build_turn("alice", conv.id, ["q"], ["a"])
    store_turn(app, response, items)
    alice.conversations.delete(conv.id)
    assert alice.responses.get(response.id).id == response.id
    alice.responses.delete(response.id)
    with raises(NotFound, message=f"Response with id '{response.id}' not found.", param="response_id"):
        alice.responses.get(response.id)


def test_deleting_an_item_from_one_conversation_leaves_its_link_to_the_other(app, alice):
    first = alice.conversations.create(items=[{"id": "msg_both", "role": "user", "content": "x"}])
    second = alice.conversations.create(items=[{"type": "item_reference", "id": "msg_both"}])
    alice.items.delete(first.id, "msg_both")
    links = json.loads((owner_dir(app) / "links" / "msg_both.json").read_text())
    assert links == {"item": "msg_both", "conversations": {second.id: 0}}
    alice.items.delete(second.id, "msg_both")
    assert not (owner_dir(app) / "links" / "msg_both.json").exists()


def test_the_default_folder_is_reported_as_the_setting_in_use(tmp_path, make_app):
    backend = get_state(make_app()).backend
    assert backend.settings_in_use() == {}  # the tests name the folder
    plain = Flask("plain", instance_path=str(tmp_path / "instance"))
    plain.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(plain)
    assert get_state(plain).backend.settings_in_use() == {
        "SMG_HISTORY_FILE_PATH": str(tmp_path / "instance" / "smg_history_files")
    }
