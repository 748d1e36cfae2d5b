"""Run a ``flask`` CLI command as a user would: on a pseudo-terminal, or
with its output captured (not a terminal), for the progress-bar tests."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_cli(command: list[str], cwd: Path, terminal: bool) -> str:
    """What ``command`` wrote: everything on the terminal, or its stderr
    when captured. Fails the test if the command fails."""
    if not terminal:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, cwd=cwd, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(60) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")
