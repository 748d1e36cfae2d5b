"""The Redis half of the hybrid backend: a window cache of hot conversations.

One Redis hash per cached conversation holds its record (``conv``) and its
newest items (``i0`` the newest, ``i1``..., ``n`` of them, with ``complete``
when they are all of its items), so a hit reads only the items it needs.
Every operation is one Lua script, so each is atomic and one round trip:

- ``lookup`` answers a hit, or a miss with a fill **token**; the token is kept
  in the hash (made once, shared by concurrent missers).
- ``fill`` writes record and window only if the hash still holds that token.
- ``invalidate`` deletes the hash. A writer runs it after its SQL commit and
  before it returns. Why this never leaves a stale entry: a filler read SQL
  before the commit; if its fill comes after the delete, the token is gone and
  the fill is refused; if before, the delete removes it.
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

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import redis.exceptions as rex

from ...records import Conversation, Item

#: ``KEYS[1]`` is the state hash; ``ARGV[1]`` the caller's SQL epoch,
#: ``ARGV[2]`` the entry key's prefix, ``ARGV[3]`` its owner and conversation part.
_ENTRY = """
local st = redis.call('HMGET', KEYS[1], 'sql', 'ns')
if st[1] ~= ARGV[1] or not st[2] then return false end
local key = ARGV[2] .. st[2] .. ':' .. ARGV[3]
"""

#: ``ARGV[4]``: TTL in ms of a token kept for a miss; ``ARGV[5]``: how many
#: of the newest items a hit returns (-1: all the entry holds).
LOOKUP = (
    _ENTRY
    + """
local h = redis.call('HMGET', key, 'tok', 'conv', 'n', 'complete')
if h[2] then
  local n = tonumber(h[3])
  local want = tonumber(ARGV[5])
  if want < 0 or want > n then want = n end
  local out = {'hit', h[2], h[4], n}
  for i = 0, want - 1 do out[#out + 1] = redis.call('HGET', key, 'i' .. i) end
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

#: ``ARGV[4]`` the token, ``ARGV[5]`` TTL in ms, ``ARGV[6]`` the record,
#: ``ARGV[7]`` complete, ``ARGV[8..]`` the items, newest first.
FILL = (
    _ENTRY
    + """
if redis.call('HGET', key, 'tok') ~= ARGV[4] then return 0 end
redis.call('HSET', key, 'conv', ARGV[6], 'complete', ARGV[7], 'n', #ARGV - 7)
for i = 8, #ARGV do redis.call('HSET', key, 'i' .. (i - 8), ARGV[i]) end
redis.call('PEXPIRE', key, ARGV[5])
return 1
"""
)

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
    held: int = 0  # how many items the entry holds (``items`` may be fewer)


class WindowCache:
    """The scripts above on one redis-py client. Redis errors propagate: the
    backend decides what a failure means."""

    #: Every failure of a cache operation (connection, timeout, a server
    #: refusing writes): the backend then serves from SQL.
    errors: ClassVar[tuple[type[Exception], ...]] = (rex.RedisError,)

    def __init__(self, client: Any, prefix: str, *, ttl: float) -> None:
        self.client = client
        self.state_key = f"{prefix}hc:state"
        self.entry_prefix = f"{prefix}hc:"
        self.ttl_ms = max(1, int(ttl * 1000))
        self._lookup = client.register_script(LOOKUP)
        self._fill = client.register_script(FILL)
        self._invalidate = client.register_script(INVALIDATE)
        self._new_namespace = client.register_script(NEW_NAMESPACE)

    @staticmethod
    def _entry(owner: str, conversation_id: str) -> str:
        """The owner's length keeps any owner and ID pair unambiguous."""
        return f"{len(owner)}:{owner}:{conversation_id}"

    def lookup(self, epoch: int, owner: str, conversation_id: str, want: int) -> Entry | str:
        """The cached entry with up to ``want`` of its newest items (-1: all
        it holds), or the token a fill must present."""
        args = [epoch, self.entry_prefix, self._entry(owner, conversation_id), self.ttl_ms, want]
        found = self._lookup(keys=[self.state_key], args=args)
        if found is None:
            raise Untrusted()
        if found[0] == b"miss":
            return found[1].decode()
        conv = Conversation(**json.loads(found[1]))
        items = [Item(**json.loads(raw)) for raw in found[4:]]
        return Entry(conv, items, complete=found[2] == b"1", held=int(found[3]))

    def fill(self, epoch: int, token: str, entry: Entry, ttl: float) -> bool:
        """Store ``entry`` for ``ttl`` seconds if ``token`` is still current."""
        conv = entry.conversation
        args = [
            epoch,
            self.entry_prefix,
            self._entry(conv.owner, conv.id),
            token,
            max(1, int(ttl * 1000)),
            _json(asdict(conv)),
            "1" if entry.complete else "0",
            *(_json(asdict(item)) for item in entry.items),
        ]
        done = self._fill(keys=[self.state_key], args=args)
        if done is None:
            raise Untrusted()
        return done == 1

    def invalidate(self, owner: str, conversation_id: str) -> None:
        self._invalidate(keys=[self.state_key], args=[self.entry_prefix, self._entry(owner, conversation_id)])

    def new_namespace(self) -> None:
        self._new_namespace(keys=[self.state_key], args=[])

    def sync(self, epoch: int) -> None:
        self._new_namespace(keys=[self.state_key], args=[epoch])


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
