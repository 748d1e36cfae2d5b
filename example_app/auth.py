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

NAME_RULE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


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
        error = "A user name is 1 to 32 letters, digits, '_', '.' or '-'."
    return render_template("signin.html", error=error, name=name), 400 if error else 200


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
