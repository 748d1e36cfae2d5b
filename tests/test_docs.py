"""The docs tell the truth about the configuration and build cleanly."""

import subprocess
import sys
from pathlib import Path

from flask_smg_history.config import KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_reference_table():
    table = (ROOT / "docs" / "configuration.md").read_text()
    missing = [key.name for key in KEYS if f"| `{key.name}` |" not in table]
    assert missing == [], f"run scripts/config_table.py: {missing}"


def test_published_openapi_document_is_current():
    import json

    from flask import Flask

    from flask_smg_history import SmgHistory

    app = Flask("openapi")
    SmgHistory(app)
    served = app.test_client().get("/v1/openapi.json").get_json()
    published = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == published, "run scripts/openapi.py"


def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "http-api" / "index.html").exists()
