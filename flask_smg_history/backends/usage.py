"""Usage statistics: the figures behind ``history.stats()``, ``GET
/history/stats`` and ``flask smg-history stats``, and the tally every backend
fills to produce them.

Why a tally: each backend counts where its data is (SQL ``GROUP BY``, a Lua
script per Redis owner, the memory backend's own dicts) and hands over grouped
counts, never records; the tally adds those groups up and shapes the one
result every backend returns, so the figures mean the same on all of them.

What is counted (``docs/store-api.md`` says it for users): live records only
(an expired one counts nowhere), created at or after ``since`` when given.

- ``conversations``: how many, and the first and last creation time.
- ``items``: item links in live conversations (an item linked into two
  conversations by ``item_reference`` counts twice, as it is listed twice),
  by ``type`` and, for items that have one (messages), by ``role``.
- ``responses``: stored responses by model and by UTC day, each with the sums
  of ``usage.input_tokens``, ``usage.output_tokens`` and
  ``usage.total_tokens`` as stored (a field that is missing or not a number
  adds nothing; ``total_tokens`` is the stored figure, not recomputed).
- ``feedback``: votes by rating, and by model split by rating (the model is
  the one the rated response named).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from ..records import RATINGS, Conversation, Feedback, Item, Record, Response

#: The ``usage`` fields summed, in the order the tallies keep them.
TOKEN_FIELDS = ("input_tokens", "output_tokens", "total_tokens")
SECONDS_PER_DAY = 86400
_EPOCH = dt.date(1970, 1, 1)


def day_number(ts: float) -> int:
    """The UTC day of a Unix time, as days since 1970-01-01 (what the SQL and
    Lua versions compute: ``floor(ts / 86400)``)."""
    return int(ts // SECONDS_PER_DAY)


def day_label(number: int) -> str:
    return (_EPOCH + dt.timedelta(days=number)).isoformat()


def token_counts(usage: Any) -> tuple[float, float, float]:
    """The token fields of a stored ``usage``, a number each (0 when missing
    or not a number: a boolean is not one)."""
    if not isinstance(usage, dict):
        return (0, 0, 0)
    values = [usage.get(name) for name in TOKEN_FIELDS]
    return tuple(v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0 for v in values)  # type: ignore[return-value]


class UsageTally:
    """Grouped counts, added up; ``result()`` is the figures' one shape."""

    def __init__(self) -> None:
        self.conversations = 0
        self.first_created_at: float | None = None
        self.last_created_at: float | None = None
        self.items: Counter[tuple[str, str | None]] = Counter()
        self.responses: dict[tuple[str, int], list[float]] = {}
        self.feedback: Counter[tuple[str, str]] = Counter()

    # -- grouped counts, as the databases answer them ------------------------
    def add_conversations(self, count: int, first: float | None, last: float | None) -> None:
        self.conversations += int(count)
        if first is not None:
            self.first_created_at = first if self.first_created_at is None else min(self.first_created_at, first)
        if last is not None:
            self.last_created_at = last if self.last_created_at is None else max(self.last_created_at, last)

    def add_items(self, kind: str, role: str | None, count: int) -> None:
        self.items[(kind, role or None)] += int(count)

    def add_responses(self, model: str | None, day: int, count: int, tokens: tuple[Any, Any, Any]) -> None:
        sums = self.responses.setdefault((model or "", int(day)), [0, 0, 0, 0])
        sums[0] += int(count)
        for index, value in enumerate(tokens, 1):
            sums[index] += float(value or 0)

    def add_feedback(self, model: str | None, rating: str, count: int) -> None:
        self.feedback[(model or "", rating)] += int(count)

    # -- one record at a time (memory backend, the default walk) -------------
    def add_record(self, record: Record, since: float | None) -> None:
        """Count one live record if it was created at or after ``since``."""
        if since is not None and record.created_at < since:
            return
        if isinstance(record, Conversation):
            self.add_conversations(1, record.created_at, record.created_at)
        elif isinstance(record, Item):
            self.add_items(record.type, record.role, 1)
        elif isinstance(record, Response):
            self.add_responses(record.model, day_number(record.created_at), 1, token_counts(record.usage))
        elif isinstance(record, Feedback):
            self.add_feedback(record.model, record.rating, 1)

    # -- the figures ---------------------------------------------------------
    def result(self) -> dict[str, Any]:
        by_type: Counter[str] = Counter()
        by_role: Counter[str] = Counter()
        for (kind, role), count in self.items.items():
            by_type[kind] += count
            if role is not None:
                by_role[role] += count
        by_model: dict[str, list[float]] = {}
        by_day: dict[str, list[float]] = {}
        for (model, day), sums in self.responses.items():
            for key, table in ((model, by_model), (day_label(day), by_day)):
                row = table.setdefault(key, [0, 0, 0, 0])
                for index, value in enumerate(sums):
                    row[index] += value
        totals = [sum(row[index] for row in by_model.values()) for index in range(4)]
        ratings: dict[str, dict[str, int]] = {}
        by_rating = dict.fromkeys(RATINGS, 0)
        for (model, rating), count in self.feedback.items():
            ratings.setdefault(model, dict.fromkeys(RATINGS, 0))[rating] = count
            by_rating[rating] += count
        return {
            "conversations": {
                "total": self.conversations,
                "first_created_at": self.first_created_at,
                "last_created_at": self.last_created_at,
            },
            "items": {
                "total": sum(by_type.values()),
                "by_type": dict(sorted(by_type.items())),
                "by_role": dict(sorted(by_role.items())),
            },
            "responses": {
                "total": int(totals[0]),
                **{name: int(value) for name, value in zip(TOKEN_FIELDS, totals[1:])},
                "by_model": {key: _usage_row(row) for key, row in sorted(by_model.items())},
                "by_day": {key: _usage_row(row) for key, row in sorted(by_day.items())},
            },
            "feedback": {
                "total": sum(self.feedback.values()),
                "by_rating": by_rating,
                "by_model": dict(sorted(ratings.items())),
            },
        }


def _usage_row(sums: list[float]) -> dict[str, int]:
    count, *tokens = sums
    return {"responses": int(count), **{name: int(value) for name, value in zip(TOKEN_FIELDS, tokens)}}
