"""Replies rendered as Markdown in the browser, and never as live HTML: a
stored reply full of script, event handlers, ``javascript:`` links and raw
HTML shows as text, runs nothing, and does not even try (no Content Security
Policy violation, nothing in the console)."""

from __future__ import annotations

import pytest

from .live import REPLIES, LiveServer, expect, send, sign_in, watch

HOSTILE = """\
# Heading

<script>window.pwned = "script"; console.log("pwned by script")</script>

<img src=x onerror="window.pwned = 'img'; console.log('pwned by img')">

<svg onload="window.pwned = 'svg'"></svg>

<iframe src="javascript:window.pwned = 'iframe'"></iframe>

[a javascript link](javascript:window.pwned='link')
[a data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
<a href="javascript:window.pwned='raw-a'">a raw anchor</a>
<javascript:window.pwned='autolink'>

![an image](javascript:window.pwned='image')
![a remote image](https://example.invalid/pixel.png)

<div style="background:url(javascript:alert(1))">styled</div>
<b onmouseover="window.pwned='b'">hover me</b>

[a fine link](https://example.org/page)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "render-test", "SMG_HISTORY_BACKEND": "memory", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("render") / "instance") as live:
        yield live


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    tab = context.new_page()
    tab.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    tab.seen = watch(tab)  # type: ignore[attr-defined]
    sign_in(tab, server, "rita")
    yield tab
    context.close()


def test_markdown_is_rendered(page):
    send(page, "/markdown")
    text = page.locator(REPLIES).last.locator(".text")
    expect(text.locator("h2")).to_have_text("What this page renders")
    expect(text.locator("ul > li")).to_have_count(3)
    expect(text.locator("strong").first).to_have_text("Markdown")
    expect(text.locator("table th")).to_have_text(["Store call", "What it keeps"])
    expect(text.locator("table tbody tr")).to_have_count(3)
    expect(text.locator("blockquote")).to_contain_text("EXAMPLE_LLM_BASE_URL")
    link = text.locator("a", has_text="links")
    expect(link).to_have_attribute("href", "https://commonmark.org")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    block = text.locator(".code-block")
    expect(block.locator(".code-head span").first).to_have_text("python")
    code = block.locator("pre code")
    expect(code).to_contain_text("reply = history.responses.create(model=model, conversation=chat_id, input=text)")
    block.locator(".copy-code").click()
    expect(block.locator(".copy-code")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == code.inner_text()
    assert copied.startswith("from flask_smg_history import history\n")
    assert page.evaluate("window.__violations") == []
    assert page.seen == []


def test_hostile_markdown_never_runs(page, server):
    store = server.store_for("rita")
    conv = store.conversations.create(metadata={"title": "Hostile"})
    store.items.add(
        conv.id,
        [
            {"role": "user", "content": HOSTILE},
            {"role": "assistant", "content": HOSTILE, "response_id": "resp_hostile", "model": "evil-model"},
        ],
    )
    page.goto(f"{server.url}/c/{conv.id}")
    reply = page.locator(".message.assistant").last
    expect(reply.locator("h1")).to_have_text("Heading")
    expect(reply.locator(".text")).to_contain_text('<script>window.pwned = "script"')
    expect(reply.locator(".text")).to_contain_text("<img src=x onerror=")
    expect(page.locator(".message.user .text")).to_contain_text("<iframe src=")
    # Give anything that would run a chance to, then look.
    reply.locator("text=hover me").hover()
    reply.locator("text=a javascript link").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    log = page.locator("#log")
    for tag in ("script", "iframe", "svg", "img", "object", "embed", "style", "div[style]"):
        assert log.locator(f".message .text {tag}").count() == 0, tag
    handlers = page.evaluate(
        "[...document.querySelectorAll('#log *')].flatMap(n => [...n.attributes].map(a => a.name))"
        ".filter(name => name.startsWith('on'))"
    )
    assert handlers == []
    hrefs = reply.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.invalid/pixel.png", "https://example.org/page"]
    # A remote image is a link to it, never loaded.
    expect(reply.locator("a", has_text="a remote image")).to_be_visible()
    assert page.evaluate("window.__violations") == []
    assert page.seen == []


def test_a_streamed_reply_echoing_html_shows_it_as_text(page):
    send(page, "<img src=x onerror=\"console.log('pwned')\"> and <script>console.log('pwned')</script>")
    reply = page.locator(REPLIES).last
    expect(reply.locator(".text")).to_contain_text("<img src=x onerror=")
    assert page.locator("#log img, #log script").count() == 0
    assert page.evaluate("window.__violations") == []
    assert page.seen == []
