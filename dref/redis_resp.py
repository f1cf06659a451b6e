"""Commands in RESP, the bytes the Redis backend sends, packed without redis-py's encoder.

redis-py's `pack_command` runs every argument through its `Encoder` and grows the packet
by re-formatting it once per argument; a lock's scripts carry eleven or more arguments,
and packing them cost some 30 us of the caller's CPU per call, a fifth of an acquire and
release. The bytes are the same: an array of bulk strings, the command name first.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pack_command"]

Arg = bytes | bytearray | memoryview | str | int | float

_CUTOFF = 6000
"""Arguments longer than this go out as separate chunks (as redis-py does), so a large
value is not copied into one joined packet."""


def pack_command(args: Sequence[Arg]) -> list[bytes]:
    """`args` as one RESP array of bulk strings: str as UTF-8, int and float in decimal (a
    float as `repr` writes it), bytes as they are. A list of chunks for `sendall`."""
    chunks: list[bytes] = []
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, (bytearray, memoryview)):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a Redis argument cannot be a bool")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument cannot be a {type(arg).__name__}")
        if len(data) > _CUTOFF:
            parts.append(b"$%d\r\n" % len(data))
            chunks += (b"".join(parts), data)
            parts = [b"\r\n"]
        else:
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    chunks.append(b"".join(parts))
    return chunks
