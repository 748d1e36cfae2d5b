"""Long CLI operations draw a click progress bar on a terminal and print plain
progress lines otherwise (a real pseudo-terminal, a real ``flask`` process)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from .support.terminal import run_cli

APP = textwrap.dedent(
    """
    from flask import Flask
    from flask_smg_history import SmgHistory

    app = Flask("terminal", instance_path={instance!r})
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH={db!r}, SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    """
)


def _project(tmp_path: Path) -> Path:
    db = str(tmp_path / "history.sqlite3")
    (tmp_path / "termapp.py").write_text(APP.format(instance=str(tmp_path / "instance"), db=db))
    app = Flask("fill", instance_path=str(tmp_path / "instance"))
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=db, SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    for _ in range(5):
        conv = store.conversations.create()
        store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(20)])
    get_state(app).backend.close()
    return tmp_path


def _export(cwd: Path, terminal: bool) -> str:
    command = [sys.executable, "-m", "flask", "--app", "termapp", "smg-history", "export", "-o", "out.jsonl"]
    return run_cli(command, cwd, terminal)


def test_progress_bar_on_a_terminal_plain_lines_otherwise(tmp_path):
    cwd = _project(tmp_path)
    on_terminal = _export(cwd, terminal=True)
    assert "export" in on_terminal and "100%" in on_terminal and "#" in on_terminal
    plain = _export(cwd, terminal=False)
    assert "export: 105 records done" in plain and "%" not in plain
    assert len((cwd / "out.jsonl").read_text().splitlines()) == 105
