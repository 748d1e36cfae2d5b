"""A minimal chat app on flask-smg-history (placeholder until the real page lands)."""

from flask import Flask, jsonify, request

from flask_smg_history import SmgHistory, history


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})
    SmgHistory(app)

    @app.post("/chat")
    def chat():
        text = (request.get_json(silent=True) or {}).get("message", "")
        conv = history.conversations.create(metadata={"title": text[:40] or "New chat"})
        history.items.add(conv.id, [{"role": "user", "content": text or "(empty)"}])
        return jsonify({"conversation": conv.id})

    return app
