"""Owner isolation on every endpoint, secrets kept out of logs and errors,
unguessable IDs, and the blueprint behind a host's own login."""

from __future__ import annotations

import logging
import re
import statistics
import time

import pytest

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.records import mint_id

from ..support.errors import envelope

KEYS = {"sk-alice-secret": "alice", "sk-bob-secret": "bob"}
A = {"Authorization": "Bearer sk-alice-secret"}
B = {"Authorization": "Bearer sk-bob-secret"}
MISSING = "0" * 48


@pytest.fixture
def world(make_app):
    """Alice's conversation, item, response and feedback; Bob has nothing."""
    app = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    client = app.test_client()
    conv = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "secret"}]}, headers=A)
    conv = conv.get_json()
    item = client.get(f"/v1/conversations/{conv['id']}/items", headers=A).get_json()["data"][0]
    store = get_state(app).store_for("alice")
    resp = store.responses.store({"model": "m", "input": "secret", "conversation": conv["id"]})
    store.feedback.submit(resp.id, "positive", comment="secret")
    return client, conv["id"], item["id"], resp.id


def _requests(cid, iid, rid):
    return [
        ("get", f"/v1/conversations/{cid}", None),
        ("post", f"/v1/conversations/{cid}", {"metadata": {"x": "y"}}),
        ("delete", f"/v1/conversations/{cid}", None),
        ("get", f"/v1/conversations/{cid}/items", None),
        ("post", f"/v1/conversations/{cid}/items", {"items": [{"role": "user", "content": "intrude"}]}),
        ("get", f"/v1/conversations/{cid}/items/{iid}", None),
        ("delete", f"/v1/conversations/{cid}/items/{iid}", None),
        ("get", f"/v1/responses/{rid}", None),
        ("delete", f"/v1/responses/{rid}", None),
        ("get", f"/v1/responses/{rid}/input_items", None),
        ("get", f"/v1/responses/{rid}/feedback", None),
        ("post", f"/v1/responses/{rid}/feedback", {"rating": "negative"}),
    ]


def test_foreign_ids_are_indistinguishable_from_missing_ones(world):
    client, cid, iid, rid = world
    foreign = _requests(cid, iid, rid)
    missing = _requests(f"conv_{MISSING}", iid, f"resp_{MISSING}")
    for (method, url, body), (_, missing_url, _) in zip(foreign, missing):
        theirs = getattr(client, method)(url, json=body, headers=B)
        absent = getattr(client, method)(missing_url, json=body, headers=B)
        assert theirs.status_code == absent.status_code == 404, url
        normalise = {cid: "ID", rid: "ID", f"conv_{MISSING}": "ID", f"resp_{MISSING}": "ID"}
        texts = []
        for answer in (theirs, absent):
            text = answer.get_data(as_text=True)
            for raw, placeholder in normalise.items():
                text = text.replace(raw, placeholder)
            texts.append(text)
        assert texts[0] == texts[1], url
    for listing in ("/v1/conversations", "/v1/feedback", "/v1/responses"):
        assert client.get(listing, headers=B).get_json()["data"] == []
    assert client.get("/v1/feedback/stats", headers=B).get_json()["total"] == 0
    assert client.get("/v1/history/stats", headers=B).get_json()["conversations"]["total"] == 0
    # and Alice still has everything
    assert client.get(f"/v1/conversations/{cid}/items/{iid}", headers=A).status_code == 200
    assert client.get(f"/v1/responses/{rid}/feedback", headers=A).get_json()["rating"] == "positive"


def test_foreign_and_missing_take_the_same_time_class(world):
    client, cid, _, _ = world

    def median_ms(url):
        samples = []
        for _ in range(40):
            started = time.perf_counter()
            client.get(url, headers=B)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    foreign, missing = median_ms(f"/v1/conversations/{cid}"), median_ms(f"/v1/conversations/conv_{MISSING}")
    assert abs(foreign - missing) < max(2.0, 0.5 * max(foreign, missing)), (foreign, missing)


def test_secrets_never_reach_logs_or_answers(world, caplog):
    client, cid, _, _ = world
    caplog.set_level(logging.DEBUG)
    client.get(f"/v1/conversations/{cid}", headers=A)
    wrong = client.get("/v1/conversations", headers={"Authorization": "Bearer sk-wrong-secret"})
    envelope(wrong, 401, message="Incorrect API key provided.", param=None)
    assert "sk-wrong-secret" not in wrong.get_data(as_text=True)
    for secret in ("sk-alice-secret", "sk-bob-secret", "sk-wrong-secret", 'secret"'):
        assert secret not in caplog.text


def test_minted_ids_are_unguessable():
    ids = {mint_id("conv") for _ in range(20_000)}
    assert len(ids) == 20_000
    sample = next(iter(ids))
    assert len(sample.removeprefix("conv_")) * 4 >= 128


def test_blueprint_behind_flask_login(make_app):
    """The documented pattern (docs/security.md): Flask-Login decides who is
    signed in, ``identity_loader`` maps that to the owner, and a
    ``before_request`` hook refuses the API to anonymous users."""
    import flask_login
    from flask import abort, request

    ext = SmgHistory()
    app = make_app(ext=ext, SMG_HISTORY_ALLOW_ANONYMOUS=False)
    app.secret_key = "test"
    login_manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, user_id):
            self.id = user_id

    login_manager.user_loader(User)

    @ext.identity_loader
    def owner():
        user = flask_login.current_user
        return user.get_id() if user.is_authenticated else None

    @app.before_request
    def require_login():
        if request.blueprint == "smg_history" and not flask_login.current_user.is_authenticated:
            abort(401)

    @app.post("/login/<name>")
    def login(name):
        flask_login.login_user(User(name))
        return "ok"

    client = app.test_client()
    refused = client.get("/v1/conversations")
    envelope(refused, 401, message=re.compile(r"The server could not verify that you are authorized .*"), param=None)
    client.post("/login/carol")
    conv = client.post("/v1/conversations", json={}).get_json()
    assert client.get(f"/v1/conversations/{conv['id']}").status_code == 200
    store = get_state(app).store_for("carol")
    assert store.conversations.get(conv["id"]).owner == "carol"
