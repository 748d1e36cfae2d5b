"""Search on Redis: a bounded scan of one owner's history inside the server.

Plain Redis has no text index, so ``SEARCH`` (a Lua script, run on the owner's
slot like every other script) walks the owner's live conversations by
activity (``T:activity``, newest first), each one's metadata and then its
items from the newest, and returns the first matches in exactly the order of
the other backends. Matching is whole words, case-insensitively for ASCII
letters (Lua has no Unicode case tables: ``É`` matches only ``É``); words are
separated by spaces and punctuation, ASCII and the common Unicode marks
(quotes, dashes, ellipses, CJK punctuation). A raw-JSON test of each item for
its ASCII words skips the decoding of items that cannot match.

Each script run examines at most ``SCAN_CHUNK`` items, so Redis is never
blocked for long, and returns where it stopped; one search runs it until the
page is full or ``SCAN_BUDGET`` items were examined. A page cut short by the
budget says ``has_more`` with a ``last_id`` that continues the scan where it
stopped (possibly with no hits yet): older history is reached by paging, at a
bounded cost per request. The cost follows the owner's own data only: every
key the scan reads is the owner's.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import NotFound
from ...records import now
from ...search import SEARCHED_FIELDS, Cursor, SearchHit, SearchPage, SearchQuery, scanned_hit
from . import codec
from .codec import log

#: Items one script run examines at most (a few milliseconds of Redis time).
SCAN_CHUNK = 500
#: Items one search examines at most before it answers with what it found.
SCAN_BUDGET = 10_000

_PARTS = ", ".join(f"{name} = true" for name, how in SEARCHED_FIELDS if how == "parts")
_FIELDS = ", ".join(f"'{name}'" for name, _ in SEARCHED_FIELDS)

#: KEYS owner's ``convs``; ARGV now, conversation ID (empty: all), cursor
#: updated_at (empty: from the start), cursor conversation ID, cursor
#: position (empty: the conversation's metadata), hits wanted, items to
#: examine at most, the query (JSON: alternatives of terms ``{t: " padded
#: words ", n: excluded, w: [ASCII words]}``). Returns ``nf`` (no such live
#: conversation), or a status (``full``: enough hits; ``done``: nothing left;
#: ``more``: the budget ran out), the hits as flat (conversation ID,
#: updated_at, position or '', item ID or '', item JSON or '', metadata JSON)
#: and where it stopped (updated_at, conversation ID, position or '').
SEARCH = rf"""
local now, only = ARGV[1], ARGV[2]
local want, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local query = cjson.decode(ARGV[8])
local PARTS = {{{_PARTS}}}
local FIELDS = {{{_FIELDS}}}
local function norm(s)
  s = string.lower(s)
  s = string.gsub(s, '\226[\128-\129][\128-\191]', ' ')
  s = string.gsub(s, '\194[\160-\191]', ' ')
  s = string.gsub(s, '\227\128[\128-\191]', ' ')
  s = string.gsub(s, '\239\188[\129-\143]', ' ')
  s = string.gsub(s, '[%s%p]+', ' ')
  return ' ' .. s .. ' '
end
local function matches(texts)
  local doc = {{}}
  for i, t in ipairs(texts) do doc[i] = norm(t) end
  doc = table.concat(doc, '\n')
  for _, alt in ipairs(query) do
    local ok = true
    for _, term in ipairs(alt) do
      if (string.find(doc, term.t, 1, true) ~= nil) == term.n then ok = false break end
    end
    if ok then return true end
  end
  return false
end
-- Whether the raw JSON holds, for some alternative, every ASCII word it wants.
local function maybe(raw)
  raw = string.lower(raw)
  for _, alt in ipairs(query) do
    local ok = true
    for _, term in ipairs(alt) do
      if not term.n then
        for _, w in ipairs(term.w) do
          if not string.find(raw, w, 1, true) then ok = false break end
        end
      end
      if not ok then break end
    end
    if ok then return true end
  end
  return false
end
local function item_texts(p)
  local out = {{}}
  if type(p) ~= 'table' then return out end
  for _, name in ipairs(FIELDS) do
    local v = p[name]
    if type(v) == 'string' then out[#out + 1] = v
    elseif PARTS[name] and type(v) == 'table' then
      for _, part in ipairs(v) do
        if type(part) == 'table' and type(part.text) == 'string' then out[#out + 1] = part.text end
      end
    end
  end
  return out
end
local function meta_texts(m)
  local out = {{}}
  local ok, doc = pcall(cjson.decode, m or '{{}}')
  if ok and type(doc) == 'table' then
    for _, v in pairs(doc) do if type(v) == 'string' then out[#out + 1] = v end end
  end
  return out
end
local hits, examined = {{}}, 0
local stop = {{'', '', ''}}
-- ``a`` before ``b`` in byte order (as sorted sets order equal scores; Lua's
-- own comparison follows the server's locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- Where to start in a conversation after the cursor: nil (its metadata, then
-- every item), '+inf' (every item), a position (the items below it), or
-- false (nothing: it is before the cursor).
local function start_of(cid, score)
  if ARGV[3] == '' then return nil end
  local s, u = tonumber(score), tonumber(ARGV[3])
  if s < u or (s == u and before(cid, ARGV[4])) then return nil end
  if s == u and cid == ARGV[4] then
    if ARGV[5] == '' then return '+inf' end
    return ARGV[5]
  end
  return false
end
-- Scan one conversation from ``from`` (see start_of). Returns 'full' (enough
-- hits), 'more' (the budget ran out) or nil (go on).
local function scan(cid, score, from)
  local meta = ck(cid, 'meta')
  if from == false or not live(meta, now) then return nil end
  local m = redis.call('HGET', meta, 'm') or '{{}}'
  if from == nil then
    stop = {{score, cid, ''}}
    if matches(meta_texts(m)) then
      for _, v in ipairs({{cid, score, '', '', '', m}}) do hits[#hits + 1] = v end
      if #hits / 6 >= want then return 'full' end
    end
  end
  local bound = (from == nil or from == '+inf') and '+inf' or ('(' .. from)
  while true do
    local scored = redis.call('ZRANGE', ck(cid, 'items'), bound, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 64, 'WITHSCORES')
    if #scored == 0 then return nil end
    local ids = {{}}
    for i = 1, #scored, 2 do ids[#ids + 1] = scored[i] end
    local raws = values(cid, ids)
    for i, id in ipairs(ids) do
      if examined >= budget then return 'more' end
      examined = examined + 1
      local pos = scored[2 * i]
      stop = {{score, cid, pos}}
      local raw = raws[i]
      if raw and maybe(raw) then
        local ok, doc = pcall(cjson.decode, raw)
        if ok and type(doc) == 'table' and matches(item_texts(doc.p)) then
          for _, v in ipairs({{cid, score, pos, id, raw, m}}) do hits[#hits + 1] = v end
          if #hits / 6 >= want then return 'full' end
        end
      end
    end
    if #scored < 128 then return nil end
    bound = '(' .. scored[#scored]
  end
end
if only ~= '' then
  if not live(ck(only, 'meta'), now) then return {{'nf'}} end
  local score = redis.call('ZSCORE', ACT, only) or redis.call('HGET', ck(only, 'meta'), 'u')
  return {{scan(only, score, start_of(only, score)) or 'done', hits, stop}}
end
sync_activity()
local top, offset = ARGV[3] ~= '' and ARGV[3] or '+inf', 0
while true do
  local window = redis.call('ZRANGE', ACT, top, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, 100, 'WITHSCORES')
  for i = 1, #window, 2 do
    local status = scan(window[i], window[i + 1], start_of(window[i], window[i + 1]))
    if status then return {{status, hits, stop}} end
  end
  if #window < 200 then return {{'done', hits, stop}} end
  offset = offset + 100
end
"""

#: ASCII letters to lower case, and nothing else (as Lua's ``string.lower``).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class RedisSearch:
    """Mixed into ``RedisBackend``; uses its ``_run`` through ``self``."""

    def search(self, owner, query, *, conversation_id, after, limit):
        terms = json.dumps(_lua_query(query))
        cursor, hits, examined = after, [], 0
        while True:
            args = [
                repr(now()),
                conversation_id or "",
                "" if cursor is None else repr(cursor.updated_at),
                "" if cursor is None else cursor.conversation_id,
                "" if cursor is None or cursor.position is None else str(cursor.position),
                limit + 1 - len(hits),
                min(SCAN_CHUNK, SCAN_BUDGET - examined),
                terms,
            ]
            result = self._run("search", owner, args, "A conversation searched")
            status = codec.text(result[0])
            if status == "nf":
                raise NotFound.conversation(conversation_id)
            flat = [codec.text(value) for value in result[1]]
            found = (self._search_hit(query, flat[i : i + 6]) for i in range(0, len(flat), 6))
            hits += [hit for hit in found if hit is not None]
            if status != "more":
                return SearchPage(hits[:limit], has_more=len(hits) > limit)
            stop = [codec.text(value) for value in result[2]]
            cursor = Cursor(float(stop[0]), stop[1], None if stop[2] == "" else int(float(stop[2])))
            examined += SCAN_CHUNK
            if examined >= SCAN_BUDGET:
                return SearchPage(hits, has_more=True, resume=cursor.encode())

    @staticmethod
    def _search_hit(query: SearchQuery, fields: list[str]) -> SearchHit | None:
        """A hit from the script's fields; ``None`` for an item whose JSON
        is not this backend's (logged, as pages skip such items)."""
        cid, updated_at, position, item_id, raw, metadata_json = fields
        try:
            metadata = json.loads(metadata_json)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            metadata = {}
        item = None
        if item_id:
            item = codec.item(cid, item_id, position, raw)
            if item is None:
                log.error("Redis history: item '%s' of conversation '%s' is unreadable; skipped", item_id, cid)
                return None
        return scanned_hit(query, cid, float(updated_at), metadata, item)


def _lua_query(query: SearchQuery) -> list[list[dict[str, Any]]]:
    """The parsed query as the script matches it: each term's words lowered
    (ASCII only) and padded with spaces, and its ASCII words for the raw-JSON
    test."""
    return [
        [
            {
                "t": " " + " ".join(word.translate(_ASCII_LOWER) for word in term.words) + " ",
                "n": term.negated,
                "w": [w.lower() for w in term.words if w.isascii()],
            }
            for term in alternative
        ]
        for alternative in query.alternatives
    ]
