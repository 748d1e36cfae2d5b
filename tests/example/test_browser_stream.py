"""Streaming in the browser, with the local responder writing a token every
10 ms: a reply that streams in to its end, one stopped half-way, a reload after
each (the page shows what was stored, which is what the user saw), text typed
while a reply streams, and Enter during an IME composition."""

from __future__ import annotations

import time

import pytest

from .live import REPLIES, LiveServer, expect, send, sign_in, watch


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {
        "SECRET_KEY": "stream-test",
        "SMG_HISTORY_BACKEND": "sqlite",
        "EXAMPLE_LLM_BASE_URL": None,
        "EXAMPLE_LOCAL_TOKEN_DELAY": 0.01,
    }
    with LiveServer(config, tmp_path_factory.mktemp("stream") / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.seen = watch(tab)  # type: ignore[attr-defined]
    sign_in(tab, server, "sam")
    yield tab
    context.close()


PENDING = ".message.assistant.pending"


def test_a_reply_streams_in_token_by_token(page, server):
    page.fill("#message", "/markdown")
    page.press("#message", "Enter")
    pending = page.locator(PENDING)
    expect(pending).to_be_visible()
    expect(page.locator("#send")).to_have_attribute("aria-label", "Stop the reply")
    # Seen part-way: some of the reply is on the page, not all of it yet.
    expect(pending.locator("h2")).to_have_text("What this page renders")
    partial = pending.locator(".text").inner_text()
    assert "history.feedback.submit" not in partial
    expect(page.locator(REPLIES)).to_have_count(1)
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")
    reply = page.locator(REPLIES).last
    expect(reply.locator("table")).to_contain_text("history.feedback.submit")
    assert len(reply.locator(".text").inner_text()) > len(partial)
    expect(reply.locator(".stopped-note")).to_have_count(0)
    shown = reply.locator(".text").inner_text()
    store = server.store_for("sam")
    stored = store.responses.get(reply.get_attribute("data-response"))
    assert stored.status == "completed" and stored.output[-1]["status"] == "completed"

    page.reload()
    reply = page.locator(REPLIES).last
    expect(reply.locator(".text")).to_have_text(shown, use_inner_text=True)
    expect(reply.locator(".stopped-note")).to_have_count(0)


def test_stop_ends_the_reply_and_keeps_what_was_shown(page, server):
    page.fill("#message", "/long")
    page.press("#message", "Enter")
    pending = page.locator(PENDING)
    expect(pending.locator(".text")).to_contain_text("Paragraph 3 ")
    page.click("#send")  # the Stop button
    expect(page.locator(REPLIES)).to_have_count(2)
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")
    reply = page.locator(REPLIES).last
    expect(reply.locator(".stopped-note")).to_have_text("Stopped: this reply is incomplete.")
    shown = reply.locator(".text").inner_text()
    assert "Paragraph 3 " in shown and "Paragraph 40 " not in shown
    stored = server.store_for("sam").responses.get(reply.get_attribute("data-response"))
    assert stored.status == "incomplete" and stored.output[-1]["status"] == "incomplete"
    # Nothing more arrives after the stop.
    time.sleep(0.5)
    assert reply.locator(".text").inner_text() == shown

    page.reload()
    reply = page.locator(REPLIES).last
    expect(reply.locator(".text")).to_have_text(shown, use_inner_text=True)
    expect(reply.locator(".stopped-note")).to_be_visible()
    # A stopped reply can be voted on and regenerated like any other.
    expect(reply.locator(".regenerate")).to_be_visible()
    assert len(server.app.extensions["example_streams"]) == 0


def test_text_typed_while_a_reply_streams_is_kept(page):
    page.fill("#message", "/long")
    page.press("#message", "Enter")
    expect(page.locator(PENDING)).to_be_visible()
    expect(page.locator("#message")).to_have_value("")
    page.fill("#message", "my next question")
    page.press("#message", "Enter")  # a reply is streaming: Enter sends nothing
    expect(page.locator(PENDING).locator(".text")).to_contain_text("Paragraph 2 ")
    page.click("#send")
    expect(page.locator(REPLIES)).to_have_count(3)
    expect(page.locator("#message")).to_have_value("my next question")
    assert page.locator(".message.user").count() == 3
    send(page, "ok, sent now")
    expect(page.locator("#message")).to_have_value("")
    expect(page.locator(".message.user .text").last).to_have_text("ok, sent now")


def test_enter_during_an_ime_composition_does_not_send(page):
    before = page.locator(".message.user").count()
    page.fill("#message", "")
    page.focus("#message")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "にほんご", "selectionStart": 4, "selectionEnd": 4})
    page.keyboard.press("Enter")
    time.sleep(0.3)
    assert page.locator(".message.user").count() == before
    assert page.input_value("#message").startswith("にほんご")
    cdp.detach()
    page.fill("#message", "")


def test_completed_and_stopped_streams_are_not_reported_as_failed(browser, server):
    """Chromium reports a fetch whose body is read as a stream as
    net::ERR_ABORTED (canceled), even when it was read to its end: every
    reply was red in DevTools. The page streams over XMLHttpRequest, which
    finishes as loaded; only the Stop fallback's abort may fail a request."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    failed: list[str] = []
    finished: list[str] = []
    tab.on("requestfailed", lambda request: failed.append(f"{request.url} {request.failure}"))
    tab.on("requestfinished", lambda request: finished.append(request.url))
    try:
        sign_in(tab, server, "devi")
        send(tab, "hello")  # /chat/messages: a new chat
        send(tab, "/markdown")  # /chat/<id>/messages
        tab.locator(REPLIES).last.locator(".regenerate").click()  # /chat/<id>/regenerate
        expect(tab.locator(PENDING)).to_have_count(0)
        expect(tab.locator("#send")).to_have_attribute("aria-label", "Send")
        tab.fill("#message", "/long")
        tab.press("#message", "Enter")
        expect(tab.locator(PENDING).locator(".text")).to_contain_text("Paragraph 2 ")
        tab.click("#send")  # stopped by the server: the stream still ends properly
        expect(tab.locator(REPLIES)).to_have_count(3)
        expect(tab.locator("#send")).to_have_attribute("aria-label", "Send")
        tab.wait_for_timeout(300)
        streamed = [url for url in finished if url.endswith(("/messages", "/regenerate"))]
        assert len(streamed) == 4, finished
        assert failed == []
    finally:
        context.close()


def test_the_session_logged_nothing(page):
    assert page.seen == []
