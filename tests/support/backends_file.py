"""Contract-suite registration of the file backend: a fresh folder per test
(under pytest's ``tmp_path``, removed with it). Every app a test builds
shares that folder, as processes of one host would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .backends import register


@register("file")
@contextmanager
def file(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": str(tmp_path / "history")}
