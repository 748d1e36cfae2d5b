"""Ours against LangChain's chat histories on the same servers, in one run.

Workload (issue 7): append N messages (default 10,000) to one conversation one
by one, and after every 100 read the last 20 — what a chat app does on every
turn. LangChain's histories have no "last n" read: ``messages`` loads the whole
conversation, which is the cost a LangChain app pays.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python -m benchmarks.peers [--messages 10000]

Needs PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import time
import uuid
import warnings

from flask import Flask

from flask_smg_history import SmgHistory, get_state

PG_URL = "postgresql://root@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def ours(backend: str, messages: int) -> float:
    app = Flask("peers")
    prefix = f"peers{uuid.uuid4().hex[:6]}_"
    if backend == "postgres":
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
    SmgHistory(app)
    store = get_state(app).store_for("bench")
    conv = store.conversations.create()
    started = time.perf_counter()
    for n in range(messages):
        store.items.add(conv.id, [{"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n}"}])
        if (n + 1) % 100 == 0:
            assert len(store.items.recent(conv.id, 20)) == 20
    elapsed = time.perf_counter() - started
    store.erase_owner()
    backend_obj = get_state(app).backend
    if backend == "postgres":
        import sqlalchemy as sa

        with backend_obj.engine.begin() as connection:
            for table in sa.inspect(connection).get_table_names():
                if table.startswith(prefix):
                    connection.execute(sa.text(f'DROP TABLE "{table}" CASCADE'))
    backend_obj.close()
    return elapsed


def langchain(backend: str, messages: int) -> float:
    warnings.simplefilter("ignore")
    from langchain_community.chat_message_histories import RedisChatMessageHistory, SQLChatMessageHistory
    from langchain_core.messages import AIMessage, HumanMessage

    session = uuid.uuid4().hex
    if backend == "postgres":
        table = f"lc_peers_{session[:8]}"
        history = SQLChatMessageHistory(
            session, connection=PG_URL.replace("postgresql://", "postgresql+psycopg2://"), table_name=table
        )
    else:
        history = RedisChatMessageHistory(session, url=REDIS_URL, key_prefix="lc_peers:")
    started = time.perf_counter()
    for n in range(messages):
        history.add_message((HumanMessage if n % 2 == 0 else AIMessage)(f"message {n}"))
        if (n + 1) % 100 == 0:
            assert len(history.messages[-20:]) == 20
    elapsed = time.perf_counter() - started
    history.clear()
    if backend == "postgres":
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://"))
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    print(f"workload: append {args.messages} messages one by one, read the last 20 after every 100")
    print(f"{'server':<10} {'ours s':>9} {'LangChain s':>12} {'ours msg/s':>11} {'LC msg/s':>9} {'LC/ours':>8}")
    for backend, peer in (("postgres", "SQLChatMessageHistory"), ("redis", "RedisChatMessageHistory")):
        mine = ours(backend, args.messages)
        theirs = langchain(backend, args.messages)
        print(
            f"{backend:<10} {mine:9.2f} {theirs:12.2f} {args.messages / mine:11.0f} {args.messages / theirs:9.0f} "
            f"{theirs / mine:8.2f}   (peer: {peer})"
        )


if __name__ == "__main__":
    main()
