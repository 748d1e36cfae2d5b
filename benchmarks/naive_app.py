"""The hand-written alternative that ``benchmarks/load.py --compare`` serves
beside the extension: the Flask views a developer writes in an afternoon, with
the same routes and the bare driver (psycopg2 and its ThreadedConnectionPool,
or redis-py), one API key, no validation beyond reading the JSON, no owners,
no ordering guarantee beyond a sequence, no retention, signals or metrics.

Configured by ``NAIVE_*`` environment variables (see ``load.py``)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from flask import Flask, abort, jsonify, request


class PostgresStore:
    def __init__(self, url: str, table: str) -> None:
        from psycopg2.pool import ThreadedConnectionPool

        self.pool = ThreadedConnectionPool(1, 8, url)
        self.table = table

    def _run(self, sql: str, args: tuple[Any, ...], many: bool = False) -> list[tuple[Any, ...]]:
        conn = self.pool.getconn()
        try:
            with conn, conn.cursor() as cur:  # commits, or rolls back on an error
                if many:
                    cur.executemany(sql, args)
                    return []
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        finally:
            self.pool.putconn(conn)

    def create(self) -> str:
        return f"conv_{uuid.uuid4().hex}"

    def add(self, cid: str, items: list[dict[str, Any]]) -> list[str]:
        values = ", ".join(["(%s, %s)"] * len(items))
        args = tuple(x for item in items for x in (cid, json.dumps(item)))
        rows = self._run(f"INSERT INTO {self.table} (conversation_id, message) VALUES {values} RETURNING id", args)
        return [f"msg_{row[0]}" for row in rows]

    def page(self, cid: str, limit: int, order: str, after: str | None) -> list[tuple[str, Any]]:
        bound, sort = (">", "ASC") if order == "asc" else ("<", "DESC")
        where = f"AND id {bound} %s" if after else ""
        args = (cid, int(after.removeprefix("msg_")), limit) if after else (cid, limit)
        rows = self._run(
            f"SELECT id, message FROM {self.table} WHERE conversation_id = %s {where} ORDER BY id {sort} LIMIT %s", args
        )
        return [(f"msg_{row[0]}", row[1]) for row in rows]


class RedisStore:
    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def create(self) -> str:
        return f"conv_{uuid.uuid4().hex}"

    def add(self, cid: str, items: list[dict[str, Any]]) -> list[str]:
        length = self.client.rpush(self.prefix + cid, *(json.dumps(item) for item in items))
        return [f"msg_{n}" for n in range(length - len(items), length)]

    def page(self, cid: str, limit: int, order: str, after: str | None) -> list[tuple[str, Any]]:
        key = self.prefix + cid
        if order == "asc":
            start = int(after.removeprefix("msg_")) + 1 if after else 0
            values = self.client.lrange(key, start, start + limit - 1)
            return [(f"msg_{start + n}", json.loads(v)) for n, v in enumerate(values)]
        length = self.client.llen(key)
        end = int(after.removeprefix("msg_")) - 1 if after else length - 1
        start = max(0, end - limit + 1)
        values = self.client.lrange(key, start, end) if end >= 0 else []
        return [(f"msg_{start + n}", json.loads(v)) for n, v in reversed(list(enumerate(values)))]


def create() -> Flask:
    app = Flask("naive_history")
    key = os.environ["NAIVE_API_KEY"]
    if os.environ["NAIVE_BACKEND"] == "postgres":
        store: Any = PostgresStore(os.environ["NAIVE_POSTGRES_URL"], os.environ["NAIVE_TABLE"])
    else:
        store = RedisStore(os.environ["NAIVE_REDIS_URL"], os.environ["NAIVE_KEY_PREFIX"])

    @app.before_request
    def authenticate() -> None:
        if request.headers.get("Authorization") != f"Bearer {key}":
            abort(401)

    @app.post("/v1/conversations")
    def create_conversation() -> Any:
        return jsonify({"id": store.create(), "object": "conversation"})

    @app.post("/v1/conversations/<cid>/items")
    def add_items(cid: str) -> Any:
        items = request.get_json()["items"]
        ids = store.add(cid, items)
        return jsonify({"object": "list", "data": [{"id": i, **item} for i, item in zip(ids, items)]})

    @app.get("/v1/conversations/<cid>/items")
    def list_items(cid: str) -> Any:
        limit = int(request.args.get("limit", 20))
        rows = store.page(cid, limit + 1, request.args.get("order", "desc"), request.args.get("after"))
        data = [{"id": i, **message} for i, message in rows[:limit]]
        return jsonify(
            {
                "object": "list",
                "data": data,
                "has_more": len(rows) > limit,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    return app
