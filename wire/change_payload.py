"""The `dref-change` notification published on Redis after every write (spec 6.3).

A MsgPack record `{name, value, delete}` in that field order; `name` and `value` are byte
arrays (one int per byte, see `dref.wire.msgpack_codec`). Writing uses the "rust" or
"scala" style for bytes >= 0x80; reading accepts both, so a Python node understands
notifications from either language.
"""

from __future__ import annotations

from dataclasses import dataclass

from dref.errors import CodecError
from dref.wire.msgpack_codec import MsgPackCodec, Style


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
    """The MsgPack bytes of `payload`, byte arrays written in `style`."""
    if style not in _CODECS:
        raise CodecError(f"unknown MsgPack style {style!r}; use 'rust' or 'scala'")
    return _CODECS[style].encode(payload)


def decode_change_payload(data: bytes) -> ChangePayload:
    """The payload in `data` (either byte-array style); `CodecError` on anything else."""
    return _CODECS["rust"].decode(data)
