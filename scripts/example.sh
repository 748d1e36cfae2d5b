#!/usr/bin/env bash
# Install the package with the example app's extra into .venv, then serve the
# example chat app on http://127.0.0.1:5000 (extra arguments go to `flask run`,
# e.g. --port 8000). Storage: SQLite in instance/ unless SMG_HISTORY_BACKEND says
# otherwise; replies: the local responder unless EXAMPLE_LLM_BASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[example]"
exec .venv/bin/flask --app example_app run "$@"
