"""Ours beside LangChain's and LlamaIndex's chat histories and the bare driver, in one run.

What a chat app does with its history, measured one operation at a time:
append one message; read the last 20 as the next prompt's context; and a
whole **turn** (read the last 20, then store the user's message and the
reply). Each is timed alone, at conversation lengths 20, 200, 2,000 and
10,000, on PostgreSQL and on Redis. The contenders take turns within every
round (in a shuffled order), so a busy moment of the machine lands on all of
them; appends, reads and turns are timed in phases of their own (``measure``
says why); the tables report medians. Round trips per append / read / turn
are given for each (counted with strace, PostgreSQL then Redis).

- ours: ``store.items.add(conv, [message])``, ``store.items.recent(conv, 20)``,
  and per turn ``recent(conv, 20)`` then one ``add(conv, [user, reply])``,
  through the whole store (validation, IDs, owner, signals, metrics);
  1 / 1 / 2 on both servers.
- LC, LangChain community (langchain-community 0.4): ``SQLChatMessageHistory``
  (SQLAlchemy ORM and psycopg2, one engine for all histories) /
  ``RedisChatMessageHistory`` (one ``LPUSH`` per message); ``add_message``,
  ``messages[-20:]`` (it has no "last n" read: it fetches and parses the
  whole chat), per turn ``messages[-20:]`` then ``add_messages([user,
  reply])``. PostgreSQL 3 (BEGIN, INSERT, COMMIT) / 3 (BEGIN, SELECT,
  ROLLBACK) / 6; Redis 1 / 1 / 3.
- LC-pg, langchain-postgres (0.0.19): ``PostgresChatMessageHistory``, as its
  docs set it up: ``create_tables(conn, table)`` once, then a history per
  chat (UUID session ids) on one psycopg 3 connection held for all of them;
  the same calls as LC; PostgreSQL only. Its reads never commit: the
  connection stays in the read's transaction until the next write commits
  it, so in the read phase one transaction stays open and each read is one
  round trip; 3 / 1 (2 after a write) / 4.
- LI, LlamaIndex (llama-index-storage-chat-store-postgres 0.5, -redis 0.8),
  default settings: ``PostgresChatStore.from_uri`` (SQLAlchemy and psycopg
  3; it also builds an asyncpg engine, unused here; one row per chat
  holding a ``json[]`` of every message, which each append rewrites with
  ``array_cat``) / ``RedisChatStore(redis_url=...)`` (a list, one ``RPUSH``
  per message); ``add_message``, ``get_messages(key)[-20:]`` (the whole chat
  again), per turn that read then two ``add_message`` calls (it has no
  batch append: ``set_messages`` replaces the whole chat). PostgreSQL 3 / 3
  / 9; Redis 1 / 1 / 3.
- raw: the bare driver doing the same job the simplest way: psycopg2
  ``INSERT`` + ``COMMIT`` into a ``(id bigserial, session_id, message jsonb)``
  table with an index on ``(session_id, id)``, and ``ORDER BY id DESC LIMIT
  20`` in autocommit (one round trip); a turn's two messages in one
  multi-row ``INSERT`` + ``COMMIT``; redis-py ``RPUSH`` (two values per turn)
  and ``LRANGE -20 -1``; messages are JSON, decoded. PostgreSQL 3 / 1 / 4;
  Redis 1 / 1 / 2.

"Best" is the fastest peer (LC, LC-pg or LI) for each operation; raw is a
baseline, not a peer. Targets: a turn faster than every peer's; an append
at most 1.15x the fastest peer's on PostgreSQL, 1.5x on Redis, and at most
2x (PostgreSQL) or 1.5x (Redis) raw's; a read at most 2x raw's
(``PEER_TARGETS``, ``CEILINGS``). A peer that cannot be set up here, or
fails a first fill, turn and read, is skipped with its reason printed.

Appends and turns keep a conversation near its nominal length: each
conversation takes at most a tenth of its length in new messages (an append
adds one, a turn two; at least one append or one turn) before the next,
prefilled one is used (a "20-message chat" stays a 20-message chat); turns
use conversations of their own, reads the appends' ones. Every read and
turn is checked to have returned 20 messages, and the last append and the
last turn's reply to be their chats' last messages. No ANALYZE is run: the
tables are as a fresh deployment leaves them.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python -m benchmarks.peers [--rounds 300] [--long-rounds 60] [--sizes 20,200,2000,10000]
        [--servers postgres,redis]

Needs PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379);
``PEERS_PG_URL`` and ``PEERS_REDIS_URL`` point elsewhere (a Redis of its own keeps other
processes' commands out of the figures).

The garbage collector is frozen once the chats are filled and its young
generations collected before each timed operation (``timed`` says why).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask

from flask_smg_history import SmgHistory, get_state

PG_URL = os.environ.get("PEERS_PG_URL", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
SIZES = (20, 200, 2_000, 10_000)
CONTEXT = 20
OPERATIONS = ("append", "read", "turn")
#: The peers' column names (the bare driver, ``raw``, is a baseline, not a peer).
PEERS = ("LC", "LC-pg", "LI")
#: A chat message of ordinary length (about 230 characters).
TEXT = (
    "Could you summarise what we found about the billing job yesterday, and list the three checks "
    "we still have to run before Friday? Keep it short, I'll paste it into the ticket. Message {n}."
)


def message(n: int) -> tuple[str, str]:
    return ("user" if n % 2 == 0 else "assistant", TEXT.format(n=n))


def exchange(n: int) -> list[tuple[str, str]]:
    """A turn's two messages: the user's (``n``) and the reply (``n + 1``)."""
    return [("user", TEXT.format(n=n)), ("assistant", TEXT.format(n=n + 1))]


class Contender:
    """One way of storing a chat: ``fill`` builds a conversation of ``size``
    messages and returns its handle; ``append``, ``read`` and ``turn`` are
    timed."""

    name = ""

    def fill(self, size: int) -> Any:
        raise NotImplementedError

    def append(self, handle: Any, n: int) -> None:
        raise NotImplementedError

    def read(self, handle: Any) -> list[Any]:
        raise NotImplementedError

    def turn(self, handle: Any, n: int) -> list[Any]:
        """Read the last ``CONTEXT`` messages, then store ``exchange(n)``;
        returns what was read."""
        raise NotImplementedError

    def text(self, message: Any) -> str:
        """The text of one message as ``read`` returns it."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def configure(app: Flask, server: str, prefix: str) -> None:
    """Point ``app`` at the run's PostgreSQL or Redis, under a table or key
    prefix of the run's own, or at an SQLite file named by it in the
    temporary folder (``benchmarks/responses.py`` and ``batch.py`` use it
    too)."""
    if server == "sqlite":
        app.config.update(
            SMG_HISTORY_BACKEND="sqlite",
            SMG_HISTORY_SQLITE_PATH=str(sqlite_path(prefix)),
            SMG_HISTORY_CREATE_TABLES=True,
        )
    elif server == "postgres":
        app.config.update(
            SMG_HISTORY_BACKEND="postgres",
            SMG_HISTORY_POSTGRES_DB_URL=PG_URL,
            SMG_HISTORY_TABLE_PREFIX=prefix,
            SMG_HISTORY_CREATE_TABLES=True,
        )
    else:
        app.config.update(
            SMG_HISTORY_BACKEND="redis", SMG_HISTORY_REDIS_URL=REDIS_URL, SMG_HISTORY_REDIS_KEY_PREFIX=prefix
        )


def sqlite_path(prefix: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{prefix}history.sqlite3"


class Ours(Contender):
    name = "ours"

    def __init__(self, server: str) -> None:
        app = Flask("peers")
        self.prefix = f"peers{uuid.uuid4().hex[:6]}_"
        configure(app, server, self.prefix)
        SmgHistory(app)
        self.server = server
        self.state = get_state(app)
        self.store = self.state.store_for("bench")

    def fill(self, size: int) -> Any:
        conv = self.store.conversations.create()
        for start in range(0, size, 20):
            batch = [message(n) for n in range(start, min(size, start + 20))]
            self.store.items.add(conv.id, [{"role": role, "content": text} for role, text in batch])
        return conv.id

    def append(self, handle: Any, n: int) -> None:
        role, text = message(n)
        self.store.items.add(handle, [{"role": role, "content": text}])

    def read(self, handle: Any) -> list[Any]:
        return self.store.items.recent(handle, CONTEXT)

    def turn(self, handle: Any, n: int) -> list[Any]:
        context = self.store.items.recent(handle, CONTEXT)
        self.store.items.add(handle, [{"role": role, "content": text} for role, text in exchange(n)])
        return context

    def text(self, message: Any) -> str:
        return message.payload["content"][0]["text"]

    def close(self) -> None:
        self.store.erase_owner()
        backend = self.state.backend
        if self.server == "postgres":
            import sqlalchemy as sa

            with backend.engine.begin() as connection:
                for table in sa.inspect(connection).get_table_names():
                    if table.startswith(self.prefix):
                        connection.execute(sa.text(f'DROP TABLE "{table}" CASCADE'))
        backend.close()
        if self.server == "sqlite":
            for path in sqlite_path(self.prefix).parent.glob(f"{self.prefix}history.sqlite3*"):
                path.unlink()


class LangChainHistories(Contender):
    """The calls common to LangChain's chat histories (``BaseChatMessageHistory``);
    ``_history`` makes one for a new chat."""

    def __init__(self) -> None:
        warnings.simplefilter("ignore")
        from langchain_core.messages import AIMessage, HumanMessage

        self.kinds = {"user": HumanMessage, "assistant": AIMessage}

    def _history(self) -> Any:
        raise NotImplementedError

    def fill(self, size: int) -> Any:
        history = self._history()
        history.add_messages([self.kinds[role](text) for role, text in map(message, range(size))])
        return history

    def append(self, handle: Any, n: int) -> None:
        role, text = message(n)
        handle.add_message(self.kinds[role](text))

    def read(self, handle: Any) -> list[Any]:
        return handle.messages[-CONTEXT:]

    def turn(self, handle: Any, n: int) -> list[Any]:
        context = handle.messages[-CONTEXT:]
        handle.add_messages([self.kinds[role](text) for role, text in exchange(n)])
        return context

    def text(self, message: Any) -> str:
        return message.content


class LangChain(LangChainHistories):
    """LangChain community's ``SQLChatMessageHistory`` / ``RedisChatMessageHistory``."""

    name = "LC"

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server
        self.table = f"lc_peers_{uuid.uuid4().hex[:8]}"
        self.histories: list[Any] = []
        self.engine: Any = None
        if server == "postgres":
            import sqlalchemy as sa

            # One engine for all of its histories, as an app would hold one.
            self.engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://"))

    def _history(self) -> Any:
        from langchain_community.chat_message_histories import RedisChatMessageHistory, SQLChatMessageHistory

        session = uuid.uuid4().hex
        if self.server == "postgres":
            history = SQLChatMessageHistory(session, connection=self.engine, table_name=self.table)
        else:
            history = RedisChatMessageHistory(session, url=REDIS_URL, key_prefix="lc_peers:")
        self.histories.append(history)
        return history

    def close(self) -> None:
        for history in self.histories:
            history.clear()
        if self.engine is not None:
            import sqlalchemy as sa

            with self.engine.begin() as connection:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {self.table}"))
            self.engine.dispose()


class LangChainPostgres(LangChainHistories):
    """langchain-postgres's ``PostgresChatMessageHistory``, as its docs set it
    up: ``create_tables`` once, then a history per chat (a UUID session id) on
    one psycopg 3 connection the app holds."""

    name = "LC-pg"

    def __init__(self) -> None:
        super().__init__()
        import psycopg
        from langchain_postgres import PostgresChatMessageHistory

        self.history_class = PostgresChatMessageHistory
        self.conn = psycopg.connect(PG_URL)
        self.table = f"lcpg_peers_{uuid.uuid4().hex[:8]}"
        PostgresChatMessageHistory.create_tables(self.conn, self.table)

    def _history(self) -> Any:
        return self.history_class(self.table, str(uuid.uuid4()), sync_connection=self.conn)

    def close(self) -> None:
        self.conn.rollback()  # its reads never commit: the last one left a transaction open
        self.history_class.drop_table(self.conn, self.table)
        self.conn.close()


class LlamaIndex(Contender):
    """LlamaIndex's ``PostgresChatStore`` / ``RedisChatStore`` with their
    default settings; a chat is a key."""

    name = "LI"

    def __init__(self, server: str) -> None:
        warnings.simplefilter("ignore")
        from llama_index.core.llms import ChatMessage

        self.chat_message = ChatMessage
        self.server = server
        self.keys: list[str] = []
        if server == "postgres":
            from llama_index.storage.chat_store.postgres import PostgresChatStore

            self.table = f"li_peers_{uuid.uuid4().hex[:8]}"
            self.store: Any = PostgresChatStore.from_uri(uri=PG_URL, table_name=self.table)
        else:
            from llama_index.storage.chat_store.redis import RedisChatStore

            self.store = RedisChatStore(redis_url=REDIS_URL)

    def _message(self, role: str, text: str) -> Any:
        return self.chat_message(role=role, content=text)

    def fill(self, size: int) -> Any:
        key = f"li_peers:{uuid.uuid4().hex}"
        self.keys.append(key)
        # On Redis this is a DEL and one RPUSH per message; set-up only.
        self.store.set_messages(key, [self._message(role, text) for role, text in map(message, range(size))])
        return key

    def append(self, handle: Any, n: int) -> None:
        self.store.add_message(handle, self._message(*message(n)))

    def read(self, handle: Any) -> list[Any]:
        return self.store.get_messages(handle)[-CONTEXT:]

    def turn(self, handle: Any, n: int) -> list[Any]:
        context = self.store.get_messages(handle)[-CONTEXT:]
        for role, text in exchange(n):  # no batch append: set_messages replaces the chat
            self.store.add_message(handle, self._message(role, text))
        return context

    def text(self, message: Any) -> str:
        return message.content

    def close(self) -> None:
        if self.server == "postgres":
            import sqlalchemy as sa

            engine = self.store._session.kw["bind"]
            with engine.begin() as connection:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{self.table}"'))
            engine.dispose()  # its asyncpg engine was never used, so holds no connection
        else:
            client = self.store._redis_client
            for start in range(0, len(self.keys), 500):
                client.delete(*self.keys[start : start + 500])
            client.close()
            asyncio.run(self.store._aredis_client.aclose())


class RawPostgres(Contender):
    name = "raw"

    def __init__(self) -> None:
        import psycopg2

        self.conn = psycopg2.connect(PG_URL)
        self.table = f"raw_peers_{uuid.uuid4().hex[:8]}"
        with self.conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {self.table} (id bigserial PRIMARY KEY, session_id text NOT NULL, message jsonb)"
            )
            cur.execute(f"CREATE INDEX ON {self.table} (session_id, id)")
        self.conn.commit()

    def fill(self, size: int) -> Any:
        session = uuid.uuid4().hex
        rows = [(session, json.dumps({"role": role, "content": text})) for role, text in map(message, range(size))]
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table} (session_id, message) VALUES (%s, %s)", rows)
        self.conn.commit()
        return session

    def append(self, handle: Any, n: int) -> None:
        role, text = message(n)
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self.table} (session_id, message) VALUES (%s, %s)",
                (handle, json.dumps({"role": role, "content": text})),
            )
        self.conn.commit()

    def read(self, handle: Any) -> list[Any]:
        self.conn.autocommit = True  # one round trip: no BEGIN, no COMMIT
        try:
            with self.conn.cursor() as cur:
                cur.execute(
                    f"SELECT message FROM {self.table} WHERE session_id = %s ORDER BY id DESC LIMIT %s",
                    (handle, CONTEXT),
                )
                rows = cur.fetchall()
        finally:
            self.conn.autocommit = False
        return [row[0] for row in reversed(rows)]

    def turn(self, handle: Any, n: int) -> list[Any]:
        context = self.read(handle)
        (user, reply) = (json.dumps({"role": role, "content": text}) for role, text in exchange(n))
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self.table} (session_id, message) VALUES (%s, %s), (%s, %s)",
                (handle, user, handle, reply),
            )
        self.conn.commit()
        return context

    def text(self, message: Any) -> str:
        return message["content"]

    def close(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"DROP TABLE {self.table}")
        self.conn.commit()
        self.conn.close()


class RawRedis(Contender):
    name = "raw"

    def __init__(self) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL)
        self.keys: list[str] = []

    def fill(self, size: int) -> Any:
        key = f"raw_peers:{uuid.uuid4().hex}"
        self.keys.append(key)
        for start in range(0, size, 1000):
            chunk = range(start, min(size, start + 1000))
            self.client.rpush(key, *(json.dumps({"role": r, "content": t}) for r, t in map(message, chunk)))
        return key

    def append(self, handle: Any, n: int) -> None:
        role, text = message(n)
        self.client.rpush(handle, json.dumps({"role": role, "content": text}))

    def read(self, handle: Any) -> list[Any]:
        return [json.loads(value) for value in self.client.lrange(handle, -CONTEXT, -1)]

    def turn(self, handle: Any, n: int) -> list[Any]:
        context = self.read(handle)
        self.client.rpush(handle, *(json.dumps({"role": role, "content": text}) for role, text in exchange(n)))
        return context

    def text(self, message: Any) -> str:
        return message["content"]

    def close(self) -> None:
        for start in range(0, len(self.keys), 500):
            self.client.delete(*self.keys[start : start + 500])
        self.client.close()


def contenders_for(server: str) -> list[Contender]:
    """Ours, every peer that runs here, and the bare driver. A peer that
    cannot be set up, or fails a first fill, turn and read, is skipped with
    its reason printed."""
    makers: list[tuple[str, Callable[[], Contender]]] = [("ours", lambda: Ours(server))]
    if server == "postgres":
        makers += [("LC", lambda: LangChain(server)), ("LC-pg", LangChainPostgres), ("LI", lambda: LlamaIndex(server))]
        makers.append(("raw", RawPostgres))
    else:
        makers += [("LC", lambda: LangChain(server)), ("LI", lambda: LlamaIndex(server)), ("raw", RawRedis)]
    contenders: list[Contender] = []
    for name, make in makers:
        contender: Contender | None = None
        try:
            contender = make()
            handle = contender.fill(CONTEXT)
            contender.turn(handle, CONTEXT)
            last = contender.read(handle)
            assert len(last) == CONTEXT, f"read {len(last)} messages, not {CONTEXT}"
            assert contender.text(last[-1]) == TEXT.format(n=CONTEXT + 1), "the turn's reply is not the last message"
        except Exception as error:
            if name not in PEERS:
                raise
            print(f"# {server}: {name} SKIPPED, it cannot run here: {type(error).__name__}: {error}")
            if contender is not None:
                try:
                    contender.close()
                except Exception as close_error:
                    print(f"# {server}: {name}: clean-up failed too: {close_error}")
            continue
        contenders.append(contender)
    return contenders


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn`` took, and its result. The young generations are
    collected first, untimed: otherwise an operation that happens to cross
    the collector's threshold pays for what the contender before it left (a
    LangChain or LlamaIndex read of a long chat leaves thousands of objects),
    and the dearest peer's garbage lands on whoever runs next. Each operation
    still pays for collections that its own allocations cause. (What was
    loaded before the rounds is frozen out of the collector in ``main``, so
    this stays cheap.)"""
    gc.collect(1)
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(contenders: list[Contender], size: int, rounds: int) -> dict[tuple[str, str], float]:
    """Median seconds of one append, one read and one turn per contender, at ``size``.

    Each operation is timed in rounds of its own, one phase after another: a
    LangChain read of a long chat parses every message (40 ms at 2,000), and
    whatever ran next, on this 2-core machine, ran up to 3x slower (the Redis
    server's time for our append script went from 70 to 170 µs after one),
    so mixed rounds charged LangChain's reads to the other contenders'
    appends. (A turn includes such a read for every peer; that is the turn's
    own cost, and turns are timed in a phase of their own.) Within a phase
    the contenders take turns in a shuffled order (seeded), so each is as
    likely as the others to follow a slow one.

    A conversation takes at most a tenth of its length in new messages (at
    least one append or one turn) before the next prefilled one is used;
    appends and turns have conversations of their own, reads use the
    appends'. Every read and turn must return ``CONTEXT`` messages, and the
    last append and the last turn's reply must be the chats' last messages."""
    budget = max(1, size // 10)
    per_conversation = {"append": budget, "turn": max(1, budget // 2)}
    handles = {
        (c.name, pool): [c.fill(size) for _ in range(-(-rounds // per_conversation[pool]))]
        for c in contenders
        for pool in per_conversation
    }
    samples: dict[tuple[str, str], list[float]] = {(c.name, op): [] for c in contenders for op in OPERATIONS}
    gc.collect()
    gc.freeze()  # the libraries and the filled chats: never garbage, and costly to walk at every collection
    order = random.Random(size)
    ops: dict[str, Callable[[Contender, Any, int], Any]] = {
        "append": lambda c, handle, r: c.append(handle, size + r),
        "read": lambda c, handle, r: c.read(handle),
        "turn": lambda c, handle, r: c.turn(handle, size + 2 * r),
    }
    short: dict[tuple[str, str], int] = {}
    for op, do in ops.items():
        pool = "turn" if op == "turn" else "append"
        if op == "read":
            last = {c.name: c.read(handles[(c.name, pool)][-1]) for c in contenders}
            found = {name: len(messages) for name, messages in last.items()}
            assert set(found.values()) == {CONTEXT}, f"a read did not return {CONTEXT} messages: {found}"
            wrong = [c.name for c in contenders if c.text(last[c.name][-1]) != TEXT.format(n=size + rounds - 1)]
            assert not wrong, f"the last append is not the chat's last message for {wrong}"
        for r in range(rounds):
            for c in order.sample(contenders, len(contenders)):
                handle = handles[(c.name, pool)][r // per_conversation[pool]]
                elapsed, result = timed(lambda do=do, c=c, h=handle, r=r: do(c, h, r))
                samples[(c.name, op)].append(elapsed)
                if op != "append" and len(result) != CONTEXT:
                    short[(c.name, op)] = len(result)
    assert not short, f"reads or turns that did not return {CONTEXT} messages: {short}"
    wrong = [
        c.name
        for c in contenders
        if c.text(c.read(handles[(c.name, "turn")][-1])[-1]) != TEXT.format(n=size + 2 * (rounds - 1) + 1)
    ]
    assert not wrong, f"the last turn's reply is not the chat's last message for {wrong}"
    gc.unfreeze()
    return {key: statistics.median(values) for key, values in samples.items()}


#: Targets on ours / the fastest peer, by (server, operation): a turn must be
#: faster than every peer's; an append at most this much slower than the
#: fastest peer's.
PEER_TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("postgres", "turn"): ("<", 1.0),
    ("redis", "turn"): ("<", 1.0),
    ("postgres", "append"): ("<=", 1.15),
    ("redis", "append"): ("<=", 1.5),
}
#: Issue 12's ceilings on ours/raw, by (server, operation).
CEILINGS = {("postgres", "append"): 2.0, ("redis", "append"): 1.5, ("postgres", "read"): 2.0, ("redis", "read"): 2.0}


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1e3
    return f"{value:.3f}" if value < 100 else f"{value:.1f}" if value < 10_000 else f"{value:.0f}"


def versions() -> str:
    names = (
        "langchain-community",
        "langchain-postgres",
        "llama-index-storage-chat-store-postgres",
        "llama-index-storage-chat-store-redis",
    )
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"# {', '.join(found[:2])},\n# {', '.join(found[2:])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="timed appends, reads and turns per contender and size")
    parser.add_argument(
        "--long-rounds",
        type=int,
        default=60,
        help="rounds at lengths over 1,000, where a peer's read parses the whole chat (tens to hundreds of ms)",
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="conversation lengths, comma-separated")
    parser.add_argument("--servers", default="postgres,redis")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# median of {args.rounds} rounds per operation ({args.long_rounds} over 1,000 messages), each operation in"
        " its own phase, contenders shuffled"
    )
    print("# per round; ms per operation. turn = read the last 20, then store the user's message and the reply.")
    print("# LC = LangChain community SQLChatMessageHistory (postgres) / RedisChatMessageHistory (redis);")
    print("# LC-pg = langchain-postgres PostgresChatMessageHistory (postgres only);")
    print("# LI = LlamaIndex PostgresChatStore / RedisChatStore; raw = the bare driver (psycopg2, redis-py);")
    print("# best = the fastest peer (LC, LC-pg, LI); '-' = not on this server, or skipped.")
    print(versions())
    peer_targets = "; ".join(f"{s} {op} {rel} {c}" for (s, op), (rel, c) in PEER_TARGETS.items())
    print(f"# targets, ours/best: {peer_targets}")
    print("# targets, ours/raw: " + "; ".join(f"{s} {op} <= {c}" for (s, op), c in CEILINGS.items()))
    header = f"{'server':<8} {'messages':>8} {'op':<6} {'ours':>8}"
    header += "".join(f" {name:>8}" for name in (*PEERS, "raw"))
    print(header + f" {'ours/best':>9} {'best':<5} {'ours/raw':>8}  verdict")
    misses = 0
    for server in args.servers.split(","):
        contenders = contenders_for(server)
        try:
            for size in sizes:
                medians = measure(contenders, size, args.rounds if size <= 1_000 else args.long_rounds)
                for op in OPERATIONS:
                    ours, bare = medians[("ours", op)], medians[("raw", op)]
                    peers = {name: medians[(name, op)] for name in PEERS if (name, op) in medians}
                    best = min(peers, key=peers.__getitem__) if peers else None
                    missed = []
                    to_best = ours / peers[best] if best is not None else None
                    if (server, op) in PEER_TARGETS:
                        rel, limit = PEER_TARGETS[(server, op)]
                        if to_best is None:
                            missed.append("no peer")
                        elif not (to_best < limit if rel == "<" else to_best <= limit):
                            missed.append("best")
                    if (server, op) in CEILINGS and ours / bare > CEILINGS[(server, op)]:
                        missed.append("raw")
                    misses += bool(missed)
                    row = f"{server:<8} {size:>8,} {op:<6} {ms(ours):>8}"
                    row += "".join(f" {ms(peers.get(name)):>8}" for name in PEERS) + f" {ms(bare):>8}"
                    row += f" {'-' if to_best is None else f'{to_best:.2f}':>9} {best or '-':<5} {ours / bare:8.2f}"
                    print(row + "  " + ("MISSED: " + ", ".join(missed) if missed else "met"))
        finally:
            for c in contenders:
                c.close()
    print(f"{misses} target(s) missed")


if __name__ == "__main__":
    main()
