"""The docs tell the truth about the configuration and build cleanly."""

import re
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


def test_the_readme_openai_snippet_runs_against_the_example_app(tmp_path, monkeypatch, capsys):
    """The README's client snippet, run as printed (only the port differs)
    against the example app started with the one setting the README names."""
    import re
    import threading

    from werkzeug.serving import make_server

    from example_app import create_app
    from flask_smg_history import get_state

    readme = (ROOT / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "openai.OpenAI(" in b)
    setting = re.search(r'`(SMG_HISTORY_API_KEYS="([^"]+)") bash scripts/example\.sh`', readme)
    assert setting, "the README must say how to start the example app for the snippet"
    monkeypatch.setenv("SMG_HISTORY_API_KEYS", setting.group(2))
    app = create_app(instance_path=str(tmp_path / "instance"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exec(snippet.replace("localhost:5000", f"127.0.0.1:{server.server_port}"), {})
    finally:
        server.shutdown()
        thread.join(5)
    reply = "You said “Count these four words”: **4** words, **22** characters."
    assert capsys.readouterr().out == f"Hello\n{reply}\n"
    (conv,) = get_state(app).store_for("alice").conversations.list().data
    messages = [i.payload for i in get_state(app).store_for("alice").items.recent(conv.id) if i.type == "message"]
    assert [(m["role"], m["content"][0]["text"].splitlines()[0]) for m in messages] == [
        ("user", "Hello"),
        ("user", "Count these four words"),
        ("assistant", reply),
    ]
    get_state(app).backend.close()


# -- drift: docs that list what the code has, or quote what it prints ------------------------------------
def _backend_lists() -> dict[str, str]:
    """Every place that lists the backend names for a reader: the setting's
    own doc (and so the configuration table) and README's first snippet."""
    from flask_smg_history.config import KEYS_BY_NAME

    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r'SMG_HISTORY_BACKEND"\] = "memory"  # or (.*)', readme)
    assert snippet, "README's first snippet names the backends in a comment"
    table = (ROOT / "docs" / "configuration.md").read_text()
    row = re.search(r"^\| `SMG_HISTORY_BACKEND` \|.*$", table, re.M)
    assert row, "docs/configuration.md has the SMG_HISTORY_BACKEND row"
    return {
        "the setting's doc": KEYS_BY_NAME["SMG_HISTORY_BACKEND"].doc,
        "docs/configuration.md": row.group(0),
        "README.md's first snippet": "memory, " + snippet.group(1),
    }


def test_every_list_of_backends_names_every_built_in_backend():
    from flask_smg_history.backends import BACKENDS

    for where, text in _backend_lists().items():
        named = set(re.findall(r"[a-z]+(?:\+[a-z]+)?", text))
        assert set(BACKENDS) <= named, f"{where} leaves out {sorted(set(BACKENDS) - named)}"


def test_quoted_migration_output_names_the_current_head():
    from flask_smg_history.backends.sql.migrate import head_revision

    head = head_revision()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for quoted in re.findall(r"history tables at revision (smgh_\d+)", path.read_text()):
            assert quoted == head, f"{path.relative_to(ROOT)} quotes revision {quoted}; the command prints {head}"


def test_the_example_app_readme_does_not_list_a_feature_it_has_as_missing():
    """A feature the example README presents (a bullet opening with **Name**)
    must not be one of the things listed under "What it does not do" (each a
    phrase of that section's comma-separated lists)."""
    text = (ROOT / "example_app" / "README.md").read_text()
    presented, missing_section = text.split("## What it does not do", 1)
    features = {f.lower() for f in re.findall(r"^- \*\*([^*]+)\*\*", presented, re.M)}
    assert "search" in features, "the example README presents its features as '- **Name**' bullets"
    bullets = re.findall(r"^- (.+)$", missing_section.split("\n## ", 1)[0], re.M)
    phrases = {p.strip().rstrip(".").removeprefix("and ").lower() for b in bullets for p in b.split(",")}
    assert features & phrases == set(), f"listed both as a feature and as missing: {sorted(features & phrases)}"
