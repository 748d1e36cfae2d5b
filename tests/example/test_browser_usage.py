"""The feedback page's usage panel in a real browser: after a short session
(three replies, one with a function call, a vote), the panel shows the
store's figures, fits a phone without sideways scrolling, logs nothing to the
console, and is the README's usage picture (``docs/img/usage.png`` with
``EXAMPLE_SCREENSHOTS=1``)."""

from __future__ import annotations

import pytest

from .live import REPLIES, LiveServer, expect, overflow, save_screenshot, send, sign_in, watch, width


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "usage-test", "SMG_HISTORY_BACKEND": "sqlite", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("usage") / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def session(browser, server):
    """Mia's chats: two messages in one, a function call in another, a vote."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    seen = watch(page)
    sign_in(page, server, "mia")
    send(page, "What does the usage panel count?")
    send(page, "/markdown")
    page.locator(REPLIES).last.locator(".vote.up").click()
    expect(page.locator(REPLIES).last.locator(".vote-status")).to_have_text("Thanks for the feedback")
    page.click("#new-chat")
    send(page, "/tool How many words are in this sentence?")
    yield page, seen
    context.close()


def _number(page, selector: str) -> int:
    return int(page.locator(selector).inner_text().replace(",", ""))


def test_the_panel_shows_the_stores_figures(session, server):
    page, seen = session
    page.click("text=Feedback report")
    expect(page.locator("#usage-title")).to_have_text("Usage")
    figures = server.store_for("mia").stats()
    expect(page.locator("#usage-chats")).to_have_text("2")
    expect(page.locator("#usage-replies")).to_have_text("4")  # the tool's turn is two responses
    assert _number(page, "#usage-items") == figures["items"]["total"] == 11
    assert _number(page, "#usage-tokens") == figures["responses"]["total_tokens"] > 0
    row = page.locator("#usage-by-model tbody tr")
    expect(row).to_have_count(1)
    cells = row.locator("td").all_inner_texts()
    by_model = figures["responses"]["by_model"]["local-responder (built-in, no LLM)"]
    assert cells[0] == "local-responder (built-in, no LLM)"
    assert [int(c.replace(",", "")) for c in cells[1:]] == [
        4,
        by_model["input_tokens"],
        by_model["output_tokens"],
        by_model["total_tokens"],
        1,
        0,
    ]
    expect(page.locator("#usage-by-day tbody tr")).to_have_count(1)
    expect(page.locator("#usage-items-detail")).to_contain_text("function_call 1, function_call_output 1")
    save_screenshot(page.locator("#usage"), "usage.png", server.instance_path.parent)
    assert seen == []


def test_the_panel_on_a_phone(browser, server, session):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, server, "mia")
        page.goto(server.url + "/feedback")
        expect(page.locator("#usage-replies")).to_have_text("4")  # the tool's turn is two responses
        scroll_width, inner_width = overflow(page)
        assert scroll_width <= inner_width, (scroll_width, inner_width)
        assert width(page, "#usage-by-model") <= 390 - 2 * 16
        assert page.locator("#usage-by-model td").first.is_visible()
    finally:
        context.close()


def test_the_panel_and_charts_are_readable_on_a_phone(browser, server, session):
    """On a phone the model name wrapped letter by letter, the dates wrapped
    and the charts' labels were about 5 px tall."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, server, "mia")
        page.goto(server.url + "/feedback")
        expect(page.locator("#usage-replies")).to_have_text("4")
        model = page.locator("#usage-by-model td").first
        # Words are not broken: no line of the name is narrower than its shortest word.
        assert model.evaluate("td => td.clientWidth") >= 75
        broken = model.evaluate(
            """td => { const range = document.createRange(); range.selectNodeContents(td);
                 return [...range.getClientRects()].filter(r => r.width > 0).length; }"""
        )
        words = len(model.inner_text().split())
        assert broken <= words, (broken, words)
        day = page.locator("#usage-by-day td").first
        line = float(day.evaluate("td => parseFloat(getComputedStyle(td).lineHeight)"))
        padding = float(day.evaluate("td => parseFloat(getComputedStyle(td).paddingTop) * 2"))
        assert day.bounding_box()["height"] <= line + padding + 2, day.bounding_box()
        # Every chart label shown is at least 10 px tall on the screen.
        charts = page.locator("svg.chart:visible")
        expect(charts).to_have_count(2)
        sizes = charts.evaluate_all(
            "svgs => svgs.flatMap(s => [...s.querySelectorAll('text')].map(t => t.getBoundingClientRect().height))"
        )
        assert sizes and min(sizes) >= 10, sizes
        scroll_width, inner_width = overflow(page)
        assert scroll_width <= inner_width, (scroll_width, inner_width)
    finally:
        context.close()
