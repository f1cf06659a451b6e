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
Python data (map -> dict, array -> list). The schema mapper here (`to_plain`, `from_plain`,
`check_schema`) is shared with the JSON codec, which differs only in how bytes are written.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import (
    Any,
    Generic,
    Literal,
    TypeGuard,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    overload,
)

import msgpack

from dref.errors import CodecError

T = TypeVar("T")
Style = Literal["rust", "scala"]

_NONE = type(None)
_SCALARS = (_NONE, bool, int, float, str, bytes, bytearray)


@dataclass(frozen=True)
class PlainForm:
    """How one codec turns byte strings into plain data and back, and which map keys it allows."""

    name: str
    bytes_to_plain: Callable[[bytes], object]
    bytes_from_plain: Callable[[object, str], bytes]
    str_keys_only: bool


def check_schema(hint: object) -> None:
    """Raise `CodecError` unless every type reachable from `hint` can be encoded."""
    _check(hint, set())


def to_plain(value: object, hint: object, form: PlainForm) -> object:
    """Turn `value`, checked against `hint` (`Any` accepts anything encodable), into plain data."""
    return _to_plain(value, hint, form, "")


def from_plain(obj: object, hint: object, form: PlainForm) -> object:
    """Rebuild a value of type `hint` from plain data; `Any` returns plain dicts and lists."""
    return _from_plain(obj, hint, form, "")


# --- the type hints understood --------------------------------------------------------


def _normalise(hint: object) -> object:
    if hint is None:
        return _NONE
    if hint is object or isinstance(hint, TypeVar):
        return Any
    return hint


def _union_arms(hint: object) -> tuple[object, ...] | None:
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return get_args(hint)
    return None


def _container(hint: object) -> type | None:
    """`list`, `tuple` or `dict` when `hint` is one of them, bare or parameterised."""
    origin = get_origin(hint) or hint
    return cast(type, origin) if origin in (list, tuple, dict) else None


_Fields = tuple[tuple[str, object], ...]


def _record(hint: object) -> tuple[type, _Fields] | None:
    """The dataclass named by `hint` (bare, or generic with type arguments) and its field hints."""
    origin = get_origin(hint)
    cls = hint if origin is None else origin
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return None
    fields = _fields(cls)
    if origin is not None:
        bound = dict(zip(getattr(cls, "__parameters__", ()), get_args(hint), strict=False))
        fields = tuple((name, _substitute(field_hint, bound)) for name, field_hint in fields)
    return cls, fields


def _substitute(hint: object, bound: dict[Any, object]) -> object:
    """`hint` with the type variables of a generic record replaced by their arguments."""
    if isinstance(hint, TypeVar):
        return bound.get(hint, Any)
    params = getattr(hint, "__parameters__", ())
    if params:
        return cast(Any, hint)[tuple(bound.get(p, Any) for p in params)]
    return hint


def _is_array(obj: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """A decoded MsgPack/JSON array (exact types: msgpack's ExtType is a tuple subclass)."""
    return type(obj) is list or type(obj) is tuple


@functools.cache
def _fields(cls: type) -> _Fields:
    """The record's (field name, type hint) pairs in declaration order."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as e:  # a forward reference that does not resolve, or a bad annotation
        raise CodecError(f"cannot read the field types of {cls.__qualname__}: {e}") from e
    pairs = []
    for field in dataclasses.fields(cls):
        if not field.init:
            raise CodecError(f"{cls.__qualname__}.{field.name} has init=False; records need it")
        pairs.append((field.name, hints.get(field.name, Any)))
    return tuple(pairs)


def _sequence_hints(hint: object, length: int, path: str) -> list[object]:
    args = get_args(hint)
    if not args:
        return [Any] * length
    if _container(hint) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != length:
            raise CodecError(f"{_at(path)}expected {len(args)} items, got {length}")
        return list(args)
    return [args[0]] * length


def _map_hints(hint: object) -> tuple[object, object]:
    args = get_args(hint)
    return (args[0], args[1]) if args else (Any, Any)


def _check(hint: object, seen: set[object]) -> None:
    hint = _normalise(hint)
    arms = _union_arms(hint)
    if hint is Any or hint in _SCALARS:
        return
    if arms is not None:
        for arm in arms:
            _check(arm, seen)
    elif _container(hint) is not None:
        for arg in get_args(hint):
            if arg is not Ellipsis:
                _check(arg, seen)
    elif (record := _record(hint)) is not None:
        if hint not in seen:
            seen.add(hint)
            for _, field_hint in record[1]:
                _check(field_hint, seen)
    else:
        raise CodecError(
            f"cannot build a codec for {hint!r}: supported are dataclasses, None, bool, int, "
            "float, str, bytes, bytearray, list, tuple, dict and unions of these"
        )


# --- value -> plain -------------------------------------------------------------------


def _at(path: str) -> str:
    return f"at value{path}: " if path else ""


def _kind(obj: object) -> str:
    return type(obj).__qualname__


def _mismatch(path: str, want: str, value: object) -> CodecError:
    return CodecError(f"{_at(path)}expected {want}, got {_kind(value)}")


def _to_plain(value: object, hint: object, form: PlainForm, path: str) -> object:
    hint = _normalise(hint)
    if hint is Any:
        return _infer_to_plain(value, form, path)
    arms = _union_arms(hint)
    if arms is not None:
        for arm in arms:
            try:
                return _to_plain(value, arm, form, path)
            except CodecError:
                continue
        raise _mismatch(path, str(hint), value)
    if hint is _NONE:
        if value is not None:
            raise _mismatch(path, "None", value)
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise _mismatch(path, "bool", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(path, "int", value)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _mismatch(path, "float", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _mismatch(path, "str", value)
        return str(value)
    if hint is bytes or hint is bytearray:
        if not isinstance(value, (bytes, bytearray)):
            raise _mismatch(path, "bytes", value)
        return form.bytes_to_plain(bytes(value))
    container = _container(hint)
    if container is list or container is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(path, "list or tuple", value)
        item_hints = _sequence_hints(hint, len(value), path)
        return [
            _to_plain(v, h, form, f"{path}[{i}]")
            for i, (v, h) in enumerate(zip(value, item_hints, strict=True))
        ]
    if container is dict:
        if not isinstance(value, dict):
            raise _mismatch(path, "dict", value)
        return _map_to_plain(value, _map_hints(hint), form, path)
    record = _record(hint)
    if record is not None:
        if not isinstance(value, record[0]):
            raise _mismatch(path, record[0].__qualname__, value)
        return _record_to_plain(value, record[1], form, path)
    raise CodecError(f"{_at(path)}cannot encode type {hint!r}")


def _infer_to_plain(value: object, form: PlainForm, path: str) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return form.bytes_to_plain(bytes(value))
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, Any, form, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _map_to_plain(value, (Any, Any), form, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _record_to_plain(value, _fields(type(value)), form, path)
    raise CodecError(
        f"{_at(path)}cannot encode a value of type {_kind(value)}: only dataclasses, None, "
        "bool, int, float, str, bytes, lists, tuples and dicts are encodable"
    )


def _record_to_plain(
    value: object, fields: _Fields, form: PlainForm, path: str
) -> dict[object, object]:
    return {
        name: _to_plain(getattr(value, name), hint, form, f"{path}.{name}") for name, hint in fields
    }


def _map_to_plain(
    value: dict[Any, Any], hints: tuple[object, object], form: PlainForm, path: str
) -> dict[object, object]:
    key_hint, value_hint = hints
    plain: dict[object, object] = {}
    for key, item in value.items():
        plain_key = _hashable(_to_plain(key, key_hint, form, f"{path}{{key}}"), path)
        if form.str_keys_only and not isinstance(plain_key, str):
            raise CodecError(f"{_at(path)}{form.name} map keys must be str, got {_kind(key)}")
        plain[plain_key] = _to_plain(item, value_hint, form, f"{path}[{key!r}]")
    return plain


def _hashable(plain: object, path: str) -> object:
    """Plain data usable as a dict key: arrays become tuples; maps are refused."""
    if isinstance(plain, (list, tuple)):
        return tuple(_hashable(item, path) for item in plain)
    if isinstance(plain, dict):
        raise CodecError(f"{_at(path)}a map key cannot itself be a map or a record")
    return plain


# --- plain -> value -------------------------------------------------------------------


def _from_plain(obj: object, hint: object, form: PlainForm, path: str) -> object:
    hint = _normalise(hint)
    if hint is Any:
        return _infer_from_plain(obj, form, path)
    arms = _union_arms(hint)
    if arms is not None:
        for arm in arms:
            try:
                return _from_plain(obj, arm, form, path)
            except CodecError:
                continue
        raise _mismatch(path, str(hint), obj)
    if hint is _NONE:
        if obj is not None:
            raise _mismatch(path, "None", obj)
        return None
    if hint is bool or hint is int or hint is str:
        if type(obj) is not hint:
            raise _mismatch(path, cast(type, hint).__name__, obj)
        return obj
    if hint is float:
        if type(obj) not in (int, float):
            raise _mismatch(path, "float", obj)
        return float(cast(float, obj))
    if hint is bytes or hint is bytearray:
        return cast(type, hint)(form.bytes_from_plain(obj, path))
    container = _container(hint)
    if container is list or container is tuple:
        if not _is_array(obj):
            raise _mismatch(path, "array", obj)
        item_hints = _sequence_hints(hint, len(obj), path)
        items = [
            _from_plain(o, h, form, f"{path}[{i}]")
            for i, (o, h) in enumerate(zip(obj, item_hints, strict=True))
        ]
        return items if container is list else tuple(items)
    if container is dict:
        if not isinstance(obj, dict):
            raise _mismatch(path, "map", obj)
        key_hint, value_hint = _map_hints(hint)
        return {
            _hashable(_from_plain(k, key_hint, form, f"{path}{{key}}"), path): _from_plain(
                v, value_hint, form, f"{path}[{k!r}]"
            )
            for k, v in obj.items()
        }
    record = _record(hint)
    if record is not None:
        return _record_from_plain(obj, *record, form, path)
    raise CodecError(f"{_at(path)}cannot decode type {hint!r}")


def _infer_from_plain(obj: object, form: PlainForm, path: str) -> object:
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return obj
    if _is_array(obj):
        return [_from_plain(o, Any, form, f"{path}[{i}]") for i, o in enumerate(obj)]
    if isinstance(obj, dict):
        return {
            _hashable(_from_plain(k, Any, form, f"{path}{{key}}"), path): _from_plain(
                v, Any, form, f"{path}[{k!r}]"
            )
            for k, v in obj.items()
        }
    raise CodecError(f"{_at(path)}unsupported {form.name} item of type {_kind(obj)}")


def _record_from_plain(
    obj: object, cls: type, field_hints: _Fields, form: PlainForm, path: str
) -> object:
    if not isinstance(obj, dict):
        raise _mismatch(path, f"a map for record {cls.__qualname__}", obj)
    fields = dict(field_hints)
    unknown = [key for key in obj if key not in fields]
    missing = [name for name in fields if name not in obj]
    if unknown or missing:
        raise CodecError(
            f"{_at(path)}record {cls.__qualname__} needs exactly the fields {list(fields)}; "
            f"unknown keys {unknown}, missing {missing}"
        )
    kwargs = {
        name: _from_plain(obj[name], hint, form, f"{path}.{name}") for name, hint in fields.items()
    }
    try:
        return cls(**kwargs)
    except Exception as e:  # the record's own __init__ / __post_init__ refused the values
        raise CodecError(f"{_at(path)}{cls.__qualname__} refused the decoded fields: {e}") from e


# --- MsgPack ----------------------------------------------------------------------------


def _unsigned_bytes(data: bytes) -> list[int]:
    return list(data)


def _signed_bytes(data: bytes) -> list[int]:
    return [b - 0x100 if b >= 0x80 else b for b in data]


def _bytes_from_array(obj: object, path: str) -> bytes:
    """Read one int per byte, leniently: both the unsigned (Rust) and signed (Scala) forms."""
    if not _is_array(obj):
        raise _mismatch(path, "an array of byte values", obj)
    out = bytearray()
    for i, item in enumerate(obj):
        if type(item) is not int or not -0x80 <= item <= 0xFF:
            raise CodecError(f"{_at(path)}[{i}] is {item!r}, not a byte value in -128..255")
        out.append(item & 0xFF)
    return bytes(out)


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
            raise CodecError(f"MsgPack data must be bytes, got {_kind(data)}")
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
