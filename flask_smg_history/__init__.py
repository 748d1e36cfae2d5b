"""flask-smg-history: durable, queryable conversation history for Flask chat
apps, speaking OpenAI's Conversations API."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ConfigError,
    HistoryError,
    HistoryUnavailable,
    InvalidRequest,
    NotFound,
    NotSupported,
    Unauthorized,
)
from .extension import SmgHistory, history  # noqa: E402
from .records import Conversation, Feedback, Item, Page, Response  # noqa: E402
from .store import HistoryStore  # noqa: E402

__all__ = [
    "ConfigError",
    "Conversation",
    "Feedback",
    "HistoryError",
    "HistoryStore",
    "HistoryUnavailable",
    "InvalidRequest",
    "Item",
    "NotFound",
    "NotSupported",
    "Page",
    "Response",
    "SmgHistory",
    "Unauthorized",
    "__version__",
    "history",
]
