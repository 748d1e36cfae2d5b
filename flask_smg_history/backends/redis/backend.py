"""Redis storage: retention by key TTL, atomic writes by Lua, Redis Cluster.

Why it is shaped this way (the key layout is in ``scripts.py``; the reasoning
and benchmark figures in ``docs/backends/redis.md``):

- Every key of one owner shares one hash tag, so every write is one Lua script
  over one cluster slot: atomic, ordered and one round trip, including writes
  that span conversations (an item linked into several by ``item_reference``,
  deleting a conversation whose items others still link) and the owner's
  indexes. A cluster spreads owners over its nodes; one owner's history lives
  on one node.
- Items sit in a sorted set scored by position, so a page or ``recent(n)`` is
  one script run whatever the length.
- Each write refreshes the TTL of all of the conversation's keys together, so
  a conversation never expires piecemeal; an index entry whose record expired
  is skipped and removed by readers (repair on read).
- Connections come from a blocking pool: a caller waits up to
  ``SMG_HISTORY_REDIS_POOL_TIMEOUT`` for a free one, then gets a 503. Nothing
  is retried by redis-py, because a script that timed out may have run.
- A ``rediss://`` connection that cannot be set up (a certificate that fails
  verification or is for another host, a port that is not TLS) answers 503
  with a sentence naming ``SMG_HISTORY_REDIS_URL`` (``tls_hint``).
- A value that is not what this backend wrote is reported for that record
  (``CorruptRecord``) by a direct read, and skipped with a logged error by
  pages, so one bad record cannot take down a listing.

Erasure, export, import and purge are in ``operations.py``, the usage
statistics (a Lua script per owner) in ``stats.py``; search, a bounded scan
inside Redis, in ``search.py``.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...errors import ConfigError, CorruptRecord, InvalidRequest, NotFound, shown_id
from ...records import MAX_METADATA_PAIRS, Feedback, Item, Page, Response, is_live, now
from .. import jsonfast
from ..base import Backend, exception_chain, merge_metadata
from . import codec, durability
from .codec import log
from .operations import RedisOperations
from .scripts import SCRIPTS
from .search import RedisSearch
from .stats import RedisStats

#: Walking an owner index fetches this many records per round trip at least.
_INDEX_CHUNK = 32

#: What a key prefix may hold: it is matched with SCAN patterns and shown in
#: tools, so no glob or hash-tag characters, spaces or control characters.
_PREFIX = re.compile(r"[A-Za-z0-9_:.\-]{1,64}")


def check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"SMG_HISTORY_REDIS_KEY_PREFIX={prefix!r} is not accepted: use 1 to 64 of A-Z a-z 0-9 _ : . - "
            "(the backend puts its own hash tags, in braces, after it, and finds an owner's keys with "
            "SCAN patterns, where * ? [ ] are special).",
            param="SMG_HISTORY_REDIS_KEY_PREFIX",
        )
    return prefix


class RedisBackend(RedisSearch, RedisOperations, RedisStats, Backend):
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
    #: Expired records are removed by key TTL, not by ``purge``.
    expires_by_ttl: ClassVar[bool] = True

    def __init__(self, name, settings, app) -> None:
        super().__init__(name, settings, app)
        self.prefix = check_prefix(settings.redis_key_prefix)
        days = settings.redis_retention_days
        self.retention: float | None = None if days == -1 else days * 86400
        self.cluster = settings.redis_cluster
        self._client: Any = None
        self._connect_lock = threading.Lock()
        self._shas: dict[str, str] = {}
        self._import_owners: dict[str, str] = {}
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
                    self._client = connect(self.settings)
        return self._client

    # -- keys ----------------------------------------------------------------
    def _tag(self, owner: str) -> str:
        """The owner's key prefix; the length keeps any owner unambiguous."""
        return f"{self.prefix}{{o:{len(owner)}:{owner}}}"

    def _owner_key(self, owner: str, kind: str) -> str:
        return f"{self._tag(owner)}:{kind}"

    def _conv_keys(self, owner: str, conversation_id: str) -> list[str]:
        base = f"{self._tag(owner)}:c:{conversation_id}"
        return [f"{base}:meta", f"{base}:items", f"{base}:data", f"{base}:shared"]

    def _resp_keys(self, owner: str, response_id: str) -> list[str]:
        base = f"{self._tag(owner)}:r:{response_id}"
        return [f"{base}:resp", f"{base}:fb"]

    # -- plumbing ------------------------------------------------------------
    def _run(self, name: str, owner: str, args: Sequence[Any], what: str, index: str | None = None) -> Any:
        """Run one of ``SCRIPTS`` on the owner's slot."""
        keys = [self._owner_key(owner, "convs")] + ([index] if index else [])
        return self._script(name, SCRIPTS[name], keys, args, what)

    def _script(self, name: str, source: str, keys: list[str], args: Sequence[Any], what: str) -> Any:
        """Run a script by SHA, loading it once per server. A Redis error
        that is not an outage means our keys hold something we did not write."""
        sha = self._shas.get(name)
        try:
            if sha is not None:
                try:
                    return self._evalsha(sha, keys, args)
                except rex.NoScriptError:
                    pass  # a restarted or new server: load it again
            sha = self._shas[name] = self.client.script_load(source)
            return self._evalsha(sha, keys, args)
        except self.unavailable_errors:
            raise
        except rex.ResponseError as exc:
            if not codec.is_corruption(exc):
                raise
            raise CorruptRecord.of(what, str(exc).split(" script: ")[0][:200]) from exc

    def _evalsha(self, sha: str, keys: list[str], args: Sequence[Any]) -> Any:
        """``evalsha`` below, or through a cluster client, which routes by slot."""
        if self.cluster:
            return self.client.evalsha(sha, len(keys), *keys, *args)
        return evalsha(self.client, sha, keys, args)

    def _deadline(self, at: float, expires_at: float | None) -> float | None:
        """When a record written at ``at`` expires: the earlier of the general
        retention (``expires_at``, from ``SMG_HISTORY_RETENTION_DAYS``) and
        ``SMG_HISTORY_REDIS_RETENTION_DAYS``."""
        limits = [x for x in (expires_at, None if self.retention is None else at + self.retention) if x is not None]
        return min(limits) if limits else None

    @staticmethod
    def _status(result: list[Any]) -> str:
        return codec.text(result[0])

    def _raise_batch(self, result: list[Any], conversation_id: str) -> None:
        """The errors of the batch check in the append scripts."""
        status = self._status(result)
        if status == "dup":
            raise InvalidRequest.already_in_conversation(codec.text(result[1]), conversation_id)
        if status == "exists":
            raise InvalidRequest.item_exists(codec.text(result[1]))
        if status == "nf_item":
            raise NotFound.item(codec.text(result[1]))

    @staticmethod
    def _positioned(conversation_id: str, items: list[Item], result: list[Any]) -> list[Item]:
        """Give appended items their positions; a reference gets the stored
        item in its place (the script returns their JSON)."""
        first, referenced = int(result[1]), iter(result[2])
        out = []
        for offset, item in enumerate(items):
            if item.type == "item_reference":
                stored = codec.item(conversation_id, item.id, first + offset, next(referenced))
                if stored is None:
                    raise CorruptRecord.of(f"Item '{item.id}'")
                item = stored
            item.conversation_id, item.position = conversation_id, first + offset
            out.append(item)
        return out

    # -- conversations -------------------------------------------------------
    def create_conversation(self, conversation, items):
        deadline = self._deadline(conversation.created_at, conversation.expires_at)
        conversation.expires_at = deadline
        result = self._run(
            "create",
            conversation.owner,
            [
                conversation.owner,
                repr(conversation.created_at),
                repr(conversation.updated_at),
                jsonfast.dumps(conversation.metadata),
                codec.stamp(deadline),
                codec.ms(deadline),
                conversation.id,
                repr(now()),
                *codec.item_args(items),
            ],
            f"Conversation '{conversation.id}'",
        )
        if self._status(result) == "exists":
            raise InvalidRequest(f"Conversation id '{shown_id(conversation.id)}' is not available.", param="id")
        self._raise_batch(result, conversation.id)
        return self._positioned(conversation.id, items, result)

    def get_conversation(self, owner, conversation_id):
        fields = self._hgetall(self._conv_keys(owner, conversation_id)[0], f"Conversation '{conversation_id}'")
        conv = codec.conversation(conversation_id, fields)
        if conv is None or conv.owner != owner or not is_live(conv.expires_at, now()):
            raise NotFound.conversation(conversation_id)
        return conv

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        """One script: a replace writes the map; a patch is merged into the
        stored map in Lua (cjson), so concurrent patches never lose a key."""
        deadline = self._deadline(updated_at, expires_at)
        if replace:
            metadata = merge_metadata({}, metadata, replace=True)
        result = self._run(
            "update",
            owner,
            [
                conversation_id,
                repr(now()),
                jsonfast.dumps(metadata),
                repr(updated_at),
                codec.stamp(deadline),
                codec.ms(deadline),
                "replace" if replace else "patch",
                MAX_METADATA_PAIRS,
            ],
            f"Conversation '{conversation_id}'",
        )
        status = self._status(result)
        if status == "nf":
            raise NotFound.conversation(conversation_id)
        if status == "too_many":
            raise InvalidRequest.too_much_metadata(int(result[1]), MAX_METADATA_PAIRS)
        flat = result[1]
        conv = codec.conversation(conversation_id, dict(zip(flat[::2], flat[1::2])))
        if conv is None:
            raise CorruptRecord.of(f"Conversation '{conversation_id}'")
        return conv

    def delete_conversation(self, owner, conversation_id):
        result = self._run("delete", owner, [conversation_id, repr(now())], f"Conversation '{conversation_id}'")
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        """A walk of ``T:convs`` (by created_at) or ``T:activity`` (by
        updated_at); equal scores are in ID order, as Redis orders members."""
        at = now()

        def fetch(members: list[str]) -> list[Any]:
            replies = self._pipelined([("hgetall", self._conv_keys(owner, cid)[0]) for cid in members])
            out: list[Any] = []
            for cid, reply in zip(members, replies):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    conv = codec.conversation(cid, reply)
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

        kind = "activity" if order_by == "updated_at" else "convs"
        return self._walk_index(owner, kind, None, after, limit, order, fetch)

    # -- owner indexes -------------------------------------------------------
    def _pipelined(self, commands: list[tuple[str, str]]) -> list[Any]:
        """Run read commands in one pipeline; errors come back in place, so
        one bad key does not fail the batch."""
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

    def _index_window(self, owner: str, kind: str, after: str | None, skip: int, count: int, order: str):
        """Members and scores of one window of an owner index."""
        result = self._run(
            "index_page", owner, [after or "", skip, count, order], "An owner index", self._owner_key(owner, kind)
        )
        if self._status(result) == "after":
            raise InvalidRequest.unknown_cursor(after)
        flat = result[1]
        return [codec.text(m) for m in flat[::2]], [float(s) for s in flat[1::2]]

    def _walk_index(
        self,
        owner: str,
        kind: str,
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
            members, scores = self._index_window(owner, kind, after, skip, count, order)
            if stop_below is not None and any(s < stop_below for s in scores):
                cut = next(i for i, s in enumerate(scores) if s < stop_below)
                members, exhausted = members[:cut], True
            exhausted = exhausted or len(scores) < count
            skip += count
            for member, record in zip(members, fetch(members)):
                if record is None:
                    stale.append(member)
                elif record is not _SKIP:
                    found.append(record)
        if stale:
            self._repair(owner, kind, side, stale)
        return Page(data=found[:limit], has_more=len(found) > limit)

    def _repair(self, owner: str, kind: str, side: str | None, members: list[str]) -> None:
        """Remove index entries whose record expired by TTL (a conversation's
        from both of its indexes, which stay the same size)."""
        log.info("Redis history: removing %d stale entries from %s", len(members), self._owner_key(owner, kind))
        pipe = self.client.pipeline(transaction=False)
        for index in ("convs", "activity") if kind in ("convs", "activity") else (kind,):
            pipe.zrem(self._owner_key(owner, index), *members)
        if side is not None:
            pipe.hdel(side, *members)
        pipe.execute()

    # -- items ---------------------------------------------------------------
    def _add_args(
        self, conversation_id: str, items: list[Item], updated_at: float, expires_at: float | None
    ) -> list[Any]:
        """The ARGV of ``ADD`` (and the append part of ``TURN``'s)."""
        deadline = self._deadline(updated_at, expires_at)
        return [
            conversation_id,
            repr(now()),
            repr(updated_at),
            codec.stamp(deadline),
            codec.ms(deadline),
            *codec.item_args(items),
        ]

    def _appended(self, result: list[Any], conversation_id: str, items: list[Item]) -> list[Item]:
        """The items of an append script's reply, or its refusal raised."""
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        self._raise_batch(result, conversation_id)
        return self._positioned(conversation_id, items, result)

    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        args = self._add_args(conversation_id, items, updated_at, expires_at)
        result = self._run("add", owner, args, f"Conversation '{conversation_id}'")
        return self._appended(result, conversation_id, items)

    def list_items(self, owner, conversation_id, *, after, limit, order):
        return self._item_page(owner, conversation_id, [after or "", limit + 1, order], after, limit)[0]

    def _item_page(
        self, owner: str, conversation_id: str, args: list[Any], after: str | None, limit: int
    ) -> tuple[Page[Item], int]:
        """One page of items, and the position of the last one read (an
        unreadable item is left out of the page but not out of the walk)."""
        result = self._run("page", owner, [conversation_id, repr(now()), *args], f"Conversation '{conversation_id}'")
        status = self._status(result)
        if status == "nf":
            raise NotFound.conversation(conversation_id)
        if status == "after":
            raise InvalidRequest.unknown_cursor(after)
        scored, values = result[1][: 2 * limit], result[2][:limit]
        last = int(float(scored[-1])) if scored else -1
        return Page(data=codec.items(conversation_id, scored, values), has_more=len(result[2]) > limit), last

    def get_item(self, owner, conversation_id, item_id):
        result = self._run("get_item", owner, [conversation_id, repr(now()), item_id], f"Item '{item_id}'")
        self._item_status(result, conversation_id, item_id)
        item = codec.item(conversation_id, item_id, result[1], result[2])
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
        result = self._run("delete_item", owner, [conversation_id, repr(now()), item_id], f"Item '{item_id}'")
        self._item_status(result, conversation_id, item_id)

    def recent_items(self, owner, conversation_id, limit):
        result = self._run("recent", owner, [conversation_id, repr(now()), limit], f"Conversation '{conversation_id}'")
        if self._status(result) == "nf":
            raise NotFound.conversation(conversation_id)
        return list(reversed(codec.items(conversation_id, result[1], result[2])))

    # -- responses -----------------------------------------------------------
    def _response_args(self, response: Response) -> list[Any]:
        """The ARGV of ``STORE_RESPONSE`` (and the first of ``TURN``'s); the
        response's ``expires_at`` becomes its TTL deadline."""
        deadline = self._deadline(response.created_at, response.expires_at)
        response.expires_at = deadline
        return [
            response.id,
            response.owner,
            repr(response.created_at),
            codec.stamp(deadline),
            codec.response_doc(response),
            codec.ms(deadline),
        ]

    def store_response(self, response):
        self._run("store_response", response.owner, self._response_args(response), f"Response '{response.id}'")

    def store_turn(self, response, items, *, updated_at, expires_at):
        """One script, ``TURN``: ``ADD``'s checks, the response ID's, then
        ``ADD``'s writes and ``STORE_RESPONSE``'s, on the owner's slot; one
        round trip whatever the number of items."""
        conversation_id = response.conversation_id
        append = [""] if conversation_id is None else self._add_args(conversation_id, items, updated_at, expires_at)
        what = f"Response '{response.id}'" if conversation_id is None else f"Conversation '{conversation_id}'"
        result = self._run("turn", response.owner, [*self._response_args(response), *append], what)
        if self._status(result) == "taken":
            raise InvalidRequest.response_id_taken(response.id)
        if conversation_id is None:
            return []
        return self._appended(result, conversation_id, items)

    def get_response(self, owner, response_id):
        fields = self._hgetall(self._resp_keys(owner, response_id)[0], f"Response '{response_id}'")
        expires = codec.optional_float(codec.text(fields.get(b"e", b"")))
        if codec.text(fields.get(b"o", b"")) != owner or not is_live(expires, now()):
            raise NotFound.response(response_id)
        return codec.response(response_id, owner, fields)

    def _hgetall(self, key: str, what: str) -> dict[bytes, bytes]:
        try:
            return self.client.hgetall(key)
        except self.unavailable_errors:
            raise
        except rex.ResponseError as exc:
            if not codec.is_corruption(exc):
                raise
            raise CorruptRecord.of(what, "WRONGTYPE") from exc

    def delete_response(self, owner, response_id):
        result = self._run("delete_response", owner, [response_id, repr(now())], f"Response '{response_id}'")
        if self._status(result) == "nf":
            raise NotFound.response(response_id)

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        at = now()

        def fetch(members: list[str]) -> list[Any]:
            replies = self._pipelined([("hgetall", self._resp_keys(owner, rid)[0]) for rid in members])
            out: list[Any] = []
            for rid, reply in zip(members, replies):
                if not isinstance(reply, Exception) and not reply:
                    out.append(None)
                    continue
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    resp = codec.response(rid, owner, reply)
                except (rex.ResponseError, CorruptRecord) as exc:
                    log.error("Redis history: response '%s' is unreadable (%s); skipped", rid, exc)
                    out.append(_SKIP)
                    continue
                keep = (
                    is_live(resp.expires_at, at)
                    and (model is None or resp.model == model)
                    and (conversation_id is None or resp.conversation_id == conversation_id)
                )
                out.append(resp if keep else _SKIP)
            return out

        return self._walk_index(owner, "resps", None, after, limit, "desc", fetch, since)

    # -- feedback ------------------------------------------------------------
    def submit_feedback(self, feedback):
        result = self._run(
            "submit_feedback",
            feedback.owner,
            [
                feedback.response_id,
                repr(now()),
                feedback.id,
                codec.feedback_doc(feedback),
                repr(feedback.created_at),
                "",
            ],
            f"Feedback on response '{feedback.response_id}'",
        )
        if self._status(result) == "nf":
            raise NotFound.response(feedback.response_id)
        return Feedback(**{**vars(feedback), "id": codec.text(result[1])})

    def get_feedback(self, owner, response_id):
        fields = self._hgetall(self._resp_keys(owner, response_id)[1], f"Feedback on response '{response_id}'")
        fb = codec.feedback(response_id, fields) if fields else None
        if fields and fb is None:
            raise CorruptRecord.of(f"Feedback on response '{response_id}'")
        if fb is None or fb.owner != owner or not is_live(fb.expires_at, now()):
            raise NotFound.feedback(response_id)
        return fb

    def delete_feedback(self, owner, response_id):
        result = self._run(
            "delete_feedback", owner, [response_id, repr(now())], f"Feedback on response '{response_id}'"
        )
        if self._status(result) == "nf":
            raise NotFound.feedback(response_id)
        return codec.text(result[1])

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        at = now()
        ref_key = self._owner_key(owner, "fbref")

        def fetch(members: list[str]) -> list[Feedback | None]:
            if not members:
                return []
            refs = self.client.hmget(ref_key, members)
            replies = self._pipelined(
                [("hgetall", self._resp_keys(owner, codec.text(r))[1]) for r in refs if r is not None]
            )
            by_ref = iter(replies)
            out: list[Any] = []
            for member, ref in zip(members, refs):
                reply = next(by_ref) if ref is not None else {}
                fb = None if isinstance(reply, Exception) or not reply else codec.feedback(codec.text(ref), reply)
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

        return self._walk_index(owner, "fb", ref_key, after, limit, "desc", fetch, since)

    # -- operations ----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Reachability and, per master, what a restart would lose
        (``durability.py``); its ``warnings`` are what ``check`` prints."""
        nodes = durability.report(self.client, self.cluster)
        return {
            "cluster": self.cluster,
            "persistence": [node.as_dict() for node in nodes],
            "warnings": [warning for node in nodes for warning in node.warnings],
        }

    def outage_hint(self, exc: BaseException) -> str | None:
        return tls_hint(exc)

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

try:  # the redis extra's parser: it also packs a command in C
    from hiredis import pack_command
except ImportError:  # pragma: no cover - redis-py installed without it
    pack_command = None

try:  # recent redis-py: opt-in OpenTelemetry metrics of every command
    from redis.observability.providers import get_observability_instance
except ImportError:  # pragma: no cover - older redis-py
    get_observability_instance = None


def _redis_observed() -> bool:
    """Whether redis-py's OpenTelemetry metrics are on in this process."""
    return get_observability_instance is not None and get_observability_instance().is_enabled()


def evalsha(client: Any, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """``EVALSHA`` on a connection of a standalone client's pool, sent and
    read by redis-py's ``Connection`` (and hiredis) without the client's
    per-command layers: its retry wrapper (we retry nothing), response
    callbacks (a script's reply has none) and metric hooks. Those layers
    cost about 10–12 µs a call, under a tenth of a one-message append. With
    hiredis the command is packed by hiredis alone (our arguments are text
    and integers, which it encodes as redis-py would, in UTF-8): redis-py's
    packer checks and encodes every argument in Python first, about 6–10 µs
    for an append's dozen arguments. The backend's scripts and the hybrid's
    cache scripts are sent this way.

    Nothing else changes: the pool hands out and takes back the connection,
    checking it as for any command, and the connection closes itself on any
    error in the middle of a command, so what goes back to the pool is clean
    or closed. A process where redis-py's own OpenTelemetry metrics are on
    goes through the client so those metrics see every call."""
    if _redis_observed():
        return client.evalsha(sha, len(keys), *keys, *args)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        if pack_command is None:
            conn.send_command("EVALSHA", sha, len(keys), *keys, *args)
        else:
            conn.send_packed_command([pack_command(("EVALSHA", sha, len(keys), *keys, *args))])
        return conn.read_response()
    finally:
        pool.release(conn)


def connect(settings: Any) -> Any:
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


#: OpenSSL's reasons for a handshake answered by something that is not TLS.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})
#: X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH.
_HOST_MISMATCH = frozenset({62, 64})
#: Errors of a TLS connection that was closed, as a server going away closes
#: it: an outage like any other, not a TLS set-up problem.
_TLS_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def tls_hint(exc: BaseException) -> str | None:
    """The ``outage_hint`` for ``rediss://`` set-up failures, found from the
    ``ssl`` exceptions in the chain by type, verify code and reason (never
    their text, except to tell a handshake timeout from others)."""
    url = "SMG_HISTORY_REDIS_URL"
    for cause in exception_chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            if cause.verify_code in _HOST_MISMATCH:
                return (
                    f"the server's TLS certificate does not match the host name; check {url} "
                    "(its host must be a name or address the certificate lists)."
                )
            return f"TLS certificate verification failed; check {url} (ssl_ca_certs, ssl_cert_reqs)."
        if isinstance(cause, _TLS_CLOSED):
            return None
        if isinstance(cause, ssl.SSLError):
            if cause.reason in _NOT_TLS:
                return f"the server does not speak TLS on that port; check {url} (rediss:// needs a TLS port)."
            return f"the TLS handshake failed; check {url} (rediss:// and its ssl_* parameters)."
        if isinstance(cause, TimeoutError) and "handshake" in str(cause):
            return (
                "the TLS handshake got no answer within SMG_HISTORY_REDIS_SOCKET_TIMEOUT; "
                f"check that {url} names a TLS port, or try again later."
            )
    return None
