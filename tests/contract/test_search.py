"""Contract: full-text search over the caller's history (``history.search``).

Every backend finds the same hits in the same order for these queries: whole
words without stop words or stems, which every backend's matching treats
alike (PostgreSQL and SQLite also stem: tests/sql_backend/test_search_sql.py).
A record of another owner, deleted, unlinked, expired, purged or erased is
never a hit."""

from __future__ import annotations

import time

import pytest

from flask_smg_history import InvalidRequest, NotFound, NotSupported, get_state


@pytest.fixture(autouse=True)
def searchable(backend_name, alice):
    """Oracle has no search index (its Oracle Text DDL was not verifiable
    without a server): it answers ``NotSupported`` (HTTP 501), checked here,
    and the rest of this file is for the backends that search."""
    if backend_name == "oracle":
        with pytest.raises(NotSupported) as info:
            alice.search("anything")
        assert info.value.status == 501 and info.value.code == "not_supported"
        pytest.skip("Oracle answers NotSupported for search (asserted above)")


def msg(text: str, role: str = "user") -> dict:
    return {"role": role, "content": text}


def pause() -> None:
    """Let the clock move, so conversations' last writes differ."""
    time.sleep(0.003)


def texts(store, page) -> list[str]:
    """Each hit as the text of its item (``meta`` for a metadata hit)."""
    out = []
    for hit in page.data:
        if hit.item_id is None:
            out.append("meta")
        else:
            payload = store.items.get(hit.conversation_id, hit.item_id).payload
            out.append(payload["content"][0]["text"] if payload["type"] == "message" else payload["type"])
    return out


def every_page(store, query: str, limit: int, **kwargs) -> list[list]:
    pages, after = [], None
    while True:
        page = store.search(query, limit=limit, after=after, **kwargs)
        pages.append(page.data)
        if not page.has_more:
            return pages
        after = page.last_id


def test_finds_message_text_tool_calls_and_metadata(alice):
    conv = alice.conversations.create(
        metadata={"title": "Zeppelin budget", "topic": "airships"}, items=[msg("How heavy is a zeppelin hangar?")]
    )
    pause()
    alice.items.add(
        conv.id,
        [
            {"role": "assistant", "content": [{"type": "output_text", "text": "Each zeppelin hangar is heavy."}]},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"query": "zeppelin tariff"}'},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "zeppelin"}]},
            {"type": "custom_tool_call", "call_id": "c2", "name": "grep", "input": "zeppelin logs"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "The zeppelin question"}]},
        ],
    )
    page = alice.search("zeppelin")
    assert [(h.item_type, h.role) for h in page.data] == [
        (None, None),
        ("reasoning", None),
        ("custom_tool_call", None),
        ("function_call_output", None),
        ("function_call", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert not page.has_more
    meta = page.data[0]
    assert meta.conversation_id == conv.id and meta.item_id is None
    assert meta.conversation_metadata == {"title": "Zeppelin budget", "topic": "airships"}
    assert "<mark>Zeppelin</mark>" in meta.snippet
    user = page.data[-1]
    stored = alice.items.list(conv.id, order="asc").data[0]
    assert (user.item_id, user.position, user.item_created_at) == (stored.id, 0, stored.created_at)
    assert "<mark>zeppelin</mark> hangar" in user.snippet
    assert all(hit.rank > 0 and hit.conversation_metadata["topic"] == "airships" for hit in page.data)
    assert [h.id for h in page.data] == list(dict.fromkeys(h.id for h in page.data))  # cursors are distinct
    assert [h.item_type for h in alice.search("airships").data] == [None]  # metadata values


def test_keys_roles_types_and_ids_are_not_searched(alice):
    conv = alice.conversations.create(metadata={"title": "Plain"}, items=[msg("hello there")])
    item = alice.items.list(conv.id).data[0]
    for query in ("title", "user", "message", "completed", "input_text", item.id, conv.id):
        assert alice.search(query).data == [], query


def test_order_is_by_conversation_activity_then_newest_item_first(alice):
    first = alice.conversations.create(
        metadata={"title": "orchid care"}, items=[msg("orchid one"), msg("nothing here"), msg("orchid two")]
    )
    pause()
    second = alice.conversations.create(items=[msg("orchid three")])
    pause()
    alice.items.add(first.id, [msg("orchid four")])  # the first is now the most recently active
    page = alice.search("orchid")
    assert [h.conversation_id for h in page.data] == [first.id] * 4 + [second.id]
    assert texts(alice, page) == ["meta", "orchid four", "orchid two", "orchid one", "orchid three"]
    pages = every_page(alice, "orchid", 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [h.id for p in pages for h in p] == [h.id for h in page.data]
    only = alice.search("orchid", conversation=second.id)
    assert [h.conversation_id for h in only.data] == [second.id]


def test_a_page_continues_after_its_last_hit_even_once_that_is_deleted(alice):
    conv = alice.conversations.create(items=[msg(f"walrus {n}") for n in range(5)])
    first = alice.search("walrus", limit=2)
    assert texts(alice, first) == ["walrus 4", "walrus 3"] and first.has_more
    alice.items.delete(conv.id, first.data[-1].item_id)
    rest = alice.search("walrus", limit=10, after=first.last_id)
    assert texts(alice, rest) == ["walrus 2", "walrus 1", "walrus 0"] and not rest.has_more


def test_query_language(alice):
    alice.conversations.create(
        items=[
            msg("The build was Rolled Back at noon"),
            msg("back then it rolled on"),
            msg("rolled back in staging"),
            msg("kiwi grows in gardens"),
        ]
    )
    assert texts(alice, alice.search("ROLLED back")) == [
        "rolled back in staging",
        "back then it rolled on",
        "The build was Rolled Back at noon",
    ]
    phrase = alice.search('"rolled back"')
    assert texts(alice, phrase) == ["rolled back in staging", "The build was Rolled Back at noon"]
    assert texts(alice, alice.search('"rolled back" -staging')) == ["The build was Rolled Back at noon"]
    assert texts(alice, alice.search("kiwi or noon")) == ["kiwi grows in gardens", "The build was Rolled Back at noon"]
    assert texts(alice, alice.search("kiwi noon")) == []
    hit = alice.search('"rolled back" -staging').data[0]
    assert "Rolled" in hit.snippet and "<mark>" in hit.snippet


def test_snippets_are_escaped_and_ranks_favour_more_matches(alice):
    alice.conversations.create(
        items=[msg("<b>quokka</b> & co say <script>"), msg("quokka quokka quokka, said the quokka keeper")]
    )
    many, once = alice.search("quokka").data
    assert once.snippet.count("<mark>") == 1 and "&lt;b&gt;" in once.snippet and "&amp;" in once.snippet
    assert "<script>" not in once.snippet and "<b>" not in once.snippet
    assert many.snippet.count("<mark>") >= 3
    assert many.rank > once.rank > 0


def test_other_owners_are_never_hits(alice, bob):
    mine = alice.conversations.create(metadata={"title": "lemur notes"}, items=[msg("lemur facts")])
    theirs = bob.conversations.create(metadata={"title": "lemur party"}, items=[msg("lemur gossip")])
    assert {h.conversation_id for h in alice.search("lemur").data} == {mine.id}
    assert {h.conversation_id for h in bob.search("lemur").data} == {theirs.id}
    with pytest.raises(NotFound):
        alice.search("lemur", conversation=theirs.id)
    assert bob.search("facts").data == []
    # a cursor of alice's pages nothing of bob's
    cursor = alice.search("lemur", limit=1).last_id
    assert {h.conversation_id for h in bob.search("lemur", after=cursor).data} <= {theirs.id}


def test_deleted_and_unlinked_records_are_never_hits(alice):
    keep = alice.conversations.create(items=[msg("narwhal kept")])
    gone = alice.conversations.create(metadata={"title": "narwhal trip"}, items=[msg("narwhal lost")])
    item = alice.items.list(keep.id).data[0]
    alice.items.add(gone.id, [{"type": "item_reference", "id": item.id}])
    hits = alice.search("narwhal kept").data
    assert sorted(h.conversation_id for h in hits) == sorted([keep.id, gone.id])  # one hit per linking conversation
    alice.items.delete(keep.id, item.id)
    assert [h.conversation_id for h in alice.search("narwhal kept").data] == [gone.id]
    alice.conversations.delete(gone.id)
    assert alice.search("narwhal").data == []
    with pytest.raises(NotFound):
        alice.search("narwhal", conversation=gone.id)


def test_metadata_changes_are_searched_at_once(alice):
    conv = alice.conversations.create(metadata={"title": "pelican plans"})
    assert [h.conversation_id for h in alice.search("pelican").data] == [conv.id]
    alice.conversations.update(conv.id, {"title": "heron plans"}, mode="replace")
    assert alice.search("pelican").data == []
    assert [h.item_id for h in alice.search("heron").data] == [None]


def test_expired_and_purged_records_are_never_hits(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=3 / 86400)  # the fresh one below must outlive a slow search
    store = get_state(app).store_for("alice")
    old = store.conversations.create(metadata={"title": "ibis"}, items=[msg("ibis sighting")])
    time.sleep(max(0.0, old.expires_at - time.time()) + 0.2)
    assert store.search("ibis").data == []
    with pytest.raises(NotFound):
        store.search("ibis", conversation=old.id)
    get_state(app).backend.purge(before=None, dry_run=False)
    fresh = store.conversations.create(items=[msg("ibis again")])
    assert [(h.conversation_id, h.item_id is not None) for h in store.search("ibis").data] == [(fresh.id, True)]


def test_erased_records_are_never_hits_and_imported_ones_are(app, alice, bob):
    alice.conversations.create(metadata={"title": "tapir"}, items=[msg("tapir trail")])
    bob.conversations.create(items=[msg("tapir too")])
    backend = get_state(app).backend
    exported = list(backend.export("alice", None))
    alice.erase_owner()
    assert alice.search("tapir").data == []
    assert len(bob.search("tapir").data) == 1
    backend.import_records(exported)
    assert texts(alice, alice.search("tapir")) == ["meta", "tapir trail"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"query": ""}, "q"),
        ({"query": "   "}, "q"),
        ({"query": "x" * 1000}, "q"),
        ({"query": '- "" or !!'}, "q"),
        ({"query": "-alone"}, "q"),
        ({"query": "fine or -alone"}, "q"),
        ({"query": None}, "q"),
        ({"query": "ok", "limit": 0}, "limit"),
        ({"query": "ok", "limit": 101}, "limit"),
        ({"query": "ok", "after": "msg_123"}, "after"),
        ({"query": "ok", "after": "hit_!!"}, "after"),
        ({"query": "ok", "after": "hit_WzEsMl0"}, "after"),  # base64 of [1,2]: not a cursor's shape
        ({"query": "ok", "conversation": "resp_1"}, "conversation"),
    ],
)
def test_bad_input_names_the_parameter(alice, kwargs, param):
    with pytest.raises(InvalidRequest) as info:
        alice.search(**kwargs)
    assert info.value.param == param
