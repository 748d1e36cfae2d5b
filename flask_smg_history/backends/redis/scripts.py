"""Lua scripts of the Redis backend, and the key layout they work on.

Every key of one owner shares the hash tag ``{o:<length>:<owner>}`` (the
length makes the owner part unambiguous whatever it contains), so every key an
operation touches is in one cluster slot and every write is one script:
atomic on a standalone server and on a cluster alike. That includes what spans
conversations: an item linked into several of them (``item_reference``), the
owner's indexes, erasure. Each script returns a status word first (``ok``,
``nf``, ``dup``...), so the Python side raises the memory backend's errors.

``T`` below is ``<prefix>{o:<length>:<owner>}``. Every script gets ``T:convs``
as ``KEYS[1]`` (it routes the call to the owner's slot) and derives the other
key names from it: which conversations an item lives in is only known inside
the script.

- ``T:c:<cid>:meta``: hash ``o`` owner, ``c`` created_at, ``u`` updated_at,
  ``m`` metadata JSON, ``e`` expires_at (empty: never), ``n`` next position.
- ``T:c:<cid>:items``: sorted set of the linked item IDs scored by position.
- ``T:c:<cid>:data``: hash item ID -> item JSON, for the items this
  conversation alone links (its own).
- ``T:c:<cid>:shared``: set of the linked item IDs stored as shared items.
- ``T:s:<item id>``: a shared item, linked by more than one conversation:
  hash ``d`` item JSON and one field ``l:<cid>`` per linking conversation.
- ``T:items``: hash item ID -> the conversation holding it in ``data``; it
  finds an owner's item for a reference without scanning conversations.
- ``T:convs`` / ``T:resps``: sorted sets of conversation / response IDs
  scored by created_at; ``T:fb`` feedback IDs scored by created_at, and
  ``T:fbref`` feedback ID -> response ID.
- ``T:activity``: sorted set of the same conversation IDs as ``T:convs``,
  scored by updated_at (the listing by activity). Every script that writes a
  conversation's ``u`` or adds or removes a ``T:convs`` entry writes it too.
  An owner whose keys predate it gets it built, from ``T:convs`` and the meta
  hashes, by the first listing that finds the two sets of different sizes
  (``sync_activity``); ``COMPACT`` (``purge``) reconciles it entry by entry.
- ``T:r:<rid>:resp``: hash ``o`` owner, ``e`` expires_at, ``d`` JSON;
  ``T:r:<rid>:fb``: hash ``i`` feedback ID, ``d`` JSON.

An item is stored once. It starts in its conversation's ``data``; the first
reference from another conversation moves it to ``T:s:<id>`` (one script, so
no reader sees it in neither place). Every write to a conversation refreshes
the TTL of its four keys and extends (never shortens) the TTL of each shared
item it links and of the owner's indexes, so a shared item lives as long as
the longest-lived conversation linking it.
"""

from __future__ import annotations

from .search import SEARCH

# Shared helpers, prepended to every script.
_PRELUDE = r"""
local T = string.sub(KEYS[1], 1, -7)
local DIR = T .. ':items'
local ACT = T .. ':activity'
local function ck(cid, kind) return T .. ':c:' .. cid .. ':' .. kind end
local function sk(id) return T .. ':s:' .. id end
local function rk(rid, kind) return T .. ':r:' .. rid .. ':' .. kind end
local function conv_keys(cid) return {ck(cid, 'meta'), ck(cid, 'items'), ck(cid, 'data'), ck(cid, 'shared')} end
local function live(meta, now)
  local e = redis.call('HGET', meta, 'e')
  if not e then return false end
  if e ~= '' and tonumber(e) <= tonumber(now) then return false end
  return true
end
local function expire(deadline, keys)
  for _, key in ipairs(keys) do
    if deadline == '' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, deadline) end
  end
end
-- A key that serves several records: its TTL may grow, never shrink.
local function extend(key, deadline)
  if deadline == '' then redis.call('PERSIST', key) return end
  local t = redis.call('PEXPIRETIME', key)
  if t == -1 or (t >= 0 and t < tonumber(deadline)) then redis.call('PEXPIREAT', key, deadline) end
end
-- Give a conversation's keys one deadline and extend what it shares. With
-- no deadline, a conversation whose meta and owner whose index never expire
-- has nothing else that does (touch keeps a conversation's keys on one
-- deadline, and the owner's indexes on one), so only its shared items are
-- made persistent: the common case costs 3 calls instead of 8.
local function touch(cid, deadline)
  if deadline == '' and redis.call('PTTL', ck(cid, 'meta')) == -1 and redis.call('PTTL', KEYS[1]) == -1 then
    for _, id in ipairs(redis.call('SMEMBERS', ck(cid, 'shared'))) do redis.call('PERSIST', sk(id)) end
    return
  end
  expire(deadline, conv_keys(cid))
  for _, id in ipairs(redis.call('SMEMBERS', ck(cid, 'shared'))) do extend(sk(id), deadline) end
  extend(KEYS[1], deadline)
  extend(ACT, deadline)
  extend(DIR, deadline)
end
-- The conversation's own deadline, as an argument for touch.
local function deadline_of(cid)
  local t = redis.call('PEXPIRETIME', ck(cid, 'meta'))
  if t < 0 then return '' end
  return tostring(t)
end
-- Where the owner's item is stored: 'shared', the conversation holding it,
-- or nil. A directory entry whose conversation is gone is removed here.
local function locate(id, now)
  if redis.call('EXISTS', sk(id)) == 1 then return 'shared' end
  local home = redis.call('HGET', DIR, id)
  if not home then return nil end
  if live(ck(home, 'meta'), now) and redis.call('HEXISTS', ck(home, 'data'), id) == 1 then return home end
  redis.call('HDEL', DIR, id)
  return nil
end
-- The replies of ``cmd`` over ``args`` (after ``key``, unless it is nil),
-- in slices that ``unpack`` can take (a turn may bring hundreds of items).
local function sliced(cmd, key, args)
  local out = {}
  for s = 1, #args, 1000 do
    local e = math.min(s + 999, #args)
    local reply
    if key then reply = redis.call(cmd, key, unpack(args, s, e)) else reply = redis.call(cmd, unpack(args, s, e)) end
    out[#out + 1] = reply
  end
  return out
end
-- Check a whole batch of (id, JSON) pairs from ARGV[from]; an empty JSON is
-- a reference. Returns an error reply, or nil when all of it may be written.
-- One EXISTS over the batch's shared keys and one HMGET of its directory
-- entries find what the owner already has: only such an ID is located (in
-- this conversation's data, or shared) and needs the ZSCORE, so a batch of
-- new items costs 2 calls, however many it holds.
local function check(cid, from, now)
  local ids, shared = {}, {}
  for i = from, #ARGV, 2 do
    ids[#ids + 1] = ARGV[i]
    shared[#shared + 1] = sk(ARGV[i])
  end
  if #ids == 0 then return nil end
  local any_shared = false
  for _, n in ipairs(sliced('EXISTS', nil, shared)) do any_shared = any_shared or n > 0 end
  local homes = {}
  for _, part in ipairs(sliced('HMGET', DIR, ids)) do
    for _, home in ipairs(part) do homes[#homes + 1] = home end
  end
  local seen = {}
  for n, id in ipairs(ids) do
    if seen[id] then return {'dup', id} end
    seen[id] = true
    local where = nil
    if any_shared or homes[n] then where = locate(id, now) end
    if where and redis.call('ZSCORE', ck(cid, 'items'), id) then return {'dup', id} end
    if ARGV[from + 2 * n - 1] == '' then
      if not where then return {'nf_item', id} end
    elseif where then
      return {'exists', id}
    end
  end
  return nil
end
-- Link one item at a position: a new one into ``data``, a reference by
-- moving the item to its shared key (the first time) and adding this link.
local function link(cid, id, json, pos, now)
  redis.call('ZADD', ck(cid, 'items'), pos, id)
  if json ~= '' then
    redis.call('HSET', ck(cid, 'data'), id, json)
    redis.call('HSET', DIR, id, cid)
    return
  end
  local where = locate(id, now)
  local s = sk(id)
  if where ~= 'shared' then
    redis.call('HSET', s, 'd', redis.call('HGET', ck(where, 'data'), id), 'l:' .. where, 1)
    redis.call('HDEL', ck(where, 'data'), id)
    redis.call('HDEL', DIR, id)
    redis.call('SADD', ck(where, 'shared'), id)
    expire(deadline_of(where), {ck(where, 'shared')})
    extend(s, deadline_of(where))
  end
  redis.call('HSET', s, 'l:' .. cid, 1)
  redis.call('SADD', ck(cid, 'shared'), id)
end
-- The JSON of the referenced items of a batch just linked (all shared now).
local function referenced(from)
  local out = {}
  for i = from, #ARGV, 2 do
    if ARGV[i + 1] == '' then out[#out + 1] = redis.call('HGET', sk(ARGV[i]), 'd') end
  end
  return out
end
-- Link the checked (id, JSON) pairs from ARGV[from] at the conversation's
-- next positions: the new items in three calls whatever their number (their
-- positions, their JSON, their directory entries), each reference by
-- ``link``. Returns the first position.
local function append(cid, from, now)
  local count = (#ARGV - from + 1) / 2
  if count == 0 then return tonumber(redis.call('HGET', ck(cid, 'meta'), 'n')) end
  local first = redis.call('HINCRBY', ck(cid, 'meta'), 'n', count) - count
  local scored, docs, homes = {}, {}, {}
  for i = 0, count - 1 do
    local id, json = ARGV[from + 2 * i], ARGV[from + 2 * i + 1]
    if json == '' then
      link(cid, id, json, first + i, now)
    else
      scored[#scored + 1] = first + i
      scored[#scored + 1] = id
      docs[#docs + 1] = id
      docs[#docs + 1] = json
      homes[#homes + 1] = id
      homes[#homes + 1] = cid
    end
  end
  sliced('ZADD', ck(cid, 'items'), scored)
  sliced('HSET', ck(cid, 'data'), docs)
  sliced('HSET', DIR, homes)
  return first
end
-- Drop one conversation's link to an item (already out of its ``items``).
-- Returns 1 when the item itself went. Links of conversations that expired
-- by TTL are dropped on the way.
local function unlink(cid, id)
  if redis.call('HDEL', ck(cid, 'data'), id) == 1 then
    if redis.call('HGET', DIR, id) == cid then redis.call('HDEL', DIR, id) end
    return 1
  end
  if redis.call('SREM', ck(cid, 'shared'), id) == 0 then return 0 end
  local s = sk(id)
  redis.call('HDEL', s, 'l:' .. cid)
  for _, f in ipairs(redis.call('HKEYS', s)) do
    if f ~= 'd' and not redis.call('ZSCORE', ck(string.sub(f, 3), 'items'), id) then redis.call('HDEL', s, f) end
  end
  if redis.call('HLEN', s) <= 1 then
    redis.call('DEL', s)
    return 1
  end
  return 0
end
-- Remove a conversation with its links. Returns the items that went.
local function drop(cid)
  local removed = 0
  for _, id in ipairs(redis.call('ZRANGE', ck(cid, 'items'), 0, -1)) do removed = removed + unlink(cid, id) end
  redis.call('DEL', unpack(conv_keys(cid)))
  redis.call('ZREM', KEYS[1], cid)
  redis.call('ZREM', ACT, cid)
  return removed
end
-- The JSON of items linked by a conversation, in the order of ``ids``.
local function values(cid, ids)
  if #ids == 0 then return {} end
  local out = redis.call('HMGET', ck(cid, 'data'), unpack(ids))
  for i = 1, #ids do
    if not out[i] then out[i] = redis.call('HGET', sk(ids[i]), 'd') end
  end
  return out
end
-- Item IDs with their positions, then their JSON: one page's reply.
local function with_values(cid, scored)
  local ids = {}
  for i = 1, #scored, 2 do ids[#ids + 1] = scored[i] end
  return {'ok', scored, values(cid, ids)}
end
-- ``T:activity`` lives as long as ``T:convs``: for when it was written
-- outside ``touch``.
local function activity_ttl()
  if redis.call('EXISTS', ACT) == 0 then return end
  local t = redis.call('PEXPIRETIME', KEYS[1])
  if t >= 0 then extend(ACT, tostring(t)) elseif t == -1 then redis.call('PERSIST', ACT) end
end
-- Make ``T:activity`` hold exactly the members of ``T:convs``, scored by
-- their updated_at, when the two differ in size: an owner whose keys predate
-- it (or were written meanwhile by a version without it). A ``T:convs``
-- entry whose conversation is gone is removed on the way. O(conversations),
-- once; afterwards every write keeps the two in step.
local function sync_activity()
  if redis.call('ZCARD', KEYS[1]) == redis.call('ZCARD', ACT) then return end
  for _, cid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local u = redis.call('HGET', ck(cid, 'meta'), 'u')
    if u then redis.call('ZADD', ACT, u, cid) else redis.call('ZREM', KEYS[1], cid) end
  end
  if redis.call('ZCARD', KEYS[1]) ~= redis.call('ZCARD', ACT) then
    for _, cid in ipairs(redis.call('ZRANGE', ACT, 0, -1)) do
      if not redis.call('ZSCORE', KEYS[1], cid) then redis.call('ZREM', ACT, cid) end
    end
  end
  activity_ttl()
end
-- ADD's two halves, which TURN runs around its own check: the checks of an
-- append of the (id, JSON) pairs from ARGV[from] to a live conversation (an
-- error reply, or nil), then its writes, with the conversation's new
-- updated_at, expires_at and TTL deadline.
local function add_check(cid, from, now)
  if not live(ck(cid, 'meta'), now) then return {'nf'} end
  return check(cid, from, now)
end
local function add_write(cid, from, now, updated, expires, deadline)
  local first = append(cid, from, now)
  redis.call('HSET', ck(cid, 'meta'), 'u', updated, 'e', expires)
  redis.call('ZADD', ACT, updated, cid)
  touch(cid, deadline)
  return {'ok', first, referenced(from)}
end
-- STORE_RESPONSE's writes: the response's hash, its TTL, the owner's index.
local function put_response(rid, owner, created, expires, json, deadline)
  redis.call('HSET', rk(rid, 'resp'), 'o', owner, 'e', expires, 'd', json)
  expire(deadline, {rk(rid, 'resp'), rk(rid, 'fb')})
  redis.call('ZADD', T .. ':resps', created, rid)
  extend(T .. ':resps', deadline)
end
local function drop_response(rid)
  local feedback = redis.call('HGET', rk(rid, 'fb'), 'i')
  local found = redis.call('DEL', rk(rid, 'resp'))
  redis.call('DEL', rk(rid, 'fb'))
  redis.call('ZREM', T .. ':resps', rid)
  if feedback then
    redis.call('ZREM', T .. ':fb', feedback)
    redis.call('HDEL', T .. ':fbref', feedback)
  end
  return found, feedback
end
"""

#: ARGV owner, created, updated, metadata, expires, deadline_ms, conversation
#: id, now, then (item id, item JSON or '' for a reference) pairs. Returns
#: the first position and the JSON of the referenced items.
CREATE = r"""
local cid = ARGV[7]
if redis.call('EXISTS', ck(cid, 'meta')) == 1 then return {'exists'} end
local bad = check(cid, 9, ARGV[8])
if bad then return bad end
redis.call('HSET', ck(cid, 'meta'), 'o', ARGV[1], 'c', ARGV[2], 'u', ARGV[3], 'm', ARGV[4], 'e', ARGV[5], 'n', 0)
redis.call('ZADD', KEYS[1], ARGV[2], cid)
redis.call('ZADD', ACT, ARGV[3], cid)
local first = append(cid, 9, ARGV[8])
touch(cid, ARGV[6])
return {'ok', first, referenced(9)}
"""

#: ARGV conversation id, now, updated, expires, deadline_ms, then (item id,
#: item JSON or '') pairs.
ADD = r"""
local bad = add_check(ARGV[1], 6, ARGV[2])
if bad then return bad end
return add_write(ARGV[1], 6, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

#: ARGV conversation id, now, metadata JSON, updated, expires, deadline_ms,
#: mode (``replace``: the JSON object is the new map; ``patch``: its keys are
#: set, a JSON null removes one, others stay), most pairs allowed. Returns the
#: meta hash as a flat list, or ``too_many`` with the merged count (nothing
#: written).
UPDATE = r"""
local cid = ARGV[1]
local meta = ck(cid, 'meta')
if not live(meta, ARGV[2]) then return {'nf'} end
local merged = ARGV[3]
if ARGV[7] == 'patch' then
  local patch = cjson.decode(ARGV[3])
  local stored = cjson.decode(redis.call('HGET', meta, 'm') or '{}')
  if type(stored) ~= 'table' then return redis.error_reply('user_script: metadata is not an object') end
  local current, count = {}, 0
  for key, value in pairs(stored) do current[key] = value end
  for key, value in pairs(patch) do
    if value == cjson.null then current[key] = nil else current[key] = value end
  end
  for _ in pairs(current) do count = count + 1 end
  if count > tonumber(ARGV[8]) then return {'too_many', count} end
  -- cjson writes an empty table as [], and the stored map must stay an object
  if count == 0 then merged = '{}' else merged = cjson.encode(current) end
end
redis.call('HSET', meta, 'm', merged, 'u', ARGV[4], 'e', ARGV[5])
redis.call('ZADD', ACT, ARGV[4], cid)
touch(cid, ARGV[6])
return {'ok', redis.call('HGETALL', meta)}
"""

#: ARGV conversation id, now. Returns the number of items that went.
DELETE = r"""
if not live(ck(ARGV[1], 'meta'), ARGV[2]) then return {'nf'} end
return {'ok', drop(ARGV[1])}
"""

#: ARGV conversation id, now, after (empty: none), count, order[, after
#: this position instead: export's cursor, which survives the deletion of
#: the item it stopped at]. Returns item IDs with their positions, then their
#: JSON.
PAGE = r"""
local cid = ARGV[1]
if not live(ck(cid, 'meta'), ARGV[2]) then return {'nf'} end
local items = ck(cid, 'items')
local asc = ARGV[5] == 'asc'
local bound = asc and '-inf' or '+inf'
if ARGV[3] ~= '' then
  local score = redis.call('ZSCORE', items, ARGV[3])
  if not score then return {'after'} end
  bound = '(' .. score
elseif ARGV[6] then
  bound = '(' .. ARGV[6]
end
local scored
if asc then
  scored = redis.call('ZRANGE', items, bound, '+inf', 'BYSCORE', 'LIMIT', 0, ARGV[4], 'WITHSCORES')
else
  scored = redis.call('ZRANGE', items, bound, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[4], 'WITHSCORES')
end
return with_values(cid, scored)
"""

#: ARGV conversation id, now, count. The last ``count`` items, newest first.
RECENT = r"""
local cid = ARGV[1]
if not live(ck(cid, 'meta'), ARGV[2]) then return {'nf'} end
return with_values(cid, redis.call('ZRANGE', ck(cid, 'items'), 0, tonumber(ARGV[3]) - 1, 'REV', 'WITHSCORES'))
"""

#: ARGV conversation id, now, item id.
GET_ITEM = r"""
local cid = ARGV[1]
if not live(ck(cid, 'meta'), ARGV[2]) then return {'nf'} end
local score = redis.call('ZSCORE', ck(cid, 'items'), ARGV[3])
if not score then return {'nf_item'} end
return {'ok', score, values(cid, {ARGV[3]})[1]}
"""

#: ARGV conversation id, now, item id.
DELETE_ITEM = r"""
local cid = ARGV[1]
if not live(ck(cid, 'meta'), ARGV[2]) then return {'nf'} end
if redis.call('ZREM', ck(cid, 'items'), ARGV[3]) == 0 then return {'nf_item'} end
unlink(cid, ARGV[3])
return {'ok'}
"""

#: KEYS owner's ``convs`` (routing only), index; ARGV after (empty: from the
#: start), skip, count, order. A window of members with scores. On
#: ``T:activity`` it first builds that index if the owner's predates it.
INDEX_PAGE = r"""
local index = KEYS[2]
if index == ACT then sync_activity() end
local start = tonumber(ARGV[2])
local asc = ARGV[4] == 'asc'
if ARGV[1] ~= '' then
  local rank
  if asc then rank = redis.call('ZRANK', index, ARGV[1]) else rank = redis.call('ZREVRANK', index, ARGV[1]) end
  if not rank then return {'after'} end
  start = start + rank + 1
end
local stop = start + tonumber(ARGV[3]) - 1
if asc then return {'ok', redis.call('ZRANGE', index, start, stop, 'WITHSCORES')} end
return {'ok', redis.call('ZRANGE', index, start, stop, 'REV', 'WITHSCORES')}
"""

#: ARGV response id, owner, created, expires, JSON, deadline_ms.
STORE_RESPONSE = r"""
put_response(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return {'ok'}
"""

#: One turn of the Responses API: ARGV as STORE_RESPONSE's (response id,
#: owner, created, expires, JSON, deadline_ms), then conversation id (empty:
#: none), now, updated, expires, deadline_ms, then (item id, item JSON or '')
#: pairs, as ADD's. Every check comes first: ADD's, then that the owner
#: holds no response with this ID (``taken``: the response is inserted,
#: never replaced), then a read of each key of the conversation and of the
#: owner's indexes that the writes touch and the checks did not read, so
#: that one holding a value we did not write fails the script before its
#: first write (Redis keeps what a failing script wrote before it failed).
#: Then ADD's writes and STORE_RESPONSE's. Returns ADD's reply (``{'ok'}``
#: alone without a conversation).
TURN = r"""
local rid, cid = ARGV[1], ARGV[7]
if cid ~= '' then
  local bad = add_check(cid, 12, ARGV[8])
  if bad then return bad end
end
if redis.call('EXISTS', rk(rid, 'resp')) == 1 then return {'taken'} end
redis.call('ZCARD', T .. ':resps')
if cid == '' then
  put_response(rid, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
  return {'ok'}
end
redis.call('ZCARD', ck(cid, 'items'))
redis.call('HLEN', ck(cid, 'data'))
redis.call('SCARD', ck(cid, 'shared'))
redis.call('ZCARD', ACT)
local added = add_write(cid, 12, ARGV[8], ARGV[9], ARGV[10], ARGV[11])
put_response(rid, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return added
"""

#: ARGV response id, now. Returns the deleted feedback's ID, if any.
DELETE_RESPONSE = r"""
if not live(rk(ARGV[1], 'resp'), ARGV[2]) then return {'nf'} end
local _, feedback = drop_response(ARGV[1])
return {'ok', feedback}
"""

#: ARGV response id, now (empty: do not check the response), feedback ID,
#: JSON, created, deadline_ms without a response. Keeps the ID of an earlier
#: feedback unless importing (no ``now``) and gives the feedback the
#: response's expiry.
SUBMIT_FEEDBACK = r"""
local rid = ARGV[1]
if ARGV[2] ~= '' and not live(rk(rid, 'resp'), ARGV[2]) then return {'nf'} end
local fb = rk(rid, 'fb')
local old = redis.call('HGET', fb, 'i')
local id = ARGV[3]
if old and ARGV[2] ~= '' then id = old end
if old and old ~= id then
  redis.call('ZREM', T .. ':fb', old)
  redis.call('HDEL', T .. ':fbref', old)
end
redis.call('HSET', fb, 'i', id, 'd', ARGV[4])
local t = redis.call('PEXPIRETIME', rk(rid, 'resp'))
local deadline = ARGV[6]
if t > 0 then deadline = tostring(t) elseif t == -1 then deadline = '' end
expire(deadline, {fb})
redis.call('ZADD', T .. ':fb', ARGV[5], id)
redis.call('HSET', T .. ':fbref', id, rid)
extend(T .. ':fb', deadline)
extend(T .. ':fbref', deadline)
return {'ok', id}
"""

#: ARGV response id, now. Removes the owner's feedback on that response
#: (the response stays); returns ``nf``, or ``ok`` and the feedback's ID.
DELETE_FEEDBACK = r"""
local fb = rk(ARGV[1], 'fb')
local id = redis.call('HGET', fb, 'i')
if not id then return {'nf'} end
local doc = cjson.decode(redis.call('HGET', fb, 'd'))
if doc.expires_at ~= nil and doc.expires_at ~= cjson.null and tonumber(doc.expires_at) <= tonumber(ARGV[2]) then
  return {'nf'}
end
redis.call('DEL', fb)
redis.call('ZREM', T .. ':fb', id)
redis.call('HDEL', T .. ':fbref', id)
return {'ok', id}
"""

#: ARGV count. Removes up to ``count`` conversations, then responses, then
#: feedback on others' responses, then the owner's remaining keys. Returns ``done`` or ``more``, then counts of
#: conversations, items, responses and feedback removed.
ERASE = r"""
local limit = tonumber(ARGV[1])
local counts = {0, 0, 0, 0}
local convs = redis.call('ZRANGE', KEYS[1], 0, limit - 1)
for _, cid in ipairs(convs) do
  counts[1] = counts[1] + redis.call('EXISTS', ck(cid, 'meta'))
  counts[2] = counts[2] + drop(cid)
end
local resps = {}
if #convs < limit then resps = redis.call('ZRANGE', T .. ':resps', 0, limit - #convs - 1) end
for _, rid in ipairs(resps) do
  local found, feedback = drop_response(rid)
  counts[3] = counts[3] + found
  if feedback then counts[4] = counts[4] + 1 end
end
-- Then the owner's feedback on responses they do not hold (an import can
-- bring such a vote): T:fbref names each one's key.
local used, refs = #convs + #resps, {}
if used < limit then refs = redis.call('HRANDFIELD', T .. ':fbref', limit - used, 'WITHVALUES') end
for i = 1, #refs, 2 do
  if redis.call('HGET', rk(refs[i + 1], 'fb'), 'i') == refs[i] then
    counts[4] = counts[4] + redis.call('DEL', rk(refs[i + 1], 'fb'))
  end
  redis.call('HDEL', T .. ':fbref', refs[i])
end
if used + #refs / 2 < limit then
  redis.call('DEL', KEYS[1], ACT, DIR, T .. ':resps', T .. ':fb', T .. ':fbref')
  return {'done', counts}
end
return {'more', counts}
"""

#: ARGV conversation id, owner, created, updated, metadata, expires,
#: deadline_ms. Creates or overwrites a conversation as exported.
IMPORT_CONVERSATION = r"""
local meta = ck(ARGV[1], 'meta')
local n = redis.call('HGET', meta, 'n') or 0
redis.call('HSET', meta, 'o', ARGV[2], 'c', ARGV[3], 'u', ARGV[4], 'm', ARGV[5], 'e', ARGV[6], 'n', n)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', ACT, ARGV[4], ARGV[1])
touch(ARGV[1], ARGV[7])
return {'ok'}
"""

#: ARGV conversation id, now, then (item id, position, item JSON) triples.
#: Links each item at its exported position (by reference when the owner
#: already has it elsewhere) and keeps the next position above them.
IMPORT_ITEMS = r"""
local cid = ARGV[1]
if not live(ck(cid, 'meta'), ARGV[2]) then return {'nf'} end
local nxt = tonumber(redis.call('HGET', ck(cid, 'meta'), 'n'))
for i = 3, #ARGV, 3 do
  local id, pos, json = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if not redis.call('ZSCORE', ck(cid, 'items'), id) then
    if locate(id, ARGV[2]) then link(cid, id, '', pos, ARGV[2]) else link(cid, id, json, pos, ARGV[2]) end
  end
  if redis.call('HEXISTS', ck(cid, 'data'), id) == 1 then
    redis.call('HSET', ck(cid, 'data'), id, json)
  else
    redis.call('HSET', sk(id), 'd', json)
  end
  if pos + 1 > nxt then nxt = pos + 1 end
end
redis.call('HSET', ck(cid, 'meta'), 'n', nxt)
touch(cid, deadline_of(cid))
return {'ok'}
"""

#: KEYS owner's ``convs``, the index to clean; ARGV now, kind (``items``,
#: ``convs``, ``activity``, ``resps``, ``fb``), then entries. Removes the
#: entries whose record expired by TTL and returns how many went. A live
#: conversation's ``T:activity`` entry is (re)written with its updated_at,
#: and one in ``T:activity`` but not in ``T:convs`` goes, so a purge leaves
#: the two indexes in step whatever wrote them.
COMPACT = r"""
local kind, removed = ARGV[2], 0
for i = 3, #ARGV do
  local id, stale = ARGV[i], false
  if kind == 'items' then
    stale = redis.call('HEXISTS', DIR, id) == 1 and not locate(id, ARGV[1])
  elseif kind == 'convs' or kind == 'activity' then
    local u = redis.call('HGET', ck(id, 'meta'), 'u')
    stale = not u or not redis.call('ZSCORE', KEYS[1], id)
    if stale then
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', ACT, id)
    else
      redis.call('ZADD', ACT, u, id)
    end
  elseif kind == 'resps' then
    stale = redis.call('EXISTS', rk(id, 'resp')) == 0
  else
    local rid = redis.call('HGET', T .. ':fbref', id)
    stale = not rid or redis.call('HGET', rk(rid, 'fb'), 'i') ~= id
    if stale then redis.call('HDEL', T .. ':fbref', id) end
  end
  if stale then
    if kind ~= 'items' then redis.call('ZREM', KEYS[2], id) end
    removed = removed + 1
  end
end
if kind == 'convs' then activity_ttl() end
return {'ok', removed}
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
        "index_page": INDEX_PAGE,
        "store_response": STORE_RESPONSE,
        "turn": TURN,
        "delete_response": DELETE_RESPONSE,
        "submit_feedback": SUBMIT_FEEDBACK,
        "delete_feedback": DELETE_FEEDBACK,
        "erase": ERASE,
        "import_conversation": IMPORT_CONVERSATION,
        "import_items": IMPORT_ITEMS,
        "compact": COMPACT,
        "search": SEARCH,
    }.items()
}
