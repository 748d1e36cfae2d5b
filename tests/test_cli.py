"""``flask smg-history`` commands, on every backend."""

from __future__ import annotations

import json

import pytest

from flask_smg_history import cli, get_state, portable
from flask_smg_history.backends.memory import MemoryBackend
from flask_smg_history.config import load_settings

from .contract.test_owner_data import EXTRA, FULL_RESPONSE, _fill


@pytest.fixture
def filled(app):
    state = get_state(app)
    _fill(state.store_for("alice"), n_conv=3, n_items=4)
    _fill(state.store_for("bob"), n_conv=1, n_items=2, model="m2")
    return app


def _run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=["smg-history", *args], input=input)


def test_check_prints_backend_masked_settings_and_counts(make_app):
    app = make_app(SMG_HISTORY_API_KEYS={"sk-secret-key": "alice"})
    result = _run(app, "check")
    assert result.exit_code == 0, result.output
    assert f"backend: {app.extensions['smg_history'].backend.name}" in result.output
    assert "sk-secret-key" not in result.output and "'***'" in result.output
    assert "records: 0 conversations" in result.output and "status: ok" in result.output


def test_stats(filled):
    result = _run(filled, "stats")
    assert result.exit_code == 0
    assert "conversations=4 items=14 responses=4 feedback_positive=3 feedback_negative=1" in result.output
    by_owner = _run(filled, "stats", "--by-owner").output.splitlines()
    assert by_owner[0].startswith("alice: conversations=3 items=12") and by_owner[1].startswith("bob: conversations=1")
    assert "conversations=1 items=2" in _run(filled, "stats", "--owner", "bob").output


def test_export_import_roundtrip(filled, tmp_path, make_app):
    alice = get_state(filled).store_for("alice")
    full = alice.responses.store(FULL_RESPONSE)
    out = tmp_path / "all.jsonl"
    result = _run(filled, "export", "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 4 + 14 + 5 + 4
    original = [portable.loads(line) for line in lines]
    assert "export: 27 records done" in result.stderr
    (line,) = [json.loads(line) for line in lines if full.id in line]
    assert line["extra"] == EXTRA and line["usage"] == FULL_RESPONSE["usage"]  # as given, not as exported

    bob_only = _run(filled, "export", "--owner", "bob").stdout.splitlines()
    assert {json.loads(line).get("owner", "bob") for line in bob_only} == {"bob"} and len(bob_only) == 1 + 2 + 1 + 1

    _run(filled, "erase", "--owner", "alice", "--yes")
    _run(filled, "erase", "--owner", "bob", "--yes")
    assert "conversations=0" in _run(filled, "stats").output
    for _ in range(2):  # idempotent
        result = _run(filled, "import", str(out))
        assert result.exit_code == 0, result.output
        assert "imported: conversations=4 feedback=4 items=14 responses=5" in result.output
    again = _run(filled, "export").stdout.splitlines()
    assert [portable.loads(line) for line in again] == original
    back = alice.responses.get(full.id)
    assert (back.extra, back.metadata, back.safety_identifier) == (EXTRA, {"k": "v"}, "user-1")
    assert (back.input, back.output) == (full.input, full.output)


def test_import_reports_the_bad_line(app, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record": "conversation", "id": "c1"}\n')
    result = _run(app, "import", str(bad))
    assert result.exit_code != 0 and "line 1" in result.output and "incomplete conversation" in result.output
    bad.write_text("not json\n")
    assert "line 1" in _run(app, "import", str(bad)).output


def test_purge(filled):
    result = _run(filled, "purge", "--older-than", "0", "--dry-run")
    assert result.exit_code == 0 and "would remove: conversations=4" in result.output
    assert "conversations=4" in _run(filled, "stats").output
    assert "removed: conversations=4" in _run(filled, "purge", "--older-than", "0").output
    assert "conversations=0 items=0 responses=0" in _run(filled, "stats").output


def test_erase_owner(filled):
    result = _run(filled, "erase", "--owner", "alice", "--yes")
    assert result.exit_code == 0
    assert "erased: conversations=3 items=12 responses=3 feedback=3" in result.output
    assert "erased: conversations=0 items=0" in _run(filled, "erase", "--owner", "alice", "--yes").output
    assert "conversations=1 items=2" in _run(filled, "stats").output
    assert _run(filled, "erase", "--owner", "bob", input="n\n").exit_code != 0
    assert "conversations=1" in _run(filled, "stats").output


class _Crashing(MemoryBackend):
    """A target that fails on its third batch, as a crash mid-copy would."""

    crash_on: int | None = 3

    def import_records(self, records):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.crash_on:
            raise ConnectionError("target went away")
        return super().import_records(records)


def test_copy_is_resumable_and_verified(filled, tmp_path, monkeypatch):
    target = _Crashing("memory", load_settings({}, environ={}), filled)
    monkeypatch.setattr(cli, "_target_backend", lambda name, url, settings: target)
    checkpoint = tmp_path / "copy.json"
    args = ("copy", "--to-backend", "memory", "--checkpoint", str(checkpoint), "--batch-size", "5")
    first = _run(filled, *args)
    assert first.exit_code != 0 and "copy stopped after 10 records" in first.output
    assert json.loads(checkpoint.read_text()) == {"copied": 10}
    second = _run(filled, *args)
    assert second.exit_code == 0, second.output
    assert "resuming after 10 records" in second.stderr
    assert "verified: counts match" in second.output and not checkpoint.exists()
    assert target.calls == 3 + 4  # two batches, the crash, then the remaining 16 records in four
    source = get_state(filled).backend
    assert list(target.export(None, None)) == list(source.export(None, None))


def test_check_prints_the_sqlite_file_in_use(tmp_path):
    """Left unset, SMG_HISTORY_SQLITE_PATH is a file in the instance folder:
    ``check`` prints that file, not ``None``."""
    from flask import Flask

    from flask_smg_history import SmgHistory

    app = Flask("sqlite_check", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    try:
        result = _run(app, "check")
        assert result.exit_code == 0, result.output
        in_use = str(tmp_path / "instance" / "smg_history.sqlite3")
        assert f"  SMG_HISTORY_SQLITE_PATH = {in_use!r} (default)\n" in result.output
        assert "SMG_HISTORY_SQLITE_PATH = None" not in result.output
    finally:
        get_state(app).backend.close()


def test_check_prints_the_file_backend_folder_in_use(tmp_path):
    from flask import Flask

    from flask_smg_history import SmgHistory

    app = Flask("file_check", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(app)
    try:
        result = _run(app, "check")
        assert result.exit_code == 0, result.output
        assert "  SMG_HISTORY_FILE_PATH = None" not in result.output
        assert f"  SMG_HISTORY_FILE_PATH = {str(tmp_path / 'instance')!r}" not in result.output
        line = next(x for x in result.output.splitlines() if x.startswith("  SMG_HISTORY_FILE_PATH = "))
        assert line.startswith(f"  SMG_HISTORY_FILE_PATH = '{tmp_path / 'instance'}/") and line.endswith(" (default)")
    finally:
        get_state(app).backend.close()


def test_search_prints_one_line_per_hit_of_the_owner(app, backend_name):
    if backend_name == "oracle":
        pytest.skip("no search index on Oracle (documented)")
    alice = get_state(app).store_for("alice")
    conv = alice.conversations.create(
        metadata={"title": "Dingo diary"},
        items=[{"role": "user", "content": "a dingo <i>howls</i>"}, {"role": "assistant", "content": "dingo!"}],
    )
    other = alice.conversations.create(items=[{"role": "user", "content": "no match here"}])
    get_state(app).store_for("bob").conversations.create(items=[{"role": "user", "content": "dingo of bob"}])
    user, reply = alice.items.list(conv.id, order="asc").data

    result = _run(app, "search", "--owner", "alice", "dingo")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{conv.id}\t-\t-\tDingo diary",
        f"{conv.id}\t{reply.id}\tassistant\tdingo!",
        f"{conv.id}\t{user.id}\tuser\ta dingo <i>howls</i>",
    ]
    assert "3 hits" in result.stderr

    first = _run(app, "search", "--owner", "alice", "--limit", "1", "dingo")
    assert first.exit_code == 0 and first.stdout.splitlines() == [f"{conv.id}\t-\t-\tDingo diary"]
    assert "more: --after " in first.stderr
    after = first.stderr.split("more: --after ")[1].split()[0]
    rest = _run(app, "search", "--owner", "alice", "--after", after, "dingo")
    assert [line.split("\t")[1] for line in rest.stdout.splitlines()] == [reply.id, user.id]

    only = _run(app, "search", "--owner", "alice", "--conversation", other.id, "dingo")
    assert only.exit_code == 0 and only.stdout == "" and "0 hits" in only.stderr
    assert _run(app, "search", "--owner", "carol", "dingo").stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--owner", "alice", "  "], "Error: Invalid 'q': the query is empty; type the words to search for."),
        (
            ["search", "--owner", "alice", "--conversation", "nope", "dingo"],
            "Error: Invalid 'conversation': 'nope'. Expected an ID that begins with 'conv'.",
        ),
        (
            ["search", "--owner", "alice", "--conversation", "conv_missing", "dingo"],
            "Error: Conversation with id 'conv_missing' not found.",
        ),
        (["search", "--owner", "alice", "--limit", "0", "dingo"], "Invalid value for '--limit'"),
        (["search", "dingo"], "Missing option '--owner'"),
    ],
)
def test_search_refuses_bad_input_with_a_clear_message(app, backend_name, args, message):
    if backend_name == "oracle":
        pytest.skip("no search index on Oracle (documented)")
    result = _run(app, *args)
    assert result.exit_code != 0 and message in result.output, result.output


def test_search_on_a_backend_without_search_says_so():
    from flask import Flask

    from flask_smg_history import SmgHistory

    app = Flask("unsearchable")
    app.config.update(SMG_HISTORY_BACKEND="tests.test_search_api.UnsearchableBackend")
    SmgHistory(app)
    result = _run(app, "search", "--owner", "alice", "dingo")
    assert result.exit_code == 1
    assert "Error: Search is not supported by the tests.test_search_api.UnsearchableBackend backend" in result.output
