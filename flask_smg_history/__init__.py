"""flask-smg-history: durable, queryable conversation history for Flask chat
apps, speaking OpenAI's Conversations API.

The public surface: ``SmgHistory`` (the extension), ``history`` (the current
caller's store), ``get_state`` (an app's settings, backend and metrics),
``HistoryStore`` and the records it returns, ``Backend`` (the base class of
custom backends), every error the store and the HTTP API raise, and
``history_error_response`` (the API's answer to one, for a host's own routes).
"""

from .api import history_error_response
from .backends import Backend
from .errors import (
    ConfigError,
    CorruptRecord,
    HistoryError,
    HistoryUnavailable,
    InvalidRequest,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
)
from .extension import SmgHistory
from .records import Conversation, Feedback, Item, Page, Response
from .state import HistoryState, get_state, history
from .store import HistoryStore
from .version import __version__

__all__ = [
    "Backend",
    "ConfigError",
    "Conversation",
    "CorruptRecord",
    "Feedback",
    "HistoryError",
    "HistoryState",
    "HistoryStore",
    "HistoryUnavailable",
    "InvalidRequest",
    "Item",
    "NotFound",
    "NotSupported",
    "Page",
    "PayloadTooLarge",
    "Response",
    "SmgHistory",
    "Unauthorized",
    "UpstreamError",
    "__version__",
    "get_state",
    "history",
    "history_error_response",
]
