"""A JSON value codec for humans and tools that read JSON; not what Scala or Rust nodes read.

UTF-8 JSON, compact. Dataclasses are objects with every field in declaration order, decoded
as strictly as the MsgPack codec (exactly the declared fields, in any order). `bytes` and
`bytearray` are standard base64 strings (RFC 4648, with padding) because JSON has no byte
type. Object keys must be str; NaN and infinities are refused, as JSON has none.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Generic, TypeVar, cast, overload

from dref.errors import CodecError
from dref.wire.schema import PlainForm, check_schema, from_plain, to_plain

T = TypeVar("T")


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _from_base64(obj: object, path: str) -> bytes:
    where = f"at value{path}: " if path else ""
    if not isinstance(obj, str):
        raise CodecError(f"{where}expected a base64 string, got {type(obj).__qualname__}")
    try:
        return base64.b64decode(obj.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise CodecError(f"{where}invalid base64: {e}") from e


_FORM = PlainForm("JSON", _base64, _from_base64, str_keys_only=True)


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise CodecError(f"duplicate JSON object key {key!r}")
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise CodecError(f"JSON number {text} is out of the float range")
    return number


def _no_constant(name: str) -> object:
    raise CodecError(f"{name} is not valid JSON")


class JsonCodec(Generic[T]):
    """JSON codec for values of type `schema` (or any plain data without one)."""

    @overload
    def __init__(self: JsonCodec[Any], schema: None = None) -> None: ...

    @overload
    def __init__(self: JsonCodec[T], schema: type[T]) -> None: ...

    @overload
    def __init__(self: JsonCodec[Any], schema: object) -> None: ...

    def __init__(self, schema: object = None) -> None:
        if schema is not None:
            check_schema(schema)
        self._schema: object = Any if schema is None else schema

    @classmethod
    def for_value(cls, sample: T) -> JsonCodec[T]:
        """A codec whose schema is the sample's type (its dataclass, or its plain type)."""
        return JsonCodec(type(sample))

    def encode(self, value: T) -> bytes:
        """The UTF-8 JSON of `value`; `CodecError` if it does not fit the schema or JSON."""
        try:
            plain = to_plain(value, self._schema, _FORM)
            text = json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            return text.encode("utf-8")
        except CodecError:
            raise
        except RecursionError as e:
            raise CodecError("value is nested too deeply (or contains itself)") from e
        except (ValueError, TypeError) as e:  # NaN, lone surrogates, huge ints
            raise CodecError(f"cannot encode as JSON: {e}") from e

    def decode(self, data: bytes) -> T:
        """The value the UTF-8 JSON `data` holds; `CodecError` on bad or mistyped input."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"JSON data must be bytes, got {type(data).__qualname__}")
        try:
            obj = json.loads(
                bytes(data).decode("utf-8"),
                object_pairs_hook=_unique_object,
                parse_float=_finite_float,
                parse_constant=_no_constant,
            )
            return cast(T, from_plain(obj, self._schema, _FORM))
        except CodecError:
            raise
        except RecursionError as e:
            raise CodecError("JSON data is nested too deeply") from e
        except ValueError as e:  # bad UTF-8, bad JSON, ints beyond the digit limit
            raise CodecError(f"invalid JSON: {e}") from e
