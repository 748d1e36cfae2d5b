"""``store_turn`` on files: the response's file is the turn's commit point.

A turn writes its item files and links, then the conversation's file with a
``turn`` saying what the conversation was before it, then the response's
file. A crash (here: the disk failing a rename) before that last file leaves
the conversation as it was; once it is there, the turn stays, also when the
response is later deleted or purged."""

from __future__ import annotations

import json
import os

import pytest

from flask_smg_history import CorruptRecord, NotFound, get_state
from flask_smg_history.backends.file import storage

from ..support.errors import missing, raises
from ..support.turns import build_turn, same_response, state_of, store_turn, texts_of
from ..support.writers import all_items
from .conftest import owner_dir


def _conversation_file(app, conversation_id: str):
    return owner_dir(app) / "conversations" / conversation_id / "conversation.json"


def _crash_on(monkeypatch, folder: str) -> None:
    """Every rename into a folder named ``folder`` fails, as a crash there would end the call."""
    original = storage.os.replace

    def replace(src, dst):
        if os.path.basename(os.path.dirname(dst)) == folder or os.path.basename(dst) == folder:
            raise OSError(5, "Input/output error")
        return original(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace)


@pytest.mark.parametrize("retention", [None, 30], ids=["kept forever", "retention"])
@pytest.mark.parametrize("crash_at", ["responses", "conversation.json"])
def test_a_crash_before_the_response_file_leaves_the_conversation_as_it_was(make_app, monkeypatch, crash_at, retention):
    app = make_app() if retention is None else make_app(SMG_HISTORY_RETENTION_DAYS=retention)
    alice = get_state(app).store_for("alice")
    conv = alice.conversations.create(items=[{"role": "user", "content": "before"}])
    before = state_of(alice, conv.id)
    assert (before[1] is None) is (retention is None)  # its expiry, which the undone turn must bring back
    response, items = build_turn("alice", conv.id, [f"q{n}" for n in range(25)], ["a"])
    _crash_on(monkeypatch, crash_at)
    with pytest.raises(OSError):
        store_turn(app, response, items, at=response.created_at + 5)
    monkeypatch.undo()
    on_disk = json.loads(_conversation_file(app, conv.id).read_text())
    assert ("turn" in on_disk) is (crash_at == "responses")  # the turn's file was written, then no response
    assert state_of(alice, conv.id) == before
    with raises(NotFound, message=missing("response", response.id)[0], param="response_id"):
        alice.responses.get(response.id)
    assert alice.responses.list().data == []
    assert texts_of(alice.items.recent(conv.id, limit=5)) == ["before"]

    store_turn(app, response, items)  # the same turn: its IDs are free, its positions taken again
    assert texts_of(all_items(alice, conv.id)) == ["before", *(f"q{n}" for n in range(25)), "a"]
    assert [i.position for i in all_items(alice, conv.id)] == list(range(27))
    same_response(alice.responses.get(response.id), response)
    alice.items.add(conv.id, [{"role": "user", "content": "next"}])
    assert "turn" not in json.loads(_conversation_file(app, conv.id).read_text())  # the next write settles it
    assert texts_of(alice.items.recent(conv.id, limit=2)) == ["a", "next"]


def test_a_committed_turn_keeps_its_items_when_its_response_is_deleted(app, alice):
    conv = alice.conversations.create()
    response, items = build_turn("alice", conv.id, ["q"], ["a"])
    store_turn(app, response, items)
    assert json.loads(_conversation_file(app, conv.id).read_text())["turn"]["response"] == response.id
    alice.responses.delete(response.id)
    assert texts_of(all_items(alice, conv.id)) == ["q", "a"]
    assert "turn" not in json.loads(_conversation_file(app, conv.id).read_text())
    assert alice.conversations.get(conv.id).updated_at == pytest.approx(response.created_at, abs=1e-3)


def test_a_committed_turn_keeps_its_items_when_its_response_is_purged(app, alice):
    conv = alice.conversations.create()
    response, items = build_turn("alice", conv.id, ["q"], ["a"])
    store_turn(app, response, items, at=response.created_at + 10)  # the conversation written after the response
    removed = get_state(app).backend.purge(before=response.created_at + 5, dry_run=False)
    assert (removed["responses"], removed["conversations"]) == (1, 0)
    assert texts_of(all_items(alice, conv.id)) == ["q", "a"]
    assert "turn" not in json.loads(_conversation_file(app, conv.id).read_text())


def test_a_hand_broken_turn_is_reported_for_its_conversation(app, alice):
    conv = alice.conversations.create()
    store_turn(app, *build_turn("alice", conv.id, ["q"], ["a"]))
    path = _conversation_file(app, conv.id)
    doc = json.loads(path.read_text())
    doc["turn"]["next_position"] = "two"
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptRecord, match=r"Conversation '.*' is stored in a form .* field 'turn' should be"):
        alice.conversations.get(conv.id)
