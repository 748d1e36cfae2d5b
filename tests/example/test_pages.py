"""The example app's routes through Flask's test client: sign-in, sending,
errors, deleting, the feedback page and owner isolation."""

from __future__ import annotations

import io
import re

from example_app.responders import LOCAL_MODEL, SYSTEM_PROMPT, text_of
from flask_smg_history import NotFound, get_state

from ..support.errors import envelope, missing, raises
from .conftest import new_chat, send, signed_in


def test_pages_and_api_need_sign_in(example):
    client = example.test_client()
    assert client.get("/").location == "/signin"
    assert client.get("/feedback").location == "/signin"
    assert client.get("/v1/conversations").status_code == 401
    response = client.post("/chat/conv_x/messages", json={"text": "hi"})
    assert response.status_code == 401
    assert "sign in" in response.json["error"]["message"]


def test_sign_in_rejects_bad_names_and_escapes_them(example):
    client = example.test_client()
    response = client.post("/signin", data={"name": "<script>alert(1)</script>"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "1 to 32 letters" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert client.get("/").status_code == 302


def test_sign_out(alice):
    assert alice.get("/").status_code == 200
    alice.post("/signout")
    assert alice.get("/").status_code == 302


def test_chat_page_names_user_and_local_responder(alice):
    page = alice.get("/").get_data(as_text=True)
    assert 'id="user-name">alice<' in page
    assert "built-in local responder" in page
    assert 'data-api="/v1"' in page


def test_send_stores_message_reply_and_response(example, alice):
    conv = new_chat(alice)
    first = send(alice, conv, "Hello there")
    assert first.status_code == 200, first.json
    body = first.json
    assert body["model"] == LOCAL_MODEL
    kinds = [(i["type"], i.get("role")) for i in body["items"]]
    assert kinds == [("message", "user"), ("reasoning", None), ("message", "assistant")]
    reply = body["items"][-1]
    assert reply["response_id"] == body["response_id"] and reply["model"] == LOCAL_MODEL
    assert "Hello there" in reply["content"][0]["text"]

    second = send(alice, conv, "And again").json
    stored = alice.get(f"/v1/responses/{second['response_id']}").json
    assert stored["conversation"] == {"id": conv} and stored["previous_response_id"] is None
    assert stored["instructions"] == SYSTEM_PROMPT
    assert [t["name"] for t in stored["tools"]] == ["word_count"]
    assert stored["metadata"] == {"responder": "local", "attempt": "1"}
    inputs = alice.get(f"/v1/responses/{second['response_id']}/input_items").json["data"]
    assert [i["content"][0]["text"] for i in inputs] == ["And again"]
    items = alice.get(f"/v1/conversations/{conv}/items?order=asc&limit=100").json["data"]
    assert [i["id"] for i in items] == [i["id"] for i in body["items"] + second["items"]]
    # The responder read the whole chat: its usage counts the words of every message.
    read = " ".join(text_of(i) for i in items[:-2] if i["type"] == "message")
    assert stored["usage"]["input_tokens"] == len(read.split())
    assert alice.get(f"/v1/conversations/{conv}").json["metadata"]["title"] == "Hello there"


def test_reply_is_deterministic(alice):
    a, b = new_chat(alice), new_chat(alice)
    text = lambda conv: send(alice, conv, "same words").json["items"][-1]["content"][0]["text"]  # noqa: E731
    assert text(a) == text(b)


def test_tool_and_mcp_commands_store_folded_item_kinds(alice):
    conv = new_chat(alice)
    tool = send(alice, conv, "/tool count these four words").json["items"]
    call, output = tool[2], tool[3]
    assert call["type"] == "function_call" and call["name"] == "word_count"
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert '"words": 4' in output["output"]
    mcp = send(alice, conv, "/mcp ping").json["items"]
    assert [i["type"] for i in mcp] == ["message", "reasoning", "mcp_call", "message"]


def test_first_message_titles_the_chat_unless_renamed(alice):
    conv = new_chat(alice, title="Mine")
    send(alice, conv, "this should not become the title")
    assert alice.get(f"/v1/conversations/{conv}").json["metadata"]["title"] == "Mine"
    conv = new_chat(alice)
    send(alice, conv, "word " * 40)
    title = alice.get(f"/v1/conversations/{conv}").json["metadata"]["title"]
    assert len(title) == 60 and title.endswith("…")


def test_empty_and_oversized_messages_are_refused_clearly(alice):
    conv = new_chat(alice)
    for bad in ({"text": ""}, {"text": "   \n"}, {}, {"text": 5}):
        response = alice.post(f"/chat/{conv}/messages", json=bad)
        assert response.status_code == 400
        assert response.json["error"]["message"].startswith("Type a message first")
    response = send(alice, conv, "x" * 100_000)
    assert response.status_code == 400
    assert "100,000 characters" in response.json["error"]["message"]
    assert alice.get(f"/v1/conversations/{conv}/items").json["data"] == []


def test_sending_to_a_missing_chat_says_so(alice):
    response = send(alice, "conv_missing", "hi")
    assert response.status_code == 404
    assert "no longer exists" in response.json["error"]["message"]


def test_delete_removes_chat_and_its_responses_so_votes_fail(alice):
    conv = new_chat(alice)
    response_id = send(alice, conv, "hi").json["response_id"]
    assert alice.post(f"/v1/responses/{response_id}/feedback", json={"rating": "positive"}).status_code == 200
    deleted = alice.delete(f"/chat/{conv}")
    assert deleted.status_code == 200 and deleted.json["deleted"] is True
    message, param = missing("conversation", conv)
    envelope(alice.get(f"/v1/conversations/{conv}"), 404, message=message, param=param)
    message, param = missing("response", response_id)
    vote = alice.post(f"/v1/responses/{response_id}/feedback", json={"rating": "negative"})
    envelope(vote, 404, message=message, param=param)
    assert alice.delete(f"/chat/{conv}").status_code == 404


def test_owners_are_isolated(example, alice, bob):
    conv = new_chat(alice, title="alice's secret")
    response_id = send(alice, conv, "private").json["response_id"]
    assert bob.get("/v1/conversations").json["data"] == []
    assert bob.get(f"/c/{conv}").status_code == 404
    assert "belongs to another user" in bob.get(f"/c/{conv}").get_data(as_text=True)
    assert send(bob, conv, "intrude").status_code == 404
    assert bob.delete(f"/chat/{conv}").status_code == 404
    message, param = missing("response", response_id)
    vote = bob.post(f"/v1/responses/{response_id}/feedback", json={"rating": "negative"})
    envelope(vote, 404, message=message, param=param)
    assert alice.get(f"/c/{conv}").status_code == 200
    again = signed_in(example, "alice")
    assert [c["id"] for c in again.get("/v1/conversations").json["data"]] == [conv]


def test_conversation_page_escapes_title(alice):
    conv = new_chat(alice, title="<img src=x onerror=alert(1)>")
    page = alice.get(f"/c/{conv}").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_feedback_page_counts_charts_and_escapes(alice):
    conv = new_chat(alice)
    ids = [send(alice, conv, f"message {n}").json["response_id"] for n in range(3)]
    alice.post(f"/v1/responses/{ids[0]}/feedback", json={"rating": "positive", "comment": "<b>great</b>"})
    alice.post(f"/v1/responses/{ids[1]}/feedback", json={"rating": "negative", "comment": "meh"})
    alice.post(f"/v1/responses/{ids[2]}/feedback", json={"rating": "positive"})
    page = alice.get("/feedback").get_data(as_text=True)
    assert re.search(r'id="count-total">3<', page)
    assert re.search(r'id="count-positive">2<', page)
    assert re.search(r'id="count-negative">1<', page)
    assert page.count('<svg class="chart wide"') == 2 and page.count('<svg class="chart narrow"') == 2
    assert page.count('class="bar positive"') == 4 and page.count('class="bar negative"') == 4
    assert "&lt;b&gt;great&lt;/b&gt;" in page and "<b>great</b>" not in page
    assert ">meh<" in page


def test_feedback_page_without_votes(alice):
    page = alice.get("/feedback").get_data(as_text=True)
    assert "No votes yet" in page and "No comments yet" in page


def test_backend_comes_from_the_environment(monkeypatch, tmp_path):
    from example_app import DEFAULT_BACKEND, create_app

    monkeypatch.setenv("SMG_HISTORY_BACKEND", "none")
    app = create_app({"SECRET_KEY": "x"}, instance_path=str(tmp_path / "a"))
    assert get_state(app).backend.name == "none"
    monkeypatch.delenv("SMG_HISTORY_BACKEND")
    app = create_app({"SECRET_KEY": "x"}, instance_path=str(tmp_path / "b"))
    backend = get_state(app).backend
    assert backend.name == DEFAULT_BACKEND == "sqlite"
    backend.close()
    assert (tmp_path / "b" / "smg_history.sqlite3").exists()


def test_session_key_is_kept_in_the_instance_folder(tmp_path):
    from example_app import create_app

    first = create_app({"SMG_HISTORY_BACKEND": "memory"}, instance_path=str(tmp_path / "i"))
    second = create_app({"SMG_HISTORY_BACKEND": "memory"}, instance_path=str(tmp_path / "i"))
    assert first.secret_key == second.secret_key and len(first.secret_key) == 64


# -- the /chat routes' edges ---------------------------------------------------------


def test_sign_in_name_rule_is_the_same_in_the_field_and_on_the_server(example):
    from example_app.auth import NAME_MAX, NAME_PATTERN

    page = example.test_client().get("/signin").get_data(as_text=True)
    assert f'maxlength="{NAME_MAX}"' in page and NAME_MAX == 32
    assert f'pattern="{NAME_PATTERN}"' in page
    assert signed_in(example, "a" * 32)
    response = example.test_client().post("/signin", data={"name": "a" * 33})
    assert response.status_code == 400 and "1 to 32 letters" in response.get_data(as_text=True)
    assert example.test_client().post("/signin", data={"name": "a b"}).status_code == 400


def test_first_message_creates_the_chat_with_it(alice):
    assert alice.get("/v1/conversations").json["data"] == []
    body = alice.post("/chat/messages", json={"text": "A brand new chat"}).json
    conv = body["conversation"]
    chats = alice.get("/v1/conversations").json["data"]
    assert [c["id"] for c in chats] == [conv] and chats[0]["metadata"] == {"title": "A brand new chat"}
    items = alice.get(f"/v1/conversations/{conv}/items?order=asc").json["data"]
    assert [i["id"] for i in items] == [i["id"] for i in body["items"]]
    assert items[0]["content"][0]["text"] == "A brand new chat"
    refused = alice.post("/chat/messages", json={"text": "  "})
    assert refused.status_code == 400 and len(alice.get("/v1/conversations").json["data"]) == 1


def test_chat_routes_answer_json_errors(alice):
    conv = new_chat(alice)
    bad = alice.post(f"/chat/{conv}/messages", data="{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json["error"]["message"] == "The request body is not valid JSON."
    array = alice.post(f"/chat/{conv}/messages", json=["hi"])
    assert array.status_code == 400 and "JSON object" in array.json["error"]["message"]
    form = alice.post(f"/chat/{conv}/messages", data={"text": "hi"})
    assert form.status_code == 400 and "application/json" in form.json["error"]["message"]
    for method, url in (("GET", f"/chat/{conv}/messages"), ("GET", "/chat/messages"), ("PUT", f"/chat/{conv}")):
        response = alice.open(url, method=method)
        assert response.status_code == 405 and response.mimetype == "application/json", url
        assert response.json["error"]["message"]
    missing = alice.get("/chat/no/such/route")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    # Outside /chat and /v1, Flask's own pages are untouched.
    assert alice.get("/no-such-page").mimetype == "text/html"
    assert alice.get("/v1/no-such-route").json["error"]["type"] == "invalid_request_error"


def test_chat_routes_refuse_bodies_over_the_extensions_limit(make_example):
    app = make_example(SMG_HISTORY_MAX_REQUEST_BYTES=2048)
    client = signed_in(app, "alice")
    conv = new_chat(client)
    assert get_state(app).settings.max_request_bytes == 2048
    big = send(client, conv, "x" * 3000)
    assert big.status_code == 413 and "2,048 bytes" in big.json["error"]["message"]
    fits = send(client, conv, "x" * 1900)
    assert fits.status_code == 200
    # A body sent without a Content-Length (chunked): no more than the limit is read.
    body = _CountingBody(b'{"text": "' + b"y" * 100_000 + b'"}')
    streamed = client.post(
        f"/chat/{conv}/messages",
        content_type="application/json",
        environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True},
    )
    assert streamed.status_code == 413
    assert body.read_bytes <= 2049


class _CountingBody(io.BytesIO):
    read_bytes = 0

    def read(self, size=-1):
        piece = super().read(size)
        self.read_bytes += len(piece)
        return piece


def test_history_unavailable_is_a_friendly_503(example, alice, monkeypatch):
    from flask_smg_history import HistoryUnavailable

    conv = new_chat(alice)
    backend = get_state(example).backend

    def down(*args, **kwargs):
        raise HistoryUnavailable("The history backend (test) is unavailable (OperationalError); try again later.")

    monkeypatch.setattr(backend, "get_conversation", down)
    response = send(alice, conv, "hi")
    assert response.status_code == 503
    assert response.json["error"]["message"] == "The chat history is unavailable right now; try again in a moment."


def test_votes_come_in_one_answer_without_404s(alice):
    conv = new_chat(alice)
    ids = [send(alice, conv, f"message {n}").json["response_id"] for n in range(3)]
    alice.post(f"/v1/responses/{ids[0]}/feedback", json={"rating": "positive", "comment": "good"})
    alice.post(f"/v1/responses/{ids[1]}/feedback", json={"rating": "negative"})
    assert alice.delete(f"/v1/responses/{ids[1]}/feedback").status_code == 200
    query = "&".join(f"response_id={i}" for i in [*ids, "resp_missing"])
    votes = alice.get(f"/chat/votes?{query}")
    assert votes.status_code == 200
    assert votes.json["data"] == {ids[0]: {"rating": "positive", "comment": "good"}}
    too_many = "&".join(f"response_id=r{n}" for n in range(101))
    assert alice.get(f"/chat/votes?{too_many}").status_code == 400


def counts(page: str) -> tuple[int, int, int]:
    """The feedback page's total, positive and negative counts."""
    found = [re.search(rf'id="count-{name}">(\d+)<', page) for name in ("total", "positive", "negative")]
    assert all(found), page
    return tuple(int(match.group(1)) for match in found)


def test_a_vote_taken_back_is_deleted_and_a_new_one_counts(example, alice):
    conv = new_chat(alice)
    ids = [send(alice, conv, f"message {n}").json["response_id"] for n in range(2)]
    alice.post(f"/v1/responses/{ids[0]}/feedback", json={"rating": "positive", "comment": "kept"})
    first = alice.post(f"/v1/responses/{ids[1]}/feedback", json={"rating": "negative", "comment": "taken back"}).json
    assert counts(alice.get("/feedback").get_data(as_text=True)) == (2, 1, 1)

    deleted = alice.delete(f"/v1/responses/{ids[1]}/feedback")
    assert deleted.status_code == 200
    assert deleted.json == {"id": first["id"], "object": "response.feedback.deleted", "deleted": True}
    with raises(NotFound, message=f"No feedback for response with id '{ids[1]}'.", param="response_id"):
        get_state(example).store_for("alice").feedback.get(ids[1])
    assert [fb["response_id"] for fb in alice.get("/v1/feedback").json["data"]] == [ids[0]]
    page = alice.get("/feedback").get_data(as_text=True)
    assert counts(page) == (1, 1, 0)
    assert "kept" in page and "taken back" not in page
    # Nothing left to take back: a 404, as the page expects.
    assert alice.delete(f"/v1/responses/{ids[1]}/feedback").status_code == 404

    again = alice.post(f"/v1/responses/{ids[1]}/feedback", json={"rating": "positive"}).json
    assert again["id"] != first["id"] and again["comment"] is None
    assert counts(alice.get("/feedback").get_data(as_text=True)) == (2, 2, 0)


def test_regenerate_only_the_latest_reply(alice):
    conv = new_chat(alice)
    first = send(alice, conv, "one").json
    second = send(alice, conv, "two").json
    older = alice.post(f"/chat/{conv}/regenerate", json={"response_id": first["response_id"]})
    assert older.status_code == 409 and "latest reply" in older.json["error"]["message"]
    again = alice.post(f"/chat/{conv}/regenerate", json={"response_id": second["response_id"]}).json
    assert again["items"][-1]["content"][0]["text"].startswith("(Take 2.)")
    third = alice.post(f"/chat/{conv}/regenerate", json={"response_id": again["response_id"]}).json
    assert third["items"][-1]["content"][0]["text"].startswith("(Take 3.)")
    listed = alice.get(f"/v1/responses?conversation={conv}&limit=10").json["data"]
    assert len(listed) == 4  # both originals and both regenerations stay stored
    missing = alice.post(f"/chat/{conv}/regenerate", json={"response_id": "resp_missing"})
    assert missing.status_code == 404 and "no longer exists" in missing.json["error"]["message"]
    other = new_chat(alice)
    assert alice.post(f"/chat/{other}/regenerate", json={"response_id": third["response_id"]}).status_code == 400
    # Deleting the chat deletes every response stored for it, replaced ones too.
    alice.delete(f"/chat/{conv}")
    assert alice.get(f"/v1/responses?conversation={conv}").json["data"] == []


def test_stopping_a_finished_or_foreign_stream_changes_nothing(example, alice, bob):
    registry = example.extensions["example_streams"]
    stream_id, event = registry.open("alice")
    assert bob.post(f"/chat/streams/{stream_id}/stop").json == {"id": stream_id, "stopping": False}
    assert not event.is_set()
    assert alice.post(f"/chat/streams/{stream_id}/stop").json == {"id": stream_id, "stopping": True}
    assert event.is_set()
    registry.close(stream_id)
    assert alice.post(f"/chat/streams/{stream_id}/stop").json["stopping"] is False


def test_pages_send_a_content_security_policy_and_a_favicon(alice):
    page = alice.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    assert 'rel="icon"' in html and "vendor/markdown-it/markdown-it.min.js" in html
    icon = alice.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_latest_comments_are_looked_for_among_the_newest_votes(example, alice):
    from flask import session

    from example_app.pages import latest_comments

    conv = new_chat(alice)
    for n, comment in enumerate(["oldest", None, "newer", None]):
        response_id = send(alice, conv, f"message {n}").json["response_id"]
        alice.post(f"/v1/responses/{response_id}/feedback", json={"rating": "positive", "comment": comment})
    page = alice.get("/feedback").get_data(as_text=True)
    assert counts(page) == (4, 4, 0)
    assert page.index(">newer<") < page.index(">oldest<")
    with example.test_request_context():
        session["user"] = "alice"
        assert [fb.comment for fb in latest_comments()] == ["newer", "oldest"]
        assert [fb.comment for fb in latest_comments(limit=1)] == ["newer"]
        assert [fb.comment for fb in latest_comments(scan=3)] == ["newer"]
        assert latest_comments(scan=1) == []
