"""Release hygiene: the wheel as built, installed alone in a clean virtual
environment, serves a host app end to end.

The test builds a wheel of the checkout it sits in (``python -m build
--wheel``), checks that the Alembic chain (``migrations/``) is inside it,
installs it with the ``postgres`` extra, ``openai`` and ``flask-migrate`` into
a new venv without system site packages, and, in a temp directory away from
the source tree, runs a tiny host app: ``flask db upgrade`` must bring the
history tables to the head revision the wheel ships, and ``flask run`` must
answer the official ``openai`` client with strict response validation.

It needs PyPI (build's isolated environment and the venv's installs) and
nothing else from the network; a failing build or install fails the test.
Select it with ``-m wheel``, or leave it out with ``-m "not wheel"``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BUILD_TIMEOUT = 600
VENV_TIMEOUT = 300
PIP_TIMEOUT = 600
COMMAND_TIMEOUT = 180
START_TIMEOUT = 60

FIRST = "first message, from the installed wheel"
SECOND = "second message, added afterwards"

pytestmark = [pytest.mark.wheel, pytest.mark.e2e]


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _run(args: list[str], *, what: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run a command; fail the test with its output if it fails or hangs.
    Returns stdout and stderr together."""
    shown = " ".join(str(a) for a in args)
    try:
        done = subprocess.run(
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{what}: no answer within {timeout} s\n$ {shown}\n"
            f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}",
            pytrace=False,
        )
    if done.returncode != 0:
        pytest.fail(
            f"{what}: exit code {done.returncode}\n$ {shown}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout + done.stderr


def _env() -> dict[str, str]:
    """This process's environment without what could put another copy of the
    package on the path or configure the app, the CLI or the client behind the
    test's back. Proxies stay (build and pip may need them to reach PyPI), but
    never for the loopback server."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET"}
        and not name.startswith(("FLASK_", "SMG_HISTORY_", "OPENAI_", "DIST_EXTRA_CONFIG"))
    }
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    return env


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    """Build the checkout's wheel into ``tmp/dist``. setuptools' own build and
    egg-info directories go to ``tmp`` as well (through an extra distutils
    config file), so the source tree gets no ``build/`` and files left in one
    by an older build can never slip into this wheel."""
    tmp.mkdir(parents=True, exist_ok=True)
    extra_config = tmp / "distutils.cfg"
    extra_config.write_text(f"[build]\nbuild_base = {tmp / 'build'}\n[egg_info]\negg_base = {tmp}\n")
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT],
        what="building the wheel (python -m build: install the `test` extra, it has `build`)",
        cwd=ROOT,
        env={**env, "DIST_EXTRA_CONFIG": str(extra_config)},
        timeout=BUILD_TIMEOUT,
    )
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {[w.name for w in wheels]}"
    return wheels[0]


def _source_migrations() -> Path:
    """The package's Alembic directory (``env.py`` beside ``versions/``) in the
    source tree, wherever inside the package it lives."""
    package = ROOT / "flask_smg_history"
    found = sorted(
        env_py.parent
        for env_py in package.rglob("env.py")
        if (env_py.parent / "versions").is_dir() and "__pycache__" not in env_py.parts
    )
    assert len(found) == 1, f"expected one Alembic directory (env.py beside versions/) under {package}, found {found}"
    return found[0]


def _check_wheel_contents(wheel: Path, source: Path) -> None:
    """The wheel holds the package and every file of its Alembic directory
    ``source`` (``flask_smg_history/migrations`` when this was written)."""
    where = source.relative_to(ROOT).as_posix()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    listing = "\n".join(names)
    assert "flask_smg_history/__init__.py" in names, f"the package is missing from {wheel.name}:\n{listing}"
    assert f"{where}/env.py" in names, f"the Alembic env.py is missing from {wheel.name} (package-data?):\n{listing}"
    versions = [n for n in names if n.startswith(f"{where}/versions/") and n.endswith(".py")]
    assert versions, f"no migration under {where}/versions/ in {wheel.name}:\n{listing}"
    # Also the files that are no Python module (script.py.mako, README): a
    # package-data slip drops them while namespace discovery keeps the .py files.
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }
    missing = sorted(shipped - set(names))
    assert not missing, f"{wheel.name} lacks these files of {source}: {missing}"


#: Run in the venv: where the package was imported from, and the head revision
#: of the Alembic chain as installed (read with Alembic's own API, not the
#: package's internals) from the directory ``argv[1]`` inside the package.
PROBE = """\
import json, sys, sysconfig
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import flask_smg_history
import psycopg  # the postgres extra
from alembic.script import ScriptDirectory

purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
where = Path(flask_smg_history.__file__).resolve()
if not where.is_relative_to(purelib):
    sys.exit(f"flask_smg_history was imported from {where}, not from the venv's site-packages {purelib}")
try:
    migrations = files("flask_smg_history").joinpath(*sys.argv[1].split("/"))
    head, head_error = ScriptDirectory(str(migrations)).get_current_head(), None
except Exception as exc:  # reported after `flask db upgrade` has had its say
    head, head_error = None, repr(exc)
print(json.dumps({
    "file": str(where),
    "purelib": str(purelib),
    "version": metadata.version("flask-smg-history"),
    "head": head,
    "head_error": head_error,
}))
"""

#: Run in the venv against the served app: the official client, strictly.
CLIENT = """\
import json, sys

import openai

port = int(sys.argv[1])
client = openai.OpenAI(
    base_url=f"http://127.0.0.1:{port}/v1",
    api_key="sk-test",
    max_retries=0,
    timeout=30,
    _strict_response_validation=True,
)
conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": sys.argv[2]}])
client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": sys.argv[3]}])
texts = [item.content[0].text for item in client.conversations.items.list(conv.id, order="asc")]
for text in texts:
    print(text)
print("TEXTS " + json.dumps(texts))
"""


def _host_app(app_dir: Path) -> str:
    host_db = str(app_dir / "host.sqlite3")
    history_db = str(app_dir / "history.sqlite3")
    return f"""\
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_migrate import Migrate
from flask_smg_history import SmgHistory

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + {host_db!r}
app.config["SMG_HISTORY_BACKEND"] = "sqlite"
app.config["SMG_HISTORY_SQLITE_PATH"] = {history_db!r}
app.config["SMG_HISTORY_API_KEYS"] = {{"sk-test": "alice"}}
db = SQLAlchemy(app)
Migrate(app, db)
SmgHistory(app)
"""


def _version_rows(db: Path) -> dict[str, list[str]]:
    """Every ``*alembic_version`` table in the SQLite file and its rows."""
    with sqlite3.connect(db) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name.endswith("alembic_version")
        ]
        return {t: [row[0] for row in conn.execute(f'SELECT version_num FROM "{t}"')] for t in tables}


def _wait_until_answering(server: subprocess.Popen, port: int, log: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            pytest.fail(f"flask run exited with code {server.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            with opener.open(f"http://127.0.0.1:{port}/v1/conversations/conv_probe", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (401 here) means it is serving
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"flask run did not answer on port {port} within {START_TIMEOUT} s:\n{log.read_text()}",
                    pytrace=False,
                )
            time.sleep(0.2)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_the_wheel_installs_migrates_and_serves(tmp_path: Path) -> None:
    env = _env()

    migrations = _source_migrations()
    wheel = _build_wheel(tmp_path / "wheel", env)
    _check_wheel_contents(wheel, migrations)

    venv = tmp_path / "venv"
    _run(
        [sys.executable, "-m", "venv", venv],
        what="creating the venv",
        cwd=tmp_path,
        env=env,
        timeout=VENV_TIMEOUT,
    )
    pyvenv = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in pyvenv, pyvenv
    python = _bin(venv, "python")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            f"{wheel}[postgres]",
            "openai>=1.100",
            "flask-migrate",
        ],
        what="installing the wheel into the venv",
        cwd=tmp_path,
        env=env,
        timeout=PIP_TIMEOUT,
    )

    app_dir = tmp_path / "host"
    app_dir.mkdir()
    assert not app_dir.resolve().is_relative_to(ROOT), f"{app_dir} is inside the source tree {ROOT}"
    (app_dir / "app.py").write_text(_host_app(app_dir))
    (app_dir / "probe.py").write_text(PROBE)
    (app_dir / "client.py").write_text(CLIENT)

    out = _run(
        [python, "-I", "probe.py", migrations.relative_to(ROOT / "flask_smg_history").as_posix()],
        what="importing the installed package",
        cwd=app_dir,
        env=env,
        timeout=COMMAND_TIMEOUT,
    )
    probe = json.loads(out.strip().splitlines()[-1])
    assert Path(probe["file"]).is_relative_to(venv.resolve()), probe
    assert wheel.name.startswith(f"flask_smg_history-{probe['version']}-"), (wheel.name, probe)

    # The real upgrade first: with the migrations missing from the wheel it
    # fails (the app does not even load), and says why.
    flask = _bin(venv, "flask")
    out = _run(
        [flask, "--app", "app", "db", "upgrade"],
        what="flask db upgrade",
        cwd=app_dir,
        env=env,
        timeout=COMMAND_TIMEOUT,
    )
    head = probe["head"]
    assert head, f"the installed migrations have no head revision: {probe}"
    assert f"history tables at revision {head}" in out, f"flask db upgrade did not report revision {head}:\n{out}"
    versions = _version_rows(app_dir / "history.sqlite3")
    assert [head] in versions.values(), f"no version table at {head} after flask db upgrade: {versions}\n{out}"

    port = _free_port()
    log = app_dir / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [str(flask), "--app", "app", "run", "--port", str(port)],
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answering(server, port, log)
        out = _run(
            [python, "-I", "client.py", str(port), FIRST, SECOND],
            what="the openai client against flask run",
            cwd=app_dir,
            env=env,
            timeout=COMMAND_TIMEOUT,
        )
    finally:
        _stop(server)
    texts_line = [line for line in out.splitlines() if line.startswith("TEXTS ")]
    assert texts_line, f"the client printed no texts:\n{out}\n--- server ---\n{log.read_text()}"
    assert json.loads(texts_line[-1][len("TEXTS ") :]) == [FIRST, SECOND], out
    assert out.index(FIRST) < out.index(SECOND), out
