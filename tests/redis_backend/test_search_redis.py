"""Search on Redis beyond the contract: the bounded scan pages through an
owner's history in budgeted steps without losing or repeating a hit, words
are split at Unicode punctuation too, case folds for ASCII letters only, and
an item the backend cannot read is skipped."""

from __future__ import annotations

import pytest

from flask_smg_history.backends.redis import search as redis_search

from .conftest import backend_of, store_of


def say(text: str) -> dict:
    return {"role": "user", "content": text}


@pytest.fixture
def small_budget(monkeypatch):
    """Script runs of 7 items and searches of 20, so a few dozen items take
    several steps (the real figures are 500 and 10,000)."""
    monkeypatch.setattr(redis_search, "SCAN_CHUNK", 7)
    monkeypatch.setattr(redis_search, "SCAN_BUDGET", 20)


def test_a_budgeted_scan_pages_through_everything_in_order(app, small_budget):
    store = store_of(app)
    expected = []
    for c in range(3):
        conv = store.conversations.create(metadata={"title": f"chat {c}"})
        batch = [say(f"item {c}.{n}" + (" ocelot" if n % 9 == 4 else "")) for n in range(20)]
        added = store.items.add(conv.id, batch)
        expected = [(conv.id, i.id) for i in reversed(added) if "ocelot" in i.payload["content"][0]["text"]] + expected
    seen, after, cut = [], None, 0
    while True:
        page = store.search("ocelot", limit=2, after=after)
        cut += page.resume is not None
        seen += [(h.conversation_id, h.item_id) for h in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == expected and len(expected) == 6
    # Pages ended on the budget, their cursor where the scan stopped, and the next went on from there.
    assert cut >= 2


def test_a_page_cut_short_by_the_budget_may_be_empty_and_continues(app, small_budget):
    store = store_of(app)
    old = store.conversations.create(items=[say("margay hides")])
    newer = store.conversations.create()
    store.items.add(newer.id, [say(f"filler {n}") for n in range(20)])
    store.items.add(newer.id, [say(f"filler {n}") for n in range(20, 30)])
    first = store.search("margay")
    assert first.data == [] and first.has_more and first.last_id is not None
    rest = store.search("margay", after=first.last_id)
    assert [h.conversation_id for h in rest.data] == [old.id] and not rest.has_more


def test_words_split_at_unicode_punctuation_and_ascii_case_folds(app):
    store = store_of(app)
    store.conversations.create(items=[say("He said “serval”—then left…"), say("ÉCOLE and Café")])
    assert len(store.search("serval").data) == 1
    assert len(store.search('"serval then left"').data) == 1
    assert len(store.search("ÉCOLE").data) == 1
    assert len(store.search("école").data) == 0  # É and é differ: Lua folds ASCII letters only
    assert len(store.search("CAFé").data) == 1
    assert len(store.search("CAFÉ").data) == 0


def test_an_unreadable_item_is_skipped(app):
    store = store_of(app)
    conv = store.conversations.create(items=[say("caracal one"), say("caracal two")])
    first = store.items.list(conv.id, order="asc").data[0]
    backend = backend_of(app)
    data_key = backend._conv_keys("alice", conv.id)[2]
    backend.client.hset(data_key, first.id, "{caracal, not JSON")
    assert [h.item_id for h in store.search("caracal").data] == [store.items.list(conv.id).data[0].id]
