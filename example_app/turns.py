"""One assistant turn: stream a reply, let the user stop it, store what was
generated.

A turn runs as a generator of ``(event, data)`` pairs that ``chat.py`` sends as
server-sent events (or collects into one JSON answer). Whatever ends the turn
(the reply is complete, the user pressed Stop, the model server failed half-way
or the browser went away), what was generated is stored the same way: one
response (``history.responses.store``) and its output items in the
conversation (``history.items.add``), with status ``incomplete`` unless the
reply ran to its end. So a reload shows exactly what the user saw.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask_smg_history import HistoryError, HistoryUnavailable, NotFound, history
from flask_smg_history.schemas import MAX_ITEMS_PER_ADD

from .responders import ResponderError, message

log = logging.getLogger(__name__)


def friendly(exc: HistoryError) -> str:
    """What to tell the person in the page about a store error."""
    if isinstance(exc, HistoryUnavailable):
        return "The chat history is unavailable right now; try again in a moment."
    if isinstance(exc, NotFound) and exc.param == "conversation_id":
        return "This chat no longer exists; it was deleted, perhaps in another tab."
    if isinstance(exc, NotFound) and exc.param == "response_id":
        return "This reply no longer exists; it was deleted, perhaps in another tab."
    return exc.message


class StreamRegistry:
    """The replies streaming now, so a Stop request (another HTTP request)
    can reach the one it means. It lives in the server process: with several
    worker processes a Stop may land elsewhere, and the page then falls back to
    closing the stream, which the turn also treats as a stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, tuple[str, threading.Event]] = {}

    def open(self, owner: str) -> tuple[str, threading.Event]:
        stream_id = "stream_" + secrets.token_hex(12)
        event = threading.Event()
        with self._lock:
            self._streams[stream_id] = (owner, event)
        return stream_id, event

    def stop(self, owner: str, stream_id: str) -> bool:
        """Ask the stream to stop; False if it is not running (or not the
        owner's: the answer is the same)."""
        with self._lock:
            found = self._streams.get(stream_id)
        if found is None or found[0] != owner:
            return False
        found[1].set()
        return True

    def close(self, stream_id: str) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)


@dataclass
class Draft:
    """What the responder has produced so far."""

    model: str
    text: list[str] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    stopped: bool = False
    error: str | None = None


@dataclass
class Turn:
    """Everything a reply needs: where it goes, what it answers, what it
    continues, and (when regenerating) the reply it replaces."""

    responder: Any
    registry: StreamRegistry
    conversation: Any
    context: list[Any]
    input: list[dict[str, Any]]
    previous_response_id: str | None
    user_item: dict[str, Any] | None = None
    created: bool = False
    attempt: int = 1
    replaces: str | None = None
    replaced_items: list[str] = field(default_factory=list)

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        stream_id, stop = self.registry.open(history.owner)
        draft = Draft(model=self.responder.model)
        source = self.responder.stream(self.context, attempt=self.attempt)
        try:
            yield "start", self._start(stream_id)
            for kind, value in source:
                if stop.is_set():
                    draft.stopped = True
                    break
                if kind == "delta":
                    draft.text.append(value)
                    yield "delta", {"text": value}
                elif kind == "item":
                    draft.output.append(value)
                    yield "item", {"item": value}
                elif kind == "model":
                    draft.model = value or draft.model
                elif kind == "usage":
                    draft.usage = value
        except ResponderError as exc:
            draft.error = str(exc)
        except GeneratorExit:
            # The browser went away (tab closed, or its Stop fell back to
            # closing the stream): keep what was generated, quietly.
            draft.stopped = True
            source.close()
            try:
                self._store(draft)
            except HistoryError:
                log.warning("a reply cut off by its client could not be stored", exc_info=True)
            raise
        finally:
            source.close()
            self.registry.close(stream_id)
        try:
            done = self._store(draft)
        except HistoryError as exc:
            yield "error", {"message": friendly(exc), "stored": False}
            return
        if done is None:
            yield "error", {"message": draft.error, "stored": False}
            return
        if draft.error:
            done["error"] = draft.error
        yield "done", done

    def _start(self, stream_id: str) -> dict[str, Any]:
        conv = self.conversation
        return {
            "stream_id": stream_id,
            "conversation": {"id": conv.id, "title": conv.metadata.get("title", ""), "created": self.created},
            "user_item": self.user_item,
            "model": self.responder.model,
            "replaces": self.replaces,
        }

    def _store(self, draft: Draft) -> dict[str, Any] | None:
        """Store the reply as a response and as conversation items; None when
        the model failed before producing anything (nothing to store)."""
        text = "".join(draft.text)
        if draft.error and not text and not draft.output:
            return None
        status = "incomplete" if draft.stopped or draft.error else "completed"
        metadata = {**self.responder.metadata, "attempt": str(self.attempt)}
        if self.replaces:
            metadata["regenerates"] = self.replaces
        response = history.responses.store(
            {
                "model": draft.model,
                "status": status,
                "conversation": self.conversation.id,
                "previous_response_id": self.previous_response_id,
                "input": self.input,
                "output": [*draft.output, message(text, status)],
                "usage": draft.usage,
                "metadata": metadata,
            }
        )
        for item_id in self.replaced_items:
            try:
                history.items.delete(self.conversation.id, item_id)
            except NotFound:
                pass
        tagged = [{**item, "response_id": response.id, "model": response.model} for item in response.output]
        added = []
        for start in range(0, len(tagged), MAX_ITEMS_PER_ADD):
            added += history.items.add(self.conversation.id, tagged[start : start + MAX_ITEMS_PER_ADD])
        return {
            "items": [item.payload for item in added],
            "response_id": response.id,
            "model": response.model,
            "status": status,
            "replaced": self.replaced_items,
        }
