"""Lua scripts of the Redis backend, and the key layout they work on.

Every write to one conversation (or one response) is one script run over keys
that share a hash tag, so it is atomic on a standalone server and on a cluster
alike. Each script returns a status word first (``ok``, ``nf``, ``dup``...), so
the Python side turns outcomes into the same errors the memory backend raises.

Conversation keys, tagged ``{c:<conversation id>}``:

- ``meta``: hash ``o`` owner, ``c`` created_at, ``u`` updated_at, ``m``
  metadata JSON, ``e`` expires_at (empty: never), ``n`` next item position.
- ``items``: sorted set of item IDs scored by position (pages and ``recent``
  are one range read, whatever the length).
- ``data``: hash item ID -> item JSON (payload, type, role, status, created_at).

The owner's conversation index (tag ``{o:<owner>}``) may live in another slot;
on a standalone server the scripts update it in the same run (``KEYS[4]``), on
a cluster the backend updates it in a separate call (see ``INDEX``).
"""

from __future__ import annotations

# Shared helpers, prepended to every script.
_PRELUDE = r"""
local function live(meta, owner, now)
  local f = redis.call('HMGET', meta, 'o', 'e')
  if f[1] ~= owner then return false end
  if f[2] and f[2] ~= '' and tonumber(f[2]) <= tonumber(now) then return false end
  return true
end
local function expire(deadline, keys)
  for _, key in ipairs(keys) do
    if deadline == '' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, deadline) end
  end
end
-- An index serves many conversations: its TTL may grow, never shrink.
local function extend(key, deadline)
  if deadline == '' then redis.call('PERSIST', key) return end
  local t = redis.call('PEXPIRETIME', key)
  if t == -1 or (t >= 0 and t < tonumber(deadline)) then redis.call('PEXPIREAT', key, deadline) end
end
local function duplicate(data, from)
  local seen = {}
  for i = from, #ARGV, 2 do
    local id = ARGV[i]
    if seen[id] or redis.call('HEXISTS', data, id) == 1 then return id end
    seen[id] = true
  end
  return nil
end
-- Item IDs with their positions, then their JSON: one page's reply.
local function with_values(data, scored)
  if #scored == 0 then return {'ok', scored, {}} end
  local ids = {}
  for i = 1, #scored, 2 do ids[#ids + 1] = scored[i] end
  return {'ok', scored, redis.call('HMGET', data, unpack(ids))}
end
local function append(meta, items, data, from)
  local count = (#ARGV - from + 1) / 2
  if count == 0 then return tonumber(redis.call('HGET', meta, 'n')) end
  local first = redis.call('HINCRBY', meta, 'n', count) - count
  local scored, fields = {}, {}
  for i = 0, count - 1 do
    local id = ARGV[from + 2 * i]
    scored[#scored + 1] = first + i
    scored[#scored + 1] = id
    fields[#fields + 1] = id
    fields[#fields + 1] = ARGV[from + 2 * i + 1]
  end
  redis.call('ZADD', items, unpack(scored))
  redis.call('HSET', data, unpack(fields))
  return first
end
"""

#: KEYS meta, items, data[, index]; ARGV owner, created, updated, metadata,
#: expires, deadline_ms, conversation id, then (item id, item JSON) pairs.
CREATE = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local dup = duplicate(KEYS[3], 8)
if dup then return {'dup', dup} end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'c', ARGV[2], 'u', ARGV[3], 'm', ARGV[4], 'e', ARGV[5], 'n', 0)
local first = append(KEYS[1], KEYS[2], KEYS[3], 8)
expire(ARGV[6], {KEYS[1], KEYS[2], KEYS[3]})
if KEYS[4] then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[7])
  extend(KEYS[4], ARGV[6])
end
return {'ok', first}
"""

#: KEYS meta, items, data[, index]; ARGV owner, now, updated, expires,
#: deadline_ms, then (item id, item JSON) pairs.
ADD = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
local dup = duplicate(KEYS[3], 6)
if dup then return {'dup', dup} end
local first = append(KEYS[1], KEYS[2], KEYS[3], 6)
redis.call('HSET', KEYS[1], 'u', ARGV[3], 'e', ARGV[4])
expire(ARGV[5], {KEYS[1], KEYS[2], KEYS[3]})
if KEYS[4] then extend(KEYS[4], ARGV[5]) end
return {'ok', first}
"""

#: KEYS meta, items, data[, index]; ARGV owner, now, metadata, updated,
#: expires, deadline_ms. Returns the meta hash as a flat list.
UPDATE = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
redis.call('HSET', KEYS[1], 'm', ARGV[3], 'u', ARGV[4], 'e', ARGV[5])
expire(ARGV[6], {KEYS[1], KEYS[2], KEYS[3]})
if KEYS[4] then extend(KEYS[4], ARGV[6]) end
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

#: KEYS meta, items, data[, index]; ARGV owner, now, conversation id.
DELETE = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[3]) end
return {'ok'}
"""

#: KEYS meta, items, data; ARGV owner, now, after (empty: none), count, order.
#: Returns item IDs with their positions, then their JSON.
PAGE = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
local asc = ARGV[5] == 'asc'
local bound = asc and '-inf' or '+inf'
if ARGV[3] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if not score then return {'after'} end
  bound = '(' .. score
end
local scored
if asc then
  scored = redis.call('ZRANGE', KEYS[2], bound, '+inf', 'BYSCORE', 'LIMIT', 0, ARGV[4], 'WITHSCORES')
else
  scored = redis.call('ZRANGE', KEYS[2], bound, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[4], 'WITHSCORES')
end
return with_values(KEYS[3], scored)
"""

#: KEYS meta, items, data; ARGV owner, now, count. The last ``count`` items,
#: newest first.
RECENT = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
return with_values(KEYS[3], redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1, 'REV', 'WITHSCORES'))
"""

#: KEYS meta, items, data; ARGV owner, now, item id.
GET_ITEM = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
if not score then return {'nf_item'} end
return {'ok', score, redis.call('HGET', KEYS[3], ARGV[3])}
"""

#: KEYS meta, items, data; ARGV owner, now, item id.
DELETE_ITEM = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return {'nf_item'} end
redis.call('HDEL', KEYS[3], ARGV[3])
return {'ok'}
"""

#: Owner indexes (one slot of their own). KEYS index[, side hash]; ARGV
#: member, score (empty: only extend the TTL), deadline_ms[, side value].
#: The side hash maps a feedback ID to its response ID.
INDEX = r"""
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
extend(KEYS[1], ARGV[3])
if KEYS[2] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  extend(KEYS[2], ARGV[3])
end
return {'ok'}
"""

#: KEYS index; ARGV after (empty: from the start), skip, count, order.
#: A window of members with scores, counted from the cursor.
INDEX_PAGE = r"""
local start = tonumber(ARGV[2])
local asc = ARGV[4] == 'asc'
if ARGV[1] ~= '' then
  local rank
  if asc then rank = redis.call('ZRANK', KEYS[1], ARGV[1]) else rank = redis.call('ZREVRANK', KEYS[1], ARGV[1]) end
  if not rank then return {'after'} end
  start = start + rank + 1
end
local stop = start + tonumber(ARGV[3]) - 1
if asc then return {'ok', redis.call('ZRANGE', KEYS[1], start, stop, 'WITHSCORES')} end
return {'ok', redis.call('ZRANGE', KEYS[1], start, stop, 'REV', 'WITHSCORES')}
"""

#: Response keys, tagged ``{r:<response id>}``: ``resp`` hash (``o`` owner,
#: ``e`` expires_at, ``d`` JSON) and ``fb`` hash (``i`` feedback ID, ``d``
#: JSON). KEYS resp, fb; ARGV owner, expires, JSON, deadline_ms.
STORE_RESPONSE = r"""
local owner = redis.call('HGET', KEYS[1], 'o')
if owner and owner ~= ARGV[1] then return {'taken'} end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'e', ARGV[2], 'd', ARGV[3])
expire(ARGV[4], {KEYS[1], KEYS[2]})
return {'ok'}
"""

#: KEYS resp, fb; ARGV owner, now. Returns the deleted feedback's ID, if any.
DELETE_RESPONSE = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
local feedback = redis.call('HGET', KEYS[2], 'i')
redis.call('DEL', KEYS[1], KEYS[2])
return {'ok', feedback}
"""

#: KEYS resp, fb; ARGV owner, now, new feedback ID, JSON. Keeps the ID of an
#: earlier feedback and gives the feedback the response's expiry.
SUBMIT_FEEDBACK = r"""
if not live(KEYS[1], ARGV[1], ARGV[2]) then return {'nf'} end
local id = redis.call('HGET', KEYS[2], 'i') or ARGV[3]
redis.call('HSET', KEYS[2], 'i', id, 'd', ARGV[4])
local t = redis.call('PEXPIRETIME', KEYS[1])
if t > 0 then redis.call('PEXPIREAT', KEYS[2], t) else redis.call('PERSIST', KEYS[2]) end
return {'ok', id}
"""

SCRIPTS: dict[str, str] = {
    name: _PRELUDE + body
    for name, body in {
        "create": CREATE,
        "add": ADD,
        "update": UPDATE,
        "delete": DELETE,
        "page": PAGE,
        "recent": RECENT,
        "get_item": GET_ITEM,
        "delete_item": DELETE_ITEM,
        "index": INDEX,
        "index_page": INDEX_PAGE,
        "store_response": STORE_RESPONSE,
        "delete_response": DELETE_RESPONSE,
        "submit_feedback": SUBMIT_FEEDBACK,
    }.items()
}
