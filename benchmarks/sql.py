"""Benchmark of the SQL backends: `python benchmarks/sql.py` (see docs/backends/sql.md).

Prints, for SQLite and PostgreSQL:
- items added per second through ``history.items.add``, one item per call and
  20 per call;
- the time of ``items.recent(20)`` in a conversation of 100 and of 100,000
  items, and their ratio (keyset on the (conversation_id, position) index: it
  should not grow with the conversation);
- the time of our add-one-item against a bare driver ``INSERT`` + ``COMMIT`` of
  the same item row into our own items table on the same server, and the ratios
  (target <= 1.5); on PostgreSQL also the ratio of our append statement sent by
  the bare driver, which is the database's share of the difference;
- records per second through export and import (what ``flask smg-history
  copy`` does) and the time of ``erase_owner`` on the large conversation.

With ``--search``, only the search figures instead: the first page of
``history.search`` (a rare word, a common word, a phrase, an absent word, a
word of old conversations only) for an owner of 10,000 and one of 1,000,000
items, alone and among 1,000,000 items of 1,000 other owners that hold the
same words (the data is made by the server with INSERT ... SELECT, so a fill
takes minutes, not hours), each as its first call and the median of the
calls after it (``search_figures`` says why both, and when ANALYZE runs).
``--keep NAME`` keeps the filled store for the next runs.

Each figure is the median of several rounds. PostgreSQL runs in a schema of its
own, dropped at the end; SQLite in a temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask

from flask_smg_history import Item, SmgHistory, get_state
from flask_smg_history.records import mint_id

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


@contextmanager
def sqlite_target(keep: str | None = None) -> Iterator[tuple[dict[str, Any], Callable[[], Any]]]:
    """A store in a temporary file, or with ``keep`` in ``<tempdir>/<keep>.sqlite3``, left there."""
    with tempfile.TemporaryDirectory() as tmp:
        path = (
            os.path.join(tmp, "bench.sqlite3")
            if keep is None
            else os.path.join(tempfile.gettempdir(), f"{keep}.sqlite3")
        )

        def bare_connect() -> Any:
            import sqlite3

            return sqlite3.connect(path, isolation_level=None)

        yield {"SMG_HISTORY_BACKEND": "sqlite", "SMG_HISTORY_SQLITE_PATH": path}, bare_connect


@contextmanager
def postgres_target(url: str, keep: str | None = None) -> Iterator[tuple[dict[str, Any], Callable[[], Any]]]:
    """A store in a schema of its own, dropped at the end; with ``keep`` in the schema ``keep``, left there."""
    import psycopg2

    schema = keep or f"smg_bench_{secrets.token_hex(4)}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    def bare_connect() -> Any:
        return psycopg2.connect(url, options=f"-csearch_path={schema}")

    try:
        yield (
            {"SMG_HISTORY_BACKEND": "postgres", "SMG_HISTORY_POSTGRES_DB_URL": url, "SMG_HISTORY_SQL_SCHEMA": schema},
            bare_connect,
        )
    finally:
        if keep is None:
            admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def bare_insert(
    name: str, bare_connect: Callable[[], Any], table: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One INSERT of an item row into our own items table (same primary key)
    and its COMMIT, with the bare driver: the least any store of one item costs
    (ours also writes the item's link row and bumps the conversation's
    counter); and how to close its connection."""
    conn = bare_connect()
    mark = "%s" if name == "postgres" else "?"
    sql = f"INSERT INTO {table} (owner, id, type, role, status, payload, created_at) VALUES ({', '.join([mark] * 7)})"
    position = iter(range(10**9))

    def one() -> None:
        n = next(position)
        payload = {"id": f"msg_{n}", "type": "message", "role": "user", "status": "completed", "content": "hi"}
        row = ("bare", f"msg_{n}", "message", "user", "completed", json.dumps(payload), time.time())
        if name == "postgres":
            with conn.cursor() as cur:
                cur.execute(sql, row)
            conn.commit()
        else:
            conn.execute("BEGIN")
            conn.execute(sql, row)
            conn.execute("COMMIT")

    return one, conn.close


def paired_medians(ours: Callable[[], Any], bare: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``bare``, timed alternately so that load
    from other processes on the machine hits both alike."""
    for _ in range(20):
        ours()
        bare()
    ours_s, bare_s = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        bare()
        middle = time.perf_counter()
        ours()
        bare_s.append(middle - started)
        ours_s.append(time.perf_counter() - middle)
    return statistics.median(ours_s), statistics.median(bare_s)


def _item_record(conversation_id: str) -> Item:
    """The record ``items.add`` would hand the backend for ``one_item``,
    built here so the backend's own cost is measured without the store's."""
    item_id = mint_id("msg")
    payload = {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    return Item(item_id, conversation_id, "message", payload, time.time(), role="user")


def run(name: str, config: dict[str, Any], bare_connect: Callable[[], Any], big: int, rounds: int) -> dict:
    app = Flask(f"bench_{name}")
    app.config.update(config, SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    store = get_state(app).store_for("bench")
    one_item = [{"role": "user", "content": "hi"}]
    batch = [{"role": "user", "content": f"message {n}"} for n in range(20)]

    backend = get_state(app).backend
    if name == "postgres":  # no autovacuum: the large conversation's reads are measured on stale statistics first
        with backend.engine.begin() as conn:
            for table in backend.tables.metadata.tables.values():
                conn.exec_driver_sql(f"ALTER TABLE {table.fullname} SET (autovacuum_enabled = false)")
    conv = store.conversations.create()
    for _ in range(20):  # warm the pool and caches
        store.items.add(conv.id, one_item)
    add_one_alone = median_seconds(lambda: store.items.add(conv.id, one_item), rounds)
    add_batch = median_seconds(lambda: store.items.add(conv.id, batch), max(rounds // 4, 10))

    small = store.conversations.create(items=batch)
    for _ in range(4):
        store.items.add(small.id, batch)
    large = store.conversations.create()
    started = time.perf_counter()
    for _ in range(big // 20):
        store.items.add(large.id, batch)
    fill = time.perf_counter() - started
    # Stale statistics: what a bulk fill leaves until autovacuum's ANALYZE (the
    # tables were created empty and never analyzed). Then the same reads with
    # fresh statistics, as `import` and `copy` leave them.
    recent_stale = median_seconds(lambda: store.items.recent(large.id, 20), rounds)
    page_stale = median_seconds(lambda: store.items.list(large.id, limit=20), rounds)
    backend.refresh_statistics()
    recent_small = median_seconds(lambda: store.items.recent(small.id, 20), rounds)
    recent_large = median_seconds(lambda: store.items.recent(large.id, 20), rounds)
    page_large = median_seconds(lambda: store.items.list(large.id, limit=20), rounds)
    bare, close_bare = bare_insert(name, bare_connect, backend.tables.items.name)
    conv = store.conversations.create()
    add_one, bare_s = paired_medians(lambda: store.items.add(conv.id, one_item), bare, rounds)
    backend_add_one, bare_b = paired_medians(
        lambda: backend.add_items("bench", conv.id, [_item_record(conv.id)], updated_at=time.time(), expires_at=None),
        bare,
        rounds,
    )
    floor = {}
    if name == "postgres":  # the same append statement, sent by the bare driver: the server's share
        raw = bare_connect()
        floor_conv = store.conversations.create()
        counter = iter(range(10**9))

        def raw_append() -> None:
            n = next(counter)
            params = {
                "cid": floor_conv.id,
                "b_owner": "bench",
                "now": time.time(),
                "n": 1,
                "new_updated_at": time.time(),
                "new_expires_at": None,
                "ids": [f"msg_raw_{n}"],
                "types": ["message"],
                "roles": ["user"],
                "statuses": ["completed"],
                "payloads": [json.dumps({"id": f"msg_raw_{n}", "type": "message", "content": "hi"})],
                "created": [time.time()],
            }
            with raw.cursor() as cur:
                cur.execute(backend._append_sql, params)
            raw.commit()

        raw_s, bare_r = paired_medians(raw_append, bare, rounds)
        raw.close()
        floor = {"ratio same statement by bare driver / bare": raw_s / bare_r}
    close_bare()
    moved = copy_figures(backend)
    backend.close()
    return {
        "backend": name,
        "items/s, 1 per add": 1 / add_one_alone,
        "items/s, 20 per add": 20 / add_batch,
        f"items/s, filling {big:,}": big / fill,
        "recent(20) at 100 items, ms": recent_small * 1000,
        f"recent(20) at {big:,} items, ms": recent_large * 1000,
        "recent ratio (large/small)": recent_large / recent_small,
        f"recent(20) at {big:,} items, before any ANALYZE, ms": recent_stale * 1000,
        f"first page of {big:,} items, before any ANALYZE, ms": page_stale * 1000,
        f"first page of {big:,} items, ms": page_large * 1000,
        "add one item (history.items.add), ms": add_one * 1000,
        "add one item (backend.add_items), ms": backend_add_one * 1000,
        "bare INSERT+COMMIT, ms": bare_s * 1000,
        "ratio items.add / bare": add_one / bare_s,
        "ratio backend.add_items / bare": backend_add_one / bare_b,
        **floor,
        **moved,
    }


def copy_figures(backend: Any) -> dict[str, float]:
    """Records per second through export, import (batches of 500, as the CLI
    sends them) and erasure, of everything the run stored (mostly the large
    conversation)."""
    started = time.perf_counter()
    records = list(backend.export("bench", None))
    exported = time.perf_counter() - started
    started = time.perf_counter()
    erased = backend.erase_owner("bench")
    erase_s = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(records), 500):
        backend.import_records(records[start : start + 500])
    imported = time.perf_counter() - started
    return {
        "export, records/s": len(records) / exported,
        "import, records/s (batches of 500)": len(records) / imported,
        f"erase_owner of {erased['items']:,} items, s": erase_s,
    }


# -- search ------------------------------------------------------------------------
#: Items per conversation in the search fill.
SEARCH_PER_CONVERSATION = 100
#: What the search figures ask, by how often the owner's items hold it.
SEARCH_QUERIES = {
    "rare word": "topic7",  # 1 item in 1,000, spread over every conversation
    "common word": "deploy",  # 1 in 10
    "phrase": '"deploy failed"',  # 1 in 10
    "absent word": "zeppelin",  # no item
    # 1 in 10 of the oldest tenth of the owner's conversations only: many
    # matches, none recent (the walk by activity meets none for a long while)
    "old word": "legacy",
}
#: Where each fill's item numbers start: one owner per size (``bench<size>``,
#: the n-th size from n * 10**8), the other owners from 10**9.
SIZE_NUMBERING, OTHERS_NUMBERING = 10**8, 10**9


def _series(dialect: str, first: int, count: int) -> str:
    """A FROM clause of integers ``n`` from ``first``, made by the server."""
    last = first + count - 1
    if dialect == "postgresql":
        return f"generate_series({first}, {last}) AS g(n)"
    return (
        f"(WITH RECURSIVE g(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM g WHERE n < {last}) SELECT n FROM g) AS g"
    )


def search_fill(backend: Any, owner: str, first: int, count: int, owners: int = 1) -> None:
    """Store ``count`` items numbered from ``first`` (a multiple of
    ``SEARCH_PER_CONVERSATION``) in conversations of 100, each conversation
    of ``owner`` (or, with ``owners`` > 1, of ``owner0``... by conversation)
    with server-side INSERT ... SELECT statements of 100,000 items: the
    conversation rows, the items and their links, as ``items.add`` would
    leave them. Item ``n`` says ``note n topic<n % 1000>`` and, one in ten,
    ``deploy failed``; one in ten of the first tenth also says ``legacy``;
    newer conversations have later ``updated_at``."""
    dialect = backend.engine.dialect.name
    quote = backend.engine.dialect.identifier_preparer.format_table
    convs, items, links = (quote(t) for t in (backend.tables.conversations, backend.tables.items, backend.tables.links))
    obj, arr, per = ("jsonb_build_object", "jsonb_build_array", SEARCH_PER_CONVERSATION)
    if dialect == "sqlite":
        obj, arr = "json_object", "json_array"
    mod = "%%" if dialect == "postgresql" else "%"  # psycopg2 reads % as a parameter mark
    owner_of = f"'{owner}'" if owners == 1 else f"'{owner}' || (c {mod} {owners})"
    for start in range(first, first + count, 100_000):
        size = min(100_000, first + count - start)
        c_first, c_count = start // per, -(-size // per)
        tail = f"CASE WHEN n {mod} 10 = 0 THEN ' deploy failed' ELSE ' all fine' END"
        old = f"CASE WHEN n < {first + count // 10} AND n {mod} 10 = 5 THEN ' legacy' ELSE '' END"
        text = f"'note ' || n || ' topic' || (n {mod} 1000) || {tail} || {old}"
        with backend.engine.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO {convs} (id, owner, created_at, updated_at, metadata, expires_at, next_position) "
                f"SELECT 'conv_b' || c, {owner_of}, 1000000 + c, 1000000 + c + 0.5, "
                f"{obj}('title', 'chat ' || c), NULL, {per} "
                f"FROM (SELECT n AS c FROM {_series(dialect, c_first, c_count)}) AS cs"
            )
            conn.exec_driver_sql(
                f"INSERT INTO {items} (owner, id, type, role, status, payload, created_at) "
                f"SELECT {owner_of}, 'msg_b' || n, 'message', 'user', 'completed', "
                f"{obj}('id', 'msg_b' || n, 'type', 'message', 'role', 'user', 'status', 'completed', "
                f"'content', {arr}({obj}('type', 'input_text', 'text', {text}))), 1000000 + c "
                f"FROM (SELECT n, n / {per} AS c FROM {_series(dialect, start, size)}) AS ns"
            )
            conn.exec_driver_sql(
                f"INSERT INTO {links} (conversation_id, position, owner, item_id) "
                f"SELECT 'conv_b' || c, n {mod} {per}, {owner_of}, 'msg_b' || n "
                f"FROM (SELECT n, n / {per} AS c FROM {_series(dialect, start, size)}) AS ns"
            )


def _owned(backend: Any, owner_pattern: str) -> int:
    """Items stored for the owners matching ``owner_pattern`` (SQL LIKE)."""
    items = backend.tables.items
    with backend.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(items).where(items.c.owner.like(owner_pattern))
        ).scalar_one()


def search_figures(name: str, config: dict[str, Any], sizes: list[int], others: int, rounds: int) -> dict:
    """Search latency for an owner of each of ``sizes`` items (``bench<size>``),
    first alone (the smallest, in a new store), then among ``others`` items
    of 1,000 other owners holding the same words: the figures at the smallest
    size with and without them show whether the others' data costs the owner
    anything. A store kept by ``--keep`` is filled once: what is already
    there is reused, so the figures "alone" are only in the run that fills it.

    Each figure is taken after ANALYZE, as a deployment's autovacuum would
    have run it by then (each fill changes more than the 10 % of a table that
    triggers it; this server's autovacuum is off, so the benchmark runs it).
    Not VACUUM: the GIN pending list stays as the inserts left it (up to
    ``gin_pending_list_limit``, read by every search) and the visibility map
    unset, worse than just after an autovacuum, which is the side to err on.
    The first call of each query is reported on its own ("first call": no
    plan or page of that query warmed up by an earlier call; the pages the
    fill or a previous run touched may still be cached) besides the median of
    ``rounds`` calls after it: a plan that is only fast once warm shows. The
    median also covers the calls after psycopg has prepared the statements
    (from a connection's sixth run of one), where PostgreSQL may switch to a
    generic plan, as in a long-running app."""
    app = Flask(f"bench_search_{name}")
    app.config.update(config, SMG_HISTORY_CREATE_TABLES=True)
    SmgHistory(app)
    backend = get_state(app).backend
    out: dict[str, float] = {}

    def measure(label: str, owner: str) -> None:
        backend.refresh_statistics()
        store = get_state(app).store_for(owner)
        for what, query in SEARCH_QUERIES.items():
            out[f"{label}: {what}, first call, ms"] = median_seconds(lambda q=query: store.search(q), 1) * 1000
            out[f"{label}: {what}, median, ms"] = median_seconds(lambda q=query: store.search(q), rounds) * 1000

    def fill(owner: str, first: int, count: int, owners: int = 1) -> bool:
        """Fill unless a kept store holds it already; whether it filled."""
        stored = _owned(backend, owner if owners == 1 else f"{owner}%")
        if stored == count:
            return False
        if stored:
            raise SystemExit(f"the kept store holds {stored:,} items of {owner!r}, not {count:,}: drop it and refill")
        started = time.perf_counter()
        search_fill(backend, owner, first, count, owners)
        out[f"filling {count:,} items of {owners:,} owner(s), s"] = time.perf_counter() - started
        return True

    small = f"bench{sizes[0]}"
    if fill(small, 0, sizes[0]) and not _owned(backend, "other%"):
        measure(f"{sizes[0]:,} items, no other owners", small)
    fill("other", OTHERS_NUMBERING, others, owners=1000)
    for index, size in enumerate(sizes[1:], start=1):
        fill(f"bench{size}", index * SIZE_NUMBERING, size)
    total = _owned(backend, "%")
    for size in sizes:
        measure(f"{size:,} items among {total - size:,} of others", f"bench{size}")
    backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--postgres-url", default=os.environ.get("SMG_HISTORY_BENCH_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--items", type=int, default=100_000, help="items in the large conversation")
    parser.add_argument("--rounds", type=int, default=200, help="timed calls per figure")
    parser.add_argument(
        "--search",
        action="store_true",
        help="only the search figures: latency at --search-items for one owner among --search-others items",
    )
    parser.add_argument("--search-items", default="10000,1000000", help="the owner's item counts, ascending")
    parser.add_argument("--search-others", type=int, default=1_000_000, help="items of 1,000 other owners")
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="with --search: keep the filled store (PostgreSQL: the schema NAME; SQLite: <tempdir>/NAME.sqlite3) "
        "and reuse it in later runs instead of filling again; drop it by hand",
    )
    args = parser.parse_args(argv)
    if args.keep is not None and not (args.search and re.fullmatch(r"[a-z_][a-z0-9_]*", args.keep)):
        parser.error("--keep goes with --search and takes a lower-case identifier")
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    for name in names:
        target = sqlite_target(args.keep) if name == "sqlite" else postgres_target(args.postgres_url, args.keep)
        with target as (config, bare_connect):
            if args.search:
                sizes = [int(n) for n in args.search_items.split(",")]
                result = {"backend": name, **search_figures(name, config, sizes, args.search_others, args.rounds)}
            else:
                result = run(name, config, bare_connect, args.items, args.rounds)
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
