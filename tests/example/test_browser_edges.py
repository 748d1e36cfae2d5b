"""What a user can run into, each in words they can act on: signed out in
another tab, the history unavailable, a vote taken back in another tab, a name
the rules refuse. Also the sidebar's order by last activity, and the ``/chat``
body limit on a real socket."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from .live import REPLIES, LiveServer, expect, ready, send, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "edges-test", "SMG_HISTORY_BACKEND": "sqlite", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("edges") / "instance") as live:
        yield live


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    yield tab
    context.close()


def test_signed_out_in_another_tab(page, server):
    sign_in(page, server, "olga")
    send(page, "hello")
    other = page.context.new_page()
    other.goto(page.url)
    other.click("text=Sign out")
    expect(other).to_have_url(server.url + "/signin")
    other.close()

    reply = page.locator(REPLIES).last
    reply.locator(".vote.up").click()
    status = reply.locator(".vote-status")
    expect(status).to_contain_text("You were signed out")
    expect(status.locator("a")).to_have_attribute("href", "/signin")
    assert "Authorization" not in status.inner_text() and "credentials" not in status.inner_text()

    page.fill("#message", "a question I typed with care")
    page.press("#message", "Enter")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("You were signed out, perhaps in another tab.")
    expect(notice.locator("a")).to_have_text("Sign in again")
    # The message was not sent: it is back in the box, not lost.
    expect(page.locator("#message")).to_have_value("a question I typed with care")
    expect(page.locator(".message.user")).to_have_count(1)

    page.locator(".sidebar .rename").first.click()
    page.fill(".rename-input", "new name")
    page.press(".rename-input", "Enter")
    expect(notice).to_contain_text("You were signed out")
    assert "Bearer" not in notice.inner_text()

    notice.locator("a").click()
    expect(page).to_have_url(server.url + "/signin")


def test_history_unavailable(page, server):
    sign_in(page, server, "pia")
    send(page, "first")
    unavailable = json.dumps({"error": {"message": "The history backend (sqlite) is unavailable (OperationalError)."}})

    def down(route):
        route.fulfill(status=503, content_type="application/json", body=unavailable)

    page.route("**/chat/*/messages", down)
    page.fill("#message", "second")
    page.press("#message", "Enter")
    notice = page.locator("#notice")
    expect(notice).to_have_text(
        "Your message was not sent: the chat history is unavailable right now; try again in a moment."
    )
    expect(page.locator("#message")).to_have_value("second")
    page.unroute("**/chat/*/messages")

    page.route("**/v1/responses/*/feedback", down)
    page.locator(REPLIES).last.locator(".vote.down").click()
    expect(page.locator(REPLIES).last.locator(".vote-status")).to_have_text(
        "Not saved: the chat history is unavailable right now; try again in a moment."
    )
    page.unroute("**/v1/responses/*/feedback")

    page.route("**/v1/conversations?*", down)
    page.reload()
    expect(notice).to_have_text(
        "Your chats could not be listed: the chat history is unavailable right now; try again in a moment."
    )
    assert "OperationalError" not in notice.inner_text()
    page.unroute("**/v1/conversations?*")
    ready(page)

    page.route("**/chat/*/messages", lambda route: route.abort())
    page.fill("#message", "third")
    page.press("#message", "Enter")
    expect(notice).to_contain_text("the server cannot be reached")
    expect(page.locator("#message")).to_have_value("third")


def test_a_chat_deleted_in_another_tab(page, server):
    sign_in(page, server, "rob")
    send(page, "soon gone")
    other = page.context.new_page()
    other.goto(page.url)
    other.once("dialog", lambda dialog: dialog.accept())
    other.locator("#conversations li.current .delete").click()
    expect(other).to_have_url(server.url + "/")
    other.close()

    page.locator("#conversations li.current .rename").click()
    page.fill(".rename-input", "a new title")
    page.press(".rename-input", "Enter")
    notice = page.locator("#notice")
    expect(notice).to_have_text(
        "The chat could not be renamed: it no longer exists; it was deleted, perhaps in another tab. Reload the page."
    )
    page.fill("#message", "still there?")
    page.press("#message", "Enter")
    expect(notice).to_have_text(
        "Your message was not sent: this chat no longer exists; it was deleted, perhaps in another tab."
    )
    expect(page.locator("#message")).to_have_value("still there?")


def test_a_vote_taken_back_in_another_tab(page, server):
    sign_in(page, server, "tess")
    send(page, "vote on me")
    reply = page.locator(REPLIES).last
    response_id = reply.get_attribute("data-response")
    reply.locator(".vote.up").click()
    expect(reply.locator(".vote-status")).to_have_text("Thanks for the feedback")
    other = page.context.new_page()
    other.goto(page.url)
    up = other.locator(REPLIES).last.locator(".vote.up")
    expect(up).to_have_attribute("aria-pressed", "true")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "false")
    other.close()

    # This tab still shows the vote: taking it back finds nothing to delete
    # (a 404), which is what was asked for, so it is no error.
    reply.locator(".vote.up").click()
    status = reply.locator(".vote-status")
    expect(status).to_have_text("Vote removed")
    expect(status).not_to_have_class(re.compile("error"))
    expect(reply.locator(".vote.up")).to_have_attribute("aria-pressed", "false")
    reply.locator(".vote.up").click()
    expect(status).to_have_text("Thanks for the feedback")
    assert server.store_for("tess").feedback.get(response_id).rating == "positive"


def test_the_name_field_keeps_the_servers_rule(page, server):
    page.goto(server.url + "/signin")
    field = page.locator("#name")
    expect(field).to_have_attribute("maxlength", "32")
    page.fill("#name", "x" * 40)
    assert len(field.input_value()) == 32
    page.fill("#name", "no spaces")
    page.click("button[type=submit]")
    expect(page).to_have_url(server.url + "/signin")
    assert field.evaluate("f => f.validity.patternMismatch") is True
    page.fill("#name", "a.b-c_d" + "e" * 25)
    page.click("button[type=submit]")
    expect(page.locator("#user-name")).to_have_text("a.b-c_d" + "e" * 25)


def test_sidebar_lists_chats_by_last_activity(page, server):
    sign_in(page, server, "quinn")
    send(page, "the older chat")
    older = page.url
    page.click("#new-chat")
    send(page, "the newer chat")
    titles = page.locator("#conversations .title")
    expect(titles).to_have_text(["the newer chat", "the older chat"])
    page.goto(older)
    send(page, "a new message in the older chat")
    expect(titles).to_have_text(["the older chat", "the newer chat"], timeout=5_000)
    page.reload()
    expect(titles).to_have_text(["the older chat", "the newer chat"], timeout=5_000)


def test_a_60_mb_body_is_refused_before_it_is_read(server):
    """Only the headers and a few bytes are sent; the answer comes at once."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            "POST /chat/conv_x/messages HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {60 * 1024 * 1024}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"text": "')
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers
    assert "larger than the server accepts" in json.loads(body)["error"]["message"]


def test_a_reply_cut_off_by_a_closed_tab_is_stored_as_incomplete(server):
    """The browser goes away mid-stream: the server notices at its next write
    and stores what it had generated."""
    store = server.store_for("tess")
    conv = store.conversations.create(metadata={"title": "cut off"})
    cookie = _session_cookie(server, "tess")
    body = json.dumps({"text": "/long"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            f"POST /chat/{conv.id}/messages HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Cookie: {cookie}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        seen = b""
        while seen.count(b"event: delta") < 3:
            seen += sock.recv(65536)
    for _ in range(100):
        responses = store.responses.list(conversation=conv.id).data
        if responses:
            break
        time.sleep(0.05)
    [response] = responses
    assert response.status == "incomplete"
    text = response.output[-1]["content"][0]["text"]
    assert text.startswith("## A long reply") and "Paragraph 40" not in text
    items = store.items.list(conv.id, order="asc").data
    assert [i.type for i in items] == ["message", "reasoning", "message"]
    assert items[-1].payload["status"] == "incomplete"
    assert len(server.app.extensions["example_streams"]) == 0


def _session_cookie(server, name: str) -> str:
    """A signed-in session cookie, from the sign-in form."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(
        "POST", "/signin", body=f"name={name}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    response = connection.getresponse()
    assert response.status == 302
    cookie = response.getheader("Set-Cookie").split(";", 1)[0]
    connection.close()
    return cookie
