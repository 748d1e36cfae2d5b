"""The hybrid backend's cache while Redis answers: hot reads come from Redis,
every write is seen by the next read, and the fill race cannot leave a stale
entry."""

from __future__ import annotations

import threading

import pytest

from flask_smg_history.errors import InvalidRequest, NotFound

from .conftest import backend_of, counted_statements, store_of


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
    assert _texts(store.items.recent(conv.id, limit=20)) == [f"m{j}" for j in range(10, 30)]  # the miss fills
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
    writer, reader = store_of(make_app()), store_of(make_app())
    conv = _chat(writer, 3)
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]
    item = writer.items.add(conv.id, [{"role": "user", "content": "m3"}])[0]
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2", "m3"]
    writer.conversations.update(conv.id, metadata={"title": "new"})
    assert reader.conversations.get(conv.id).metadata == {"title": "new"}
    writer.items.delete(conv.id, item.id)
    assert _texts(reader.items.list(conv.id, order="asc").data) == ["m0", "m1", "m2"]
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
    assert [i.id for i in store.items.list(short.id, order="asc", limit=3).data] == [
        i.id for i in backend.sql.list_items("alice", short.id, after=None, limit=3, order="asc").data
    ]
    with pytest.raises(InvalidRequest):
        store.items.list(short.id, after=ids[0])


def test_another_owner_never_reads_a_cached_conversation(make_app):
    app = make_app()
    conv = _chat(store_of(app, "alice"), 2)
    store_of(app, "alice").items.recent(conv.id, limit=2)
    with pytest.raises(NotFound):
        store_of(app, "mallory").conversations.get(conv.id)
    with pytest.raises(NotFound):
        store_of(app, "mallory").items.recent(conv.id, limit=2)


def _held_reader(backend, store, conv_id: str):
    """A reader thread held between its SQL read and its fill (``before_fill``)."""
    read_sql, release = threading.Event(), threading.Event()
    result: list = []

    def hold() -> None:
        read_sql.set()
        assert release.wait(10)

    backend.before_fill = hold
    thread = threading.Thread(target=lambda: result.append(store.items.recent(conv_id, limit=10)))
    thread.start()
    assert read_sql.wait(10)
    backend.before_fill = None
    return release, thread, result


def test_a_fill_that_read_sql_before_a_commit_is_refused_after_it(make_app):
    """The reader misses and reads SQL; a writer (another app) commits and
    returns; only then does the reader try to fill: refused, so the next read
    sees the write."""
    reader_app = make_app()
    reader, backend = store_of(reader_app), backend_of(reader_app)
    writer = store_of(make_app())
    conv = _chat(writer, 2)
    release, thread, result = _held_reader(backend, reader, conv.id)
    writer.items.add(conv.id, [{"role": "user", "content": "m2"}])  # committed and acknowledged
    release.set()
    thread.join(10)
    assert _texts(result[0]) == ["m0", "m1"]  # it read before the write: fine, it began before it
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]  # and the cache holds it now


def test_a_stale_fill_that_lands_before_the_writers_delete_is_deleted(make_app):
    """The other order: the writer has committed but not yet deleted when the
    stale fill lands; its delete, before it returns, removes the entry."""
    reader_app, writer_app = make_app(), make_app()
    reader, backend = store_of(reader_app), backend_of(reader_app)
    writer, writer_backend = store_of(writer_app), backend_of(writer_app)
    conv = _chat(writer, 2)
    release, thread, result = _held_reader(backend, reader, conv.id)
    committed, go_on = threading.Event(), threading.Event()
    invalidate = writer_backend.cache.invalidate

    def invalidate_later(owner: str, conversation_id: str) -> None:
        committed.set()
        assert go_on.wait(10)
        invalidate(owner, conversation_id)

    writer_backend.cache.invalidate = invalidate_later
    add = threading.Thread(target=lambda: writer.items.add(conv.id, [{"role": "user", "content": "m2"}]))
    add.start()
    assert committed.wait(10)
    release.set()  # the stale fill lands now, before the writer's delete
    thread.join(10)
    assert _texts(result[0]) == ["m0", "m1"]
    assert backend.hits == 0
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1"]  # the write is not acknowledged yet
    go_on.set()
    add.join(10)
    assert _texts(reader.items.recent(conv.id, limit=10)) == ["m0", "m1", "m2"]


def test_bulk_operations_empty_the_cache(make_app):
    app = make_app()
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    backend.erase_owner("alice")
    with pytest.raises(NotFound):
        store.items.recent(conv.id, limit=5)
    conv = _chat(store, 2)
    store.items.recent(conv.id, limit=5)
    backend.purge(before=conv.updated_at + 1, dry_run=False)
    with pytest.raises(NotFound):
        store.conversations.get(conv.id)


def test_a_cached_conversation_expires_with_its_retention(make_app):
    app = make_app(SMG_HISTORY_RETENTION_DAYS=1.5 / 86400)
    store, backend = store_of(app), backend_of(app)
    conv = _chat(store, 1)
    store.conversations.get(conv.id)
    assert store.conversations.get(conv.id).id == conv.id and backend.hits == 1
    ttl = backend.cache.client.pttl(next(iter(backend.cache.client.scan_iter(match=f"{backend.cache.entry_prefix}1*"))))
    assert 0 < ttl <= 1500
    import time

    time.sleep(max(0.0, conv.expires_at - time.time()) + 0.05)
    with pytest.raises(NotFound):
        store.conversations.get(conv.id)
