"""The example app in a real browser: Playwright driving Debian's Chromium
against the app served on a loopback port.

The tests run in file order and share one server and one signed-in user, as a
person would: sign in, chat, vote (and take a vote back), rename, scroll back,
restart the server, then a second user looks for the first one's chats, and a
third pages through a long sidebar. Alice's tab records every console message
and page error from the start: her whole session must log none.
"""

from __future__ import annotations

import re

import pytest

from flask_smg_history import NotFound, get_state

from ..support.errors import raises
from .live import REPLIES, LiveServer, expect, save_screenshot, send, sign_in, watch


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on its default backend, SQLite in its instance folder."""
    folder = tmp_path_factory.mktemp("example")
    config = {
        "SECRET_KEY": "browser-test",
        "SMG_HISTORY_BACKEND": "sqlite",
        "EXAMPLE_LLM_BASE_URL": None,
        "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002,
    }
    with LiveServer(config, folder / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def session():
    """Alice's tab and what its console said."""
    return {}


@pytest.fixture(scope="module")
def alice(browser, server, session):
    """Alice's tab, kept across the tests."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    session["console"] = watch(page)
    sign_in(page, server, "alice")
    yield page
    context.close()


@pytest.fixture(scope="module")
def state() -> dict:
    """What one test leaves for the next (the chat's URL, its votes)."""
    return {}


def test_sign_in_and_send_three_messages(alice, server, state):
    expect(alice.locator(".responder")).to_contain_text("built-in local responder")
    expect(alice.locator("#no-conversations")).to_be_visible()
    expect(alice).to_have_title("New chat · flask-smg-history example")
    # "New chat" stores nothing: a chat exists from its first message on.
    alice.click("#new-chat")
    expect(alice).to_have_url(server.url + "/")
    expect(alice.locator("#log-start")).to_have_text("Start a new chat: type a message below.")
    assert server.store_for("alice").conversations.list().data == []

    send(alice, "Hello <b>there</b>, what can you do?")
    expect(alice).to_have_url(re.compile(r"/c/conv_[0-9a-f]+$"))
    expect(alice).to_have_title("Hello <b>there</b>, what can you do? · flask-smg-history example")
    expect(alice.locator("#chat-title")).to_have_text("Hello <b>there</b>, what can you do?")
    send(alice, "/tool count the words in this sentence please")
    send(alice, "/mcp ping the demo server")

    texts = alice.locator(".message .text").all_inner_texts()
    assert texts[0] == "Hello <b>there</b>, what can you do?"
    assert alice.locator(".log b").count() == 0
    assert len(texts) == 6
    expect(alice.locator(f"{REPLIES} .who").first).to_contain_text("local-responder")
    for kind in ("reasoning", "function-call", "function-output", "mcp-call"):
        folded = alice.locator(f"details.{kind}").first
        expect(folded).to_be_visible()
        assert folded.get_attribute("open") is None
    output = alice.locator("details.function-output").first
    output.locator("summary").click()
    expect(output.locator("pre")).to_contain_text('"words": 7')
    expect(alice.locator("#conversations li.current .title")).to_have_text("Hello <b>there</b>, what can you do?")
    assert len(server.store_for("alice").conversations.list().data) == 1
    state["chat_url"] = alice.url


def test_vote_comment_with_enter_rename_and_reload(alice, server, state):
    replies = alice.locator(REPLIES)
    first = replies.nth(0)
    # The comment box appears only once a reply has a vote.
    expect(first.locator(".comment")).to_be_hidden()
    first.locator(".vote.up").click()
    expect(first.locator(".vote-status")).to_have_text("Thanks for the feedback")
    expect(first.locator(".comment")).to_be_visible()
    first.locator(".comment").fill("Clear and friendly")
    first.locator(".comment").press("Enter")
    expect(first.locator(".vote-status")).to_have_text("Comment saved")
    replies.nth(1).locator(".vote.down").click()
    expect(replies.nth(1).locator(".vote-status")).to_have_text("Thanks for the feedback")
    expect(replies.nth(2).locator(".comment")).to_be_hidden()

    alice.locator("#conversations li.current .rename").click()
    alice.fill(".rename-input", "Trying the example app")
    alice.press(".rename-input", "Enter")
    expect(alice.locator("#conversations li.current .title")).to_have_text("Trying the example app")
    expect(alice).to_have_title("Trying the example app · flask-smg-history example")

    alice.reload()
    replies = alice.locator(REPLIES)
    expect(replies).to_have_count(3)
    expect(replies.nth(0).locator(".vote.up")).to_have_attribute("aria-pressed", "true")
    expect(replies.nth(0).locator(".vote.down")).to_have_attribute("aria-pressed", "false")
    expect(replies.nth(0).locator(".comment")).to_have_value("Clear and friendly")
    expect(replies.nth(1).locator(".vote.down")).to_have_attribute("aria-pressed", "true")
    expect(replies.nth(2).locator(".vote.up")).to_have_attribute("aria-pressed", "false")
    expect(alice.locator("#conversations li.current .title")).to_have_text("Trying the example app")
    expect(alice).to_have_title("Trying the example app · flask-smg-history example")
    fb = server.store_for("alice").feedback.get(replies.nth(0).get_attribute("data-response"))
    assert (fb.rating, fb.comment) == ("positive", "Clear and friendly")


def test_a_second_click_takes_a_vote_back_and_a_new_vote_counts(alice, server):
    """Vote, take the vote back, vote again: after each step the store, the
    API and the feedback page (in a second tab) agree. Two votes stand from
    the test before: 👍 with a comment on the first reply, 👎 on the second."""
    store = server.store_for("alice")
    report = alice.context.new_page()

    def feedback_page() -> tuple[tuple[str, ...], str]:
        """The feedback page's counts (total, positive, negative) and comments."""
        report.goto(server.url + "/feedback")
        counts = tuple(report.locator(f"#count-{name}").inner_text() for name in ("total", "positive", "negative"))
        return counts, report.locator("main").inner_text()

    def listed() -> dict[str, dict]:
        answer = alice.request.get(server.url + "/v1/feedback?limit=100")
        assert answer.ok, answer.text()
        return {fb["response_id"]: fb for fb in answer.json()["data"]}

    third = alice.locator(REPLIES).nth(2)
    response_id = third.get_attribute("data-response")
    third.locator(".vote.up").click()
    expect(third.locator(".vote-status")).to_have_text("Thanks for the feedback")
    expect(third.locator(".vote.up")).to_have_attribute("aria-pressed", "true")
    third.locator(".comment").fill("On second thoughts")
    third.locator(".save-comment").click()
    expect(third.locator(".vote-status")).to_have_text("Comment saved")
    first_id = store.feedback.get(response_id).id
    assert listed()[response_id]["id"] == first_id
    counts, text = feedback_page()
    assert counts == ("3", "2", "1") and "On second thoughts" in text

    third.locator(".vote.up").click()
    expect(third.locator(".vote-status")).to_have_text("Vote removed")
    expect(third.locator(".vote.up")).to_have_attribute("aria-pressed", "false")
    expect(third.locator(".comment")).to_be_hidden()
    with raises(NotFound, message=f"No feedback for response with id '{response_id}'.", param="response_id"):
        store.feedback.get(response_id)
    assert response_id not in listed()
    counts, text = feedback_page()
    assert counts == ("2", "1", "1") and "On second thoughts" not in text
    alice.reload()
    third = alice.locator(REPLIES).nth(2)
    expect(third.locator(".vote.up")).to_have_attribute("aria-pressed", "false")
    expect(third.locator(".vote.down")).to_have_attribute("aria-pressed", "false")
    expect(alice.locator(REPLIES).nth(0).locator(".vote.up")).to_have_attribute("aria-pressed", "true")

    # Voting again after the undo stores a new vote; the old comment went with the old one.
    third.locator(".vote.down").click()
    expect(third.locator(".vote-status")).to_have_text("Thanks for the feedback")
    expect(third.locator(".vote.down")).to_have_attribute("aria-pressed", "true")
    expect(third.locator(".comment")).to_have_value("")
    again = store.feedback.get(response_id)
    assert (again.rating, again.comment) == ("negative", None) and again.id != first_id
    assert listed()[response_id]["rating"] == "negative"
    counts, text = feedback_page()
    assert counts == ("3", "1", "2") and "On second thoughts" not in text
    report.close()
    alice.reload()
    expect(alice.locator(REPLIES).nth(2).locator(".vote.down")).to_have_attribute("aria-pressed", "true")


def test_copy_a_reply(alice):
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=alice.url.split("/c/")[0])
    reply = alice.locator(REPLIES).nth(0)
    reply.hover()
    reply.locator(".copy-reply").click()
    expect(reply.locator(".copy-reply")).to_have_attribute("aria-label", "Copied")
    copied = alice.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("You said “Hello <b>there</b>, what can you do?”: **6** words")


def test_regenerate_the_latest_reply(alice, server):
    replies = alice.locator(REPLIES)
    expect(replies.nth(0).locator(".regenerate")).to_be_hidden()
    expect(replies.nth(1).locator(".regenerate")).to_be_hidden()
    last = replies.nth(2)
    old_id = last.get_attribute("data-response")
    last.locator(".regenerate").click()
    expect(alice.locator(f'[data-response="{old_id}"]')).to_have_count(0)
    expect(replies).to_have_count(3)
    expect(replies.nth(2).locator(".text")).to_contain_text("(Take 2.) You said “/mcp ping the demo server”")
    expect(replies.nth(2).locator(".regenerate")).to_be_visible()
    new_id = replies.nth(2).get_attribute("data-response")
    store = server.store_for("alice")
    old, new = store.responses.get(old_id), store.responses.get(new_id)
    assert new.conversation_id == old.conversation_id is not None
    # The same input, sent again: a new copy of the message, which the page now shows.
    without_id = lambda items: [{k: v for k, v in i.items() if k != "id"} for i in items]  # noqa: E731
    assert without_id(new.input) == without_id(old.input)
    expect(alice.locator(".message.user")).to_have_count(3)
    expect(alice.locator(".message.user").last).to_have_attribute("data-id", new.input[0]["id"])
    assert new.metadata["regenerates"] == old_id
    alice.reload()
    expect(alice.locator(REPLIES)).to_have_count(3)
    expect(alice.locator(REPLIES).nth(2)).to_have_attribute("data-response", new_id)
    expect(alice.locator("details.mcp-call")).to_have_count(1)


def test_bad_input_gets_clear_messages(alice):
    alice.fill("#message", "   ")
    alice.click("#send")
    expect(alice.locator("#notice")).to_have_text("Type a message first: an empty message is not sent.")
    alice.fill("#message", "x" * 100_000)
    alice.click("#send")
    expect(alice.locator("#notice")).to_contain_text("100,000 characters long; the limit is 32,000")
    expect(alice.locator(REPLIES)).to_have_count(3)
    alice.fill("#message", "")


def test_a_normal_session_logs_nothing_in_the_console(alice, session):
    """Everything Alice did so far: sign-in, three messages and their replies,
    votes (none on some replies), a comment, a rename, reloads, a copy and a
    regeneration."""
    alice.goto(alice.url)
    expect(alice.locator(REPLIES)).to_have_count(3)
    alice.click("text=Feedback report")
    expect(alice.locator("#count-total")).to_be_visible()
    alice.go_back()
    expect(alice.locator(REPLIES)).to_have_count(3)
    assert session["console"] == []


def test_html_title_is_shown_as_text(alice):
    alice.click("#new-chat")
    expect(alice.locator("#log-start")).to_have_text("Start a new chat: type a message below.")
    expect(alice.locator(REPLIES)).to_have_count(0)
    send(alice, "a chat to rename")
    expect(alice.locator("#log-start")).to_have_text("This is the beginning of this chat.")
    payload = "<img src=x onerror=window.__pwned=1>"
    alice.locator("#conversations li.current .rename").click()
    alice.fill(".rename-input", payload)
    alice.press(".rename-input", "Enter")
    expect(alice.locator("#conversations li.current .title")).to_have_text(payload)
    alice.reload()
    expect(alice.locator("#conversations li.current .title")).to_have_text(payload)
    expect(alice.locator("#chat-title")).to_have_text(payload)
    assert alice.evaluate("window.__pwned") is None
    assert alice.locator("#conversations img").count() == 0


def test_vote_on_a_reply_deleted_in_another_tab(alice):
    other = alice.context.new_page()
    other.goto(alice.url)
    other.once("dialog", lambda dialog: dialog.accept())
    other.locator("#conversations li.current .delete").click()
    expect(other).to_have_url(alice.url.split("/c/")[0] + "/")
    other.close()

    alice.locator(REPLIES).last.locator(".vote.up").click()
    status = alice.locator(REPLIES).last.locator(".vote-status")
    expect(status).to_contain_text("This reply no longer exists")
    expect(status).to_have_class(re.compile("error"))


def test_scroll_back_through_120_messages(alice, server):
    store = server.store_for("alice")
    conv = store.conversations.create(metadata={"title": "A long chat"})
    for start in range(0, 120, 20):
        store.items.add(
            conv.id,
            [
                {"role": "user" if n % 2 else "assistant", "content": f"message {n}"}
                for n in range(start + 1, start + 21)
            ],
        )
    pages = []
    alice.on("request", lambda request: pages.append(request.url) if "/items?" in request.url else None)
    alice.goto(f"{server.url}/c/{conv.id}")
    expect(alice.locator(".message .text").last).to_have_text("message 120")
    start = alice.locator("#log-start")
    for _ in range(20):
        if start.inner_text() == "This is the beginning of this chat.":
            break
        shown = alice.locator(".message").count()
        alice.locator("#log").evaluate("log => { log.scrollTop = 0; }")
        expect(alice.locator(".message")).not_to_have_count(shown)
    expect(start).to_have_text("This is the beginning of this chat.")
    texts = alice.locator(".message .text").all_inner_texts()
    assert texts == [f"message {n}" for n in range(1, 121)]
    assert len(pages) == 6 and sum("after=" in url for url in pages) == 5


def test_feedback_page(alice, server):
    alice.click("text=Feedback report")
    # Three votes stand, the one on the regenerated reply among them; the one
    # taken back and the one refused on the deleted chat are in no count.
    expect(alice.locator("#count-total")).to_have_text("3")
    expect(alice.locator("#count-positive")).to_have_text("1")
    expect(alice.locator("#count-negative")).to_have_text("2")
    expect(alice.locator("svg.chart:visible")).to_have_count(2)  # each also drawn for phones, hidden here
    expect(alice.locator("#comments")).to_contain_text("Clear and friendly")
    save_screenshot(alice, "feedback.png", server.instance_path.parent, full_page=True)


def test_restart_keeps_everything(alice, server, state):
    assert get_state(server.app).backend.name == "sqlite"
    server.restart()
    alice.goto(state["chat_url"])
    expect(alice.locator("#user-name")).to_have_text("alice")
    expect(alice.locator("#conversations .title")).to_have_text(["A long chat", "Trying the example app"])
    replies = alice.locator(REPLIES)
    expect(replies).to_have_count(3)
    expect(alice.locator(".message.user .text").first).to_have_text("Hello <b>there</b>, what can you do?")
    expect(replies.nth(0).locator(".vote.up")).to_have_attribute("aria-pressed", "true")
    expect(replies.nth(0).locator(".comment")).to_have_value("Clear and friendly")
    expect(replies.nth(1).locator(".vote.down")).to_have_attribute("aria-pressed", "true")
    expect(replies.nth(2).locator(".text")).to_contain_text("(Take 2.)")


def test_second_user_sees_none_of_the_first_users_chats(browser, server, state):
    context = browser.new_context()
    bob = context.new_page()
    try:
        sign_in(bob, server, "bob")
        expect(bob.locator("#no-conversations")).to_be_visible()
        expect(bob.locator("#conversations li")).to_have_count(0)
        bob.goto(state["chat_url"])
        expect(bob.locator("#notice")).to_have_text("This chat does not exist, or it belongs to another user.")
        expect(bob.locator(".message")).to_have_count(0)
        assert "Trying the example app" not in bob.content()
        bob.click("text=Feedback report")
        expect(bob.locator("#count-total")).to_have_text("0")
    finally:
        context.close()


def test_sidebar_pages_through_many_chats(browser, server):
    store = server.store_for("dora")
    for n in range(55):
        store.conversations.create(metadata={"title": f"chat {n:02d}"})
    context = browser.new_context()
    dora = context.new_page()
    try:
        sign_in(dora, server, "dora")
        titles = dora.locator("#conversations .title")
        expect(titles).to_have_count(50)
        expect(titles.first).to_have_text("chat 54")
        dora.click("#older-chats")
        expect(titles).to_have_count(55)
        expect(titles.last).to_have_text("chat 00")
        expect(dora.locator("#older-chats")).to_be_hidden()
    finally:
        context.close()
