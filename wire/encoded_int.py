"""Adding to an integer kept as encoded bytes, for `DRef.increment` done in the store.

A counter's value is stored as its ref's codec wrote it: MsgPack (the default) or JSON.
Both backends that add in place (the Raft state machine, the local backend) decode it,
add and encode it back the same way, so the bytes equal what the codec would write for the
new number. Values stay within signed 64 bits (on Redis, whose Lua numbers are doubles, within
2**53).
"""

from __future__ import annotations

import json

import msgpack

from dref.errors import CodecError

FORMATS = ("msgpack", "json")
"""Encodings whose integers a store can add to."""
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


def add_to_encoded(name: str, value: bytes, delta: int, fmt: str) -> tuple[int, bytes]:
    """The new number and its bytes; CodecError saying why when `value` (stored under
    `name`) is not an integer in `fmt` or the sum leaves signed 64 bits."""
    try:
        current = msgpack.unpackb(value) if fmt == "msgpack" else json.loads(value)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CodecError(f"cannot increment {name}: it is not {fmt}: {exc}") from None
    if isinstance(current, bool) or not isinstance(current, int):
        kind = type(current).__name__
        raise CodecError(f"cannot increment {name}: it holds a {kind}, not an integer")
    number = current + delta
    if not MIN_INT <= number <= MAX_INT:
        raise CodecError(f"cannot increment {name}: {current} + {delta} leaves 64 bits")
    encoded = msgpack.packb(number) if fmt == "msgpack" else json.dumps(number).encode()
    return number, encoded
