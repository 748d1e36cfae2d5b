"""The page at a phone's size (390 x 844) and a laptop's (1280 x 900): what
gets how much room, that nothing scrolls sideways, and the sidebar as a
drawer on the phone. These tests also take the README's screenshots of the
chat page (``EXAMPLE_SCREENSHOTS=1`` copies them to ``docs/img/``)."""

from __future__ import annotations

import pytest

from .live import REPLIES, LiveServer, expect, overflow, ready, save_screenshot, send, sign_in, watch, width

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "layout-test", "SMG_HISTORY_BACKEND": "memory", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("layout") / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def chats(browser, server):
    """Three chats of Lena's, the last with a formatted reply, a vote and a comment."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, server, "lena")
    send(page, "/tool How many words are in this sentence?")
    page.click("#new-chat")
    send(page, "Hello! What can you do?")
    page.click("#new-chat")
    send(page, "Show me what a formatted reply looks like")
    send(page, "/markdown")
    last = page.locator(REPLIES).last
    last.locator(".vote.up").click()
    last.locator(".comment").fill("Clear, and the code copies in one click")
    last.locator(".comment").press("Enter")
    expect(last.locator(".vote-status")).to_have_text("Comment saved")
    url = page.url
    context.close()
    return url


def open_page(browser, server, viewport, name="lena"):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.seen = watch(page)  # type: ignore[attr-defined]
    sign_in(page, server, name)
    return page


def no_sideways_scroll(page):
    scroll_width, inner_width = overflow(page)
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    # Nothing in the conversation sticks out of it either.
    widest = page.evaluate(
        "(() => { const log = document.getElementById('log'); if (!log) return 0;"
        " const edge = log.getBoundingClientRect().right;"
        " return Math.max(0, ...[...log.querySelectorAll('.item, .actions, .comment-row')]"
        ".map(n => n.getBoundingClientRect().right - edge)); })()"
    )
    assert widest <= 0.5, widest


def test_phone_chat_page(browser, server, chats):
    page = open_page(browser, server, PHONE)
    try:
        page.goto(chats)
        expect(page.locator(REPLIES)).to_have_count(2)
        # The sidebar is a drawer behind the menu button; the conversation has the width.
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("#menu")).to_be_visible()
        assert width(page, "#log") == 390
        assert width(page, "#message") >= 280
        assert width(page, "#composer") >= 360
        expect(page.locator("#chat-title")).to_have_text("Show me what a formatted reply looks like")
        last = page.locator(REPLIES).last
        expect(last.locator(".vote.up")).to_have_attribute("aria-pressed", "true")
        expect(last.locator(".comment")).to_have_value("Clear, and the code copies in one click")
        for selector in (".actions", ".comment-row"):
            box = last.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
        assert width(page, f"{REPLIES} >> nth=0") >= 340
        no_sideways_scroll(page)
        save_screenshot(page, "chat-phone.png", server.instance_path.parent)

        page.click("#menu")
        sidebar = page.locator("#sidebar")
        expect(sidebar).to_be_visible()
        expect(page.locator("#menu")).to_have_attribute("aria-expanded", "true")
        assert 280 <= width(page, "#sidebar") <= 340
        expect(page.locator("#conversations .title")).to_have_count(3)
        expect(page.locator("#user-name")).to_be_visible()
        assert page.locator("main").evaluate("main => main.inert") is True
        no_sideways_scroll(page)
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(page.locator("#menu")).to_have_attribute("aria-expanded", "false")
        expect(page.locator("#menu")).to_be_focused()
        assert page.locator("main").evaluate("main => main.inert") is False
        page.click("#menu")
        expect(sidebar).to_be_visible()
        page.mouse.click(370, 400)  # on the backdrop, beside the drawer
        expect(sidebar).to_be_hidden()
        page.click("#menu")
        page.locator("#conversations .title", has_text="Hello! What can you do?").click()
        expect(page.locator("#chat-title")).to_have_text("Hello! What can you do?")
        expect(page.locator("#sidebar")).to_be_hidden()
        no_sideways_scroll(page)
        assert page.seen == []
    finally:
        page.context.close()


def test_phone_long_words_and_code_do_not_widen_the_page(browser, server):
    page = open_page(browser, server, PHONE, "noah")
    try:
        send(page, "x" * 300)
        send(page, "/markdown")
        expect(page.locator(".code-block")).to_be_visible()
        no_sideways_scroll(page)
        # A wide code block scrolls inside itself.
        pre = page.locator(".code-block pre")
        assert pre.evaluate("p => p.scrollWidth > p.clientWidth")
        assert page.seen == []
    finally:
        page.context.close()


def test_phone_sign_in_and_feedback_pages(browser, server, chats):
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(server.url + "/signin")
        no_sideways_scroll(page)
        assert width(page, "#name") >= 200
        page.fill("#name", "lena")
        page.click("button[type=submit]")
        page.goto(server.url + "/feedback")
        expect(page.locator("#count-total")).to_have_text("1")
        no_sideways_scroll(page)
        assert width(page, "svg.chart:visible >> nth=0") <= 390
    finally:
        context.close()


def test_laptop_chat_page(browser, server, chats):
    page = open_page(browser, server, LAPTOP)
    try:
        page.goto(chats)
        expect(page.locator(REPLIES)).to_have_count(2)
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#menu")).to_be_hidden()
        assert width(page, "#sidebar") == 272
        assert width(page, "#log") >= 1000
        assert 700 <= width(page, "#composer") <= 770
        assert width(page, "#message") >= 600
        no_sideways_scroll(page)
        page.locator("#log").evaluate("log => { log.scrollTop = log.scrollHeight; }")
        save_screenshot(page, "chat.png", server.instance_path.parent)
        assert page.seen == []
    finally:
        page.context.close()


def test_resizing_from_phone_to_laptop_closes_the_drawer(browser, server, chats):
    page = open_page(browser, server, PHONE)
    try:
        page.goto(chats)
        ready(page)
        page.click("#menu")
        expect(page.locator("#backdrop")).to_be_visible()
        page.set_viewport_size(LAPTOP)
        expect(page.locator("#backdrop")).to_be_hidden()
        expect(page.locator("#sidebar")).to_be_visible()
        no_sideways_scroll(page)
    finally:
        page.context.close()


def test_phone_on_its_side_gets_the_drawer_and_room_to_read(browser, server, chats):
    """844 x 390: the desktop layout's 272 px sidebar left the conversation
    too little room, and a long draft left the messages 112 px."""
    page = open_page(browser, server, {"width": 844, "height": 390})
    try:
        page.goto(chats)
        expect(page.locator(REPLIES)).to_have_count(2)
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("#menu")).to_be_visible()
        assert width(page, "#log") == 844
        page.fill("#message", "\n".join(f"line {n} of a long draft" for n in range(30)))
        page.locator("#message").dispatch_event("input")
        height = page.locator("#log").bounding_box()["height"]
        assert height >= 0.45 * 390, height
        no_sideways_scroll(page)
        save_screenshot(page, "chat-landscape.png", server.instance_path.parent)
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#conversations li.current a")).to_be_focused()
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).to_be_hidden()
        assert page.seen == []
    finally:
        page.context.close()
