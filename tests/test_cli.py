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
