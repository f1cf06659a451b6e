"""Protobuf's wire format one top-level field at a time, for messages too large to hold
whole (a state-machine snapshot of a gigabyte): write a repeated field entry by entry, read
a stream field by field. Only the framing is handled here; each field's own bytes are
parsed by the generated classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from dref.errors import CodecError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


def encode_varint(value: int) -> bytes:
    """`value` (0 <= value < 2**64) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(number: int, wire_type: int, value: int | bytes) -> bytes:
    """One field's bytes: its tag, then the varint, the length-prefixed bytes or the fixed
    bytes `value`."""
    tag = encode_varint(number << 3 | wire_type)
    if wire_type == VARINT:
        assert isinstance(value, int)
        return tag + encode_varint(value)
    assert isinstance(value, bytes)
    if wire_type == LENGTH_DELIMITED:
        return tag + encode_varint(len(value)) + value
    return tag + value


def iter_fields(
    source: IO[bytes], *, only: frozenset[int] | None = None
) -> Iterator[tuple[int, int, int | bytes | None]]:
    """(number, wire type, value) of each top-level field of the message in `source`, until
    its end: an int for varints, bytes otherwise; with `only`, None for a length-delimited
    field whose number is not in it (passed over with `seek`, never read). CodecError names
    the offset of a truncated or malformed field."""
    offset = 0
    while True:
        start = offset
        tag, offset = _read_varint(source, offset, at_start=True)
        if tag is None:
            return
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise CodecError(f"field number 0 at offset {start}")
        value: int | bytes | None
        if wire_type == VARINT:
            value, offset = _read_varint(source, offset)
        elif wire_type == LENGTH_DELIMITED:
            length, offset = _read_varint(source, offset)
            assert length is not None
            if only is not None and number not in only:
                if length:  # seek may pass the end: the field's last byte must be there
                    source.seek(length - 1, 1)
                    _read_exact(source, 1, offset)
                value = None
            else:
                value = _read_exact(source, length, offset)
            offset += length
        elif wire_type in _FIXED_SIZES:
            value = _read_exact(source, _FIXED_SIZES[wire_type], offset)
            offset += _FIXED_SIZES[wire_type]
        else:
            raise CodecError(f"field {number} at offset {start}: wire type {wire_type}")
        yield number, wire_type, value


def _read_varint(source: IO[bytes], offset: int, *, at_start: bool = False) -> tuple[Any, int]:
    """(value, offset after it); (None, offset) at a clean end of input when `at_start`."""
    value = shift = 0
    while True:
        byte = source.read(1)
        if not byte:
            if at_start and shift == 0:
                return None, offset
            raise CodecError(f"truncated varint at offset {offset}")
        offset += 1
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value, offset
        shift += 7
        if shift >= 70:
            raise CodecError(f"varint longer than 10 bytes at offset {offset}")


def _read_exact(source: IO[bytes], length: int, offset: int) -> bytes:
    data = source.read(length)
    if len(data) != length:
        raise CodecError(f"truncated field at offset {offset}: {len(data)} of {length} bytes")
    return data
