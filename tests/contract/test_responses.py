"""Contract: stored responses and feedback, on every backend."""

import datetime as dt
import time

import pytest

from flask_smg_history import InvalidRequest, NotFound

from ..support.errors import missing, raises


def _response(**overrides):
    body = {
        "model": "gpt-test",
        "input": [{"role": "user", "content": "Hi"}],
        "output": [
            {
                "type": "message",
                "id": "msg_out1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        "instructions": "be nice",
        "temperature": 0.2,
    }
    body.update(overrides)
    return body


def test_store_and_get(alice):
    conv = alice.conversations.create()
    stored = alice.responses.store(_response(conversation=conv.id, metadata={"k": "v"}))
    assert stored.id.startswith("resp_")
    got = alice.responses.get(stored.id)
    assert got.model == "gpt-test" and got.status == "completed"
    assert got.conversation_id == conv.id
    assert got.usage == {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    assert got.output[0]["content"][0]["text"] == "Hello"
    assert got.metadata == {"k": "v"}
    assert got.extra == {"instructions": "be nice", "temperature": 0.2}
    assert got.input[0]["type"] == "message" and got.input[0]["id"].startswith("msg_")


def test_given_id_string_input_and_replace(alice):
    stored = alice.responses.store(_response(id="resp_given", input="plain text"))
    assert stored.id == "resp_given"
    assert alice.responses.get("resp_given").input[0]["content"] == [{"type": "input_text", "text": "plain text"}]
    alice.responses.store(_response(id="resp_given", model="other"))
    assert alice.responses.get("resp_given").model == "other"


def test_chain_follows_previous_response_id(alice):
    first = alice.responses.store(_response())
    second = alice.responses.store(_response(previous_response_id=first.id))
    third = alice.responses.store(_response(previous_response_id=second.id))
    assert [r.id for r in alice.responses.chain(third.id)] == [first.id, second.id, third.id]
    assert [r.id for r in alice.responses.chain(first.id)] == [first.id]


def test_references_must_exist_for_this_owner(alice, bob):
    conv = alice.conversations.create()
    resp = alice.responses.store(_response())
    with raises(NotFound, message=f"Conversation with id '{conv.id}' not found.", param="conversation_id"):
        bob.responses.store(_response(conversation=conv.id))
    with raises(NotFound, message=f"Response with id '{resp.id}' not found.", param="response_id"):
        bob.responses.store(_response(previous_response_id=resp.id))
    with raises(InvalidRequest, message="Invalid 'input': must be a string or a list of items.", param="input"):
        alice.responses.store(_response(input=42))
    assert bob.responses.list().data == [] and [r.id for r in alice.responses.list().data] == [resp.id]


def test_delete_removes_response_and_feedback(alice):
    resp = alice.responses.store(_response())
    alice.feedback.submit(resp.id, "positive")
    alice.responses.delete(resp.id)
    for call in (
        lambda: alice.responses.get(resp.id),
        lambda: alice.responses.delete(resp.id),
        lambda: alice.feedback.submit(resp.id, "negative"),
    ):
        with raises(NotFound, message=f"Response with id '{resp.id}' not found.", param="response_id"):
            call()
    with raises(NotFound, message=f"No feedback for response with id '{resp.id}'.", param="response_id"):
        alice.feedback.get(resp.id)
    assert alice.feedback.list().data == []


def test_input_items_pages(alice):
    resp = alice.responses.store(_response(input=[{"role": "user", "content": str(n)} for n in range(30)]))
    first = alice.responses.input_items(resp.id, limit=20, order="asc")
    assert len(first.data) == 20 and first.has_more
    rest = alice.responses.input_items(resp.id, after=first.last_id, limit=20, order="asc")
    assert len(rest.data) == 10 and not rest.has_more
    texts = [i.payload["content"][0]["text"] for i in first.data + rest.data]
    assert texts == [str(n) for n in range(30)]
    assert alice.responses.input_items(resp.id).data[0].payload["content"][0]["text"] == "29"


def test_response_owner_isolation(alice, bob):
    resp = alice.responses.store(_response())
    alice.feedback.submit(resp.id, "positive")
    for call in (
        lambda: bob.responses.get(resp.id),
        lambda: bob.responses.delete(resp.id),
        lambda: bob.responses.input_items(resp.id),
        lambda: bob.responses.chain(resp.id),
        lambda: bob.feedback.submit(resp.id, "negative"),
    ):
        with raises(NotFound, message=f"Response with id '{resp.id}' not found.", param="response_id"):
            call()
    with raises(NotFound, message=f"No feedback for response with id '{resp.id}'.", param="response_id"):
        bob.feedback.get(resp.id)
    assert bob.feedback.list().data == []
    assert bob.feedback.stats()["total"] == 0
    assert alice.feedback.get(resp.id).rating == "positive"


def test_feedback_submit_replace_list_and_stats(alice):
    a = alice.responses.store(_response(model="m1"))
    b = alice.responses.store(_response(model="m2"))
    c = alice.responses.store(_response(model="m2"))
    first = alice.feedback.submit(a.id, "negative", comment="wrong")
    assert first.id.startswith("fb_") and len(first.id) == 3 + 48
    again = alice.feedback.submit(a.id, "positive", comment="fixed", metadata={"ui": "thumbs"})
    assert again.id == first.id
    got = alice.feedback.get(a.id)
    assert (got.rating, got.comment, got.metadata, got.model) == ("positive", "fixed", {"ui": "thumbs"}, "m1")
    time.sleep(0.01)
    alice.feedback.submit(b.id, "negative")
    time.sleep(0.01)
    alice.feedback.submit(c.id, "negative", comment="meh")
    listed = alice.feedback.list()
    assert [f.response_id for f in listed.data] == [c.id, b.id, a.id]
    assert [f.response_id for f in alice.feedback.list(rating="negative").data] == [c.id, b.id]
    assert [f.response_id for f in alice.feedback.list(model="m1").data] == [a.id]
    assert alice.feedback.list(since=time.time() + 60).data == []
    page = alice.feedback.list(limit=2)
    assert page.has_more and [f.response_id for f in alice.feedback.list(after=page.last_id).data] == [a.id]
    stats = alice.feedback.stats()
    assert stats["total"] == 3
    assert stats["by_rating"] == {"positive": 1, "negative": 2}
    assert stats["by_model"] == {"m1": {"positive": 1, "negative": 0}, "m2": {"positive": 0, "negative": 2}}
    days = {dt.datetime.fromtimestamp(f.created_at, dt.timezone.utc).date().isoformat() for f in listed.data}
    if len(days) == 1:  # the usual case; around midnight UTC the votes may straddle two days
        assert stats["by_day"] == {days.pop(): {"positive": 1, "negative": 2}}
    assert sum(day["negative"] for day in stats["by_day"].values()) == 2
    assert sum(day["positive"] for day in stats["by_day"].values()) == 1


def test_feedback_delete_withdraws_one_vote_and_nothing_else(alice, bob):
    a = alice.responses.store(_response(model="m1"))
    b = alice.responses.store(_response(model="m1"))
    first = alice.feedback.submit(a.id, "negative", comment="wrong")
    alice.feedback.submit(b.id, "positive")
    bob_resp = bob.responses.store(_response(model="m1"))
    bob.feedback.submit(bob_resp.id, "negative")
    assert alice.feedback.delete(a.id) == first.id
    with raises(NotFound, message=f"No feedback for response with id '{a.id}'.", param="response_id"):
        alice.feedback.get(a.id)
    assert alice.responses.get(a.id).id == a.id  # the response stays
    assert [f.response_id for f in alice.feedback.list().data] == [b.id]
    assert alice.feedback.stats()["by_rating"] == {"positive": 1, "negative": 0}
    with raises(NotFound, message=f"No feedback for response with id '{a.id}'.", param="response_id"):
        alice.feedback.delete(a.id)  # twice: nothing left to withdraw
    with raises(NotFound, message=f"No feedback for response with id '{bob_resp.id}'.", param="response_id"):
        alice.feedback.delete(bob_resp.id)  # another owner's vote is as missing as none
    assert bob.feedback.get(bob_resp.id).rating == "negative"
    again = alice.feedback.submit(a.id, "positive")
    assert again.id != first.id and alice.feedback.get(a.id).rating == "positive"
    assert alice.feedback.stats()["by_rating"] == {"positive": 2, "negative": 0}


@pytest.mark.parametrize(
    ("kwargs", "param", "message"),
    [
        ({"rating": "meh"}, "rating", "Invalid 'rating': Must be one of: positive, negative."),
        ({"rating": None}, "rating", "Invalid 'rating': Field may not be null."),
        (
            {"rating": "positive", "comment": "x" * 4097},
            "comment",
            "Invalid 'comment': Longer than maximum length 4096.",
        ),
        (
            {"rating": "positive", "metadata": {"k" * 65: "v"}},
            "metadata",
            f"Invalid 'metadata': Metadata keys must be at most 64 characters: '{'k' * 65}'.",
        ),
    ],
)
def test_feedback_validation(alice, kwargs, param, message):
    resp = alice.responses.store(_response())
    with raises(InvalidRequest, message=message, param=param):
        alice.feedback.submit(resp.id, **kwargs)
    with raises(NotFound, message=f"No feedback for response with id '{resp.id}'.", param="response_id"):
        alice.feedback.get(resp.id)
    assert alice.feedback.list().data == []


@pytest.mark.parametrize("rating", ["bogus", "POSITIVE", "", 1])
def test_feedback_list_refuses_an_unknown_rating(alice, rating):
    """An unknown rating is a 400 naming the parameter, never an empty list
    that looks like "no feedback"."""
    resp = alice.responses.store(_response())
    alice.feedback.submit(resp.id, "positive")
    with raises(InvalidRequest, message="Invalid 'rating': must be 'positive' or 'negative'.", param="rating"):
        alice.feedback.list(rating=rating)
    assert [f.rating for f in alice.feedback.list(rating="positive").data] == ["positive"]


def test_a_foreign_previous_response_with_the_callers_own_conversation_is_unknown(alice, bob):
    """Bob names his own conversation and alice's response as the one his
    follows: refused exactly as for a response that never existed (same
    error, same words), so the answer tells him nothing about alice's IDs,
    and nothing is stored. The other way round (his own previous response,
    her conversation) likewise."""
    theirs = alice.responses.store(_response())
    own = bob.conversations.create()
    for previous in (theirs.id, "resp_" + "0" * 48):
        message, param = missing("response", previous)
        for conversation in (own.id, {"id": own.id}):
            with raises(NotFound, message=message, param=param):
                bob.responses.store(_response(conversation=conversation, previous_response_id=previous))
    assert bob.responses.list().data == []

    mine = bob.responses.store(_response())
    alice_conv = alice.conversations.create()
    message, param = missing("conversation", alice_conv.id)
    with raises(NotFound, message=message, param=param):
        bob.responses.store(_response(conversation=alice_conv.id, previous_response_id=mine.id))
    assert [r.id for r in bob.responses.list().data] == [mine.id]
    assert [r.id for r in alice.responses.list().data] == [theirs.id]
    assert alice.responses.list(conversation=alice_conv.id).data == []


def test_the_conversation_may_be_given_as_an_object(alice):
    """OpenAI's response object carries ``conversation`` as ``{"id": ...}``;
    stored as it would be from the bare ID, and refused when malformed."""
    conv = alice.conversations.create()
    stored = alice.responses.store(_response(conversation={"id": conv.id}))
    assert alice.responses.get(stored.id).conversation_id == conv.id
    assert [r.id for r in alice.responses.list(conversation=conv.id).data] == [stored.id]
    for bad in ({"ID": conv.id}, {"id": 7}, 7):
        with raises(
            InvalidRequest, message="Invalid 'conversation': expected an ID or {'id': ...}.", param="conversation"
        ):
            alice.responses.store(_response(conversation=bad))
    assert [r.id for r in alice.responses.list().data] == [stored.id]


def test_stats_count_zero_for_a_rating_nobody_gave(alice):
    resp = alice.responses.store(_response(model="m1"))
    fb = alice.feedback.submit(resp.id, "negative")
    day = dt.datetime.fromtimestamp(fb.created_at, dt.timezone.utc).date().isoformat()
    assert alice.feedback.stats() == {
        "total": 1,
        "by_rating": {"positive": 0, "negative": 1},
        "by_model": {"m1": {"positive": 0, "negative": 1}},
        "by_day": {day: {"positive": 0, "negative": 1}},
    }
