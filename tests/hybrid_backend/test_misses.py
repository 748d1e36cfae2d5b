"""A miss answers from SQL and leaves its fill to the fill thread
(``backends/hybrid/fills.py``): the window it stores (``sql/window.py``,
payloads as SQL's own JSON text) then answers every read exactly as SQL does,
an append in the same process waits for that fill so it can extend the
entry, and appends racing misses never leave a stale entry."""

from __future__ import annotations

import random
import threading
import time

from flask import Flask

from flask_smg_history import get_state
from flask_smg_history.backends.hybrid import cache
from flask_smg_history.store import HistoryStore

from .conftest import backend_of, counted_statements, settle, store_of

#: Payloads whose JSON text SQL writes its own way (PostgreSQL's jsonb
#: respaces it and keeps non-ASCII characters as they are), so the cache's
#: copy of that text must read back as the values SQL reads.
ODD_ITEMS = [
    {"role": "user", "content": 'é ü 日本 😀 \u2028 " \\ \n\t <tag> & end'},
    {
        "type": "mcp_list_tools",
        "server_label": "docs",
        "tools": [
            {
                "name": "search",
                "input_schema": {"big": 12345678901234567890123, "small": -1e-7, "half": 0.5, "huge": 1.5e300},
            }
        ],
    },
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": -3}'},
]


def _texts(items) -> list[str]:
    return [i.payload["content"][0]["text"] for i in items]


def _sql_store(app: Flask) -> HistoryStore:
    """Alice's store on the hybrid's own SQL backend: what SQL alone answers."""
    state = get_state(app)
    return HistoryStore("alice", state.backend.sql, state.settings, metrics=state.metrics, sender=app)


def _ids(app: Flask, conv_id: str) -> list[str]:
    return [i.id for i in backend_of(app).sql.list_items("alice", conv_id, after=None, limit=100, order="asc").data]


def _reads(store, conv_id: str, ids: list[str]) -> list:
    """Every kind of read the cache answers, with cursors inside the window."""
    pages = [
        store.items.list(conv_id, limit=4, order="desc"),
        store.items.list(conv_id, after=ids[-2], limit=3, order="desc"),
        store.items.list(conv_id, after=ids[-6], limit=10, order="asc"),
    ]
    return [
        store.conversations.get(conv_id),
        *(store.items.recent(conv_id, limit=n) for n in (1, 3, 6)),
        *((page.data, page.has_more) for page in pages),
    ]


def test_a_miss_answers_as_sql_and_its_fill_answers_every_read_as_sql(make_app, monkeypatch):
    """Also with the window read and written a few slots per Redis call
    (``SLOTS_PER_CALL``: the scripts' chunks), the last one partial."""
    monkeypatch.setattr(cache, "SLOTS_PER_CALL", 3)
    app = make_app(SMG_HISTORY_CACHE_WINDOW=8)
    store, backend = store_of(app), backend_of(app)
    conv = store.conversations.create(metadata={"title": "ünï 日本 \u2028", "n": "1"})
    for k in range(4):
        store.items.add(conv.id, [{"role": "user", "content": f"m{k}"}, *ODD_ITEMS])
    ids = _ids(app, conv.id)
    expected = _reads(_sql_store(app), conv.id, ids)

    assert store.items.recent(conv.id, limit=6) == _sql_store(app).items.recent(conv.id, limit=6)  # the miss
    assert backend.misses == 1
    settle(app)
    with counted_statements(app) as sql:
        assert _reads(store, conv.id, ids) == expected
    assert sql == [] and backend.hits == len(expected) and backend.misses == 1


def test_a_window_with_gaps_holds_what_is_there_and_extends_after_a_deleted_newest_item(make_app):
    """Deleted items leave gaps in the positions: the window then holds fewer
    items than its size and is not complete, so a read it cannot answer goes
    to SQL. The next position is the conversation's own (the newest item
    was deleted), so the append after the fill still extends the entry."""
    app = make_app(SMG_HISTORY_CACHE_WINDOW=10)
    store, backend, sql_store = store_of(app), backend_of(app), _sql_store(app)
    conv = store.conversations.create()
    for first in (0, 20):
        store.items.add(conv.id, [{"role": "user", "content": f"m{k}"} for k in range(first, min(25, first + 20))])
    ids = _ids(app, conv.id)
    for gone in (ids[-1], ids[-4], ids[-7]):
        store.items.delete(conv.id, gone)

    assert store.items.recent(conv.id, limit=3) == sql_store.items.recent(conv.id, limit=3)  # a miss
    settle(app)
    hits = backend.hits
    assert _texts(store.items.recent(conv.id, limit=7)) == [f"m{k}" for k in (15, 16, 17, 19, 20, 22, 23)]
    assert store.items.recent(conv.id, limit=8) == sql_store.items.recent(conv.id, limit=8)  # beyond: SQL
    assert backend.hits == hits + 2
    store.items.add(conv.id, [{"role": "user", "content": "new"}])  # written through
    with counted_statements(app) as sql:
        got = store.items.recent(conv.id, limit=7)
    assert sql == [] and got == sql_store.items.recent(conv.id, limit=7) and _texts(got)[-1] == "new"


def _held_fill(app: Flask, conv_id: str) -> tuple[threading.Event, list]:
    """A miss whose fill is held on the fill thread after its SQL read."""
    backend, read_sql, release = backend_of(app), threading.Event(), threading.Event()

    def hold() -> None:
        read_sql.set()
        assert release.wait(10)

    backend.before_fill = hold
    answer = store_of(app).items.recent(conv_id, limit=10)
    assert read_sql.wait(10)
    backend.before_fill = None
    return release, answer


def test_an_append_waits_for_the_pending_fill_of_its_conversation_then_extends_it(make_app):
    app = make_app()
    store, backend = store_of(app), backend_of(app)
    conv = store.conversations.create(items=[{"role": "user", "content": "m0"}])
    release, answer = _held_fill(app, conv.id)
    appending = threading.Thread(target=lambda: store.items.add(conv.id, [{"role": "user", "content": "m1"}]))
    appending.start()
    time.sleep(0.1)
    assert appending.is_alive()  # waiting for the fill (FILL_WAIT is 0.5 s)
    release.set()
    appending.join(10)
    assert _texts(answer) == ["m0"]
    with counted_statements(app) as sql:  # the fill landed first, and the append extended it
        assert _texts(store.items.recent(conv.id, limit=10)) == ["m0", "m1"]
    assert sql == [] and backend.misses == 1


def test_appends_racing_misses_never_leave_a_stale_entry(make_app):
    """A writer app appends while a reader app keeps missing (its entry is
    deleted before every other read), so fills read SQL before, between and
    after the appends' commits and cache steps. Every read holds every append
    acknowledged before it began; at the end the cached window is SQL's."""
    reader_app, writer_app = make_app(SMG_HISTORY_CACHE_WINDOW=6), make_app(SMG_HISTORY_CACHE_WINDOW=6)
    reader, writer, reader_backend = store_of(reader_app), store_of(writer_app), backend_of(reader_app)
    conv = writer.conversations.create(items=[{"role": "user", "content": "0"}])
    acked, stop, failures = [1], threading.Event(), []

    def write() -> None:
        while not stop.is_set() and acked[0] < 300:
            writer.items.add(conv.id, [{"role": "user", "content": str(acked[0])}])
            acked[0] += 1
            time.sleep(random.random() * 0.004)  # now and then a fill lands between two appends

    thread = threading.Thread(target=write)
    thread.start()
    try:
        deadline, k = time.monotonic() + 3, 0
        while time.monotonic() < deadline and thread.is_alive() and not failures:
            k += 1
            if k % 2:  # every other read is a miss, whose fill then lands or is revoked by an append
                reader_backend.cache.invalidate("alice", conv.id)
            before = acked[0]
            newest = int(_texts(reader.items.recent(conv.id, limit=3))[-1])
            if newest < before - 1:
                failures.append(f"read {newest} after {before} appends were acknowledged")
            if k % 2:
                settle(reader_app)
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert reader_backend.misses > 10 and reader_backend.hits > 10
    reader.items.recent(conv.id, limit=3)
    settle(reader_app, writer_app)
    hits = reader_backend.hits
    assert reader.items.recent(conv.id, limit=6) == _sql_store(reader_app).items.recent(conv.id, limit=6)
    assert reader_backend.hits == hits + 1
