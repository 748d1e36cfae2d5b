"""The hybrid backend's cache while Redis answers: hot reads come from Redis,
every write is seen by the next read, and the fill race cannot leave a stale
entry."""

from __future__ import annotations

import threading

import pytest

from flask_smg_history.errors import InvalidRequest, NotFound

from .conftest import backend_of, counted_statements, settle, store_of


def _texts(items) -> list[str]:
    return [i.payload["content"][0]["text"] for i in items]


def _chat(store, n: int):
    conv = store.conversations.create(metadata={"title": "t"})
    for k in range(0, n, 20):
        store.items.add(conv.id, [{"role": "user", "content": f"m{j}"} for j in range(k, min(n, k + 20))])
    return conv


def test_a_warm_read_sends_no_sql(make_app):
    app = make_app()
    store = store_of(app)
    conv = _chat(store, 30)
    assert _texts(store.items.recent(conv.id, limit=20)) == [f"m{j}" for j in range(10, 30)]  # a miss: SQL answers
    settle(app)  # and its fill has run
    with counted_statements(app) as sql:
        assert _texts(store.items.recent(conv.id, limit=20)) == [f"m{j}" for j in range(10, 30)]
        assert store.conversations.get(conv.id).metadata == {"title": "t"}
        page = store.items.list(conv.id, limit=5, order="desc")
        assert _texts(page.data) == ["m29", "m28", "m27", "m26", "m25"] and page.has_more
    assert sql == []
    assert backend_of(app).hits == 3


def test_each_write_is_seen_by_the_next_read_of_another_app(make_app):
    """Two apps on one store (as two processes): a write through one is read
    at once through the other, whose cache was warm."""
    reader_app = make_app()
    writer, reader = store_of(make_app()), store_of(reader_app)
    conv = _chat(writer, 3)
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]
    settle(reader_app)
    item = writer.items.add(conv.id, [{"role": "user", "content": "m3"}])[0]
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2", "m3"]
    writer.conversations.update(conv.id, metadata={"title": "new"})
    assert reader.conversations.get(conv.id).metadata == {"title": "new"}
    settle(reader_app)
    writer.items.delete(conv.id, item.id)
    assert _texts(reader.items.list(conv.id, order="asc").data) == ["m0", "m1", "m2"]
    settle(reader_app)
    writer.conversations.delete(conv.id)
    with pytest.raises(NotFound):
        reader.conversations.get(conv.id)
    with pytest.raises(NotFound):
        reader.items.recent(conv.id, limit=5)


def test_pages_inside_the_window_match_sql_and_others_go_to_sql(make_app):
    app = make_app(SMG_HISTORY_CACHE_WINDOW=10)
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 25)
    ids = [i.id for i in backend.sql.list_items("alice", conv.id, after=None, limit=100, order="asc").data]
    store.items.recent(conv.id, limit=5)  # fills a window of the newest 10
    settle(app)
    cases = [
        (None, 4, "desc"),
        (ids[20], 3, "desc"),
        (ids[20], 10, "desc"),  # runs past the window: SQL
        (ids[18], 5, "asc"),
        (ids[2], 5, "asc"),  # a cursor older than the window: SQL
        (None, 5, "asc"),  # the oldest items: SQL
    ]
    for after, limit, order in cases:
        expected = backend.sql.list_items("alice", conv.id, after=after, limit=limit, order=order)
        got = store.items.list(conv.id, after=after, limit=limit, order=order)
        assert ([i.id for i in got.data], got.has_more) == ([i.id for i in expected.data], expected.has_more)
    assert store.items.recent(conv.id, limit=25)[0].id == ids[0]  # beyond the window: SQL
    short = _chat(store, 4)  # a window holding every item answers any page, and refuses a foreign cursor
    store.items.recent(short.id, limit=2)
    settle(app)
    hits = backend.hits
    assert [i.id for i in store.items.list(short.id, order="asc", limit=3).data] == [
        i.id for i in backend.sql.list_items("alice", short.id, after=None, limit=3, order="asc").data
    ]
    with pytest.raises(InvalidRequest):
        store.items.list(short.id, after=ids[0])
    assert backend.hits == hits + 2


def test_another_owner_never_reads_a_cached_conversation(make_app):
    app = make_app()
    conv = _chat(store_of(app, "alice"), 2)
    store_of(app, "alice").items.recent(conv.id, limit=2)
    settle(app)
    with pytest.raises(NotFound):
        store_of(app, "mallory").conversations.get(conv.id)
    with pytest.raises(NotFound):
        store_of(app, "mallory").items.recent(conv.id, limit=2)


def _held_fill(backend, store, conv_id: str):
    """A miss whose fill is held on the fill thread between its SQL read and
    its script (``before_fill``). Returns the event that releases it and the
    miss's own answer (from SQL, at once)."""
    read_sql, release = threading.Event(), threading.Event()

    def hold() -> None:
        read_sql.set()
        assert release.wait(10)

    backend.before_fill = hold
    answer = store.items.recent(conv_id, limit=10)
    assert read_sql.wait(10)
    backend.before_fill = None
    return release, answer


def test_a_fill_that_read_sql_before_a_commit_is_refused_after_it(make_app):
    """The reader misses and its fill reads SQL; a writer (another app)
    commits and returns; only then does the fill run its script: refused, so
    the next read sees the write."""
    reader_app = make_app()
    reader, backend = store_of(reader_app), backend_of(reader_app)
    writer = store_of(make_app())
    conv = _chat(writer, 2)
    release, answer = _held_fill(backend, reader, conv.id)
    writer.items.add(conv.id, [{"role": "user", "content": "m2"}])  # committed and acknowledged
    release.set()
    settle(reader_app)
    assert _texts(answer) == ["m0", "m1"]  # it read before the write: fine, it began before it
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]
    settle(reader_app)
    hits = backend.hits
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]  # and the cache holds it now
    assert backend.hits == hits + 1


def test_a_shared_token_fills_once_so_a_late_fill_cannot_undo_an_extended_append(make_app):
    """Two readers miss together and share one token. The first fills; a
    writer's append then extends that entry (write-through). The second
    reader's fill, whose SQL read predates the append, must not fill with the
    same token afterwards: it would put the window before the acknowledged
    append back (found by the two-process test, about one run in ten)."""
    first_app, late_app, writer_app = make_app(), make_app(), make_app()
    first, late, writer = store_of(first_app), store_of(late_app), store_of(writer_app)
    conv = _chat(writer, 2)
    for store in (first, late, writer):  # each process's first use moves the cache to a namespace of its own
        store.conversations.get(conv.id)
    settle(first_app, late_app, writer_app)
    backend_of(first_app).cache.invalidate("alice", conv.id)
    release, answer = _held_fill(backend_of(late_app), late, conv.id)  # misses; its fill reads SQL, held
    assert _texts(first.items.recent(conv.id, limit=10)) == ["m0", "m1"]  # misses with the same token
    settle(first_app)  # and fills
    writer.items.add(conv.id, [{"role": "user", "content": "m2"}])  # extends the entry: acknowledged
    release.set()
    settle(late_app)
    assert _texts(answer) == ["m0", "m1"]  # its own answer began before the append: fine
    for store in (first, late, writer):
        assert _texts(store.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]


@pytest.mark.parametrize("write", ["append", "update"])
def test_a_stale_fill_that_lands_before_the_writers_cache_step_is_corrected(make_app, write):
    """The other order: the writer has committed but not yet run its cache
    step when the stale fill lands. An update's delete removes the entry; an
    append's write-through finds the entry ends just before its items and
    extends it. Either way the write is read once it has returned."""
    reader_app, writer_app = make_app(), make_app()
    reader, backend = store_of(reader_app), backend_of(reader_app)
    writer, writer_backend = store_of(writer_app), backend_of(writer_app)
    conv = _chat(writer, 2)
    release, answer = _held_fill(backend, reader, conv.id)
    committed, go_on = threading.Event(), threading.Event()
    step = "append" if write == "append" else "invalidate"
    original = getattr(writer_backend.cache, step)

    def later(*args, **kwargs):
        committed.set()
        assert go_on.wait(10)
        return original(*args, **kwargs)

    setattr(writer_backend.cache, step, later)
    if write == "append":
        action = lambda: writer.items.add(conv.id, [{"role": "user", "content": "m2"}])  # noqa: E731
    else:
        action = lambda: writer.conversations.update(conv.id, metadata={"title": "new"})  # noqa: E731
    thread_w = threading.Thread(target=action)
    thread_w.start()
    assert committed.wait(10)
    release.set()  # the stale fill lands now, before the writer's cache step
    settle(reader_app)
    assert _texts(answer) == ["m0", "m1"]
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1"]  # stale, but the write has not returned
    go_on.set()
    thread_w.join(10)
    misses = backend.misses
    expected = ["m0", "m1", "m2"] if write == "append" else ["m0", "m1"]
    assert _texts(reader.items.recent(conv.id, limit=10)) == expected
    assert backend.misses == misses + (write == "update")  # extended in place / deleted, so read from SQL
    settle(reader_app)
    assert reader.conversations.get(conv.id).metadata == {"title": "t" if write == "append" else "new"}


def test_an_append_whose_cache_step_comes_late_never_extends_out_of_order(make_app):
    """Two appends commit in one order and reach Redis in the other: the
    later one's write-through finds the entry does not end just before its
    items (the earlier append's items are missing) and deletes it, and the
    earlier one's, arriving last, finds an entry read after both and deletes
    it too. Every read equals SQL's order."""
    reader_app, slow_app, fast_app = make_app(), make_app(), make_app()
    reader = store_of(reader_app)
    conv = _chat(store_of(fast_app), 2)
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1"]
    settle(reader_app)  # a warm entry ending at position 1
    slow_cache = backend_of(slow_app).cache
    committed, go_on = threading.Event(), threading.Event()
    append = slow_cache.append

    def later(*args, **kwargs):
        committed.set()
        assert go_on.wait(10)
        return append(*args, **kwargs)

    slow_cache.append = later
    slow = threading.Thread(target=lambda: store_of(slow_app).items.add(conv.id, [{"role": "user", "content": "m2"}]))
    slow.start()
    assert committed.wait(10)
    store_of(fast_app).items.add(conv.id, [{"role": "user", "content": "m3"}])
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2", "m3"]
    go_on.set()
    slow.join(10)
    for _ in range(2):
        assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2", "m3"]
        settle(reader_app)


def test_appends_keep_a_chat_window_warm_and_exact(make_app):
    """A chat loop (append, read the context, append) hits the cache after
    the first fill, and every read equals SQL's, including past the window.
    Nothing waits for the fill here: the append after the miss does
    (``FILL_WAIT``), so its write-through finds the entry to extend."""
    app = make_app(SMG_HISTORY_CACHE_WINDOW=8)
    store, backend = store_of(app), backend_of(app)
    conv = store.conversations.create()
    for turn in range(12):
        store.items.add(conv.id, [{"role": "user", "content": f"q{turn}"}])
        got = store.items.recent(conv.id, limit=6)
        assert [i.id for i in got] == [i.id for i in backend.sql.recent_items("alice", conv.id, 6)]
        store.items.add(conv.id, [{"role": "assistant", "content": f"a{turn}"}, {"role": "user", "content": "x"}])
        assert store.conversations.get(conv.id) == backend.sql.get_conversation("alice", conv.id)
        page = store.items.list(conv.id, limit=3, order="desc")
        sql_page = backend.sql.list_items("alice", conv.id, after=None, limit=3, order="desc")
        assert ([i.id for i in page.data], page.has_more) == ([i.id for i in sql_page.data], sql_page.has_more)
    assert backend.misses == 1 and backend.hits == 35
    ids = [i.id for i in backend.sql.list_items("alice", conv.id, after=None, limit=100, order="asc").data]
    with pytest.raises(InvalidRequest):  # the window is no longer complete: an old cursor goes to SQL
        store.items.list(conv.id, after="msg_unknown")
    assert [i.id for i in store.items.list(conv.id, after=ids[-9], order="asc").data] == ids[-8:]


def test_bulk_operations_empty_the_cache(make_app):
    app = make_app()
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    settle(app)
    backend.erase_owner("alice")
    with pytest.raises(NotFound):
        store.items.recent(conv.id, limit=5)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    settle(app)
    backend.purge(before=conv.updated_at + 1, dry_run=False)
    with pytest.raises(NotFound):
        store.conversations.get(conv.id)


def test_a_cached_conversation_expires_with_its_retention(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=1.5 / 86400)
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 1)
    store.conversations.get(conv.id)
    settle(app)
    assert store.conversations.get(conv.id).id == conv.id and backend.hits == 1
    ttl = backend.cache.client.pttl(next(iter(backend.cache.client.scan_iter(match=f"{backend.cache.entry_prefix}1*"))))
    assert 0 < ttl <= 1500
    import time

    time.sleep(max(0.0, conv.expires_at - time.time()) + 0.05)
    with pytest.raises(NotFound):
        store.conversations.get(conv.id)


@pytest.mark.parametrize(
    ("config", "longest"),
    [({"SMG_HISTORY_CACHE_TTL": 50}, 50_000), ({"SMG_HISTORY_RETENTION_DAYS": 20 / 86400}, 20_000)],
    ids=["cache TTL", "retention"],
)
def test_an_append_s_write_through_keeps_the_entry_as_long_as_the_ttl_or_the_conversation(make_app, config, longest):
    """The write-through renews the entry's life: the cache TTL, or the
    conversation's own expiry (which the append moved on) when sooner."""
    app = make_app(**config)
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    settle(app)
    (key,) = backend.cache.client.scan_iter(match=f"{backend.cache.entry_prefix}*:{conv.id}")
    backend.cache.client.pexpire(key, 1_000)  # as if filled long ago
    store.items.add(conv.id, [{"role": "user", "content": "more"}])
    assert longest - 5_000 < backend.cache.client.pttl(key) <= longest
    hits = backend.hits
    assert _texts(store.items.recent(conv.id, limit=5)) == ["m0", "m1", "more"] and backend.hits == hits + 1


@pytest.mark.parametrize("size", [3, 4, 5, 7])
def test_every_page_at_the_window_s_edges_is_sql_s_and_from_the_cache_exactly_when_inside_it(make_app, size):
    """Each page of a chat of ``size`` items with a window of 4, in both
    orders, from the start and after each item, of every length: the answer
    is SQL's, and it comes from the cache (no SQL) exactly when the window
    decides it. The window holds the newest 4 items; when the chat has more,
    a page is inside it if it needs none of the older ones, counting the one
    more item that says whether there is more."""
    window = 4
    app = make_app(SMG_HISTORY_CACHE_WINDOW=window, SMG_HISTORY_CACHE_RECHECK=3600)
    store, backend = store_of(app), backend_of(app)
    conv = store.conversations.create(items=[{"role": "user", "content": f"m{n}"} for n in range(size)])
    store.items.recent(conv.id, limit=1)
    settle(app)
    ids = [i.id for i in backend.sql.list_items("alice", conv.id, after=None, limit=100, order="asc").data]
    held = ids[-window:]  # what the entry holds
    complete = size <= window
    for order in ("asc", "desc"):
        for after in [None, *ids]:
            for limit in range(1, size + 2):
                if complete:
                    inside = True
                elif after is None:
                    inside = order == "desc" and limit < window
                elif after not in held:
                    inside = False
                elif order == "asc":
                    inside = True
                else:
                    inside = held.index(after) > limit  # older items in the window below the cursor
                with counted_statements(app) as sql:
                    page = store.items.list(conv.id, after=after, limit=limit, order=order)
                expected = backend.sql.list_items("alice", conv.id, after=after, limit=limit, order=order)
                case = (order, after and ids.index(after), limit)
                assert ([i.id for i in page.data], page.has_more) == (
                    [i.id for i in expected.data],
                    expected.has_more,
                ), case
                assert (sql == []) == inside, case
    for limit in range(1, size + 2):  # the chat turn's read: inside up to the window's size
        with counted_statements(app) as sql:
            recent = store.items.recent(conv.id, limit=limit)
        assert [i.id for i in recent] == ids[-limit:]
        assert (sql == []) == (limit <= window), limit
