"""The Redis half of the hybrid backend: a window cache of hot conversations.

One Redis hash per cached conversation holds its record (``conv``, with
``upd`` and ``exp`` its times), its newest items in slots ``s<lo>`` (oldest)
to ``s<hi-1>`` (newest), ``complete`` when they are all of its items, and
``next``, the position its next item takes; a hit reads only the items it
needs. Every operation is one Lua script, so each is atomic and one round trip:

- ``lookup`` answers a hit, or a miss with a fill **token**; the token is kept
  in the hash (made once, shared by concurrent missers).
- ``fill`` writes record and window only if the hash still holds that token,
  and removes the token: it fills once. Why: readers who shared it may have
  read SQL before an append that the first fill's entry has since taken in
  (``append``); a second fill would put the older window back.
- ``invalidate`` deletes the hash. A writer runs it after its SQL commit and
  before it returns. Why this never leaves a stale entry: a filler read SQL
  before the commit; if its fill comes after the delete, the token is gone and
  the fill is refused; if before, the delete removes it.
- ``append`` is an append's write-through, run instead of ``invalidate``: it
  extends the entry with the committed items when the entry ends just before
  them (``next`` equals their first position), else deletes it. So a chat
  that appends and then reads its context keeps hitting the cache.
- ``new_namespace`` moves every key to a fresh namespace (the old keys expire
  by their TTL unread): the bulk operations (purge, erase, import) use it.
- ``sync`` does the same and records the SQL cache epoch the namespace was made
  for (``trust.py``); ``lookup`` and ``fill`` refuse to serve a caller whose
  epoch differs.

Key layout under ``SMG_HISTORY_REDIS_KEY_PREFIX`` (``P``): ``P hc:state`` (a
hash: ``ns`` the namespace, ``sql`` the synced epoch, ``seq`` the token
counter; it has no TTL) and ``P hc:<ns>:<len(owner)>:<owner>:<conversation>``.
A namespace is at least Redis's clock in microseconds, so one made after the
state hash was lost (evicted, or a restart without persistence) never meets
keys of an older one; a token carries its namespace, so it can never match an
entry of another. The scripts build key names from the state hash, which a
Redis Cluster would not route: the hybrid backend needs a standalone Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import redis.exceptions as rex

from ...records import Conversation, Item
from .. import jsonfast
from ..redis.backend import evalsha
from ..sql.window import Window

#: ``KEYS[1]`` is the state hash; ``ARGV[1]`` the caller's SQL epoch,
#: ``ARGV[2]`` the entry key's prefix, ``ARGV[3]`` its owner and conversation part.
_ENTRY = """
local st = redis.call('HMGET', KEYS[1], 'sql', 'ns')
if st[1] ~= ARGV[1] or not st[2] then return false end
local key = ARGV[2] .. st[2] .. ':' .. ARGV[3]
"""

#: ``ARGV[4]``: TTL in ms of a token kept for a miss; ``ARGV[5]``: how many
#: of the newest items a hit returns (-1: all the entry holds); ``ARGV[6]``:
#: ``SLOTS_PER_CALL``. A hit is
#: ``hit, record, updated_at, expires_at, complete, held, items newest first``.
#: The items come from one HMGET per ``SLOTS_PER_CALL`` slots: each
#: ``redis.call`` costs more than the field it reads (profiled: 20 HGETs
#: 33 µs of server time per hit, one HMGET 28).
LOOKUP = (
    _ENTRY
    + """
local h = redis.call('HMGET', key, 'tok', 'conv', 'upd', 'exp', 'complete', 'lo', 'hi')
if h[2] then
  local lo, hi = tonumber(h[6]), tonumber(h[7])
  local want = tonumber(ARGV[5])
  if want < 0 or want > hi - lo then want = hi - lo end
  local out = {'hit', h[2], h[3], h[4], h[5], hi - lo}
  local per, top = tonumber(ARGV[6]), hi - 1
  while top >= hi - want do
    local slots = {}
    for s = top, math.max(hi - want, top - per + 1), -1 do slots[#slots + 1] = 's' .. s end
    for _, item in ipairs(redis.call('HMGET', key, unpack(slots))) do out[#out + 1] = item end
    top = top - per
  end
  return out
end
if not h[1] then
  h[1] = st[2] .. ':' .. redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('HSET', key, 'tok', h[1])
  redis.call('PEXPIRE', key, ARGV[4])
end
return {'miss', h[1]}
"""
)

#: ``ARGV[4]`` the token, ``ARGV[5]`` TTL in ms, ``ARGV[6..9]`` the record,
#: updated_at, expires_at, complete, ``ARGV[10]`` the next position,
#: ``ARGV[11]`` ``SLOTS_PER_CALL``, ``ARGV[12..]`` the items, oldest first
#: (slots 0, 1, ...), written by one HSET per ``SLOTS_PER_CALL`` of them.
FILL = (
    _ENTRY
    + """
if redis.call('HGET', key, 'tok') ~= ARGV[4] then return 0 end
-- The token fills once: a reader sharing it whose SQL read is older must not
-- overwrite this entry after an append has extended it.
redis.call('HDEL', key, 'tok')
redis.call('HSET', key, 'conv', ARGV[6], 'upd', ARGV[7], 'exp', ARGV[8], 'complete', ARGV[9],
  'next', ARGV[10], 'lo', 0, 'hi', #ARGV - 11)
local per = tonumber(ARGV[11])
for first = 12, #ARGV, per do
  local fields = {}
  for i = first, math.min(#ARGV, first + per - 1) do
    fields[#fields + 1] = 's' .. (i - 12)
    fields[#fields + 1] = ARGV[i]
  end
  redis.call('HSET', key, unpack(fields))
end
redis.call('PEXPIRE', key, ARGV[5])
return 1
"""
)

#: An append's write-through, after its commit: ``ARGV[4]`` the first
#: position it took, ``ARGV[5..6]`` the new updated_at and expires_at,
#: ``ARGV[7]`` TTL in ms, ``ARGV[8]`` the window, ``ARGV[9..]`` the items.
#: The entry is extended only if it ends just before ``ARGV[4]``: then it was
#: read from SQL after every earlier append and before this one (positions are
#: taken under the conversation's row lock, in commit order). Otherwise, or
#: for another epoch, the entry (a token included) is deleted, as
#: ``INVALIDATE`` does.
APPEND = """
local st = redis.call('HMGET', KEYS[1], 'sql', 'ns')
if not st[2] then return 0 end
local key = ARGV[2] .. st[2] .. ':' .. ARGV[3]
local h = redis.call('HMGET', key, 'conv', 'next', 'lo', 'hi')
if st[1] ~= ARGV[1] or not h[1] or h[2] ~= ARGV[4] then
  redis.call('DEL', key)
  return 0
end
local lo, hi = tonumber(h[3]), tonumber(h[4])
for i = 9, #ARGV do
  redis.call('HSET', key, 's' .. hi, ARGV[i])
  hi = hi + 1
end
while hi - lo > tonumber(ARGV[8]) do
  redis.call('HDEL', key, 's' .. lo)
  lo = lo + 1
  redis.call('HSET', key, 'complete', '0')
end
redis.call('HSET', key, 'lo', lo, 'hi', hi, 'next', tonumber(ARGV[4]) + #ARGV - 8, 'upd', ARGV[5], 'exp', ARGV[6])
redis.call('PEXPIRE', key, ARGV[7])
return 1
"""

#: ``ARGV[1]`` the entry key's prefix, ``ARGV[2]`` its owner and conversation part.
INVALIDATE = """
local ns = redis.call('HGET', KEYS[1], 'ns')
if ns then redis.call('DEL', ARGV[1] .. ns .. ':' .. ARGV[2]) end
return 1
"""

#: A namespace above the current one and Redis's clock in microseconds; with
#: ``ARGV[1]``, also record it as made for that SQL epoch.
NEW_NAMESPACE = """
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ns = math.max(tonumber(redis.call('HGET', KEYS[1], 'ns') or '0') + 1, clock)
redis.call('HSET', KEYS[1], 'ns', string.format('%d', ns))
if ARGV[1] then redis.call('HSET', KEYS[1], 'sql', ARGV[1]) end
return 1
"""


#: How long a miss's token is kept: long enough for the SQL read of any miss
#: (a fill after it is refused, which is safe), short enough that lookups of
#: conversations that do not exist (typos, probes) leave little behind.
TOKEN_TTL_MS = 30_000
#: Slots one HMGET of ``LOOKUP`` reads, or one HSET of ``FILL`` writes, at
#: most: Lua's ``unpack`` takes about 8,000 values, and
#: ``SMG_HISTORY_CACHE_WINDOW`` has no upper bound.
SLOTS_PER_CALL = 1000


class Untrusted(Exception):
    """Redis's namespace was not made for the caller's SQL epoch (or there
    is none yet): the caller must sync before it uses the cache."""


@dataclass(frozen=True)
class Entry:
    """A hit: the conversation and its newest items, newest first;
    ``complete`` when the entry holds all of its items."""

    conversation: Conversation
    items: list[Item]
    complete: bool
    held: int  # how many items the entry holds (``items`` may be fewer)


class WindowCache:
    """The scripts above on one redis-py client. Redis errors propagate: the
    backend decides what a failure means."""

    #: Every failure of a cache operation (connection, timeout, a server
    #: refusing writes): the backend then serves from SQL.
    errors: ClassVar[tuple[type[Exception], ...]] = (rex.RedisError,)

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.state_key = f"{prefix}hc:state"
        self.entry_prefix = f"{prefix}hc:"
        self._lookup = client.register_script(LOOKUP)
        self._fill = client.register_script(FILL)
        self._append = client.register_script(APPEND)
        self._invalidate = client.register_script(INVALIDATE)
        self._new_namespace = client.register_script(NEW_NAMESPACE)

    def _run(self, script: Any, args: list[Any]) -> Any:
        """Run ``script`` (each takes the state key alone) with ``args``,
        loading it again on a server that lost it (a restart)."""
        try:
            return evalsha(self.client, script.sha, [self.state_key], args)
        except rex.NoScriptError:
            script.sha = self.client.script_load(script.script)
            return evalsha(self.client, script.sha, [self.state_key], args)

    @staticmethod
    def _entry(owner: str, conversation_id: str) -> str:
        """The owner's length keeps any owner and ID pair unambiguous."""
        return f"{len(owner)}:{owner}:{conversation_id}"

    def lookup(self, epoch: int, owner: str, conversation_id: str, want: int) -> Entry | str:
        """The cached entry with up to ``want`` of its newest items (-1: all
        it holds), or the token a fill must present."""
        args = [epoch, self.entry_prefix, self._entry(owner, conversation_id), TOKEN_TTL_MS, want, SLOTS_PER_CALL]
        found = self._run(self._lookup, args)
        if found is None:
            raise Untrusted()
        if found[0] == b"miss":
            return found[1].decode()
        cid, owner, created_at, metadata = jsonfast.loads(found[1])
        conv = Conversation(cid, owner, created_at, float(found[2]), metadata, _optional_float(found[3]))
        items = _items(conversation_id, found[6:])
        return Entry(conv, items, complete=found[4] == b"1", held=int(found[5]))

    def fill(self, epoch: int, token: str, window: Window, ttl: float) -> bool:
        """Store ``window`` (read from SQL after ``token`` was taken) for
        ``ttl`` seconds if ``token`` is still current."""
        conv = window.conversation
        args = [
            epoch,
            self.entry_prefix,
            self._entry(conv.owner, conv.id),
            token,
            _ms(ttl),
            jsonfast.dumps([conv.id, conv.owner, conv.created_at, conv.metadata]),
            repr(conv.updated_at),
            _stamp(conv.expires_at),
            "1" if window.complete else "0",
            window.next_position,
            SLOTS_PER_CALL,
            *(_row_json(row) for row in reversed(window.items)),
        ]
        done = self._run(self._fill, args)
        if done is None:
            raise Untrusted()
        return done == 1

    def append(
        self,
        epoch: int,
        owner: str,
        conversation_id: str,
        items: list[Item],
        *,
        updated_at: float,
        expires_at: float | None,
        ttl: float,
        window: int,
    ) -> bool:
        """Extend the entry with just-committed ``items`` (see ``APPEND``), or
        delete it. True if extended."""
        args = [
            epoch,
            self.entry_prefix,
            self._entry(owner, conversation_id),
            items[0].position,
            repr(updated_at),
            _stamp(expires_at),
            _ms(ttl),
            window,
            *(_item_json(item) for item in items),
        ]
        return self._run(self._append, args) == 1

    def invalidate(self, owner: str, conversation_id: str) -> None:
        self._run(self._invalidate, [self.entry_prefix, self._entry(owner, conversation_id)])

    def new_namespace(self) -> None:
        self._run(self._new_namespace, [])

    def sync(self, epoch: int) -> None:
        self._run(self._new_namespace, [epoch])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _stamp(value: float | None) -> str:
    return "" if value is None else repr(value)


def _optional_float(raw: bytes) -> float | None:
    return float(raw) if raw else None


def _item_json(item: Item) -> str:
    return jsonfast.dumps([item.id, item.type, item.payload, item.created_at, item.role, item.status, item.position])


def _row_json(row: tuple[Any, ...]) -> str:
    """What ``_item_json`` writes, from a row of ``sql/window.py``: its
    payload is JSON text already, put in as it is."""
    item_id, kind, payload, created_at, role, status, position = row
    head, tail = jsonfast.dumps([item_id, kind]), jsonfast.dumps([created_at, role, status, position])
    return f"{head[:-1]},{payload},{tail[1:]}"


def _items(conversation_id: str, raw: list[bytes]) -> list[Item]:
    """Items as ``fill`` stores them: each a JSON list of its fields but the
    conversation's ID (cheaper than a dict both ways), parsed as one JSON
    array (one parser call instead of one per item: 24 µs instead of 29 for
    20 chat messages)."""
    return [
        Item(item_id, conversation_id, kind, payload, created_at, role, status, position)
        for item_id, kind, payload, created_at, role, status, position in jsonfast.loads(b"[" + b",".join(raw) + b"]")
    ]
