"""Lock tokens: 8-byte big-endian signed (spec 2.3 `lock_value`, 8.6 crosslang lock)."""

from __future__ import annotations

import pytest

from dref.errors import CodecError
from dref.wire.lock_token import decode_lock_token, encode_lock_token, new_lock_token


@pytest.mark.parametrize(
    ("token", "hexed"),
    [
        (42, "000000000000002a"),
        (0x1234567890ABCDEF, "1234567890abcdef"),
        (-1, "ffffffffffffffff"),
        (-2, "fffffffffffffffe"),
        (2**63 - 1, "7fffffffffffffff"),
        (-(2**63), "8000000000000000"),
    ],
)
def test_tokens_are_big_endian_twos_complement(token, hexed):
    assert encode_lock_token(token).hex() == hexed
    assert decode_lock_token(bytes.fromhex(hexed)) == token


@pytest.mark.parametrize("token", [2**63, -(2**63) - 1, 2**64])
def test_out_of_range_tokens_are_refused(token):
    with pytest.raises(CodecError, match="64-bit"):
        encode_lock_token(token)


@pytest.mark.parametrize("token", [True, 1.0, "42", None])
def test_non_int_tokens_are_refused(token):
    with pytest.raises(CodecError):
        encode_lock_token(token)


@pytest.mark.parametrize("length", [0, 1, 7, 9, 16])
def test_only_exactly_8_bytes_decode(length):
    with pytest.raises(CodecError, match="8 bytes"):
        decode_lock_token(bytes(length))


def test_new_tokens_span_the_signed_range_and_round_trip():
    tokens = [new_lock_token() for _ in range(200)]
    assert all(-(2**63) <= t < 2**63 for t in tokens)
    assert len(set(tokens)) == 200
    assert any(t < 0 for t in tokens) and any(t > 0 for t in tokens)
    assert all(decode_lock_token(encode_lock_token(t)) == t for t in tokens)
