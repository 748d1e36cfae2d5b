"""The page on the real LLM path: the app streams from a fake
OpenAI-compatible server (a token every 10 ms), and the browser shows the
model's name, its tool call, a full stream, a stop half-way and a failure."""

from __future__ import annotations

import pytest

from .fake_llm import LONG_WORDS, MODEL, FakeLLM
from .live import REPLIES, LiveServer, expect, send, sign_in, watch


@pytest.fixture(scope="module")
def llm():
    with FakeLLM(token_delay=0.01) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, llm):
    config = {"SECRET_KEY": "llm-test", "SMG_HISTORY_BACKEND": "memory", "EXAMPLE_LLM_BASE_URL": llm.base_url}
    with LiveServer({**config, "EXAMPLE_LLM_MODEL": MODEL}, tmp_path_factory.mktemp("llm") / "instance") as live:
        yield live


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context()
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.seen = watch(tab)  # type: ignore[attr-defined]
    sign_in(tab, server, "erin")
    yield tab
    context.close()


def test_model_reply_with_tool_call(page, llm):
    expect(page.locator(".responder")).to_contain_text(f"model {MODEL}")
    send(page, "please count my words")
    assert llm.requests[0]["stream"] is True
    reply = page.locator(REPLIES).last
    expect(reply.locator(".who")).to_have_text(f"Assistant · {MODEL}")
    expect(reply.locator(".text")).to_have_text('The tool says: {"words": 4, "characters": 21}')
    call = page.locator("details.function-call")
    expect(call.locator("summary")).to_have_text("Function call: word_count")
    assert call.get_attribute("open") is None
    expect(page.locator("details.reasoning summary")).to_have_text("Reasoning")


def test_full_stream_then_reload(page, server):
    page.fill("#message", "tell me a long story")
    page.press("#message", "Enter")
    pending = page.locator(".message.assistant.pending .text")
    expect(pending).to_contain_text("word5 ")
    assert f"word{LONG_WORDS}" not in pending.inner_text()
    expect(page.locator(REPLIES)).to_have_count(2)
    reply = page.locator(REPLIES).last
    expect(reply.locator(".text")).to_contain_text(f"word{LONG_WORDS}")
    stored = server.store_for("erin").responses.get(reply.get_attribute("data-response"))
    assert stored.status == "completed"
    assert (stored.usage["input_tokens"], stored.usage["output_tokens"], stored.usage["total_tokens"]) == (10, 5, 15)
    page.reload()
    expect(page.locator(REPLIES).last.locator(".text")).to_contain_text(f"word{LONG_WORDS}")
    expect(page.locator(REPLIES).last.locator(".stopped-note")).to_have_count(0)


def test_stop_mid_stream_then_reload(page, server, llm):
    closed = llm.streams_closed
    page.fill("#message", "another long one")
    page.press("#message", "Enter")
    expect(page.locator(".message.assistant.pending .text")).to_contain_text("word10 ")
    page.click("#send")
    expect(page.locator(REPLIES)).to_have_count(3)
    reply = page.locator(REPLIES).last
    expect(reply.locator(".stopped-note")).to_be_visible()
    shown = reply.locator(".text").inner_text()
    assert "word10" in shown and f"word{LONG_WORDS}" not in shown
    stored = server.store_for("erin").responses.get(reply.get_attribute("data-response"))
    assert stored.status == "incomplete"
    assert stored.output[-1]["content"][0]["text"].strip() == shown.strip()
    # The app closed its stream from the model server: the model stops too.
    for _ in range(50):
        if llm.streams_closed > closed:
            break
        page.wait_for_timeout(100)
    assert llm.streams_closed == closed + 1
    page.reload()
    reply = page.locator(REPLIES).last
    expect(reply.locator(".text")).to_have_text(shown, use_inner_text=True)
    expect(reply.locator(".stopped-note")).to_be_visible()


def test_model_failure_is_reported(page):
    """Nothing of a failed turn is stored: the message goes back into the box."""
    page.fill("#message", "please fail")
    page.press("#message", "Enter")
    expect(page.locator("#notice")).to_contain_text("Your message was not sent, as no reply came")
    expect(page.locator("#notice")).to_contain_text("the fake model refuses")
    expect(page.locator("#message")).to_have_value("please fail")
    expect(page.locator(".message.user")).to_have_count(3)
    expect(page.locator(REPLIES)).to_have_count(3)
    expect(page.locator(".message.assistant.pending")).to_have_count(0)
    page.fill("#message", "")


def test_a_new_chat_whose_first_reply_fails_is_not_kept(page, server):
    page.click("#new-chat")
    before = len(server.store_for("erin").conversations.list().data)
    expect(page.locator("#conversations li")).to_have_count(before)
    page.fill("#message", "please fail in a new chat")
    page.press("#message", "Enter")
    expect(page.locator("#notice")).to_contain_text("the fake model refuses")
    expect(page.locator("#message")).to_have_value("please fail in a new chat")
    expect(page).to_have_url(server.url + "/")
    expect(page.locator("#log-start")).to_have_text("Start a new chat: type a message below.")
    expect(page.locator("#conversations li")).to_have_count(before)
    assert len(server.store_for("erin").conversations.list().data) == before
    # Failing half-way: the page had taken the new chat's address, and gives it back.
    page.fill("#message", "please break off")
    page.press("#message", "Enter")
    expect(page.locator("#notice")).to_contain_text("broke off")
    expect(page.locator("#message")).to_have_value("please break off")
    expect(page).to_have_url(server.url + "/")
    expect(page.locator("#conversations li")).to_have_count(before)
    expect(page.locator(".message")).to_have_count(0)
    assert len(server.store_for("erin").conversations.list().data) == before
    page.fill("#message", "")


def test_the_session_logged_nothing(page):
    assert page.seen == []
