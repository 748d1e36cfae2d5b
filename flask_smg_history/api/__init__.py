"""The HTTP API: OpenAI's Conversations and stored-Responses shapes, plus our
feedback, listing and health endpoints in the same style."""

from .errors import history_error_response, register_unrouted
from .routes import create_blueprint

__all__ = ["create_blueprint", "history_error_response", "register_unrouted"]
