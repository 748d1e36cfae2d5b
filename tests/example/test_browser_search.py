"""The sidebar's search box in a real browser, on the app's default backend
(SQLite, so FTS5): results as you type in place of the chat list, a result
that opens its chat at the matching message (older pages loaded until it is
there), the messages for no match and for a query with nothing to find, more
results by cursor, and the drawer on a phone. Takes docs/img/search.png
(``EXAMPLE_SCREENSHOTS=1`` copies it there)."""

from __future__ import annotations

import re

import pytest

from .live import LiveServer, expect, overflow, ready, save_screenshot, sign_in, watch

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = {"SECRET_KEY": "search-test", "SMG_HISTORY_BACKEND": "sqlite", "EXAMPLE_LOCAL_TOKEN_DELAY": 0.002}
    with LiveServer(config, tmp_path_factory.mktemp("search") / "instance") as live:
        yield live


def say(role: str, text: str) -> dict:
    return {"role": role, "content": text}


@pytest.fixture(scope="module")
def chats(server):
    """Sam's chats: a long one whose early message holds a rare word, a
    gardening chat with 25 mentions of tomatoes, and a trip chat (the most
    recently active)."""
    store = server.store_for("sam")
    long = store.conversations.create(metadata={"title": "Kitchen log"})
    for n in range(0, 160, 20):
        roles = ["user", "assistant"] * 10
        batch = [say(role, f"Log entry {n + i}: nothing special") for i, role in enumerate(roles)]
        if n == 0:
            batch[3] = say("assistant", "The secret ingredient is marmalade, added at the end.")
        store.items.add(long.id, batch)
    garden = store.conversations.create(metadata={"title": "Garden plan"})
    store.items.add(garden.id, [say("user", f"Tomato bed {n}: water the tomatoes daily") for n in range(20)])
    store.items.add(garden.id, [say("user", f"Tomato bed {n}: add compost for tomatoes") for n in range(20, 25)])
    trip = store.conversations.create(
        metadata={"title": "Trip to Lisbon"},
        items=[
            say("user", "Where should I eat in Lisbon?"),
            say("assistant", "In **Lisbon**, try the custard tarts in Belém & the grilled sardines <by the river>."),
        ],
    )
    return {"long": long.id, "garden": garden.id, "trip": trip.id}


def open_page(browser, server, viewport):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.seen = watch(page)  # type: ignore[attr-defined]
    sign_in(page, server, "sam")
    return page


def search(page, text: str) -> None:
    page.fill("#search-box", text)


def test_a_result_opens_its_chat_at_the_match(browser, server, chats):
    page = open_page(browser, server, LAPTOP)
    try:
        expect(page.locator("#conversations li")).to_have_count(3)
        search(page, "marmalade")
        hit = page.locator("#hits li a")
        expect(hit).to_have_count(1)
        expect(page.locator("#conversations")).to_be_hidden()
        expect(hit.locator(".hit-title")).to_have_text("Kitchen log · reply")
        expect(hit.locator("mark")).to_have_text("marmalade")
        hit.click()
        expect(page).to_have_url(re.compile(rf"/c/{chats['long']}\?item=msg_[0-9a-f]+$"))
        # 160 items, 20 a page: the match (the 4th) is found by loading older pages.
        found = page.locator(".item.hit")
        expect(found).to_contain_text("The secret ingredient is marmalade")
        expect(found).to_be_in_viewport()
        assert page.locator(".log .item").count() == 160
        assert page.seen == []
    finally:
        page.context.close()


def test_title_matches_phrases_no_match_and_nothing_to_find(browser, server, chats):
    page = open_page(browser, server, LAPTOP)
    try:
        search(page, "lisbon")
        hits = page.locator("#hits li a")
        expect(hits).to_have_count(3)
        expect(hits.locator(".hit-title")).to_have_text(
            ["Trip to Lisbon · title", "Trip to Lisbon · reply", "Trip to Lisbon · you"]
        )
        # The snippet is text: the reply's "<by the river>" is shown, not parsed.
        expect(hits.nth(1).locator(".snippet")).to_contain_text("Belém & the grilled sardines <by the river>")
        tags = "ns => ns.flatMap(n => [...n.children].map(c => c.tagName))"
        children = page.locator("#hits .snippet").evaluate_all(tags)
        assert set(children) == {"MARK"}
        assert hits.first.get_attribute("href") == f"/c/{chats['trip']}"
        search(page, '"custard tarts" -sardines')
        expect(page.locator("#hits li")).to_have_count(0)
        expect(page.locator("#search-status")).to_have_text('No chat mentions “"custard tarts" -sardines”.')
        search(page, '"custard tarts"')
        expect(page.locator("#hits li")).to_have_count(1)
        for nothing in ("- or !", "-sardines"):  # said in the page, without asking the API
            search(page, nothing)
            expect(page.locator("#search-status")).to_contain_text("Type a word to search for")
            expect(page.locator("#hits li")).to_have_count(0)
        # Escape clears the box and brings the chat list back.
        page.press("#search-box", "Escape")
        expect(page.locator("#conversations li")).to_have_count(3)
        expect(page.locator("#search-results")).to_be_hidden()
        assert page.seen == []
    finally:
        page.context.close()


def test_more_results_page_on(browser, server, chats):
    page = open_page(browser, server, LAPTOP)
    try:
        search(page, "tomatoes")
        expect(page.locator("#hits li")).to_have_count(20)
        expect(page.locator("#more-hits")).to_be_visible()
        page.click("#more-hits")
        expect(page.locator("#hits li")).to_have_count(25)
        expect(page.locator("#more-hits")).to_be_hidden()
        links = page.locator("#hits li a").evaluate_all("as => as.map(a => a.dataset.item)")
        assert len(set(links)) == 25
        assert page.seen == []
    finally:
        page.context.close()


def test_search_in_the_phone_drawer(browser, server, chats):
    page = open_page(browser, server, PHONE)
    try:
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_visible()
        search(page, "sardines")
        expect(page.locator("#hits li")).to_have_count(1)
        scroll_width, inner_width = overflow(page)
        assert scroll_width <= inner_width
        page.locator("#hits li a").click()
        expect(page.locator(".item.hit")).to_contain_text("grilled sardines")
        expect(page.locator("#sidebar")).to_be_hidden()
        assert page.seen == []
    finally:
        page.context.close()


def test_screenshot_of_search(browser, server, chats):
    page = open_page(browser, server, LAPTOP)
    try:
        search(page, "tarts lisbon")
        expect(page.locator("#hits li")).to_have_count(1)
        page.locator("#hits li a").click()
        expect(page.locator(".item.hit")).to_be_visible()
        ready(page)
        search(page, "lisbon")
        expect(page.locator("#hits li")).to_have_count(3)
        page.locator("#search-box").blur()
        save_screenshot(page, "search.png", server.instance_path.parent)
        assert page.seen == []
    finally:
        page.context.close()


def test_long_titles_keep_the_where_label_and_reply_snippets_drop_markdown(browser, server):
    """Three hits of one chat with a long title used to read as one hit three
    times (the "· you / · reply" label cut off), and a reply's snippet showed
    its Markdown source (``**9**``)."""
    store = server.store_for("ida")
    store.conversations.create(
        metadata={"title": "Counting the legs of every creature in the garden shed, one by one, twice over"},
        items=[
            say("user", "How many legs has an octopod?"),
            say(
                "assistant",
                "An octopod has **8** arms; add the `tail` and it is *still* __8__, see [the list](https://example.com).",
            ),
        ],
    )
    for viewport in (LAPTOP, PHONE):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            sign_in(page, server, "ida")
            if viewport is PHONE:
                page.click("#menu")
            search(page, "octopod")
            hits = page.locator("#hits li a")
            expect(hits).to_have_count(2)
            wheres = hits.locator(".hit-where")
            expect(wheres.first).to_be_visible()
            assert sorted(wheres.all_inner_texts()) == [" · reply", " · you"]
            mine = hits.filter(has_text="· you")
            reply = hits.filter(has_text="· reply").locator(".snippet")
            for n in range(2):
                link = hits.nth(n).bounding_box()
                where = wheres.nth(n).bounding_box()
                assert where["width"] > 20 and where["x"] + where["width"] <= link["x"] + link["width"], (where, link)
                title = hits.nth(n).locator(".hit-title").bounding_box()
                assert where["x"] + where["width"] <= title["x"] + title["width"] + 0.5, (where, title)
            text = reply.inner_text()
            assert "**" not in text and "`" not in text and "__" not in text and "](" not in text, text
            assert "has 8 arms; add the tail and it is still 8, see the list" in text, text
            expect(reply.locator("mark")).to_have_text("octopod")
            # What you typed is shown as typed.
            expect(mine.locator(".snippet")).to_have_text("How many legs has an octopod?")
        finally:
            context.close()
