"""The `dref-change` notification published on Redis after every write (spec 6.3).

A MsgPack record `{name, value, delete}` in that field order; `name` and `value` are byte
arrays (one int per byte, see `dref.wire.msgpack_codec`). Writing uses the "rust" or
"scala" style for bytes >= 0x80; reading accepts both, so a Python node understands
notifications from either language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import msgpack

from dref.errors import CodecError
from dref.wire.msgpack_codec import MsgPackCodec, Style, byte_array


@dataclass(frozen=True)
class ChangePayload:
    """One change: the key's UTF-8 bytes, the new value (empty for deletes), and the delete flag."""

    name: bytes
    value: bytes
    delete: bool


_CODECS: dict[str, MsgPackCodec[ChangePayload]] = {
    "rust": MsgPackCodec(ChangePayload, style="rust"),
    "scala": MsgPackCodec(ChangePayload, style="scala"),
}


def encode_change_payload(payload: ChangePayload, *, style: Style = "rust") -> bytes:
    """The MsgPack bytes of `payload`, byte arrays written in `style`.

    Every Redis write publishes one, so this packs the three fields directly instead of
    walking the record schema; `tests/wire` pins that both give the same bytes.
    """
    if style not in _CODECS:
        raise CodecError(f"unknown MsgPack style {style!r}; use 'rust' or 'scala'")
    if not (
        isinstance(payload.name, bytes)
        and isinstance(payload.value, bytes)
        and isinstance(payload.delete, bool)
    ):
        return _CODECS[style].encode(payload)  # the schema walk explains what is wrong
    fields = {
        "name": byte_array(payload.name, style),
        "value": byte_array(payload.value, style),
        "delete": payload.delete,
    }
    return cast(bytes, msgpack.packb(fields, use_bin_type=True))


def decode_change_payload(data: bytes) -> ChangePayload:
    """The payload in `data` (either byte-array style); `CodecError` on anything else.

    Every Redis write's notification reaches every subscribed process, so a well-formed
    three-field map is read directly; anything else takes the schema walk, which decides
    (and explains) exactly as before.
    """
    if data[:1] == _FIXMAP_OF_3:
        try:
            fields = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            fields = None
        if type(fields) is dict and len(fields) == 3 and type(fields.get("delete")) is bool:
            name, value = _plain_bytes(fields.get("name")), _plain_bytes(fields.get("value"))
            if name is not None and value is not None:
                return ChangePayload(name, value, fields["delete"])
    return _CODECS["rust"].decode(data)


_FIXMAP_OF_3 = b"\x83"
"""MsgPack's header of a map of three entries (a map of three distinct keys when it
unpacks to a dict of three: a repeated key would leave fewer)."""


def _plain_bytes(array: object) -> bytes | None:
    """A list of ints in -128..255 as bytes (either style), else None."""
    if type(array) is not list or not set(map(type, array)) <= {int}:
        return None
    try:
        return bytes(array)
    except ValueError:  # a signed (Scala) byte, or out of range
        if all(-0x80 <= item < 0 for item in array if item < 0 or item > 0xFF):
            return bytes(item & 0xFF for item in array)
        return None
