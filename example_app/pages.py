"""Server-rendered pages: the chat shell and the feedback report.

The chat page is a shell; its script fills the sidebar and the conversation
from the JSON API. The feedback page is drawn entirely on the server from the
votes that stand (``votes.py``: a vote taken back is left out).
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, render_template, send_from_directory, session

from flask_smg_history import NotFound, history

from .auth import page_login_required
from .chart import grouped_bars
from .votes import MAX_TALLIED, current_votes, tally

bp = Blueprint("pages", __name__)

CHART_DAYS = 14
LATEST_COMMENTS = 20


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


@bp.get("/feedback")
@page_login_required
def feedback():
    votes, complete = current_votes()
    stats = tally(votes)
    days = dict(list(stats["by_day"].items())[-CHART_DAYS:])
    comments = [fb for fb in votes if fb.comment][:LATEST_COMMENTS]
    return render_template(
        "feedback.html",
        user=session["user"],
        stats=stats,
        complete=complete,
        tallied=MAX_TALLIED,
        by_day=grouped_bars(days),
        by_model=grouped_bars(stats["by_model"]),
        comments=comments,
        when=lambda ts: dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
