"""Building the test apps: one Flask app per call, on a given config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from flask_smg_history import SmgHistory


def build_app(
    config: dict[str, Any], instance_path: Path | None = None, ext: SmgHistory | None = None, upstream: Any = None
) -> Flask:
    """A Flask app with ``config`` on ``ext`` (default: a new ``SmgHistory``),
    and ``upstream`` as its in-process model when given."""
    app = Flask("smg_test_app", instance_path=str(instance_path) if instance_path else None)
    app.config.update(TESTING=True, **config)
    (ext or SmgHistory()).init_app(app, upstream=upstream)
    return app
