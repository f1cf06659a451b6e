"""Lock tokens: the signed 64-bit value a lock holder writes at `lock:<name>` (spec 2.3, 6.5).

On the wire a token is 8 bytes, big-endian two's complement (42 -> 000000000000002a), not
MsgPack; Scala and Rust write and compare exactly these bytes.
"""

from __future__ import annotations

import secrets

from dref.errors import CodecError

TOKEN_SIZE = 8


def encode_lock_token(token: int) -> bytes:
    """The 8 bytes of `token`; `CodecError` unless it is an int in the signed 64-bit range."""
    if isinstance(token, bool) or not isinstance(token, int):
        raise CodecError(f"a lock token must be an int, got {type(token).__qualname__}")
    try:
        return token.to_bytes(TOKEN_SIZE, "big", signed=True)
    except OverflowError as e:
        raise CodecError(f"lock token {token} is outside the signed 64-bit range") from e


def decode_lock_token(data: bytes) -> int:
    """The token held in exactly 8 big-endian bytes; `CodecError` for any other length."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"lock token data must be bytes, got {type(data).__qualname__}")
    if len(data) != TOKEN_SIZE:
        raise CodecError(f"a lock token is {TOKEN_SIZE} bytes, got {len(data)}")
    return int.from_bytes(data, "big", signed=True)


def new_lock_token() -> int:
    """A fresh token, uniformly random over the signed 64-bit range, from the OS's CSPRNG."""
    return int.from_bytes(secrets.token_bytes(TOKEN_SIZE), "big", signed=True)
