"""Contract: usage statistics (``history.stats()``, ``Backend.usage_stats``,
``GET /history/stats``, ``flask smg-history stats``) give exactly the figures
of what was written, only the caller's, and only live records."""

from __future__ import annotations

import datetime as dt
import json
import time

import jsonschema
import pytest

from flask_smg_history import Backend, InvalidRequest, get_state
from flask_smg_history.api.openapi import build_openapi

#: 2024-01-02 10:00 UTC, 2024-01-03 23:59:59.5 UTC and 2024-01-04 00:00 UTC:
#: the last two are half a second apart, on either side of midnight.
D1, D2, D3 = 1704189600.0, 1704326399.5, 1704326400.0
EMPTY = {
    "conversations": {"total": 0, "first_created_at": None, "last_created_at": None},
    "items": {"total": 0, "by_type": {}, "by_role": {}},
    "responses": {
        "total": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "by_model": {},
        "by_day": {},
    },
    "feedback": {"total": 0, "by_rating": {"positive": 0, "negative": 0}, "by_model": {}},
}


@pytest.fixture
def app(make_app):
    """Responses are stored with creation times in 2024, which Redis's
    default retention (30 days from creation) would expire at once."""
    return make_app(SMG_HISTORY_REDIS_RETENTION_DAYS=-1)


def _msg(role: str, text: str) -> dict:
    return {"type": "message", "role": role, "content": text}


def _row(responses: int, input_tokens: int, output_tokens: int, total_tokens: int) -> dict:
    return {
        "responses": responses,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
    }


def _today(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).date().isoformat()


def _write_alice(alice):
    """Two conversations (an item deleted, one linked twice), five responses
    (one deleted) over four days, and votes replaced, withdrawn and deleted
    with their response. Returns what the figures must be."""
    first = alice.conversations.create(
        items=[
            _msg("user", "u1"),
            _msg("assistant", "a1"),
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ]
    )
    page = alice.items.list(first.id, order="asc").data
    alice.items.delete(first.id, page[1].id)  # a1 is gone
    second = alice.conversations.create(
        items=[
            _msg("system", "s"),
            _msg("user", "u2"),
            {"type": "item_reference", "id": page[0].id},  # u1, linked a second time
            _msg("assistant", "a2"),
        ]
    )
    stored = [
        alice.responses.store(
            {
                "model": "m1",
                "input": "q",
                "created_at": D1,
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            }
        ),
        alice.responses.store(
            {
                "model": "m1",
                "input": "q",
                "created_at": D2,
                "usage": {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30},
            }
        ),
        alice.responses.store({"model": "m1", "input": "q", "created_at": D3}),
        alice.responses.store(
            {"model": "m2", "input": "q", "usage": {"input_tokens": 7, "output_tokens": "many", "total_tokens": None}}
        ),
    ]
    gone = alice.responses.store({"model": "m2", "input": "q", "usage": {"input_tokens": 1000}})
    r1, r2, r3, r4 = stored
    alice.feedback.submit(r1.id, "positive")
    alice.feedback.submit(r2.id, "negative")
    alice.feedback.submit(r3.id, "positive")
    alice.feedback.submit(r3.id, "negative")  # replaces the first vote
    alice.feedback.submit(r4.id, "positive")
    alice.feedback.delete(r4.id)  # withdrawn
    alice.feedback.submit(gone.id, "positive")
    alice.responses.delete(gone.id)  # with its vote
    return {
        "conversations": {"total": 2, "first_created_at": first.created_at, "last_created_at": second.created_at},
        "items": {
            "total": 7,
            "by_type": {"function_call": 1, "function_call_output": 1, "message": 5},
            "by_role": {"assistant": 1, "system": 1, "user": 3},
        },
        "responses": {
            "total": 4,
            "input_tokens": 20,
            "output_tokens": 22,
            "total_tokens": 35,
            "by_model": {"m1": _row(3, 13, 22, 35), "m2": _row(1, 7, 0, 0)},
            "by_day": {
                "2024-01-02": _row(1, 3, 2, 5),
                "2024-01-03": _row(1, 10, 20, 30),
                "2024-01-04": _row(1, 0, 0, 0),
                _today(r4.created_at): _row(1, 7, 0, 0),
            },
        },
        "feedback": {
            "total": 3,
            "by_rating": {"positive": 1, "negative": 2},
            "by_model": {"m1": {"positive": 1, "negative": 2}},
        },
    }


def _write_bob(bob):
    bob.conversations.create(items=[_msg("user", "b1"), _msg("developer", "b2")])
    resp = bob.responses.store(
        {"model": "m3", "input": "q", "usage": {"input_tokens": 100, "output_tokens": 100, "total_tokens": 200}}
    )
    bob.feedback.submit(resp.id, "positive")
    return resp


def test_figures_are_those_of_what_was_written(alice, bob):
    expected = _write_alice(alice)
    _write_bob(bob)
    assert alice.stats() == {"since": None, **expected}


def test_whole_store_and_owner_isolation(app, alice, bob):
    expected = _write_alice(alice)
    bob_response = _write_bob(bob)
    backend = get_state(app).backend
    assert backend.usage_stats("alice", since=None) == expected
    everyone = backend.usage_stats(None, since=None)
    assert everyone["conversations"]["total"] == 3 and everyone["items"]["total"] == 9
    assert everyone["items"]["by_role"] == {"assistant": 1, "developer": 1, "system": 1, "user": 4}
    assert everyone["responses"]["by_model"] == {**expected["responses"]["by_model"], "m3": _row(1, 100, 100, 200)}
    assert everyone["responses"]["input_tokens"] == 120 and everyone["responses"]["total_tokens"] == 235
    today = _today(bob_response.created_at)
    assert (
        everyone["responses"]["by_day"][today]["responses"] == expected["responses"]["by_day"][today]["responses"] + 1
    )
    assert everyone["feedback"]["by_rating"] == {"positive": 2, "negative": 2}
    assert everyone["feedback"]["by_model"]["m3"] == {"positive": 1, "negative": 0}
    bob_alone = backend.usage_stats("bob", since=None)
    assert bob_alone["responses"]["by_model"] == {"m3": _row(1, 100, 100, 200)} and bob_alone["items"]["total"] == 2
    bob.erase_owner()
    assert backend.usage_stats(None, since=None) == expected
    assert backend.usage_stats("bob", since=None) == EMPTY
    assert backend.usage_stats("nobody", since=None) == EMPTY


def test_the_database_figures_agree_with_the_default_walk(app, alice, bob):
    """``Backend.usage_stats``'s default (a walk of ``export`` counted in
    Python, what a custom backend starts with) and the backend's own
    aggregates give the same figures."""
    _write_alice(alice)
    _write_bob(bob)
    backend = get_state(app).backend
    for owner, since in (("alice", None), (None, None), (None, D2), ("bob", time.time() - 60)):
        assert backend.usage_stats(owner, since=since) == Backend.usage_stats(backend, owner, since=since)


def test_since_counts_what_was_created_from_then_on(alice):
    old = alice.conversations.create(items=[_msg("user", "before")])
    before = alice.responses.store({"model": "m", "input": "q", "created_at": D1, "usage": {"input_tokens": 1}})
    alice.responses.store({"model": "m", "input": "q", "created_at": D2, "usage": {"input_tokens": 2}})
    time.sleep(0.05)
    mark = time.time()
    time.sleep(0.05)
    alice.items.add(old.id, [_msg("user", "after"), _msg("assistant", "reply")])  # new items, older conversation
    new = alice.conversations.create(items=[_msg("user", "new")])
    alice.feedback.submit(before.id, "negative")  # an old response, rated now
    figures = alice.stats(since=mark)
    assert figures["since"] == mark
    assert figures["conversations"] == {
        "total": 1,
        "first_created_at": new.created_at,
        "last_created_at": new.created_at,
    }
    assert figures["items"] == {"total": 3, "by_type": {"message": 3}, "by_role": {"assistant": 1, "user": 2}}
    assert figures["responses"]["total"] == 0 and figures["responses"]["by_day"] == {}
    assert figures["feedback"]["by_model"] == {"m": {"positive": 0, "negative": 1}}
    on_the_second = alice.stats(since=D2)  # inclusive: the response created exactly then counts
    assert on_the_second["responses"]["by_day"] == {"2024-01-03": _row(1, 2, 0, 0)}
    later = time.time() + 60
    assert alice.stats(since=later) == {"since": later, **EMPTY}


@pytest.mark.parametrize("since", ["yesterday", True, [1]])
def test_since_must_be_unix_seconds(alice, since):
    with pytest.raises(InvalidRequest) as info:
        alice.stats(since=since)
    assert info.value.param == "since"


def test_expired_records_count_nowhere(make_app):
    """Records written under a 3-second retention, and others 2 seconds
    later: 1.5 seconds after those, only the later ones count."""
    app = make_app(SMG_HISTORY_RETENTION_DAYS=3 / 86400)
    alice = get_state(app).store_for("alice")
    old = alice.conversations.create(items=[_msg("user", "old"), _msg("assistant", "old")])
    old_response = alice.responses.store({"model": "old", "input": "q", "usage": {"input_tokens": 5}})
    alice.feedback.submit(old_response.id, "negative")
    time.sleep(2.0)
    fresh = alice.conversations.create(items=[_msg("user", "fresh")])
    fresh_response = alice.responses.store({"model": "fresh", "input": "q", "usage": {"input_tokens": 1}})
    alice.feedback.submit(fresh_response.id, "positive")
    assert alice.stats()["conversations"]["total"] == 2  # both alive yet
    time.sleep(1.5)
    figures = alice.stats()
    assert old.id not in [c.id for c in alice.conversations.list().data]
    assert figures["conversations"] == {
        "total": 1,
        "first_created_at": fresh.created_at,
        "last_created_at": fresh.created_at,
    }
    assert figures["items"] == {"total": 1, "by_type": {"message": 1}, "by_role": {"user": 1}}
    assert figures["responses"]["by_model"] == {"fresh": _row(1, 1, 0, 0)} and figures["responses"]["input_tokens"] == 1
    assert figures["feedback"] == {
        "total": 1,
        "by_rating": {"positive": 1, "negative": 0},
        "by_model": {"fresh": {"positive": 1, "negative": 0}},
    }
    assert get_state(app).backend.usage_stats(None, since=None)["conversations"]["total"] == 1


def test_http_answers_the_callers_figures(make_app):
    app = make_app(
        SMG_HISTORY_API_KEYS={"key-alice": "alice", "key-bob": "bob"},
        SMG_HISTORY_ALLOW_ANONYMOUS=False,
        SMG_HISTORY_REDIS_RETENTION_DAYS=-1,
    )
    state = get_state(app)
    expected = _write_alice(state.store_for("alice"))
    _write_bob(state.store_for("bob"))
    client = app.test_client()
    resp = client.get("/v1/history/stats", headers={"Authorization": "Bearer key-alice"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    schema = build_openapi(state.settings)["paths"]["/history/stats"]["get"]["responses"]["200"]["content"]
    jsonschema.validate(body, schema["application/json"]["schema"])
    conversations = expected["conversations"]
    assert body == {
        "object": "history.stats",
        "since": None,
        **expected,
        "conversations": {
            "total": 2,
            "first_created_at": int(conversations["first_created_at"]),
            "last_created_at": int(conversations["last_created_at"]),
        },
    }
    since = client.get("/v1/history/stats?since=2024-01-03T00:00:00", headers={"Authorization": "Bearer key-alice"})
    assert since.get_json()["since"] == 1704240000
    assert list(since.get_json()["responses"]["by_day"])[:2] == ["2024-01-03", "2024-01-04"]
    bob = client.get("/v1/history/stats", headers={"Authorization": "Bearer key-bob"}).get_json()
    assert bob["responses"]["by_model"] == {"m3": _row(1, 100, 100, 200)}
    bad = client.get("/v1/history/stats?since=last-week", headers={"Authorization": "Bearer key-alice"})
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "since"
    assert client.get("/v1/history/stats").status_code == 401


def test_cli_prints_the_store_figures(app, alice, bob):
    expected = _write_alice(alice)
    _write_bob(bob)
    runner = app.test_cli_runner()
    as_json = runner.invoke(args=["smg-history", "stats", "--owner", "alice", "--json"])
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)
    assert figures["owner"] == "alice" and figures["object"] == "history.stats"
    assert figures["responses"] == expected["responses"] and figures["items"] == expected["items"]
    assert figures["conversations"]["last_created_at"] == int(expected["conversations"]["last_created_at"])
    lines = runner.invoke(args=["smg-history", "stats"]).output.splitlines()
    assert lines[0].startswith("conversations=3 items=9 responses=5 feedback_positive=2 feedback_negative=2 ")
    assert "items_by_type: function_call=1 function_call_output=1 message=7" in lines
    assert "items_by_role: assistant=1 developer=1 system=1 user=4" in lines
    assert "tokens: input_tokens=120 output_tokens=122 total_tokens=235" in lines
    assert "model=m1 responses=3 input_tokens=13 output_tokens=22 total_tokens=35" in lines
    assert "day=2024-01-03 responses=1 input_tokens=10 output_tokens=20 total_tokens=30" in lines
    assert "feedback model=m1 positive=1 negative=2" in lines
    since = runner.invoke(args=["smg-history", "stats", "--since", "2024-01-03", "--json"]).output
    assert json.loads(since)["responses"]["total"] == 4 and json.loads(since)["owner"] is None
    per_owner = runner.invoke(args=["smg-history", "stats", "--by-owner", "--json"]).output.splitlines()
    assert [json.loads(line)["owner"] for line in per_owner] == ["alice", "bob"]
    assert json.loads(per_owner[1])["feedback"]["by_model"] == {"m3": {"positive": 1, "negative": 0}}
    bad = runner.invoke(args=["smg-history", "stats", "--since", "soon"])
    assert bad.exit_code != 0 and "--since" in bad.output
