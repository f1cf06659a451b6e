"""Property tests: every codec round-trips generated values in both styles, and every decoder
turns arbitrary or corrupted bytes into a value or a CodecError, never another exception."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dref.errors import CodecError
from dref.wire.change_payload import ChangePayload, decode_change_payload, encode_change_payload
from dref.wire.json_codec import JsonCodec
from dref.wire.lock_token import decode_lock_token
from dref.wire.msgpack_codec import MsgPackCodec

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

styles = st.sampled_from(["rust", "scala"])
int64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no infinities


@dataclass
class Inner:
    label: str
    raw: bytes


@dataclass
class Sample:
    flag: bool
    count: int
    ratio: float
    text: str
    raw: bytes
    maybe: int | None
    items: list[Inner]
    table: dict[str, int]
    pair: tuple[int, bytes]


inners = st.builds(Inner, st.text(max_size=20), st.binary(max_size=40))
samples = st.builds(
    Sample,
    st.booleans(),
    int64,
    finite,
    st.text(max_size=300),
    st.binary(max_size=300),
    st.none() | int64,
    st.lists(inners, max_size=4),
    st.dictionaries(st.text(max_size=8), int64, max_size=4),
    st.tuples(int64, st.binary(max_size=8)),
)
plain_values = st.recursive(
    st.none() | st.booleans() | int64 | finite | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8) | int64, children, max_size=5)
    ),
    max_leaves=30,
)


@PROPERTY
@given(samples, styles)
def test_msgpack_records_round_trip(sample, style):
    codec = MsgPackCodec(Sample, style=style)
    assert codec.decode(codec.encode(sample)) == sample


@PROPERTY
@given(samples)
def test_styles_read_each_other(sample):
    rust, scala = MsgPackCodec(Sample, style="rust"), MsgPackCodec(Sample, style="scala")
    assert rust.decode(scala.encode(sample)) == sample
    assert scala.decode(rust.encode(sample)) == sample


@PROPERTY
@given(st.binary(max_size=300))
def test_styles_differ_exactly_when_a_byte_is_high(data):
    rust = MsgPackCodec(bytes, style="rust").encode(data)
    scala = MsgPackCodec(bytes, style="scala").encode(data)
    assert (rust == scala) == all(b < 0x80 for b in data)
    assert len(rust) - len(scala) == sum(1 for b in data if b >= 0xE0)  # 2 bytes vs fixint


@PROPERTY
@given(plain_values, styles)
def test_msgpack_plain_values_round_trip_without_schema(value, style):
    codec = MsgPackCodec(style=style)
    assert codec.decode(codec.encode(value)) == value


@PROPERTY
@given(samples)
def test_json_records_round_trip(sample):
    assert JsonCodec(Sample).decode(JsonCodec(Sample).encode(sample)) == sample


@PROPERTY
@given(
    st.builds(ChangePayload, st.binary(max_size=60), st.binary(max_size=200), st.booleans()), styles
)
def test_change_payloads_round_trip(payload, style):
    assert decode_change_payload(encode_change_payload(payload, style=style)) == payload


DECODERS: dict[str, Callable[[bytes], object]] = {
    "msgpack": MsgPackCodec().decode,
    "msgpack-record": MsgPackCodec(Sample).decode,
    "msgpack-scala-record": MsgPackCodec(Sample, style="scala").decode,
    "json": JsonCodec().decode,
    "json-record": JsonCodec(Sample).decode,
    "change-payload": decode_change_payload,
    "lock-token": decode_lock_token,
}


def _decodes_or_codec_error(decode: Callable[[bytes], object], data: bytes) -> None:
    try:
        decode(data)
    except CodecError:
        pass


@pytest.mark.parametrize("name", sorted(DECODERS))
@PROPERTY
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_codec_error(name, data):
    _decodes_or_codec_error(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@PROPERTY
@given(
    sample=samples,
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=4),
)
def test_corrupted_encodings_decode_or_raise_codec_error(name, sample, cut, flips):
    valid = (
        JsonCodec(Sample).encode(sample)
        if name.startswith("json")
        else MsgPackCodec().encode(sample)
    )
    data = bytearray(valid[: len(valid) - cut % (len(valid) + 1)] if cut % 3 == 0 else valid)
    for position, byte in flips:
        if data:
            data[position % len(data)] = byte
    _decodes_or_codec_error(DECODERS[name], bytes(data))
