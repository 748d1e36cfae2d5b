"""What the files are: where they go by default and by setting, readable
JSON, owner names that cannot escape the folder, backups, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from flask import Flask

from flask_smg_history import HistoryUnavailable, SmgHistory, get_state
from flask_smg_history.backends.file import storage

from .conftest import owner_dir, root_of


def test_with_only_the_backend_set_the_files_go_under_the_instance_folder(tmp_path):
    app = Flask("plain", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(app)
    conv = get_state(app).store_for("alice").conversations.create(items=[{"role": "user", "content": "hi"}])
    root = tmp_path / "instance" / "smg_history_files"
    assert root_of(app) == root
    assert (owner_dir(app) / "conversations" / conv.id / "conversation.json").is_file()


def test_the_setting_names_another_folder_also_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SMG_HISTORY_FILE_PATH", str(tmp_path / "elsewhere"))
    app = Flask("env", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(app)
    get_state(app).store_for("alice").conversations.create()
    assert root_of(app) == tmp_path / "elsewhere" and (tmp_path / "elsewhere").is_dir()
    assert not (tmp_path / "instance").exists()


def test_files_are_pretty_printed_json_a_person_can_read(app, alice):
    conv = alice.conversations.create(metadata={"title": "Support"}, items=[{"role": "user", "content": "Héllo"}])
    folder = owner_dir(app) / "conversations" / conv.id
    text = (folder / "conversation.json").read_text()
    assert text.startswith('{\n  "record": "conversation",\n  "id": "' + conv.id + '"')
    assert '"title": "Support"' in text and '"next_position": 1' in text and text.endswith("}\n")
    (item_file,) = (folder / "items").iterdir()
    assert item_file.name == "000000000000.json"
    item = json.loads(item_file.read_text())
    assert item["payload"]["content"] == [{"type": "input_text", "text": "Héllo"}]
    assert "Héllo" in item_file.read_text()  # not escaped
    assert json.loads((owner_dir(app) / "owner.json").read_text()) == {"owner": "alice"}


@pytest.mark.parametrize("owner", ["../escape", "/", "a/b", "..", ".", "x\x00y", "Alice", "alice"])
def test_owner_names_never_leave_the_folder(app, owner):
    store = get_state(app).store_for(owner)
    conv = store.conversations.create(items=[{"role": "user", "content": owner}])
    root = root_of(app)
    assert set(os.listdir(root.parent)) <= {root.name, "instance0"}  # nothing written beside the folder
    folder = owner_dir(app, owner)
    assert sorted(os.listdir(root)) == [".locks", folder.name]
    assert folder.parent == root and folder.name.endswith(storage.owner_key(owner))
    assert store.items.list(conv.id).data[0].payload["content"][0]["text"] == owner
    assert list(get_state(app).backend.owners()) == [owner]


def test_backups_keep_the_versions_before_each_write(make_app):
    app = make_app(SMG_HISTORY_FILE_BACKUPS=2)
    alice = get_state(app).store_for("alice")
    conv = alice.conversations.create(metadata={"v": "0"})
    for version in "123":
        alice.conversations.update(conv.id, metadata={"v": version})
    path = owner_dir(app) / "conversations" / conv.id / "conversation.json"

    def version(p):
        return json.loads(p.read_text())["metadata"]["v"]

    assert version(path) == "3"
    assert [version(storage.backup_path(path, n)) for n in (1, 2)] == ["2", "1"]
    assert not storage.backup_path(path, 3).exists()
    assert alice.conversations.get(conv.id).metadata == {"v": "3"}  # backups are not records
    alice.conversations.delete(conv.id)
    assert not path.parent.exists()


def test_no_backups_by_default(app, alice):
    conv = alice.conversations.create()
    alice.conversations.update(conv.id, metadata={"v": "1"})
    names = os.listdir(owner_dir(app) / "conversations" / conv.id)
    assert sorted(names) == ["conversation.json"]


def test_a_crash_between_writing_and_renaming_leaves_the_old_file_whole(app, alice, monkeypatch):
    conv = alice.conversations.create(metadata={"v": "old"})
    path = owner_dir(app) / "conversations" / conv.id / "conversation.json"
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.os, "replace", crash)
    with pytest.raises(HistoryUnavailable, match=r"unavailable \(OSError\)"):
        alice.conversations.update(conv.id, metadata={"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["conversation.json"]  # no temporary file left
    assert alice.conversations.get(conv.id).metadata == {"v": "old"}


@pytest.mark.parametrize("backups", [0, 2])
def test_an_atomic_replace_fsyncs_the_whole_new_file_before_renaming_it_and_the_folder_after(
    make_app, monkeypatch, backups
):
    """The order that makes a write survive a crash: the temporary file's
    data reaches the disk (``fsync`` of its descriptor, with every byte
    written) before it is renamed over the old file, and the folder is
    fsynced after the rename, so the rename itself is on disk. Renaming
    first can leave, after a crash, the name pointing at an empty file."""
    app = make_app(SMG_HISTORY_FILE_BACKUPS=backups)
    alice = get_state(app).store_for("alice")
    conv = alice.conversations.create(metadata={"v": "old"})
    path = owner_dir(app) / "conversations" / conv.id / "conversation.json"
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", info.st_ino, info.st_size, os.path.isdir(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    alice.conversations.update(conv.id, metadata={"v": "new"})
    monkeypatch.undo()

    new = os.stat(path)
    folder = os.stat(path.parent).st_ino
    renames = [n for n, e in enumerate(events) if e[0] == "replace" and e[2] == os.fspath(path)]
    assert len(renames) == 1, events
    (rename,) = renames
    assert events[rename][1] == new.st_ino  # the temporary file became the file
    synced_whole = [n for n, e in enumerate(events) if e == ("fsync", new.st_ino, new.st_size, False)]
    assert synced_whole and synced_whole[0] < rename, events
    assert [e for e in events[rename + 1 :] if e[0] == "fsync" and e[3] and e[1] == folder], events
    assert json.loads(path.read_text())["metadata"] == {"v": "new"}
    if backups:
        assert json.loads(storage.backup_path(path, 1).read_text())["metadata"] == {"v": "old"}


def test_items_written_before_a_crash_but_never_committed_are_invisible_and_replaced(app, alice):
    """An append writes its item files, then the conversation's file; a
    crash between them leaves files beyond ``next_position``, which no read
    shows and the next append overwrites."""
    conv = alice.conversations.create(items=[{"role": "user", "content": "kept"}])
    items = owner_dir(app) / "conversations" / conv.id / "items"
    orphan = json.loads((items / "000000000000.json").read_text())
    orphan.update(id="msg_orphan", payload={**orphan["payload"], "id": "msg_orphan"})
    (items / "000000000001.json").write_text(json.dumps(orphan))
    links = owner_dir(app) / "links"
    (links / "msg_orphan.json").write_text(json.dumps({"item": "msg_orphan", "conversations": {conv.id: 1}}))
    assert [i.id for i in alice.items.list(conv.id).data] == [alice.items.list(conv.id).data[0].id]
    assert len(alice.items.recent(conv.id, limit=5)) == 1
    (added,) = alice.items.add(conv.id, [{"id": "msg_orphan", "role": "user", "content": "new"}])  # not "exists"
    assert added.position == 1
    assert [i.payload["content"][0]["text"] for i in alice.items.list(conv.id, order="asc").data] == ["kept", "new"]


def test_an_unusable_folder_is_a_503_naming_the_setting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = Flask("blocked", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SMG_HISTORY_BACKEND="file", SMG_HISTORY_FILE_PATH=str(blocker / "history"), SMG_HISTORY_API_KEYS={"sk": "alice"}
    )
    SmgHistory(app)
    client = app.test_client()
    for resp in (
        client.post("/v1/conversations", json={}, headers={"Authorization": "Bearer sk"}),
        client.get("/v1/conversations", headers={"Authorization": "Bearer sk"}),
    ):
        assert resp.status_code == 503, resp.get_json()
        error = resp.get_json()["error"]
        assert error["type"] == "server_error" and "NotADirectoryError" in error["message"]
        assert "a part of the folder's path is a file" in error["message"]
        assert "SMG_HISTORY_FILE_PATH" in error["message"] and str(blocker) not in error["message"]
    result = app.test_cli_runner().invoke(args=["smg-history", "check"])
    assert result.exit_code != 0 and "NotADirectoryError" in result.output
    blocker.unlink()  # the folder can be made: the next request succeeds without a restart
    assert client.post("/v1/conversations", json={}, headers={"Authorization": "Bearer sk"}).status_code == 200


@pytest.mark.parametrize(
    ("number", "words"),
    [(28, "the disk is full"), (30, "read-only file system"), (13, "not readable and writable")],
)
def test_the_outage_hint_says_what_is_wrong_with_the_disk(app, number, words):
    hint = get_state(app).backend.outage_hint(OSError(number, os.strerror(number)))
    assert words in hint and "SMG_HISTORY_FILE_PATH" in hint
    assert get_state(app).backend.outage_hint(ValueError("x")) is None


def test_health_reports_the_folder_free_space_and_that_it_is_writable(app):
    result = app.test_cli_runner().invoke(args=["smg-history", "check"])
    assert result.exit_code == 0, result.output
    health = get_state(app).backend.health()
    assert health["path"] == str(root_of(app)) and health["writable"] is True and health["free_bytes"] > 0
    assert str(root_of(app)) in result.output


def test_pages_step_over_a_long_run_of_deleted_items(app, alice):
    """Pages open item files position by position and list the folder
    instead after a run of gaps: both ways give the same pages."""
    conv = alice.conversations.create()
    for start in range(0, 160, 20):
        alice.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(start, start + 20)])
    ids = [i.id for i in alice.items.list(conv.id, order="asc", limit=100).data]
    ids += [i.id for i in alice.items.list(conv.id, order="asc", limit=100, after=ids[-1]).data]
    for item_id in ids[5:150]:  # more gaps than a page plus the probe budget
        alice.items.delete(conv.id, item_id)
    kept = [str(n) for n in (*range(5), *range(150, 160))]

    def texts(items):
        return [i.payload["content"][0]["text"] for i in items]

    assert texts(alice.items.recent(conv.id, limit=10)) == kept[-10:]
    assert texts(alice.items.list(conv.id, order="desc", limit=12).data) == kept[::-1][:12]
    first = alice.items.list(conv.id, order="asc", limit=3)
    rest = alice.items.list(conv.id, order="asc", limit=100, after=first.last_id)
    assert texts(first.data + rest.data) == kept and not rest.has_more
    page = alice.items.list(conv.id, order="desc", limit=10, after=ids[151])
    assert texts(page.data) == ["150", "4", "3", "2", "1", "0"] and not page.has_more


@pytest.mark.parametrize(
    ("owner", "slug"),
    [
        ("alice", "alice"),
        ("Ann Lee", "Ann_Lee"),
        ("../x", "x"),
        ("a//b  c", "a_b_c"),
        ("__x-y__", "x-y"),
        ("/", "owner"),
        ("Émile", "mile"),
        ("a" * 45, "a" * 40),
        ("日本", "owner"),
    ],
)
def test_an_owner_folder_is_named_by_a_slug_and_the_name_s_hash(app, owner, slug):
    """The spelling docs/backends/file.md gives, so an operator finds an
    owner's folder: the slug, a dot, the first 16 hex digits of SHA-256."""
    get_state(app).store_for(owner).conversations.create()
    digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
    assert owner_dir(app, owner).name == f"{slug}.{digest}"


def test_deleting_a_record_deletes_its_backups(make_app):
    app = make_app(SMG_HISTORY_FILE_BACKUPS=3)
    alice = get_state(app).store_for("alice")
    conv = alice.conversations.create(items=[{"role": "user", "content": "hi"}])
    resp = alice.responses.store({"model": "m", "input": "hi"})
    kept = alice.responses.store({"model": "m", "input": "kept"})
    for rating in ("positive", "negative", "positive", "negative", "positive"):  # four rewrites: 3 backups kept
        alice.feedback.submit(resp.id, rating)
        alice.feedback.submit(kept.id, rating)
    folder = owner_dir(app) / "feedback"
    backups = [f"{resp.id}.json{storage.BACKUP_SUFFIX}{n}" for n in (1, 2, 3)]
    assert set(backups) <= set(os.listdir(folder))
    alice.feedback.delete(resp.id)
    assert sorted(os.listdir(folder)) == sorted(
        [f"{kept.id}.json"] + [f"{kept.id}.json{storage.BACKUP_SUFFIX}{n}" for n in (1, 2, 3)]
    )
    alice.feedback.submit(kept.id, "negative")
    alice.responses.delete(kept.id)
    assert os.listdir(folder) == [] and not (owner_dir(app) / "responses" / f"{kept.id}.json").exists()
    assert alice.conversations.get(conv.id).id == conv.id
