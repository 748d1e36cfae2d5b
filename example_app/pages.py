"""Server-rendered pages: the chat shell and the feedback report.

The chat page is a shell; its script fills the sidebar and the conversation
from the JSON API. The feedback page is drawn entirely on the server: its
counts and charts from ``history.feedback.stats`` (every vote; a vote taken
back is deleted, so it is in none of them), its usage panel from
``history.stats`` (chats, items, replies and tokens, counted by the store in
its database), its comments from ``history.feedback.list``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, render_template, send_from_directory, session

from flask_smg_history import Feedback, NotFound, history

from .auth import page_login_required
from .chart import grouped_bars

bp = Blueprint("pages", __name__)

CHART_DAYS = 14
LATEST_COMMENTS = 20
#: The latest comments are looked for among at most this many of the newest votes.
COMMENT_SCAN = 1_000


def chat_page(conversation=None, status: int = 200, notice: str | None = None):
    return (
        render_template(
            "chat.html",
            user=session["user"],
            conversation=conversation,
            responder=current_app.extensions["example_responder"].label,
            max_chars=current_app.config["EXAMPLE_MAX_MESSAGE_CHARS"],
            api=current_app.config["SMG_HISTORY_URL_PREFIX"],
            notice=notice,
        ),
        status,
    )


@bp.get("/")
@page_login_required
def index():
    return chat_page()


@bp.get("/c/<conversation_id>")
@page_login_required
def conversation(conversation_id: str):
    try:
        conv = history.conversations.get(conversation_id)
    except NotFound:
        return chat_page(status=404, notice="This chat does not exist, or it belongs to another user.")
    return chat_page(conv)


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml")


def latest_comments(limit: int = LATEST_COMMENTS, scan: int = COMMENT_SCAN) -> list[Feedback]:
    """The caller's newest votes that have a comment, newest first: pages of
    votes are read until ``limit`` are found or ``scan`` votes were read."""
    comments: list[Feedback] = []
    after, read = None, 0
    while read < scan:
        page = history.feedback.list(after=after, limit=min(100, scan - read))
        read += len(page.data)
        comments += [fb for fb in page.data if fb.comment]
        if len(comments) >= limit or not page.has_more:
            break
        after = page.last_id
    return comments[:limit]


def usage_by_model(usage: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: its replies and tokens, and the votes on them."""
    votes = usage["feedback"]["by_model"]
    replies = usage["responses"]["by_model"]
    empty = {"responses": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    return [
        {"model": model, **replies.get(model, empty), **votes.get(model, {"positive": 0, "negative": 0})}
        for model in sorted({*replies, *votes})
    ]


@bp.get("/feedback")
@page_login_required
def feedback():
    stats = history.feedback.stats()
    days = dict(list(stats["by_day"].items())[-CHART_DAYS:])
    usage = history.stats()
    return render_template(
        "feedback.html",
        user=session["user"],
        stats=stats,
        by_day=grouped_bars(days),
        by_model=grouped_bars(stats["by_model"]),
        # A phone's narrower drawing of each, shown in its place: the wide
        # one scaled to a phone's width would have 6 px labels.
        by_day_narrow=grouped_bars({day[5:]: n for day, n in days.items()}, width=360, height=220),
        by_model_narrow=grouped_bars(stats["by_model"], width=360, height=220),
        usage=usage,
        usage_models=usage_by_model(usage),
        usage_days=list(reversed(usage["responses"]["by_day"].items()))[:CHART_DAYS],
        comments=latest_comments(),
        when=lambda ts: dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
