"""The Redis backend's usage statistics (``usage_stats``), counted inside the
server by a Lua script per owner.

Why a script and not reads: plain Redis has no aggregation over hashes, and
reading every item, response and feedback of an owner into Python to count
them is what the statistics must not do. Every key of one owner is in one
cluster slot (``scripts.py``), so one script can walk that owner's indexes
and return only grouped counts (item type and role, model and day with token
sums, model and rating): a few hundred bytes whatever the owner holds.

Why in chunks: a script blocks the server while it runs, so each run reads at
most ``BUDGET`` records (items, responses or feedback; a conversation counts
as one) and returns its counts with a cursor; the next run continues there.
Each run is atomic; the whole is not one snapshot (records written between
runs may or may not be counted, and a conversation deleted meanwhile can shift
the walk by one, as ``operations.py``'s windows do). The figures for the
whole store (the CLI) are the sum over ``owners()``, one owner at a time.

What is counted is what ``usage.py`` describes; the liveness checks are the
readers' (``live`` in ``scripts.py``; an index entry whose record expired by
TTL is skipped). A value the script cannot decode is skipped and counted,
and the Python side logs how many.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...records import now
from .. import jsonfast
from ..usage import UsageTally
from . import codec
from .codec import log
from .scripts import _PRELUDE

#: Records read per script run.
BUDGET = 500

#: ARGV now, since ('' for none), phase, cursor, position, budget. KEYS[1] is
#: the owner's ``T:convs``. Phases:
#:
#: - ``convs``: conversations by rank from ``cursor`` (their items after
#:   ``position``, -1 for a conversation not started). Counts the live
#:   conversations created at or after ``since`` (how many, first and last
#:   creation), and by type and role the items created at or after ``since``
#:   that any live conversation links (older conversations included).
#: - ``resps`` / ``fb``: the owner's responses / feedback created at or after
#:   ``since`` (their index scores), the ``cursor``-th onwards.
#:
#: Returns the next phase (``done`` at the end), cursor and position, the
#: number of values skipped as unreadable, and the counts as JSON.
USAGE = r"""
local now, since, phase = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local cursor, position, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local counts, skipped = {}, 0
local function decode(raw)
  local ok, doc = pcall(cjson.decode, raw)
  if ok and type(doc) == 'table' then return doc end
  skipped = skipped + 1
  return nil
end
local function text(value)
  if type(value) == 'string' then return value end
  return ''
end
local function number(value)
  if type(value) == 'number' then return value end
  return 0
end
local function bump(key, values)
  local row = counts[key]
  if not row then
    row = {}
    for i = 1, #values do row[i] = 0 end
    counts[key] = row
  end
  for i = 1, #values do row[i] = row[i] + values[i] end
end
local lower = '-inf'
if since then lower = ARGV[2] end
if phase == 'convs' then
  local first, last, convs, read = '', '', 0, 0
  while read < budget do
    local cid = redis.call('ZRANGE', KEYS[1], cursor, cursor)[1]
    if not cid then
      return {'resps', 0, -1, skipped, cjson.encode({convs = convs, first = first, last = last, items = counts})}
    end
    read = read + 1
    local meta = ck(cid, 'meta')
    local more = false
    if live(meta, now) then
      if position < 0 then
        local created = redis.call('HGET', meta, 'c')
        if not since or tonumber(created) >= since then
          convs = convs + 1
          if first == '' or tonumber(created) < tonumber(first) then first = created end
          if last == '' or tonumber(created) > tonumber(last) then last = created end
        end
      end
      local room = math.max(budget - read, 1)
      local scored = redis.call('ZRANGE', ck(cid, 'items'), '(' .. position, '+inf', 'BYSCORE',
        'LIMIT', 0, room, 'WITHSCORES')
      local ids = {}
      for i = 1, #scored, 2 do ids[#ids + 1] = scored[i] end
      for _, raw in ipairs(values(cid, ids)) do
        local doc = raw and decode(raw)
        if doc and (not since or number(doc.c) >= since) then
          local role = doc.r
          if type(role) ~= 'string' then role = '' end
          bump(text(doc.t) .. '\n' .. role, {1})
        end
      end
      read = read + #ids
      if #ids == room then
        position = tonumber(scored[#scored])
        more = true
      end
    end
    if not more then
      cursor = cursor + 1
      position = -1
    end
  end
  return {'convs', cursor, position, skipped, cjson.encode({convs = convs, first = first, last = last, items = counts})}
end
local index, reply_phase = T .. ':resps', 'fb'
if phase == 'fb' then index, reply_phase = T .. ':fb', 'done' end
local members = redis.call('ZRANGE', index, lower, '+inf', 'BYSCORE', 'LIMIT', cursor, budget)
for _, member in ipairs(members) do
  if phase == 'resps' then
    local fields = redis.call('HMGET', rk(member, 'resp'), 'e', 'd')
    if fields[1] and (fields[1] == '' or tonumber(fields[1]) > now) then
      local doc = fields[2] and decode(fields[2])
      if doc then
        local usage = doc.usage
        if type(usage) ~= 'table' then usage = {} end
        local day = string.format('%d', math.floor(number(doc.created_at) / 86400))
        bump(text(doc.model) .. '\n' .. day,
          {1, number(usage.input_tokens), number(usage.output_tokens), number(usage.total_tokens)})
      end
    end
  else
    local rid = redis.call('HGET', T .. ':fbref', member)
    local fields = rid and redis.call('HMGET', rk(rid, 'fb'), 'i', 'd')
    if fields and fields[1] == member then
      local doc = fields[2] and decode(fields[2])
      local expires = doc and doc.expires_at
      if doc and (type(expires) ~= 'number' or expires > now) then
        bump(text(doc.model) .. '\n' .. text(doc.rating), {1})
      end
    end
  end
end
if #members == budget then return {phase, cursor + budget, -1, skipped, cjson.encode(counts)} end
return {reply_phase, 0, -1, skipped, cjson.encode(counts)}
"""

_SCRIPT = _PRELUDE + USAGE


class RedisStats:
    """Mixed into ``RedisBackend``; uses its keys and client through ``self``."""

    def usage_stats(self, owner: str | None, *, since: float | None) -> dict[str, Any]:
        tally = UsageTally()
        for name in [owner] if owner is not None else self.owners():
            skipped = 0
            for phase, counts, unreadable in self._usage_runs(name, since):
                skipped += unreadable
                _add(tally, phase, counts)
            if skipped:
                log.error("Redis history: %d unreadable values of one owner left out of the statistics", skipped)
        return tally.result()

    def _usage_runs(self, owner: str, since: float | None) -> Iterator[tuple[str, Any, int]]:
        """One script run after another until the walk is done: (phase,
        counts, unreadable values) each."""
        phase, cursor, position = "convs", 0, -1
        at = repr(now())
        while phase != "done":
            args = [at, "" if since is None else repr(since), phase, cursor, position, BUDGET]
            reply = self._script("usage", _SCRIPT, [self._owner_key(owner, "convs")], args, "An owner index")
            yield phase, jsonfast.loads(reply[4]), int(reply[3])
            phase, cursor, position = codec.text(reply[0]), int(reply[1]), int(float(reply[2]))


def _add(tally: UsageTally, phase: str, counts: Any) -> None:
    """Add one run's counts (keys are ``a\\nb`` pairs) to the tally."""
    if phase == "convs":
        tally.add_conversations(counts["convs"], _float(counts["first"]), _float(counts["last"]))
        groups = counts["items"]
    else:
        groups = counts
    if not isinstance(groups, dict):
        return  # cjson writes an empty table as {} or [] alike: nothing counted
    for key, values in groups.items():
        first, _, second = key.partition("\n")
        if phase == "convs":
            tally.add_items(first, second or None, values[0])
        elif phase == "resps":
            tally.add_responses(first, int(second), values[0], tuple(values[1:]))
        else:
            tally.add_feedback(first, second, values[0])


def _float(value: str) -> float | None:
    return float(value) if value else None
