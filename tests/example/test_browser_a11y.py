"""Accessibility in a real browser: axe-core (vendored under ``vendor/``) on
the chat, sign-in and feedback pages at a laptop's size and a phone's, with no
serious or critical violation; the keyboard (Stop by Enter, the phone
drawer, the skip link, the composer focused after sign-in); the comment box a
vote opens, shown without scrolling; and votes that are not faint."""

from __future__ import annotations

from pathlib import Path

import pytest

from .live import REPLIES, LiveServer, expect, ready, send, sign_in

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "a11y-test", "SMG_HISTORY_BACKEND": "sqlite", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("a11y") / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def chat(browser, server):
    """Ada's chat: a formatted reply with a vote and a comment, and an
    unvoted reply after it; the URL of the chat."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, server, "ada")
    send(page, "/markdown")
    first = page.locator(REPLIES).last
    first.locator(".vote.down").click()
    first.locator(".comment").fill("Too long")
    first.locator(".comment").press("Enter")
    expect(first.locator(".vote-status")).to_have_text("Comment saved")
    send(page, "/tool How many words are in this sentence?")
    url = page.url
    context.close()
    return url


def open_page(browser, viewport, **options):
    # axe-core is injected as an inline script: the page's CSP would refuse it.
    context = browser.new_context(viewport=viewport, bypass_csp=True, **options)
    context.set_default_timeout(20_000)
    return context.new_page()


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
             .filter(v => v.impact === "serious" || v.impact === "critical")
             .map(v => `${v.id} (${v.impact}): ${v.help} at `
                       + v.nodes.map(n => n.target.join(" ") + " [" + n.failureSummary + "]").join("; "))"""
    )
    return found


@SIZES
def test_axe_sign_in_page(browser, server, viewport):
    page = open_page(browser, viewport)
    try:
        page.goto(server.url + "/signin")
        assert serious_violations(page) == []
        page.locator("form").evaluate("form => { form.noValidate = true; }")  # the server's refusal
        page.fill("#name", "no spaces allowed")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_be_visible()
        assert serious_violations(page) == []
    finally:
        page.context.close()


@SIZES
def test_axe_chat_page(browser, server, chat, viewport):
    page = open_page(browser, viewport)
    try:
        sign_in(page, server, "ada")  # a new chat
        assert serious_violations(page) == []
        page.goto(chat)
        ready(page)
        expect(page.locator(REPLIES)).to_have_count(2)
        expect(page.locator(".comment-row").first).to_be_visible()
        assert serious_violations(page) == []
        if viewport is PHONE:
            page.click("#menu")
            expect(page.locator("#sidebar")).to_be_visible()
            page.wait_for_timeout(300)  # the drawer's slide-in
        page.fill("#search-box", "words")
        expect(page.locator("#hits li").first).to_be_visible()
        assert serious_violations(page) == []
    finally:
        page.context.close()


@SIZES
def test_axe_feedback_page(browser, server, chat, viewport):
    page = open_page(browser, viewport)
    try:
        sign_in(page, server, "ada")
        page.goto(server.url + "/feedback")
        expect(page.locator("#count-total")).to_have_text("1")
        assert serious_violations(page) == []
    finally:
        page.context.close()


def test_hint_chips_have_enough_contrast(browser, server):
    """The composer's /markdown, /long... chips: axe's color-contrast, serious."""
    page = open_page(browser, LAPTOP)
    try:
        sign_in(page, server, "hana")
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            """async () => (await axe.run("#composer-hint", {runOnly: ["color-contrast"]}))
                 .violations.flatMap(v => v.nodes.map(n => n.target.join(" ")))"""
        )
        assert result == []
    finally:
        page.context.close()


# -- the comment box a vote opens (#1) -------------------------------------------------------
@SIZES
def test_the_comment_box_a_vote_opens_is_in_view(browser, server, viewport):
    page = open_page(browser, viewport)
    try:
        sign_in(page, server, f"vic{viewport['width']}")
        send(page, "hello")
        send(page, "/markdown")
        last = page.locator(REPLIES).last
        last.locator(".vote.up").click()
        row = last.locator(".comment-row")
        expect(row).to_be_visible()
        expect(last.locator(".vote-status")).to_have_text("Thanks for the feedback")
        page.wait_for_timeout(400)  # any smooth scroll has ended
        log = page.locator("#log").bounding_box()
        box = row.bounding_box()
        # All of the row shows inside the conversation, above the composer.
        assert box["y"] >= log["y"] and box["y"] + box["height"] <= log["y"] + log["height"], (box, log)
    finally:
        page.context.close()


# -- votes that are not faint (#10) -------------------------------------------------------------
def test_unpressed_votes_are_not_faint(browser, server, chat):
    page = open_page(browser, LAPTOP)
    try:
        sign_in(page, server, "ada")
        page.goto(chat)
        last = page.locator(REPLIES).last
        up = last.locator(".vote.up")
        expect(up).to_have_attribute("aria-pressed", "false")
        assert float(up.evaluate("b => getComputedStyle(b).opacity")) == 1
    finally:
        page.context.close()


# -- the keyboard (#2) -------------------------------------------------------------------------
def test_stop_by_keyboard_keeps_the_focus(browser, server):
    page = open_page(browser, LAPTOP)
    try:
        sign_in(page, server, "kai")
        page.fill("#message", "/long")
        page.press("#message", "Enter")
        expect(page.locator(".message.assistant.pending .text")).to_contain_text("Paragraph 2 ")
        page.keyboard.press("Tab")  # from the box to the Stop button
        expect(page.locator("#send")).to_be_focused()
        expect(page.locator("#send")).to_have_attribute("aria-label", "Stop the reply")
        page.keyboard.press("Enter")
        # While it stops, and after, the focus is on the button or the box: never lost.
        focused = page.evaluate("document.activeElement.id")
        assert focused in ("send", "message"), focused  # the box, once the reply has stopped
        expect(page.locator(REPLIES)).to_have_count(1)
        expect(page.locator("#send")).to_have_attribute("aria-label", "Send")
        assert page.evaluate("document.activeElement.id") in ("send", "message")
        # Enter on the button while it stops does not send or stop twice.
        expect(page.locator(REPLIES).last.locator(".stopped-note")).to_be_visible()
    finally:
        page.context.close()


def test_the_phone_drawer_takes_the_focus(browser, server, chat):
    page = open_page(browser, PHONE)  # motion not reduced: the drawer slides in
    try:
        sign_in(page, server, "ada")
        page.goto(chat)
        ready(page)
        page.focus("#menu")
        page.keyboard.press("Enter")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#conversations li.current a")).to_be_focused()
        page.keyboard.press("Escape")
        expect(page.locator("#menu")).to_be_focused()
    finally:
        page.context.close()


def test_the_composer_has_the_focus_after_sign_in_and_a_skip_link_leads_to_it(browser, server, chat):
    page = open_page(browser, LAPTOP)
    try:
        sign_in(page, server, "ada")
        expect(page.locator("#message")).to_be_focused()
        page.goto(chat)
        ready(page)
        expect(page.locator("#message")).to_be_focused()
        # The first stop in the tab order is a link to the message box.
        first = page.evaluate(
            """() => [...document.querySelectorAll("a[href], button, input, textarea, [tabindex]")]
                 .find(n => n.tabIndex >= 0 && !n.disabled).textContent.trim()"""
        )
        assert first == "Skip to the message box"
        skip = page.locator("a.skip-link")
        skip.focus()
        expect(skip).to_be_in_viewport()
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_be_focused()
    finally:
        page.context.close()


def test_no_focus_is_taken_on_a_touch_screen(browser, server):
    """A phone would open its keyboard over the page: the box is not focused."""
    page = open_page(browser, PHONE, has_touch=True, is_mobile=True)
    try:
        sign_in(page, server, "tia")
        expect(page.locator("#message")).not_to_be_focused()
    finally:
        page.context.close()
