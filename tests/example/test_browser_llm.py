"""The page on the real LLM path: the app calls a fake OpenAI-compatible
server, and the browser shows the model's name, its tool call and a failure."""

from __future__ import annotations

import pytest

from .fake_llm import MODEL, FakeLLM
from .live import REPLIES, LiveServer, expect, send, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with FakeLLM() as llm:
        config = {"SECRET_KEY": "llm-test", "SMG_HISTORY_BACKEND": "memory", "EXAMPLE_LLM_BASE_URL": llm.base_url}
        live = LiveServer({**config, "EXAMPLE_LLM_MODEL": MODEL}, tmp_path_factory.mktemp("llm") / "instance")
        live.start()
        yield live
        live.stop()


def test_model_reply_with_tool_call_and_failure(browser, server):
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, server, "erin")
        expect(page.locator(".responder")).to_contain_text(f"model {MODEL}")
        send(page, "please count my words")
        reply = page.locator(REPLIES).last
        expect(reply.locator(".who")).to_have_text(f"Assistant · {MODEL}")
        expect(reply.locator(".text")).to_have_text('The tool says: {"words": 4, "characters": 21}')
        call = page.locator("details.function-call")
        expect(call.locator("summary")).to_have_text("Function call: word_count")
        assert call.get_attribute("open") is None

        page.fill("#message", "please fail")
        page.press("#message", "Enter")
        expect(page.locator("#notice")).to_contain_text("Your message was saved, but no reply came")
        expect(page.locator("#notice")).to_contain_text("the fake model refuses")
        expect(page.locator(".message.user .text").last).to_have_text("please fail")
        expect(page.locator(REPLIES)).to_have_count(1)
    finally:
        context.close()
