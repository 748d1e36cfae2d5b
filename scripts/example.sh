#!/usr/bin/env bash
# Install the package and start the example chat app on http://127.0.0.1:5000.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
exec .venv/bin/flask --app example_app:create_app run "$@"
