"""Fixtures of the file backend's own tests: the contract suite's apps on
the ``file`` backend, and where its folder is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flask_smg_history import get_state


@pytest.fixture
def backend_name() -> str:
    return "file"


def root_of(app: Any) -> Path:
    return get_state(app).backend.folder.root


def owner_dir(app: Any, owner: str = "alice") -> Path:
    (found,) = [p for p in root_of(app).iterdir() if (p / "owner.json").exists() and _owner(p) == owner]
    return found


def _owner(path: Path) -> str:
    import json

    return json.loads((path / "owner.json").read_text())["owner"]
