"""The CLI on the file backend as a user runs it: a real ``flask`` process
exporting with a progress bar on a terminal and plain lines otherwise."""

from __future__ import annotations

import sys
import textwrap

from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.terminal import run_cli

APP = textwrap.dedent(
    """
    from flask import Flask
    from flask_smg_history import SmgHistory

    app = Flask("terminal", instance_path={instance!r})
    app.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(app)
    """
)


def test_export_draws_a_progress_bar_on_a_terminal(tmp_path):
    instance = str(tmp_path / "instance")
    (tmp_path / "termapp.py").write_text(APP.format(instance=instance))
    app = Flask("fill", instance_path=instance)
    app.config.update(SMG_HISTORY_BACKEND="file")
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    for _ in range(3):
        conv = store.conversations.create()
        store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(20)])
    command = [sys.executable, "-m", "flask", "--app", "termapp", "smg-history", "export", "-o", "out.jsonl"]
    on_terminal = run_cli(command, tmp_path, terminal=True)
    assert "100%" in on_terminal and "#" in on_terminal
    plain = run_cli(command, tmp_path, terminal=False)
    assert "export: 63 records done" in plain and "%" not in plain
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 63
