"""Sign-in by user name only: enough to show that each user sees only their
own history. The name is kept in the Flask session and the app's identity
loader hands it to the extension as the owner."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for

bp = Blueprint("auth", __name__)

#: The one rule for user names, used by the server and, as the sign-in field's
#: ``pattern`` and ``maxlength``, by the browser.
NAME_MAX = 32
NAME_PATTERN = rf"[A-Za-z0-9_.\-]{{1,{NAME_MAX}}}"
NAME_RULE = re.compile(NAME_PATTERN)
NAME_HELP = f"1 to {NAME_MAX} letters, digits, '_', '.' or '-'"


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    error = None
    name = ""
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if NAME_RULE.fullmatch(name):
            session.clear()
            session["user"] = name
            return redirect(url_for("pages.index"))
        error = f"A user name is {NAME_HELP}."
    page = render_template(
        "signin.html", error=error, name=name, name_pattern=NAME_PATTERN, name_max=NAME_MAX, name_help=NAME_HELP
    )
    return page, 400 if error else 200


@bp.post("/signout")
def signout():
    session.clear()
    return redirect(url_for("auth.signin"))


def page_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages send a signed-out visitor to the sign-in form."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "user" not in session:
            return redirect(url_for("auth.signin"))
        return view(*args, **kwargs)

    return wrapper


def api_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """JSON routes answer a signed-out caller with 401 in the error envelope."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "user" not in session:
            return jsonify({"error": {"message": "You are signed out: sign in again.", "type": "auth"}}), 401
        return view(*args, **kwargs)

    return wrapper
