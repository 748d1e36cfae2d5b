"""A broken or hand-edited file: a clear error for that record naming the
file (HTTP 503, never a 500), never skipped by a listing or an export, never
overwritten by a write; the other records stay readable."""

from __future__ import annotations

import json

import pytest

from flask_smg_history import CorruptRecord, get_state

from .conftest import owner_dir


@pytest.fixture
def api(make_app):
    app = make_app(SMG_HISTORY_API_KEYS={"sk-alice": "alice"})
    return app, app.test_client(), {"Authorization": "Bearer sk-alice"}


def _conv_file(app, conv_id):
    return owner_dir(app) / "conversations" / conv_id / "conversation.json"


def test_broken_json_is_an_error_naming_the_file_over_http(api):
    app, client, auth = api
    alice = get_state(app).store_for("alice")
    good = alice.conversations.create(metadata={"n": "good"})
    broken = alice.conversations.create(metadata={"n": "broken"}, items=[{"role": "user", "content": "x"}])
    path = _conv_file(app, broken.id)
    path.write_text(path.read_text()[:-10])  # a truncated hand edit
    shown = f"{owner_dir(app).name}/conversations/{broken.id}/conversation.json"
    for resp in (
        client.get(f"/v1/conversations/{broken.id}", headers=auth),
        client.get(f"/v1/conversations/{broken.id}/items", headers=auth),
        client.post(
            f"/v1/conversations/{broken.id}/items", json={"items": [{"role": "user", "content": "y"}]}, headers=auth
        ),
        client.get("/v1/conversations", headers=auth),  # not skipped: that would be a silent loss
    ):
        assert resp.status_code == 503, resp.get_json()
        error = resp.get_json()["error"]
        assert error["type"] == "server_error"
        assert (
            f"Conversation '{broken.id}' is stored in a form this backend cannot read (file {shown}:"
            in error["message"]
        )
        assert "fix the file or restore an earlier version" in error["message"]
    assert str(owner_dir(app).parent) not in error["message"]  # where the server keeps data is not told
    assert client.get(f"/v1/conversations/{good.id}", headers=auth).status_code == 200


def test_a_write_never_replaces_a_broken_file(app, alice):
    conv = alice.conversations.create(metadata={"k": "v"})
    path = _conv_file(app, conv.id)
    path.write_text("{ hand edited, broken")
    with pytest.raises(CorruptRecord):
        alice.conversations.update(conv.id, metadata={"k": "w"})
    with pytest.raises(CorruptRecord):
        alice.conversations.delete(conv.id)
    assert path.read_text() == "{ hand edited, broken"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"created_at": "yesterday"}, "field 'created_at' should be a number, found 'yesterday'"),
        ({"metadata": {"k": 1}}, "field 'metadata' should be an object of strings"),
        ({"next_position": -1}, "field 'next_position' should be a whole number of 0 or more"),
        ({"id": "conv_other"}, "its 'id' is 'conv_other', not"),
        ({"colour": "red"}, "unknown conversation fields: colour"),
        ({"record": "item"}, "'record' should be 'conversation', found 'item'"),
        ({"owner": "mallory"}, "field 'owner' is set by where the file is"),
    ],
)
def test_a_hand_edited_field_is_named(app, alice, edit, reason):
    conv = alice.conversations.create()
    path = _conv_file(app, conv.id)
    doc = json.loads(path.read_text())
    doc.update(edit)
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(CorruptRecord) as info:
        alice.conversations.get(conv.id)
    assert reason in info.value.message and "conversation.json" in info.value.message


def test_a_broken_item_file_names_its_position_and_file(app, alice):
    conv = alice.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(3)])
    item_file = owner_dir(app) / "conversations" / conv.id / "items" / "000000000001.json"
    doc = json.loads(item_file.read_text())
    del doc["payload"]
    item_file.write_text(json.dumps(doc))
    expected = f"The item at position 1 of conversation '{conv.id}' is stored in a form this backend cannot read"
    with pytest.raises(CorruptRecord, match="incomplete item") as info:
        alice.items.list(conv.id)
    assert expected in info.value.message and "items/000000000001.json" in info.value.message
    assert [i.payload["content"][0]["text"] for i in alice.items.recent(conv.id, limit=1)] == ["2"]


def test_broken_response_and_feedback_files(app, alice):
    resp = alice.responses.store({"model": "m", "input": "hi"})
    alice.feedback.submit(resp.id, "positive")
    folder = owner_dir(app)
    (folder / "feedback" / f"{resp.id}.json").write_text("[]")
    with pytest.raises(CorruptRecord, match=f"Feedback on response '{resp.id}' .*feedback/{resp.id}.json"):
        alice.feedback.get(resp.id)
    (folder / "responses" / f"{resp.id}.json").write_text("")
    with pytest.raises(CorruptRecord, match=f"Response '{resp.id}' .*responses/{resp.id}.json"):
        alice.responses.list()


def test_export_and_copy_stop_at_a_broken_file_instead_of_losing_it(app, alice, tmp_path):
    conv = alice.conversations.create(items=[{"role": "user", "content": "x"}])
    alice.conversations.create()
    _conv_file(app, conv.id).write_text("{")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["smg-history", "export", "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code != 0 and f"Conversation '{conv.id}'" in result.output
    copy = runner.invoke(
        args=["smg-history", "copy", "--to-backend", "sqlite", "--to-url", str(tmp_path / "t.sqlite3")]
        + ["--set", "SMG_HISTORY_CREATE_TABLES=true"]
    )
    assert copy.exit_code != 0 and "conversation.json" in copy.output


def test_erasing_an_owner_removes_broken_files_too(app, alice):
    conv = alice.conversations.create(items=[{"role": "user", "content": "x"}])
    _conv_file(app, conv.id).write_text("{")
    (owner_dir(app) / "conversations" / conv.id / "items" / "000000000000.json").write_text("{")
    assert alice.erase_owner() == {"conversations": 1, "items": 1, "responses": 0, "feedback": 0}
    assert list(get_state(app).backend.owners()) == []
