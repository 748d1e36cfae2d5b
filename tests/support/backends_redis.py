"""Contract-suite registrations of the Redis backends (standalone, cluster).

Standalone runs on the machine's Redis (127.0.0.1:6379, shared with other
projects' tests): each test gets a key prefix of its own and its keys are
deleted afterwards, never the whole database. The cluster is three throwaway
``redis-server`` processes started once per test session (``redis_cluster``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from flask_smg_history.backends.redis import operations

from .backends import register

STANDALONE_URL = "redis://127.0.0.1:6379/0"
#: Erasure runs scripts of ``_ERASE_CHUNK`` records; the bulk walks read
#: owner indexes in ``_WINDOW`` entries and a conversation in ``_ITEM_CHUNK``.
#: Purge walks the same windows.
BATCHES = {
    "erase": operations._ERASE_CHUNK,
    "conversations": operations._WINDOW,
    "items": operations._ITEM_CHUNK,
    "responses": operations._WINDOW,
    "purge": operations._WINDOW,
}


def unique_prefix() -> str:
    return f"smgtest:{uuid.uuid4().hex}:"


def delete_prefix(client: Any, prefix: str) -> None:
    """Delete every key under ``prefix`` (on every master of a cluster)."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for key in keys:  # one by one: on a cluster the keys span slots
        client.delete(key)


@contextmanager
def _fresh_prefix(url: str, cluster: bool) -> Iterator[dict[str, Any]]:
    prefix = unique_prefix()
    try:
        yield {
            "SMG_HISTORY_BACKEND": "redis",
            "SMG_HISTORY_REDIS_URL": url,
            "SMG_HISTORY_REDIS_CLUSTER": cluster,
            "SMG_HISTORY_REDIS_KEY_PREFIX": prefix,
        }
    finally:
        client = (redis.RedisCluster if cluster else redis.Redis).from_url(url)
        try:
            delete_prefix(client, prefix)
        finally:
            client.close()


@register("redis", BATCHES)
@contextmanager
def standalone(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with _fresh_prefix(STANDALONE_URL, cluster=False) as config:
        yield config


@register("redis-cluster", BATCHES)
@contextmanager
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from .redis_servers import shared_cluster

    with _fresh_prefix(shared_cluster().url, cluster=True) as config:
        yield config


def wire_commands(monkeypatch: Any) -> list[str]:
    """The names of the commands sent from now on, read back from the bytes
    handed to ``send_packed_command``, which every path to the socket goes
    through (redis-py's clients and pipelines, and the backend's own
    ``_evalsha``, which packs with hiredis)."""
    from redis.connection import AbstractConnection

    sent: list[str] = []
    original = AbstractConnection.send_packed_command

    def spy(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        chunks = [command] if isinstance(command, (bytes, str)) else command
        wire = b"".join(c if isinstance(c, bytes) else bytes(c, "utf-8") for c in chunks)
        while wire:  # each command: *<count>, then <count> times $<length> and the bytes
            head, wire = wire.split(b"\r\n", 1)
            for index in range(int(head[1:])):
                length, wire = wire.split(b"\r\n", 1)
                value, wire = wire[: int(length[1:])], wire[int(length[1:]) + 2 :]
                if index == 0:
                    sent.append(value.decode())
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", spy)
    return sent
