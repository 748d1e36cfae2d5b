"""Signals sent after a history write has committed, with blinker as Flask
itself uses, so host apps can index, audit or moderate without touching the
backend.

Each is sent with the Flask app as sender and ``owner`` plus the records as
keyword arguments::

    from flask_smg_history.signals import items_added

    @items_added.connect_via(app)
    def index(app, owner, conversation_id, items): ...

A receiver that raises is logged and skipped: the write has already committed
and stays.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger("flask_smg_history")

_signals = Namespace()

#: ``owner``, ``conversation`` (a ``Conversation``), ``items`` (its first items).
conversation_created = _signals.signal("smg-history.conversation-created")
#: ``owner``, ``conversation_id``, ``items``.
items_added = _signals.signal("smg-history.items-added")
#: ``owner``, ``conversation_id``, ``item_id``.
item_deleted = _signals.signal("smg-history.item-deleted")
#: ``owner``, ``conversation_id``.
conversation_deleted = _signals.signal("smg-history.conversation-deleted")
#: ``owner``, ``response`` (a ``Response``).
response_stored = _signals.signal("smg-history.response-stored")
#: ``owner``, ``feedback`` (a ``Feedback``).
feedback_submitted = _signals.signal("smg-history.feedback-submitted")
#: ``owner``, ``response_id``, ``feedback_id``.
feedback_deleted = _signals.signal("smg-history.feedback-deleted")


def emit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Call every receiver; one that raises is logged and does not stop the
    others (blinker's ``send`` would propagate it)."""
    if sender is None or not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            log.exception("a receiver of %s raised; the write it reports stays committed", signal.name)
