"""The SQL search's two plans (``backends/sql/search.py``): the walk of
conversations by activity and the full-text index, and the choice between
them. The plans' sizes are shrunk here so that a few dozen conversations
take every path (a page cut across walk batches, the index after the first
batch, the walk to its budget and the index after it), and every page is
checked against an oracle computed in Python from the rows written."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.backends.sql import search as sql_search
from flask_smg_history.backends.sql.search import Span, cut, next_batch, rowid_ranges
from flask_smg_history.search import Cursor, SearchQuery, fold

from ..support.backends_sql import POSTGRES_URL, postgres_schema

#: Plan sizes, each set taking other paths through ``collect``.
SIZES = {
    # the production sizes: these conversations fit in the first walk
    "shipped": {},
    # a walk of two slots, then the index (every query here has fewer matches than PROBE)
    "index after the first batch": {"FIRST_WALK": 2, "GROWTH": 2, "FIRST_CHUNK": 1, "WALK_BUDGET": 40, "PROBE": 1000},
    # the probe always says "many": walk batches from 2 slots up to 14 in all, then the index finishes
    "walk, then the index": {"FIRST_WALK": 2, "GROWTH": 2, "FIRST_CHUNK": 1, "WALK_BUDGET": 14, "PROBE": 0},
    # the probe always says "many" and the budget is never reached: all walked, in batches cut anywhere
    "walk only": {"FIRST_WALK": 3, "GROWTH": 3, "FIRST_CHUNK": 2, "WALK_BUDGET": 10**6, "PROBE": 0, "RANGES": 1},
}
QUERIES = [
    "kiwi",  # one item in two, and some titles
    "mango",  # rare
    "lemon",  # only in the three oldest conversations
    "papaya",  # only in one title
    "zyzzyva",  # nowhere
    '"kiwi mango"',
    "kiwi -mango",
    "mango or lemon",
]
WORDS = ["kiwi", "plum", "fig", "kiwi", "date", "kiwi mango", "olive", "fig kiwi"]


@dataclass
class Conv:
    id: str
    updated_at: float
    title: str
    items: dict[int, str]  # position: item ID
    next_position: int
    owner: str = "alice"
    expires_at: float | None = None


@dataclass
class History:
    """What the test writes, and what a search must find in it."""

    conversations: list[Conv] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # item ID: text

    def expected(self, query: str, owner: str = "alice") -> list[tuple[float, str, int | None]]:
        """Every hit, in search order, as (updated_at, conversation, position)."""
        parsed = SearchQuery.parse(query)
        out = []
        mine = [c for c in self.conversations if c.owner == owner and c.expires_at is None]
        for conv in sorted(mine, key=lambda c: (c.updated_at, c.id), reverse=True):
            if parsed.matches(fold([conv.title])):
                out.append((conv.updated_at, conv.id, None))
            for position in sorted(conv.items, reverse=True):
                if parsed.matches(fold([self.texts[conv.items[position]]])):
                    out.append((conv.updated_at, conv.id, position))
        return out


def build_history(seed: int = 7) -> History:
    """Forty conversations of alice (ties of ``updated_at``, IDs that order
    differently by byte and by dictionary, gaps in positions, an item in
    two conversations, an expired one) and a few of bob holding the same
    words."""
    rng = random.Random(seed)
    history = History()
    for n in range(40):
        cid = f"conv_{'Aa'[n % 2]}{n:03d}"
        updated_at = 1000.0 + n // 3  # three conversations to a time
        title = "papaya list" if n == 17 else ("kiwi notes" if n % 7 == 0 else "chat")
        items = {}
        position = 0
        for _ in range(rng.randrange(0, 9)):
            position += rng.choice([1, 1, 1, 2, 4])  # the gaps of deleted items
            item_id = f"msg_{n}_{position}"
            text = rng.choice(WORDS) + (" lemon" if n < 3 else "") + (" mango" if rng.random() < 0.08 else "")
            history.texts[item_id] = text
            items[position] = item_id
        conv = Conv(cid, updated_at, title, items, position + 1 + rng.randrange(0, 3))
        history.conversations.append(conv)
    donor = next(c for c in history.conversations[20:] if c.items)
    history.conversations[5].items[100] = next(iter(donor.items.values()))  # an item referenced from a second one
    history.conversations[5].next_position = 101
    history.conversations.append(Conv("conv_gone", 2000.0, "kiwi", {}, 0, expires_at=1.0))
    for n in range(5):
        history.texts[f"msg_bob_{n}"] = "kiwi mango lemon papaya zyzzyva"
        history.conversations.append(Conv(f"conv_bob{n}", 3000.0 + n, "kiwi papaya", {0: f"msg_bob_{n}"}, 1, "bob"))
    return history


def write(backend, history: History) -> None:
    """The rows, written straight into the tables (the search index is kept by the database)."""
    t = backend.tables
    with backend.engine.begin() as db:
        written = set()
        for conv in history.conversations:
            db.execute(
                sa.insert(t.conversations).values(
                    id=conv.id,
                    owner=conv.owner,
                    created_at=1.0,
                    updated_at=conv.updated_at,
                    metadata={"title": conv.title},
                    expires_at=conv.expires_at,
                    next_position=conv.next_position,
                )
            )
            for position, item_id in conv.items.items():
                if item_id not in written:
                    written.add(item_id)
                    payload = {"id": item_id, "type": "message", "role": "user", "content": history.texts[item_id]}
                    db.execute(
                        sa.insert(t.items).values(
                            owner=conv.owner, id=item_id, type="message", role="user", payload=payload, created_at=1.0
                        )
                    )
                db.execute(
                    sa.insert(t.links).values(
                        conversation_id=conv.id, position=position, owner=conv.owner, item_id=item_id
                    )
                )


@pytest.fixture(params=["sqlite", "postgres"])
def sql_app(request, tmp_path: Path) -> Iterator[Flask]:
    with postgres_schema() if request.param == "postgres" else nullcontext() as schema:
        app = Flask(f"plans_{request.param}")
        app.config["SMG_HISTORY_CREATE_TABLES"] = True
        if request.param == "sqlite":
            app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"))
        else:
            app.config.update(
                SMG_HISTORY_BACKEND="postgres", SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL, SMG_HISTORY_SQL_SCHEMA=schema
            )
        SmgHistory(app)
        yield app
        get_state(app).backend.close()


def shrink(monkeypatch, sizes: dict[str, int]) -> None:
    for name, value in sizes.items():
        monkeypatch.setattr(sql_search, name, value)


def pages(store, query: str, limit: int, after: str | None = None, **kwargs) -> list[list[tuple]]:
    """Every page from ``after``, each as (updated_at, conversation, position) of its hits."""
    out = []
    while True:
        page = store.search(query, limit=limit, after=after, **kwargs)
        out.append([(h.conversation_updated_at, h.conversation_id, h.position) for h in page.data])
        assert len(page.data) == limit or not page.has_more
        if not page.has_more:
            return out
        after = page.last_id


@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
def test_every_page_is_the_oracles(sql_app, monkeypatch, sizes):
    shrink(monkeypatch, sizes)
    history = build_history()
    write(get_state(sql_app).backend, history)
    store = get_state(sql_app).store_for("alice")
    for query in QUERIES:
        expected = history.expected(query)
        for limit in (1, 2, 5, 100):
            got = pages(store, query, limit)
            assert [hit for page in got for hit in page] == expected, (query, limit)
            assert all(len(page) == limit for page in got[:-1]), (query, limit)
    # within one conversation: its metadata, then its items from the newest; the item it shares too
    shared = history.conversations[5]
    got = [hit for page in pages(store, "kiwi", 2, conversation=shared.id) for hit in page]
    assert got == [hit for hit in history.expected("kiwi") if hit[1] == shared.id]


@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
def test_conversations_that_move_between_pages(sql_app, monkeypatch, sizes):
    """A page continues after its last hit's place as it was: the
    conversation of that hit, active since, is now above the cursor and is
    not read again; an older one that became active moves above it too;
    everything else continues in order."""
    shrink(monkeypatch, sizes)
    history = build_history()
    backend = get_state(sql_app).backend
    write(backend, history)
    store = get_state(sql_app).store_for("alice")
    first = store.search("kiwi", limit=7)
    cursor = Cursor.decode(first.last_id)
    old = next(c for c in history.conversations[3:] if c.items and c.id != cursor.conversation_id)
    for moved in (cursor.conversation_id, old.id):
        store.items.add(moved, [{"role": "user", "content": "kiwi again"}])
    rest = [hit for page in pages(store, "kiwi", 3, after=first.last_id) for hit in page]
    unmoved = [hit for hit in history.expected("kiwi") if hit[1] not in (cursor.conversation_id, old.id)]
    assert rest == [hit for hit in unmoved if cursor.precedes(*hit)]
    assert rest and {hit[1] for hit in rest}.isdisjoint({cursor.conversation_id, old.id})


def test_a_page_reads_one_snapshot(sql_app, monkeypatch):
    """A conversation that becomes active while a page is being read (after
    the walk's first batch, here) is found where it was when the page
    started: not at the top, which the walk has passed, and not missing."""
    shrink(monkeypatch, SIZES["walk only"])
    history = build_history()
    write(get_state(sql_app).backend, history)
    store = get_state(sql_app).store_for("alice")
    oldest = min((c for c in history.conversations if c.owner == "alice" and c.items), key=lambda c: c.updated_at)
    walk = sql_search._Plan.walk
    batches = []

    def walk_and_write(plan, start, slots):
        batches.append(start)
        if len(batches) == 2:  # on a connection of its own, committed at once
            get_state(sql_app).store_for("alice").items.add(oldest.id, [{"role": "user", "content": "kiwi late"}])
        return walk(plan, start, slots)

    monkeypatch.setattr(sql_search._Plan, "walk", walk_and_write)
    page = store.search("kiwi", limit=100)
    assert len(batches) > 2
    assert [(h.conversation_updated_at, h.conversation_id, h.position) for h in page.data] == history.expected("kiwi")


@pytest.mark.parametrize("sql_app", ["postgres"], indirect=True)
def test_postgres_pages_are_planned_for_their_owner_and_query(sql_app, monkeypatch):
    """Every statement of a page runs in one read-only REPEATABLE READ
    transaction, planned for its own parameters (never the generic plan of
    a statement psycopg prepared after five runs, which would be the same
    for an absent word and a common one), without sequential scans."""
    store = get_state(sql_app).store_for("alice")
    store.conversations.create(items=[{"role": "user", "content": "kiwi"}])
    walk, seen = sql_search._Plan.walk, []

    def walk_and_look(plan, start, slots):
        names = ("transaction_isolation", "transaction_read_only", "plan_cache_mode", "enable_seqscan")
        seen.append(tuple(plan.conn.exec_driver_sql(f"SHOW {name}").scalar() for name in names))
        return walk(plan, start, slots)

    monkeypatch.setattr(sql_search._Plan, "walk", walk_and_look)
    for _ in range(7):
        assert len(store.search("kiwi").data) == 1
    assert set(seen) == {("repeatable read", "on", "force_custom_plan", "off")}
    with get_state(sql_app).backend.engine.connect() as db:  # and nothing of it outlives the page
        assert db.exec_driver_sql("SHOW enable_seqscan").scalar() == "on"


def test_the_plan_follows_the_word(sql_app, monkeypatch):
    """A word frequent among the newest conversations is served by the walk
    alone; a rare or absent one by the index after one walk batch; a
    frequent word of old conversations only by the walk up to its budget,
    then the index without a cap."""
    shrink(monkeypatch, {"FIRST_WALK": 4, "GROWTH": 2, "FIRST_CHUNK": 1, "WALK_BUDGET": 12, "PROBE": 5})
    history = History()
    for n in range(30):  # four items each: kiwi in the newest, lemon in the three oldest, mango twice
        words = "kiwi" if n == 29 else "lemon" if n < 3 else "fig"
        items = {p: f"msg_{n}_{p}" for p in range(4)}
        history.texts.update({item_id: f"{words} {p}" for p, item_id in items.items()})
        if n in (11, 12):
            history.texts[items[0]] = "mango"
        history.conversations.append(Conv(f"conv_{n:02d}", 1000.0 + n, "chat", items, 4))
    write(get_state(sql_app).backend, history)
    store = get_state(sql_app).store_for("alice")
    postgres = get_state(sql_app).backend.engine.dialect.name == "postgresql"
    plan_class = sql_search._Postgres if postgres else sql_search._Sqlite
    walk, indexed = sql_search._Plan.walk, plan_class.indexed
    calls = []

    def walk_spy(plan, start, slots):
        calls.append(("walk", slots))
        return walk(plan, start, slots)

    def indexed_spy(plan, start, need, cap):
        found = indexed(plan, start, need, cap)
        calls.append(("index", cap, found is not None))
        return found

    monkeypatch.setattr(sql_search._Plan, "walk", walk_spy)
    monkeypatch.setattr(plan_class, "indexed", indexed_spy)

    def plan_of(query: str, limit: int) -> list:
        calls.clear()
        page = store.search(query, limit=limit)
        assert [(h.conversation_updated_at, h.conversation_id, h.position) for h in page.data] == (
            history.expected(query)[:limit]
        )
        return list(calls)

    assert plan_of("kiwi", 1) == [("walk", 4)]
    assert plan_of("zyzzyva", 5) == [("walk", 4), ("index", 5, True)]
    assert plan_of("mango", 2) == [("walk", 4), ("index", 5, True)]
    assert plan_of("lemon", 3) == [("walk", 4), ("index", 5, False), ("walk", 8), ("index", None, True)]


def test_cut_takes_metadata_then_positions_newest_first():
    rows = [("c3", 30.0, 5), ("c2", 20.0, 0), ("c1", 10.0, 3)]
    assert cut(iter(rows), None, 4) == ([Span("c3", 30.0, True, 2, 5)], Cursor(30.0, "c3", 2))
    assert cut(iter(rows), None, 9) == (
        [Span("c3", 30.0, True, 0, 5), Span("c2", 20.0, True, 0, 0), Span("c1", 10.0, True, 2, 3)],
        Cursor(10.0, "c1", 2),
    )
    # the slots end right after a conversation's metadata
    assert cut(iter(rows), None, 8) == (
        [Span("c3", 30.0, True, 0, 5), Span("c2", 20.0, True, 0, 0), Span("c1", 10.0, True, 3, 3)],
        Cursor(10.0, "c1", 3),
    )
    # the conversations ran out before the slots did
    assert cut(iter(rows), None, 100)[1] is None
    # resuming: the cursor's conversation has its metadata passed and continues below the cursor's position
    assert cut(iter(rows), Cursor(30.0, "c3", 2), 3) == (
        [Span("c3", 30.0, False, 0, 2), Span("c2", 20.0, True, 0, 0)],
        Cursor(20.0, "c2", 0),
    )
    assert cut(iter(rows), Cursor(30.0, "c3", None), 1) == ([Span("c3", 30.0, False, 4, 5)], Cursor(30.0, "c3", 4))
    # a cursor position beyond the conversation's or below 0 (cursors are the client's)
    assert cut(iter(rows[:1]), Cursor(30.0, "c3", 99), 9)[0] == [Span("c3", 30.0, False, 0, 5)]
    assert cut(iter(rows[:1]), Cursor(30.0, "c3", -4), 9)[0] == [Span("c3", 30.0, False, 0, 0)]
    # no conversation is read beyond the slots
    read = []

    def reading():
        for row in rows:
            read.append(row[0])
            yield row

    cut(reading(), None, 6)
    assert read == ["c3"]


def test_rowid_ranges_split_at_the_largest_gaps():
    assert rowid_ranges([5], 8) == [(5, 5)]
    assert rowid_ranges([1, 2, 3, 10, 11, 50], 3) == [(1, 3), (10, 11), (50, 50)]
    assert rowid_ranges([1, 2, 3, 10, 11, 50], 2) == [(1, 11), (50, 50)]
    assert rowid_ranges([1, 2, 3, 10, 11, 50], 1) == [(1, 50)]
    assert rowid_ranges([4, 5, 6, 7], 8) == [(4, 7)]  # consecutive rowids are never split


def test_next_batch_follows_the_rate_of_hits():
    assert next_batch(256, 0, 21) == 1024  # nothing yet: four times all walked
    assert next_batch(256, 3, 21) == 1920  # 18 more at 3 in 256, and a quarter
    assert next_batch(1000, 20, 21) == 500  # one more: still half of all walked
