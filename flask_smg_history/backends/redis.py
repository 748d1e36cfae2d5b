"""Redis storage: retention by key TTL, atomic appends by Lua, Redis Cluster.

Why it is shaped this way (the layout is in ``redis_scripts``; the reasoning
and benchmark figures in ``docs/backends/redis.md``):

- Every write to one conversation is one Lua script over keys sharing the hash
  tag ``{c:<id>}``, so it is atomic, ordered and one round trip, and it
  refreshes the TTL of all of the conversation's keys together: a
  conversation never expires piecemeal.
- Items sit in a sorted set scored by position, so a page or ``recent(n)`` is
  one script run whatever the length.
- Per-owner indexes (conversation list, feedback list) cannot share a slot
  with the records they list on a cluster. The conversation index is written
  *before* a conversation appears or changes and cleaned *after* it goes, so
  the only inconsistency a failure can leave is an entry without its record,
  which readers skip and remove (repair on read). The feedback index can only
  be written after the feedback (its ID is known then); a lost entry comes
  back with the next submission. An index's TTL only ever grows.
- Connections come from a blocking pool: a caller waits up to
  ``SMG_HISTORY_REDIS_POOL_TIMEOUT`` for a free one, then gets a 503. Nothing
  is retried by redis-py, because a script that timed out may have run.
- A value that is not what this backend wrote is reported for that record
  (``CorruptRecord``) by a direct read, and skipped with a logged error by
  pages, so one bad record cannot take down a listing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigError, HistoryError, InvalidRequest, NotFound
from ..records import Conversation, Feedback, Item, Page, Response, is_live, now
from .base import Backend
from .redis_scripts import SCRIPTS

log = logging.getLogger("flask_smg_history")

#: Walking an owner index fetches this many records per round trip at least.
_INDEX_CHUNK = 32


class CorruptRecord(HistoryError):
    """A value under one of our keys is not what this backend wrote."""

    status = 500
    type = "server_error"

    @classmethod
    def of(cls, what: str, reason: str = "") -> CorruptRecord:
        detail = f" ({reason})" if reason else ""
        return cls(f"{what} is stored in a form this backend cannot read{detail}.")


def _is_corruption(exc: rex.ResponseError) -> bool:
    """WRONGTYPE, or a script that failed on a value it could not read. Any
    other reply error (CROSSSLOT, a bad command) is a bug, not bad data."""
    message = str(exc)
    return message.startswith("WRONGTYPE") or "user_script" in message


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(deadline: float | None) -> str:
    """A deadline as a PEXPIREAT argument; empty means keep forever."""
    return "" if deadline is None else str(int(deadline * 1000))


def _stamp(value: float | None) -> str:
    """A float for the store, exactly (``repr``); empty means none."""
    return "" if value is None else repr(value)


def _optional_float(value: str) -> float | None:
    return float(value) if value else None


class RedisBackend(Backend):
    unavailable_errors: ClassVar[tuple[type[BaseException], ...]] = (
        rex.ConnectionError,  # includes a full pool ("No connection available") and BusyLoadingError
        rex.TimeoutError,
        rex.ClusterError,
        rex.ClusterDownError,
        rex.TryAgainError,
        rex.MasterDownError,
        rex.ReadOnlyError,
        rex.OutOfMemoryError,
        rex.SlotNotCoveredError,
    )

    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        prefix = settings.redis_key_prefix
        if "{" in prefix or "}" in prefix:
            raise ConfigError(
                "SMG_HISTORY_REDIS_KEY_PREFIX must not contain '{' or '}': the backend puts its own hash tags "
                "in every key so that one conversation's keys share a cluster slot.",
                param="SMG_HISTORY_REDIS_KEY_PREFIX",
            )
        self.prefix = prefix
        days = settings.redis_retention_days
        self.retention: float | None = None if days == -1 else days * 86400
        self.cluster = settings.redis_cluster
        self._client: Any = None
        self._connect_lock = threading.Lock()
        self._shas: dict[str, str] = {}
        try:
            redis.connection.parse_url(settings.redis_url)
        except ValueError as exc:
            raise ConfigError(f"SMG_HISTORY_REDIS_URL is not valid: {exc}", param="SMG_HISTORY_REDIS_URL") from None

    @property
    def client(self) -> Any:
        """The redis-py client, made on first use: a cluster client asks the
        nodes for the slot map when it is made, and the app must start (and
        answer 503s) while Redis is down."""
        if self._client is None:
            with self._connect_lock:
                if self._client is None:
                    self._client = _connect(self.settings)
        return self._client

    # -- plumbing ------------------------------------------------------------
    def _conv_keys(self, conversation_id: str) -> list[str]:
        tag = f"{self.prefix}{{c:{conversation_id}}}"
        return [f"{tag}:meta", f"{tag}:items", f"{tag}:data"]

    def _owner_key(self, owner: str, kind: str) -> str:
        return f"{self.prefix}{{o:{owner}}}:{kind}"

    def _resp_keys(self, response_id: str) -> list[str]:
        tag = f"{self.prefix}{{r:{response_id}}}"
        return [f"{tag}:resp", f"{tag}:fb"]

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], what: str) -> Any:
        """Run a script by SHA, loading it once per server. A Redis error that
        is not an outage means our keys hold something we did not write."""
        sha = self._shas.get(name)
        try:
            if sha is not None:
                try:
                    return self.client.evalsha(sha, len(keys), *keys, *args)
                except rex.NoScriptError:
                    pass  # a restarted or new server: load it again
            sha = self._shas[name] = self.client.script_load(SCRIPTS[name])
            return self.client.evalsha(sha, len(keys), *keys, *args)
        except self.unavailable_errors:
            raise
        except rex.ResponseError as exc:
            if not _is_corruption(exc):
                raise
            raise CorruptRecord.of(what, str(exc).split(" script: ")[0][:200]) from exc

    def _deadline(self, at: float, expires_at: float | None) -> float | None:
        """When a record written at ``at`` expires: the earlier of the general
        retention (``expires_at``, from ``SMG_HISTORY_RETENTION_DAYS``) and
        ``SMG_HISTORY_REDIS_RETENTION_DAYS``."""
        limits = [x for x in (expires_at, None if self.retention is None else at + self.retention) if x is not None]
        return min(limits) if limits else None

    def _owner_index_key(self, owner: str) -> list[str]:
        """On a standalone server the conversation scripts update the owner's
        index in the same run; on a cluster it is another slot."""
        return [] if self.cluster else [self._owner_key(owner, "convs")]

    def _touch_owner_index(self, owner: str, member: str, score: float | None, deadline: float | None) -> None:
        if self.cluster:
            key = self._owner_key(owner, "convs")
            self._run("index", [key], [member, "" if score is None else repr(score), _ms(deadline)], "An owner index")

    @staticmethod
    def _status(result: list[Any]) -> str:
        return _text(result[0])

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        deadline = self._deadline(conversation.created_at, conversation.expires_at)
        conversation.expires_at = deadline
        self._touch_owner_index(conversation.owner, conversation.id, conversation.created_at, deadline)
        result = self._run(
            "create",
            self._conv_keys(conversation.id) + self._owner_index_key(conversation.owner),
            [
                conversation.owner,
                repr(conversation.created_at),
                repr(conversation.updated_at),
                _dumps(conversation.metadata),
                _stamp(deadline),
                _ms(deadline),
                conversation.id,
                *_item_args(items),
            ],
            f"Conversation '{conversation.id}'",
        )
        status = self._status(result)
        if status == "exists":
            raise InvalidRequest(f"Conversation id '{conversation.id}' is not available.", param="id")
        self._raise_duplicate(result, conversation.id)
        return _positioned(conversation.id, items, int(result[1]))

    def _raise_duplicate(self, result: list[Any], conversation_id: str) -> None:
        if self._status(result) == "dup":
            raise InvalidRequest(
                f"Item with id '{_text(result[1])}' is already in conversation '{conversation_id}'.",
                param="items",
                code="item_already_in_conversation",
            )

    def get_conversation(self, owner, conversation_id):
        fields = self._hgetall(self._conv_keys(conversation_id)[0], f"Conversation '{conversation_id}'")
        conv = _conversation(conversation_id, fields)
        if conv is None or conv.owner != owner or not is_live(conv.expires_at, now()):
            raise NotFound.conversation(conversation_id)
        return conv

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at):
        deadline = self._deadline(updated_at, expires_at)
        self._touch_owner_index(owner, conversation_id, None, deadline)
        result = self._run(
            "update",
            self._conv_keys(conversation_id) + self._owner_index_key(owner),
            [owner, repr(now()), _dumps(metadata), repr(updated_at), _stamp(deadline), _ms(deadline)],
            f"Conversation '{conversation_id}'",
        )
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        flat = result[1]
        conv = _conversation(conversation_id, dict(zip(flat[::2], flat[1::2])))
        if conv is None:
            raise CorruptRecord.of(f"Conversation '{conversation_id}'")
        return conv

    def delete_conversation(self, owner, conversation_id):
        result = self._run(
            "delete",
            self._conv_keys(conversation_id) + self._owner_index_key(owner),
            [owner, repr(now()), conversation_id],
            f"Conversation '{conversation_id}'",
        )
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        if self.cluster:  # if this fails, readers remove the stale entry
            self.client.zrem(self._owner_key(owner, "convs"), conversation_id)

    def list_conversations(self, owner, *, after, limit, order):
        at = now()

        def fetch(members: list[str]) -> list[Any]:
            replies = self._pipelined([("hgetall", self._conv_keys(cid)[0]) for cid in members])
            out: list[Any] = []
            for cid, reply in zip(members, replies):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    conv = _conversation(cid, reply)
                except (rex.ResponseError, CorruptRecord) as exc:
                    log.error("Redis history: conversation '%s' is unreadable (%s); skipped", cid, exc)
                    out.append(_SKIP)
                    continue
                if conv is None:
                    out.append(None)
                elif conv.owner != owner or not is_live(conv.expires_at, at):
                    out.append(_SKIP)
                else:
                    out.append(conv)
            return out

        return self._walk_index(self._owner_key(owner, "convs"), None, after, limit, order, fetch)

    # -- owner indexes -------------------------------------------------------
    def _pipelined(self, commands: list[tuple[str, str]]) -> list[Any]:
        """Run read commands in one pipeline (per node on a cluster); errors
        come back in place, so one bad key does not fail the batch."""
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for command, key in commands:
            getattr(pipe, command)(key)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, self.unavailable_errors):
                raise reply
        return replies

    def _walk_index(
        self,
        key: str,
        side: str | None,
        after: str | None,
        limit: int,
        order: str,
        fetch: Callable[[list[str]], list[Any]],
        stop_below: float | None = None,
    ) -> Page[Any]:
        """Page through an owner index. ``fetch`` turns members into records,
        ``None`` for a member whose record is gone (the entry is removed) and
        ``_SKIP`` for one to leave out (expired, filtered, unreadable)."""
        found: list[Any] = []
        stale: list[str] = []
        skip = 0
        exhausted = False
        while len(found) <= limit and not exhausted:
            count = max(limit + 1 - len(found), _INDEX_CHUNK)
            result = self._run("index_page", [key], [after or "", skip, count, order], "An owner index")
            if self._status(result) == "after":
                raise InvalidRequest(f"No record with id '{after}' to list after.", param="after")
            flat = result[1]
            members = [_text(m) for m in flat[::2]]
            scores = [float(s) for s in flat[1::2]]
            if stop_below is not None and any(s < stop_below for s in scores):
                cut = next(i for i, s in enumerate(scores) if s < stop_below)
                members, exhausted = members[:cut], True
            exhausted = exhausted or len(flat) // 2 < count
            skip += count
            for member, record in zip(members, fetch(members)):
                if record is None:
                    stale.append(member)
                elif record is not _SKIP:
                    found.append(record)
        if stale:
            self._repair(key, side, stale)
        return Page(data=found[:limit], has_more=len(found) > limit)

    def _repair(self, key: str, side: str | None, members: list[str]) -> None:
        """Remove index entries whose record is gone (see the module doc)."""
        log.info("Redis history: removing %d stale entries from %s", len(members), key)
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(key, *members)
        if side is not None:
            pipe.hdel(side, *members)
        pipe.execute()

    # -- items ---------------------------------------------------------------
    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        deadline = self._deadline(updated_at, expires_at)
        self._touch_owner_index(owner, conversation_id, None, deadline)
        result = self._run(
            "add",
            self._conv_keys(conversation_id) + self._owner_index_key(owner),
            [owner, repr(now()), repr(updated_at), _stamp(deadline), _ms(deadline), *_item_args(items)],
            f"Conversation '{conversation_id}'",
        )
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        self._raise_duplicate(result, conversation_id)
        return _positioned(conversation_id, items, int(result[1]))

    def list_items(self, owner, conversation_id, *, after, limit, order):
        result = self._run(
            "page",
            self._conv_keys(conversation_id),
            [owner, repr(now()), after or "", limit + 1, order],
            f"Conversation '{conversation_id}'",
        )
        status = self._status(result)
        if status == "nf":
            raise NotFound.conversation(conversation_id)
        if status == "after":
            raise InvalidRequest(f"No record with id '{after}' to list after.", param="after")
        scored, values = result[1], result[2]
        has_more = len(values) > limit
        return Page(data=_items(conversation_id, scored, values)[:limit], has_more=has_more)

    def get_item(self, owner, conversation_id, item_id):
        result = self._run(
            "get_item", self._conv_keys(conversation_id), [owner, repr(now()), item_id], f"Item '{item_id}'"
        )
        self._item_status(result, conversation_id, item_id)
        item = _item(conversation_id, item_id, result[1], result[2])
        if item is None:
            raise CorruptRecord.of(f"Item '{item_id}'")
        return item

    def _item_status(self, result: list[Any], conversation_id: str, item_id: str) -> None:
        status = self._status(result)
        if status == "nf":
            raise NotFound.conversation(conversation_id)
        if status == "nf_item":
            raise NotFound.item(item_id)

    def delete_item(self, owner, conversation_id, item_id):
        result = self._run(
            "delete_item", self._conv_keys(conversation_id), [owner, repr(now()), item_id], f"Item '{item_id}'"
        )
        self._item_status(result, conversation_id, item_id)

    def recent_items(self, owner, conversation_id, limit):
        result = self._run(
            "recent", self._conv_keys(conversation_id), [owner, repr(now()), limit], f"Conversation '{conversation_id}'"
        )
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        return list(reversed(_items(conversation_id, result[1], result[2])))

    # -- responses -----------------------------------------------------------
    def store_response(self, response):
        deadline = self._deadline(response.created_at, response.expires_at)
        response.expires_at = deadline
        doc = {k: v for k, v in vars(response).items() if k not in ("id", "owner")}
        result = self._run(
            "store_response",
            self._resp_keys(response.id),
            [response.owner, _stamp(deadline), _dumps(doc), _ms(deadline)],
            f"Response '{response.id}'",
        )
        if self._status(result) == "taken":
            raise InvalidRequest(f"Response id '{response.id}' is not available.", param="id")

    def get_response(self, owner, response_id):
        fields = self._hgetall(self._resp_keys(response_id)[0], f"Response '{response_id}'")
        if _text(fields.get(b"o", b"")) != owner or not is_live(_optional_float(_text(fields.get(b"e", b""))), now()):
            raise NotFound.response(response_id)
        try:
            return Response(id=response_id, owner=owner, **json.loads(fields[b"d"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord.of(f"Response '{response_id}'") from exc

    def _hgetall(self, key: str, what: str) -> dict[bytes, bytes]:
        try:
            return self.client.hgetall(key)
        except self.unavailable_errors:
            raise
        except rex.ResponseError as exc:
            if not _is_corruption(exc):
                raise
            raise CorruptRecord.of(what, "WRONGTYPE") from exc

    def delete_response(self, owner, response_id):
        result = self._run(
            "delete_response", self._resp_keys(response_id), [owner, repr(now())], f"Response '{response_id}'"
        )
        if self._status(result) == "nf":
            raise NotFound.response(response_id)
        if result[1]:  # if this fails, readers remove the stale entry
            self._repair(self._owner_key(owner, "fb"), self._owner_key(owner, "fbref"), [_text(result[1])])

    # -- feedback ------------------------------------------------------------
    def submit_feedback(self, feedback):
        doc = {k: v for k, v in vars(feedback).items() if k not in ("id", "response_id")}
        result = self._run(
            "submit_feedback",
            self._resp_keys(feedback.response_id),
            [feedback.owner, repr(now()), feedback.id, _dumps(doc)],
            f"Feedback on response '{feedback.response_id}'",
        )
        if self._status(result) == "nf":
            raise NotFound.response(feedback.response_id)
        stored = Feedback(**{**vars(feedback), "id": _text(result[1])})
        self._run(
            "index",
            [self._owner_key(feedback.owner, "fb"), self._owner_key(feedback.owner, "fbref")],
            [stored.id, repr(stored.created_at), _ms(stored.expires_at), feedback.response_id],
            "A feedback index",
        )
        return stored

    def get_feedback(self, owner, response_id):
        fields = self._hgetall(self._resp_keys(response_id)[1], f"Feedback on response '{response_id}'")
        fb = _feedback(response_id, fields) if fields else None
        if fields and fb is None:
            raise CorruptRecord.of(f"Feedback on response '{response_id}'")
        if fb is None or fb.owner != owner or not is_live(fb.expires_at, now()):
            raise NotFound.feedback(response_id)
        return fb

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        at = now()
        ref_key = self._owner_key(owner, "fbref")

        def fetch(members: list[str]) -> list[Feedback | None]:
            if not members:
                return []
            refs = self.client.hmget(ref_key, members)
            replies = self._pipelined([("hgetall", self._resp_keys(_text(r))[1]) for r in refs if r is not None])
            by_ref = iter(replies)
            out: list[Any] = []
            for member, ref in zip(members, refs):
                reply = next(by_ref) if ref is not None else {}
                fb = None if isinstance(reply, Exception) or not reply else _feedback(_text(ref), reply)
                if isinstance(reply, Exception) or (reply and fb is None):
                    log.error("Redis history: feedback '%s' is unreadable; skipped", member)
                    out.append(_SKIP)
                elif fb is None or fb.id != member:
                    out.append(None)  # gone, or replaced under another ID
                elif (
                    fb.owner != owner
                    or not is_live(fb.expires_at, at)
                    or (rating is not None and fb.rating != rating)
                    or (model is not None and fb.model != model)
                ):
                    out.append(_SKIP)
                else:
                    out.append(fb)
            return out

        return self._walk_index(self._owner_key(owner, "fb"), ref_key, after, limit, "desc", fetch, since)

    # -- operations ----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        self.client.ping()
        return {"cluster": self.cluster}

    def pool_stats(self) -> dict[str, int]:
        """Connections in use and idle, summed over the pools (one per node on
        a cluster). It reads redis-py's pool internals, as redis-py's own
        metrics do; nothing is reported before the client exists."""
        if self._client is None:
            return {}
        if self.cluster:
            pools = [n.redis_connection.connection_pool for n in self._client.get_nodes() if n.redis_connection]
        else:
            pools = [self._client.connection_pool]
        in_use = idle = 0
        for pool in pools:
            free = sum(1 for conn in getattr(getattr(pool, "pool", None), "queue", ()) if conn is not None)
            idle += free
            in_use += len(getattr(pool, "_connections", ())) - free
        return {"in_use": in_use, "idle": idle}

    def close(self) -> None:
        if self._client is None:
            return
        self._client.close()
        if not self.cluster:
            self._client.connection_pool.disconnect()


#: ``fetch`` marker for an index entry to leave out of a page but keep.
_SKIP: Any = object()


def _connect(settings: Any) -> Any:
    """A client on a blocking pool. redis-py retries nothing (``Retry(..., 0)``):
    a script that timed out may have run, and a down server should answer
    503 within the socket timeout."""
    options = {
        "max_connections": settings.redis_pool_max_size,
        "timeout": settings.redis_pool_timeout,
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if not settings.redis_cluster:
        return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(settings.redis_url, **options))
    try:
        return redis.RedisCluster.from_url(
            settings.redis_url, connection_pool_class=redis.BlockingConnectionPool, **options
        )
    except rex.RedisClusterException as exc:  # no node answered: an outage, not a bug
        raise rex.ConnectionError("Redis Cluster cannot be reached.") from exc


def _item_args(items: list[Item]) -> list[str]:
    out = []
    for item in items:
        out.append(item.id)
        out.append(_dumps({"p": item.payload, "t": item.type, "r": item.role, "s": item.status, "c": item.created_at}))
    return out


def _positioned(conversation_id: str, items: list[Item], first: int) -> list[Item]:
    for offset, item in enumerate(items):
        item.conversation_id = conversation_id
        item.position = first + offset
    return items


def _item(conversation_id: str, item_id: str, score: Any, raw: Any) -> Item | None:
    try:
        doc = json.loads(raw)
        if not isinstance(doc["p"], dict):
            raise TypeError("payload is not an object")
        return Item(
            id=item_id,
            conversation_id=conversation_id,
            type=doc["t"],
            payload=doc["p"],
            created_at=float(doc["c"]),
            role=doc["r"],
            status=doc["s"],
            position=int(float(score)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _items(conversation_id: str, scored: list[Any], values: list[Any]) -> list[Item]:
    out = []
    for item_id, score, raw in zip(scored[::2], scored[1::2], values):
        item = _item(conversation_id, _text(item_id), score, raw)
        if item is None:
            log.error(
                "Redis history: item '%s' of conversation '%s' is unreadable; skipped", _text(item_id), conversation_id
            )
            continue
        out.append(item)
    return out


def _conversation(conversation_id: str, fields: dict[Any, Any]) -> Conversation | None:
    """A conversation from its meta hash; None when there is none, and
    ``CorruptRecord`` when the hash is not one this backend wrote."""
    if not fields:
        return None
    get = {_text(k): _text(v) for k, v in fields.items()}.get
    try:
        metadata = json.loads(get("m") or "")
        if not isinstance(metadata, dict):
            raise TypeError("metadata is not an object")
        return Conversation(
            id=conversation_id,
            owner=get("o") or "",
            created_at=float(get("c") or ""),
            updated_at=float(get("u") or ""),
            metadata=metadata,
            expires_at=_optional_float(get("e") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise CorruptRecord.of(f"Conversation '{conversation_id}'") from exc


def _feedback(response_id: str, fields: dict[Any, Any]) -> Feedback | None:
    try:
        return Feedback(id=_text(fields[b"i"]), response_id=response_id, **json.loads(fields[b"d"]))
    except (KeyError, TypeError, ValueError):
        return None
