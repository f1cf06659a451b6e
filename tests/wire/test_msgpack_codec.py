"""MsgPackCodec: exact bytes for every rule of spec 2.2-2.4, strict records, and typed failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Optional, TypeVar

import msgpack
import pytest

from dref.errors import CodecError
from dref.wire.msgpack_codec import MsgPackCodec

X = TypeVar("X")


@dataclass
class Wrapper:
    value: str


@dataclass
class Owner:
    id: int
    active: bool


@dataclass
class Job:
    name: str
    owner: Owner
    tags: list[str]


@dataclass
class Blob:
    data: bytes


@dataclass
class Everything:
    flag: bool
    count: int
    ratio: float
    label: str
    raw: bytes
    buf: bytearray
    maybe: int | None
    old_style: Optional[str]  # noqa: UP045 - typing.Optional must keep working
    pair: tuple[int, str]
    many: tuple[int, ...]
    table: dict[str, list[int]]
    by_id: dict[int, Owner]
    owners: list[Owner]


@dataclass
class Node:
    label: str
    children: list[Node]


@dataclass
class Box(Generic[X]):
    item: X


@dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


@dataclass
class WithHidden:
    shown: int
    hidden: int = field(init=False, default=0)


def everything() -> Everything:
    return Everything(
        flag=True,
        count=-7,
        ratio=0.25,
        label="é",
        raw=b"\x00\x7f\x80\xff",
        buf=bytearray(b"\xe0"),
        maybe=None,
        old_style="x",
        pair=(1, "one"),
        many=(1, 2, 3),
        table={"a": [1, 2], "b": []},
        by_id={7: Owner(7, False)},
        owners=[Owner(1, True)],
    )


# --- golden bytes (spec 2.3) --------------------------------------------------------------


def test_string_hello():
    assert MsgPackCodec(str).encode("hello").hex() == "a568656c6c6f"
    assert MsgPackCodec(str).decode(bytes.fromhex("a568656c6c6f")) == "hello"


def test_wrapper_record():
    data = MsgPackCodec(Wrapper).encode(Wrapper("hello"))
    assert data.hex() == "81a576616c7565a568656c6c6f"
    assert MsgPackCodec(Wrapper).decode(data) == Wrapper("hello")
    assert MsgPackCodec().decode(data) == {"value": "hello"}


def test_nested_record_in_declaration_order():
    job = Job("job", Owner(7, True), ["a", "b"])
    data = MsgPackCodec(Job).encode(job)
    expected = "83a46e616d65a36a6f62a56f776e657282a2696407a6616374697665c3a47461677392a161a162"
    assert data.hex() == expected
    assert MsgPackCodec(Job).decode(data) == job
    assert MsgPackCodec().encode(job) == data  # a dataclass carries its own schema


# --- strings and ints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "header"),
    [
        ("s" * 31, "bf"),
        ("s" * 32, "d920"),
        ("s" * 255, "d9ff"),
        ("s" * 256, "da0100"),
        ("é" * 200, "da0190"),
        ("s" * 65536, "db00010000"),
    ],
)
def test_string_headers(text, header):
    data = MsgPackCodec(str).encode(text)
    assert data.hex().startswith(header)
    assert data[len(header) // 2 :] == text.encode()
    assert MsgPackCodec(str).decode(data) == text


@pytest.mark.parametrize(
    ("number", "hexed"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65536, "ce00010000"),
        (2**32, "cf0000000100000000"),
        (2**64 - 1, "cf" + "ff" * 8),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (-(2**63), "d38000000000000000"),
    ],
)
def test_ints_take_the_most_compact_form(number, hexed):
    assert MsgPackCodec(int).encode(number).hex() == hexed
    assert MsgPackCodec(int).decode(bytes.fromhex(hexed)) == number


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30])
def test_ints_beyond_64_bits_are_refused(number):
    with pytest.raises(CodecError, match="range"):
        MsgPackCodec(int).encode(number)


def test_float_none_bool_forms():
    assert MsgPackCodec().encode(1.5).hex() == "cb3ff8000000000000"
    assert MsgPackCodec().encode(None).hex() == "c0"
    assert MsgPackCodec().encode([True, False]).hex() == "92c3c2"
    assert MsgPackCodec(float).decode(bytes.fromhex("ca3fc00000")) == 1.5  # float32 read too
    assert MsgPackCodec(float).decode(b"\x02") == 2.0


# --- byte arrays in both styles (spec 2.4) ----------------------------------------------------


HIGH = bytes([0x80, 0xFF, 0xDF, 0xE0])
RUST_HIGH = "94cc80ccffccdfcce0"
SCALA_HIGH = "94d080ffd0dfe0"


def test_bytes_rust_style_are_unsigned():
    assert MsgPackCodec(bytes).encode(HIGH).hex() == RUST_HIGH
    assert MsgPackCodec(bytes, style="rust").encode(b"\x00\x7f").hex() == "92007f"


def test_bytes_scala_style_are_signed():
    assert MsgPackCodec(bytes, style="scala").encode(HIGH).hex() == SCALA_HIGH
    assert MsgPackCodec(bytes, style="scala").encode(b"\x00\x7f").hex() == "92007f"


@pytest.mark.parametrize("style", ["rust", "scala"])
@pytest.mark.parametrize("hexed", [RUST_HIGH, SCALA_HIGH])
def test_bytes_decode_leniently_in_either_style(style, hexed):
    assert MsgPackCodec(bytes, style=style).decode(bytes.fromhex(hexed)) == HIGH


def test_bytes_are_arrays_never_bin():
    data = MsgPackCodec(Blob).encode(Blob(b"\x01\x02"))
    assert data.hex() == "81a46461746192" + "0102"
    with pytest.raises(CodecError, match="array of byte values"):
        MsgPackCodec(Blob).decode(msgpack.packb({"data": b"\x01\x02"}, use_bin_type=True))


@pytest.mark.parametrize("element", [256, -129, 1000, "a", 1.0, True, None])
def test_bytes_reject_non_byte_elements(element):
    with pytest.raises(CodecError):
        MsgPackCodec(bytes).decode(msgpack.packb([1, element]))


def test_long_byte_arrays_use_array16():
    data = MsgPackCodec(bytes).encode(bytes(16))
    assert data.hex() == "dc0010" + "00" * 16
    assert MsgPackCodec(bytearray).decode(data) == bytearray(16)


# --- records: round trip and strictness ---------------------------------------------------------


@pytest.mark.parametrize("style", ["rust", "scala"])
def test_every_supported_field_kind_round_trips(style):
    value = everything()
    codec = MsgPackCodec(Everything, style=style)
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert type(decoded.buf) is bytearray and type(decoded.pair) is tuple


def test_optional_is_nil_or_the_bare_value():
    codec = MsgPackCodec(Box[Optional[int]])  # noqa: UP045
    assert codec.encode(Box(None)).hex() == "81a46974656dc0"
    assert codec.encode(Box(5)).hex() == "81a46974656d05"
    assert codec.decode(bytes.fromhex("81a46974656dc0")) == Box(None)


def test_recursive_records():
    tree = Node("root", [Node("leaf", [])])
    codec = MsgPackCodec(Node)
    assert codec.decode(codec.encode(tree)) == tree


def test_record_keys_match_in_any_order():
    data = msgpack.packb({"active": False, "id": 3})
    assert MsgPackCodec(Owner).decode(data) == Owner(3, False)


@pytest.mark.parametrize(
    ("plain", "message"),
    [
        ({"id": 1}, r"missing \['active'\]"),
        ({"id": 1, "active": True, "extra": 0}, r"unknown keys \['extra'\]"),
        ({"id": 1, "actve": True}, "unknown keys"),
        ({"id": "1", "active": True}, "at value.id: expected int, got str"),
        ({"id": 1, "active": 1}, "expected bool"),
        ({"id": True, "active": True}, "expected int, got bool"),
        ([1, True], "expected a map for record Owner"),
    ],
)
def test_strict_record_failures(plain, message):
    with pytest.raises(CodecError, match=message):
        MsgPackCodec(Owner).decode(msgpack.packb(plain))


def test_nested_failure_names_the_path():
    data = msgpack.packb({"name": "j", "owner": {"id": 1, "active": "no"}, "tags": []})
    with pytest.raises(CodecError, match=r"value\.owner\.active"):
        MsgPackCodec(Job).decode(data)


def test_duplicate_map_keys_are_refused():
    data = bytes.fromhex("82a26964 01 a26964 02".replace(" ", ""))
    with pytest.raises(CodecError, match="duplicate"):
        MsgPackCodec().decode(data)


def test_record_validation_failure_becomes_codec_error():
    with pytest.raises(CodecError, match="must be positive"):
        MsgPackCodec(Positive).decode(msgpack.packb({"n": 0}))


def test_fixed_tuple_length_is_checked():
    with pytest.raises(CodecError, match="expected 2 items"):
        MsgPackCodec(tuple[int, str]).decode(msgpack.packb([1, "a", 2]))


def test_union_arms_are_tried_in_order():
    codec = MsgPackCodec(int | str)
    assert codec.decode(codec.encode("x")) == "x"
    assert codec.decode(codec.encode(3)) == 3
    with pytest.raises(CodecError):
        codec.encode(1.5)


# --- without a schema -------------------------------------------------------------------------


def test_schemaless_decode_returns_plain_structures():
    data = MsgPackCodec().encode({"a": (1, 2), 3: [None, 1.5], (1, 2): b"\x80"})
    assert MsgPackCodec().decode(data) == {"a": [1, 2], 3: [None, 1.5], (1, 2): [0x80]}


def test_for_value_infers_the_schema():
    job = Job("j", Owner(1, True), [])
    codec = MsgPackCodec.for_value(job, style="scala")
    assert codec.style == "scala"
    assert codec.decode(MsgPackCodec().encode(job)) == job
    assert MsgPackCodec.for_value(3).decode(b"\x05") == 5
    with pytest.raises(CodecError):
        MsgPackCodec.for_value(3).decode(b"\xa1x")


# --- refusals ---------------------------------------------------------------------------------


class Opaque:
    pass


@dataclass(frozen=True)
class Key:
    k: int


@pytest.mark.parametrize(
    "value", [{1, 2}, Opaque(), frozenset(), object(), {"k": {1}}, [Opaque()], {Key(1): 1}, Opaque]
)
def test_unencodable_values_are_refused(value):
    with pytest.raises(CodecError):
        MsgPackCodec().encode(value)


def test_self_containing_value_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="nested too deeply"):
        MsgPackCodec().encode(loop)


def test_value_not_matching_the_schema_is_refused():
    with pytest.raises(CodecError, match="expected Owner, got Wrapper"):
        MsgPackCodec(Owner).encode(Wrapper("x"))
    with pytest.raises(CodecError, match=r"value\.value: expected str, got int"):
        MsgPackCodec(Wrapper).encode(Wrapper(1))
    with pytest.raises(CodecError, match="expected int, got bool"):
        MsgPackCodec(int).encode(True)


@pytest.mark.parametrize(
    "schema", [set[int], Opaque, list[Opaque], dict[str, frozenset[int]], WithHidden]
)
def test_unsupported_schemas_fail_at_construction(schema):
    with pytest.raises(CodecError):
        MsgPackCodec(schema)


def test_unknown_style_is_refused():
    with pytest.raises(CodecError, match="style"):
        MsgPackCodec(style="java")


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"\xc1",  # reserved
        b"\xa5hel",  # truncated str
        b"\x01\x02",  # trailing bytes
        b"\xa2\xff\xfe",  # bad UTF-8
        b"\xd6\xff\x00\x00\x00\x01",  # timestamp extension
        b"\xd4\x05\x00",  # other extension
        b"\x81\x80\x01",  # a map as a map key
        b"\x91" * 2000 + b"\x00",  # too deep
        b"\xdd\xff\xff\xff\xff",  # huge array header
    ],
)
def test_bad_bytes_raise_codec_error(data):
    with pytest.raises(CodecError):
        MsgPackCodec().decode(data)


def test_non_bytes_input_is_refused():
    with pytest.raises(CodecError, match="must be bytes"):
        MsgPackCodec().decode("a568656c6c6f")
