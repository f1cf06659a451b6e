"""Lua sources of the Redis backend's atomic write steps.

Every script takes the same first keys and arguments:

* ``KEYS[1]`` the value key (the raw name, as upstream writes it), ``KEYS[2]`` its revision
  counter (``dref:rev:{<name>}``);
* ``ARGV[1]`` the upstream change channel (``dref-change``), ``ARGV[2]`` our revision
  channel, ``ARGV[3]`` the upstream ``ChangePayload`` bytes to publish if the write happens.

A write INCRs the counter, changes the value key with exactly the command upstream would
issue (``SET``, ``SET .. NX EX``, ``DEL``), then publishes ``<revision>:<name>`` on our
revision channel immediately followed by the untouched upstream payload on ``dref-change``.
Redis runs a script atomically, so the write, the revision and the event happen together
or not at all, and a subscriber to both channels receives the two messages back to back.

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
  redis.call('PUBLISH', ARGV[1], ARGV[3])
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
-- ARGV[4] value, ARGV[5] ttl seconds ('0' = none)
local rev = redis.call('INCR', KEYS[2])
store(ARGV[4], ARGV[5])
publish(rev)
return rev
""",
)

SET_IF_ABSENT = _script(
    "set_if_absent",
    """
-- ARGV[4] value, ARGV[5] ttl seconds ('0' = none)
local written
if ARGV[5] == '0' then
  written = redis.call('SET', KEYS[1], ARGV[4], 'NX')
else
  written = redis.call('SET', KEYS[1], ARGV[4], 'NX', 'EX', ARGV[5])
end
if not written then
  return false
end
local rev = redis.call('INCR', KEYS[2])
publish(rev)
return rev
""",
)

DELETE = _script(
    "delete",
    """
local rev = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
publish(rev)
return rev
""",
)

COMPARE_AND_SET = _script(
    "compare_and_set",
    """
-- ARGV[4] expected present ('1'/'0'), ARGV[5] expected value, ARGV[6] expected revision,
-- ARGV[7] new value, ARGV[8] ttl seconds ('0' = none)
if not matches(ARGV[4], ARGV[5], ARGV[6]) then
  return false
end
local rev = redis.call('INCR', KEYS[2])
store(ARGV[7], ARGV[8])
publish(rev)
return rev
""",
)

COMPARE_AND_DELETE = _script(
    "compare_and_delete",
    """
-- ARGV[4] expected value, ARGV[5] expected revision
if not matches('1', ARGV[4], ARGV[5]) then
  return false
end
local rev = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
publish(rev)
return rev
""",
)

EXPIRE_IF = _script(
    "expire_if",
    """
-- ARGV[4] expected value, ARGV[5] expected revision, ARGV[6] ttl seconds
if not matches('1', ARGV[4], ARGV[5]) then
  return 0
end
return redis.call('EXPIRE', KEYS[1], ARGV[6])
""",
)

SET_IF_LOCKED = _script(
    "set_if_locked",
    """
-- KEYS[3] the upstream modify lock (lock:<name>), ARGV[4] value, ARGV[5] lock token
if redis.call('GET', KEYS[3]) ~= ARGV[5] then
  return false
end
local rev = redis.call('INCR', KEYS[2])
store(ARGV[4], '0')
publish(rev)
return rev
""",
)

INCREMENT = _script(
    "increment",
    """
-- ARGV[3] the upstream ChangePayload up to its value (this script appends the rest),
-- ARGV[4] delta, ARGV[5] 'msgpack' or 'json', ARGV[6] '1' for scala-style byte arrays,
-- ARGV[7] the ChangePayload's tail after the value.
-- Returns false when absent, {0, reason} when not an integer, else {revision, new value}.
local current = redis.call('GET', KEYS[1])
if not current then
  return false
end
local number
if ARGV[5] == 'json' then
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
number = number + tonumber(ARGV[4])
if math.abs(number) > 9007199254740991 then
  return {0, 'the sum leaves the integers Redis adds exactly (2^53)'}
end
local value
if ARGV[5] == 'json' then
  value = string.format('%d', number)
else
  value = cmsgpack.pack(number)
end
local parts = {}
local n = #value
parts[1] = string.char(0x90 + n)  -- a packed integer is at most 9 bytes: a fixarray
for i = 1, n do
  local b = string.byte(value, i)
  if b < 0x80 or (ARGV[6] == '1' and b >= 0xe0) then
    parts[#parts + 1] = string.char(b)
  elseif ARGV[6] == '1' then
    parts[#parts + 1] = string.char(0xd0, b)
  else
    parts[#parts + 1] = string.char(0xcc, b)
  end
end
ARGV[3] = ARGV[3] .. table.concat(parts) .. ARGV[7]
local rev = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value)
publish(rev)
return {rev, string.format('%d', number)}
""",
)
"""Add to an integer value in place (`DRef.increment`): decode, add, encode and publish
the upstream ChangePayload, all in the script, so concurrent increments never retry."""
