"""The default value codec: MsgPack, byte-compatible with Scala's zio-schema-msg-pack and
Rust's rmp-serde named encoding (spec section 2).

What goes on the wire:

* a dataclass (record) is a map of field name -> value, every field, in declaration order.
  Decoding is strict like zio-schema: exactly the declared field names, in any order; an
  unknown or missing key is a `CodecError`.
* `bytes` / `bytearray` are an ARRAY with one integer per byte, never MsgPack bin.
* `str` is a MsgPack str (fixstr, str8, str16, str32), `int` the most compact int form within
  the 64-bit range, `float` a float64, `None` nil, `list`/`tuple` arrays, `dict` maps.
* an optional field (`X | None`) is nil or the bare value: the rmp-serde form. Scala's
  zio-schema writes an Option as an array of 0 or 1 element instead, so Option fields are
  NOT cross-language (spec 2.2): keep them out of values that Scala nodes read.
* anything else (sets, arbitrary objects) is refused; nothing pickle-like is ever written.

Writing styles, for byte elements >= 0x80 only (spec 2.4; smaller bytes are identical):

* ``"rust"`` (default): unsigned, 0x80..0xff as uint8 ``cc xx``. What Rust writes and the only
  form Rust reads; choose it for Python-only clusters and clusters with Rust nodes.
* ``"scala"``: signed JVM bytes, 0x80..0xdf as int8 ``d0 xx`` and 0xe0..0xff as negative
  fixint. What Scala writes and the only form Scala reads; choose it when Scala nodes read
  the values.

Decoding accepts both forms whatever the style. Without a schema, `decode` returns plain
Python data (map -> dict, array -> list). The schema mapper (`dref.wire.schema`) is
shared with the JSON codec, which differs only in how bytes are written.
"""

from __future__ import annotations

from typing import (
    Any,
    Generic,
    Literal,
    TypeVar,
    cast,
    overload,
)

import msgpack

from dref.errors import CodecError
from dref.wire.schema import (
    PlainForm,
    check_schema,
    from_plain,
    is_array,
    kind_name,
    location,
    to_plain,
    type_mismatch,
)

T = TypeVar("T")
Style = Literal["rust", "scala"]


# --- MsgPack ----------------------------------------------------------------------------


def _unsigned_bytes(data: bytes) -> list[int]:
    return list(data)


def _signed_bytes(data: bytes) -> list[int]:
    return [b - 0x100 if b >= 0x80 else b for b in data]


def _bytes_from_array(obj: object, path: str) -> bytes:
    """Read one int per byte, leniently: both the unsigned (Rust) and signed (Scala) forms."""
    if not is_array(obj):
        raise type_mismatch(path, "an array of byte values", obj)
    out = bytearray()
    for i, item in enumerate(obj):
        if type(item) is not int or not -0x80 <= item <= 0xFF:
            raise CodecError(f"{location(path)}[{i}] is {item!r}, not a byte value in -128..255")
        out.append(item & 0xFF)
    return bytes(out)


def byte_array(data: bytes, style: Style) -> list[int]:
    """`data` as the MsgPack array of ints that `style` writes (spec 2.4)."""
    return cast(list[int], _FORMS[style].bytes_to_plain(data))


_FORMS: dict[str, PlainForm] = {
    "rust": PlainForm("MsgPack", _unsigned_bytes, _bytes_from_array, str_keys_only=False),
    "scala": PlainForm("MsgPack", _signed_bytes, _bytes_from_array, str_keys_only=False),
}


def _unique_map(pairs: list[tuple[object, object]]) -> dict[object, object]:
    result: dict[object, object] = {}
    for key, value in pairs:
        if key in result:
            raise CodecError(f"duplicate map key {key!r}")
        result[key] = value
    return result


class MsgPackCodec(Generic[T]):
    """MsgPack codec for values of type `schema` (or any plain data without one); `style` is how
    it writes bytes >= 0x80. See the module docstring for the wire rules and the two styles."""

    @overload
    def __init__(
        self: MsgPackCodec[Any], schema: None = None, *, style: Style = "rust"
    ) -> None: ...

    @overload
    def __init__(self: MsgPackCodec[T], schema: type[T], *, style: Style = "rust") -> None: ...

    @overload
    def __init__(self: MsgPackCodec[Any], schema: object, *, style: Style = "rust") -> None: ...

    def __init__(self, schema: object = None, *, style: Style = "rust") -> None:
        if style not in _FORMS:
            raise CodecError(f"unknown MsgPack style {style!r}; use 'rust' or 'scala'")
        if schema is not None:
            check_schema(schema)
        self._schema: object = Any if schema is None else schema
        self._form = _FORMS[style]
        self.style: Style = style

    @classmethod
    def for_value(cls, sample: T, *, style: Style = "rust") -> MsgPackCodec[T]:
        """A codec whose schema is the sample's type (its dataclass, or its plain type)."""
        return MsgPackCodec(type(sample), style=style)

    def encode(self, value: T) -> bytes:
        """The MsgPack bytes of `value`; `CodecError` if it does not fit the schema or MsgPack."""
        try:
            plain = to_plain(value, self._schema, self._form)
            return cast(bytes, msgpack.packb(plain, use_bin_type=True))
        except CodecError:
            raise
        except RecursionError as e:
            raise CodecError("value is nested too deeply (or contains itself)") from e
        except (OverflowError, ValueError, TypeError) as e:  # e.g. an int beyond 64 bits
            raise CodecError(f"cannot encode as MsgPack: {e}") from e

    def decode(self, data: bytes) -> T:
        """The value the MsgPack `data` holds; `CodecError` on bad, trailing or mistyped bytes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"MsgPack data must be bytes, got {kind_name(data)}")
        try:
            obj = msgpack.unpackb(
                data, raw=False, use_list=False, strict_map_key=False, object_pairs_hook=_unique_map
            )
            return cast(T, from_plain(obj, self._schema, self._form))
        except CodecError:
            raise
        except RecursionError as e:
            raise CodecError("MsgPack data is nested too deeply") from e
        except (ValueError, TypeError) as e:  # msgpack's errors derive from ValueError
            raise CodecError(f"invalid MsgPack: {str(e) or type(e).__name__}") from e
