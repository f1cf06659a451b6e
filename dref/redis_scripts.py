"""Lua sources of the Redis backend's atomic write steps.

Every script takes the same first keys and arguments:

* ``KEYS[1]`` the value key (the raw name, as upstream writes it), ``KEYS[2]`` its revision
  counter (``dref:rev:{<name>}``);
* ``ARGV[1]`` the upstream change channel (``dref-change``), ``ARGV[2]`` our revision
  channel, ``ARGV[3]`` the history retention (``MAXLEN ~``; ``'0'``: record none),
  ``ARGV[4]`` the upstream ``ChangePayload`` bytes to publish if the write happens.

A write INCRs the counter, changes the value key with exactly the command upstream would
issue (``SET``, ``SET .. NX EX``, ``DEL``), then publishes ``<revision>:<name>`` on our
revision channel immediately followed by the untouched upstream payload on ``dref-change``.
Redis runs a script atomically, so the write, the revision and the event happen together
or not at all, and a subscriber to both channels receives the two messages back to back.

Last, it appends ``<revision>-0 kind s|d [value <bytes>]`` to the history stream
``dref:history:{<name>}``. That key is derived from ``KEYS[2]``, not declared: Redis checks
declared keys against the ACL before running a script, and a user narrowed to the value
and counter keys must still write (the shared hash tag keeps it in the counter's slot).
History is best effort and never fails or splits a write: its commands run under
``pcall``, only if the user's ACL allows them (``redis.acl_check_cmd``, so nothing lands in
the ACL log), and a stream ahead of the counter (the counter was deleted) is reset. A
revision missing from the stream is a gap readers detect (`RedisBackend.history`), never a
wrong answer.

A TTL expiry runs no script, so before writing to an absent value a script records it when
the stream ends with a set at the current revision: it takes a revision, appends a delete
and publishes ``x<revision>:<name>`` on our channel only (no upstream payload follows).

Conditional scripts compare the stored value bytes *and* the revision counter (absent
counter = revision 0), so a foreign writer that changed the value without touching the
counter still makes the comparison fail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_PRELUDE = """
local function publish(rev)
  redis.call('PUBLISH', ARGV[2], string.format('%d', rev) .. ':' .. KEYS[1])
  redis.call('PUBLISH', ARGV[1], ARGV[4])
end
local function store(value, ttl)
  if ttl == '0' then
    redis.call('SET', KEYS[1], value)
  else
    redis.call('SET', KEYS[1], value, 'EX', ttl)
  end
end
local function matches(present, value, rev)
  local current = redis.call('GET', KEYS[1])
  if present == '0' then
    return current == false
  end
  if current ~= value then
    return false
  end
  return (redis.call('GET', KEYS[2]) or '0') == rev
end
local HISTORY = 'dref:history:' .. string.sub(KEYS[2], 10)  -- from dref:rev:{<name>}
local function allowed(...)
  return redis.acl_check_cmd == nil or redis.acl_check_cmd(...)
end
local readable, writable
local function history_access()
  if readable == nil then
    readable = allowed('XREVRANGE', HISTORY, '+', '-') and allowed('EXISTS', KEYS[1])
    writable = ARGV[3] ~= '0' and allowed('XADD', HISTORY, '1-0', 'kind', 'd')
      and allowed('DEL', HISTORY)
  end
end
local function add(rev, kind, value)
  local entry = {'XADD', HISTORY, 'MAXLEN', '~', ARGV[3], string.format('%d-0', rev), 'kind', kind}
  if value then
    entry[9], entry[10] = 'value', value
  end
  local added = redis.pcall(unpack(entry))
  if type(added) == 'table' and added.err then  -- ahead of a deleted counter, or no stream
    redis.call('DEL', HISTORY)
    redis.pcall(unpack(entry))
  end
end
local function record(rev, kind, value)
  history_access()
  if writable then
    pcall(add, rev, kind, value)
  end
end
-- A value gone without a write of ours (TTL expiry, upstream DEL) while the history ends
-- with a set at the current revision: record a delete for it. Returns the revision of the
-- delete ending an up-to-date history of an absent value, else 0. `absent`: known absent.
local function expiry(absent)
  history_access()
  if not readable or (not absent and redis.call('EXISTS', KEYS[1]) == 1) then
    return 0
  end
  local last = redis.call('XREVRANGE', HISTORY, '+', '-', 'COUNT', 1)[1]
  if not last then
    return 0
  end
  local rev = tonumber(string.match(last[1], '^%d+'))
  if rev ~= tonumber(redis.call('GET', KEYS[2]) or '0') then
    return 0
  end
  if last[2][2] == 'd' then
    return rev
  end
  if last[2][2] ~= 's' or not writable then
    return 0
  end
  rev = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[2], string.format('x%d:', rev) .. KEYS[1])
  add(rev, 'd')
  return rev
end
local function note_expiry(absent)
  local ok, rev = pcall(expiry, absent)
  if ok then
    return rev
  end
  return 0
end
"""


@dataclass(frozen=True)
class Script:
    """A Lua script with its SHA1, for EVALSHA with a fallback to EVAL on NOSCRIPT."""

    name: str
    source: bytes
    sha: str


def _script(name: str, body: str) -> Script:
    source = (_PRELUDE + body).encode()
    return Script(name, source, hashlib.sha1(source).hexdigest())


SET = _script(
    "set",
    """
-- ARGV[5] value, ARGV[6] ttl seconds ('0' = none)
note_expiry(false)
local rev = redis.call('INCR', KEYS[2])
store(ARGV[5], ARGV[6])
publish(rev)
record(rev, 's', ARGV[5])
return rev
""",
)

SET_IF_ABSENT = _script(
    "set_if_absent",
    """
-- ARGV[5] value, ARGV[6] ttl seconds ('0' = none)
local written
if ARGV[6] == '0' then
  written = redis.call('SET', KEYS[1], ARGV[5], 'NX')
else
  written = redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[6])
end
if not written then
  return false
end
note_expiry(true)
local rev = redis.call('INCR', KEYS[2])
publish(rev)
record(rev, 's', ARGV[5])
return rev
""",
)

DELETE = _script(
    "delete",
    """
note_expiry(false)
local rev = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
publish(rev)
record(rev, 'd')
return rev
""",
)

COMPARE_AND_SET = _script(
    "compare_and_set",
    """
-- ARGV[5] expected present ('1'/'0'), ARGV[6] expected value, ARGV[7] expected revision,
-- ARGV[8] new value, ARGV[9] ttl seconds ('0' = none)
if not matches(ARGV[5], ARGV[6], ARGV[7]) then
  return false
end
if ARGV[5] == '0' then
  note_expiry(true)
end
local rev = redis.call('INCR', KEYS[2])
store(ARGV[8], ARGV[9])
publish(rev)
record(rev, 's', ARGV[8])
return rev
""",
)

COMPARE_AND_DELETE = _script(
    "compare_and_delete",
    """
-- ARGV[5] expected value, ARGV[6] expected revision
if not matches('1', ARGV[5], ARGV[6]) then
  return false
end
local rev = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
publish(rev)
record(rev, 'd')
return rev
""",
)

EXPIRE_IF = _script(
    "expire_if",
    """
-- ARGV[5] expected value, ARGV[6] expected revision, ARGV[7] ttl seconds
if not matches('1', ARGV[5], ARGV[6]) then
  return 0
end
return redis.call('EXPIRE', KEYS[1], ARGV[7])
""",
)

SET_IF_LOCKED = _script(
    "set_if_locked",
    """
-- KEYS[3] the upstream modify lock (lock:<name>), ARGV[5] value, ARGV[6] lock token
if redis.call('GET', KEYS[3]) ~= ARGV[6] then
  return false
end
note_expiry(false)
local rev = redis.call('INCR', KEYS[2])
store(ARGV[5], '0')
publish(rev)
record(rev, 's', ARGV[5])
return rev
""",
)

INCREMENT = _script(
    "increment",
    """
-- ARGV[4] the upstream ChangePayload up to its value (this script appends the rest),
-- ARGV[5] delta, ARGV[6] 'msgpack' or 'json', ARGV[7] '1' for scala-style byte arrays,
-- ARGV[8] the ChangePayload's tail after the value.
-- Returns false when absent, {0, reason} when not an integer, else {revision, new value}.
local current = redis.call('GET', KEYS[1])
if not current then
  return false
end
local number
if ARGV[6] == 'json' then
  if not string.match(current, '^%-?%d+$') then
    return {0, 'the stored value is not a JSON integer'}
  end
  number = tonumber(current)
else
  local first = string.byte(current, 1)
  if first == 0xca or first == 0xcb then
    return {0, 'the stored value is a float, not an integer'}
  end
  local ok, decoded = pcall(cmsgpack.unpack, current)
  if not ok or type(decoded) ~= 'number' then
    return {0, 'the stored value is not a MsgPack integer'}
  end
  number = decoded
end
-- Lua numbers are doubles: exact for integers of magnitude below 2^53 only
if number ~= math.floor(number) or math.abs(number) > 9007199254740991 then
  return {0, 'the value is beyond the integers Redis adds exactly (2^53)'}
end
number = number + tonumber(ARGV[5])
if math.abs(number) > 9007199254740991 then
  return {0, 'the sum leaves the integers Redis adds exactly (2^53)'}
end
local value
if ARGV[6] == 'json' then
  value = string.format('%d', number)
else
  value = cmsgpack.pack(number)
end
local parts = {}
local n = #value
parts[1] = string.char(0x90 + n)  -- a packed integer is at most 9 bytes: a fixarray
for i = 1, n do
  local b = string.byte(value, i)
  if b < 0x80 or (ARGV[7] == '1' and b >= 0xe0) then
    parts[#parts + 1] = string.char(b)
  elseif ARGV[7] == '1' then
    parts[#parts + 1] = string.char(0xd0, b)
  else
    parts[#parts + 1] = string.char(0xcc, b)
  end
end
ARGV[4] = ARGV[4] .. table.concat(parts) .. ARGV[8]
local rev = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value)
publish(rev)
record(rev, 's', value)
return {rev, string.format('%d', number)}
""",
)
"""Add to an integer value in place (`DRef.increment`): decode, add, encode and publish
the upstream ChangePayload, all in the script, so concurrent increments never retry."""

NOTE_EXPIRY = _script(
    "note_expiry",
    """
return note_expiry(false)
""",
)
"""Record an unnoticed expiry (see the module doc) for the change watcher's poll: returns the
revision of the delete ending the name's history, or 0 when the history cannot tell."""

HISTORY = _script(
    "history",
    """
-- ARGV[5] after, ARGV[6] most entries, ARGV[7] most value bytes beyond the first entry.
-- Returns {counter, entries after ARGV[5], oldest first}; read in small batches, so Lua
-- never holds more than a page's worth of large values. A counter below ARGV[5] started
-- again (a Redis that lost its data): then the entries are just the oldest one kept.
note_expiry(false)
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local page, size, start = {}, 0, tonumber(ARGV[5]) + 1
if counter < start - 1 then
  return {counter, redis.call('XRANGE', HISTORY, '-', '+', 'COUNT', 1)}
end
if counter < start then
  return {counter, page}
end
while #page < limit do
  local count = math.min(limit - #page, 16)
  local batch = redis.call('XRANGE', HISTORY, string.format('%d-0', start), '+', 'COUNT', count)
  for _, entry in ipairs(batch) do
    local bytes = #(entry[2][4] or '')
    if #page > 0 and size + bytes > budget then
      return {counter, page}
    end
    size = size + bytes
    page[#page + 1] = entry
  end
  if #batch < count then
    break
  end
  start = tonumber(string.match(batch[#batch][1], '^%d+')) + 1
end
return {counter, page}
""",
)
"""The kept changes after a revision (`RedisBackend.history`), read with the counter at one
instant, after recording a pending expiry so that the history includes it."""
