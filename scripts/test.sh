#!/usr/bin/env bash
# Install everything the tests need and run the whole suite (lint, then pytest).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/browser.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,docs]"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
