"""The schema mapper shared by the value codecs: typed values (dataclasses, containers,
unions, scalars) to plain data and back, checked against type hints.

A codec supplies a `PlainForm` saying how bytes become plain data (MsgPack: an array of
ints; JSON: base64) and whether map keys must be strings; everything else is shared, so the
MsgPack and JSON codecs accept and refuse exactly the same values.
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
    TypeGuard,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
)

from dref.errors import CodecError

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


def is_array(obj: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
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
            raise CodecError(f"{location(path)}expected {len(args)} items, got {length}")
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


def location(path: str) -> str:
    return f"at value{path}: " if path else ""


def kind_name(obj: object) -> str:
    return type(obj).__qualname__


def type_mismatch(path: str, want: str, value: object) -> CodecError:
    return CodecError(f"{location(path)}expected {want}, got {kind_name(value)}")


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
        raise type_mismatch(path, str(hint), value)
    if hint is _NONE:
        if value is not None:
            raise type_mismatch(path, "None", value)
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise type_mismatch(path, "bool", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_mismatch(path, "int", value)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise type_mismatch(path, "float", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise type_mismatch(path, "str", value)
        return str(value)
    if hint is bytes or hint is bytearray:
        if not isinstance(value, (bytes, bytearray)):
            raise type_mismatch(path, "bytes", value)
        return form.bytes_to_plain(bytes(value))
    container = _container(hint)
    if container is list or container is tuple:
        if not isinstance(value, (list, tuple)):
            raise type_mismatch(path, "list or tuple", value)
        item_hints = _sequence_hints(hint, len(value), path)
        return [
            _to_plain(v, h, form, f"{path}[{i}]")
            for i, (v, h) in enumerate(zip(value, item_hints, strict=True))
        ]
    if container is dict:
        if not isinstance(value, dict):
            raise type_mismatch(path, "dict", value)
        return _map_to_plain(value, _map_hints(hint), form, path)
    record = _record(hint)
    if record is not None:
        if not isinstance(value, record[0]):
            raise type_mismatch(path, record[0].__qualname__, value)
        return _record_to_plain(value, record[1], form, path)
    raise CodecError(f"{location(path)}cannot encode type {hint!r}")


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
        f"{location(path)}cannot encode a value of type {kind_name(value)}: only dataclasses, "
        "None, bool, int, float, str, bytes, lists, tuples and dicts are encodable"
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
            raise CodecError(
                f"{location(path)}{form.name} map keys must be str, got {kind_name(key)}"
            )
        plain[plain_key] = _to_plain(item, value_hint, form, f"{path}[{key!r}]")
    return plain


def _hashable(plain: object, path: str) -> object:
    """Plain data usable as a dict key: arrays become tuples; maps are refused."""
    if isinstance(plain, (list, tuple)):
        return tuple(_hashable(item, path) for item in plain)
    if isinstance(plain, dict):
        raise CodecError(f"{location(path)}a map key cannot itself be a map or a record")
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
        raise type_mismatch(path, str(hint), obj)
    if hint is _NONE:
        if obj is not None:
            raise type_mismatch(path, "None", obj)
        return None
    if hint is bool or hint is int or hint is str:
        if type(obj) is not hint:
            raise type_mismatch(path, cast(type, hint).__name__, obj)
        return obj
    if hint is float:
        if type(obj) not in (int, float):
            raise type_mismatch(path, "float", obj)
        return float(cast(float, obj))
    if hint is bytes or hint is bytearray:
        return cast(type, hint)(form.bytes_from_plain(obj, path))
    container = _container(hint)
    if container is list or container is tuple:
        if not is_array(obj):
            raise type_mismatch(path, "array", obj)
        item_hints = _sequence_hints(hint, len(obj), path)
        items = [
            _from_plain(o, h, form, f"{path}[{i}]")
            for i, (o, h) in enumerate(zip(obj, item_hints, strict=True))
        ]
        return items if container is list else tuple(items)
    if container is dict:
        if not isinstance(obj, dict):
            raise type_mismatch(path, "map", obj)
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
    raise CodecError(f"{location(path)}cannot decode type {hint!r}")


def _infer_from_plain(obj: object, form: PlainForm, path: str) -> object:
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return obj
    if is_array(obj):
        return [_from_plain(o, Any, form, f"{path}[{i}]") for i, o in enumerate(obj)]
    if isinstance(obj, dict):
        return {
            _hashable(_from_plain(k, Any, form, f"{path}{{key}}"), path): _from_plain(
                v, Any, form, f"{path}[{k!r}]"
            )
            for k, v in obj.items()
        }
    raise CodecError(f"{location(path)}unsupported {form.name} item of type {kind_name(obj)}")


def _record_from_plain(
    obj: object, cls: type, field_hints: _Fields, form: PlainForm, path: str
) -> object:
    if not isinstance(obj, dict):
        raise type_mismatch(path, f"a map for record {cls.__qualname__}", obj)
    fields = dict(field_hints)
    unknown = [key for key in obj if key not in fields]
    missing = [name for name in fields if name not in obj]
    if unknown or missing:
        raise CodecError(
            f"{location(path)}record {cls.__qualname__} needs exactly the fields {list(fields)}; "
            f"unknown keys {unknown}, missing {missing}"
        )
    kwargs = {
        name: _from_plain(obj[name], hint, form, f"{path}.{name}") for name, hint in fields.items()
    }
    try:
        return cls(**kwargs)
    except Exception as e:  # the record's own __init__ / __post_init__ refused the values
        raise CodecError(
            f"{location(path)}{cls.__qualname__} refused the decoded fields: {e}"
        ) from e
