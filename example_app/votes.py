"""Votes as the page shows them, with an undo the extension does not have.

A second click on the same 👍/👎 takes the vote back. The extension keeps one
feedback record per response and user and has no call to delete it, so the
app stores the undo on that record: the same rating with metadata
``{"withdrawn": "true"}`` and no comment. The page shows such a vote as none,
and the feedback page leaves it out of its counts, which are therefore tallied
here from ``history.feedback.list`` rather than taken from
``history.feedback.stats`` (that would count withdrawn votes too).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_smg_history import Feedback, history

WITHDRAWN = "withdrawn"
RATINGS = ("positive", "negative")
#: The feedback page tallies at most this many of the newest votes.
MAX_TALLIED = 10_000


def is_withdrawn(fb: Feedback) -> bool:
    return (fb.metadata or {}).get(WITHDRAWN) == "true"


def current_votes(limit: int = MAX_TALLIED) -> tuple[list[Feedback], bool]:
    """The caller's votes that stand, newest first, from the newest ``limit``
    records; and whether that was all of them."""
    votes: list[Feedback] = []
    after, read = None, 0
    while read < limit:
        page = history.feedback.list(after=after, limit=min(100, limit - read))
        read += len(page.data)
        votes += [fb for fb in page.data if not is_withdrawn(fb)]
        if not page.has_more:
            return votes, True
        after = page.last_id
    return votes, False


def tally(votes: list[Feedback]) -> dict[str, Any]:
    """Counts in the shape of ``history.feedback.stats()``: by rating, by
    model and by UTC day, each split by rating."""

    def empty() -> dict[str, int]:
        return dict.fromkeys(RATINGS, 0)

    by_rating, by_model, by_day = empty(), {}, {}
    for fb in votes:
        day = dt.datetime.fromtimestamp(fb.created_at, dt.timezone.utc).strftime("%Y-%m-%d")
        by_rating[fb.rating] += 1
        by_model.setdefault(fb.model or "", empty())[fb.rating] += 1
        by_day.setdefault(day, empty())[fb.rating] += 1
    return {
        "total": sum(by_rating.values()),
        "by_rating": by_rating,
        "by_model": dict(sorted(by_model.items())),
        "by_day": dict(sorted(by_day.items())),
    }
