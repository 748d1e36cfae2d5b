"""One app server process for the two-process test: a werkzeug server on the
hybrid backend, plus ``/_cache`` reporting its cache hits and misses.

Run as ``python -m tests.hybrid_backend.server '<config json>' <port>``."""

from __future__ import annotations

import json
import sys

from flask import Flask
from werkzeug.serving import run_simple

from flask_smg_history import SmgHistory, get_state


def main() -> None:
    config, port = json.loads(sys.argv[1]), int(sys.argv[2])
    app = Flask("hybrid_server")
    app.config.update(config)
    SmgHistory(app)

    @app.get("/_cache")
    def cache() -> dict[str, int]:
        backend = get_state(app).backend
        return {"hits": backend.hits, "misses": backend.misses}

    run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    main()
