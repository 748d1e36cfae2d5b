"""The app ``benchmarks/load.py`` serves with gunicorn: nothing but the
extension, configured from ``SMG_HISTORY_*`` environment variables."""

from flask import Flask

from flask_smg_history import SmgHistory


def create() -> Flask:
    app = Flask("smg_history_load")
    SmgHistory(app)
    return app
