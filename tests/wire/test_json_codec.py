"""JsonCodec: records as objects, bytes as base64, strict decoding, typed failures."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from dref.errors import CodecError
from dref.wire.json_codec import JsonCodec


@dataclass
class Owner:
    id: int
    active: bool


@dataclass
class Doc:
    title: str
    body: bytes
    owner: Owner
    scores: dict[str, float]
    note: str | None


DOC = Doc("t", b"\x00\xff\x80", Owner(7, True), {"a": 1.5}, None)


def test_record_is_a_compact_utf8_object_in_field_order():
    data = JsonCodec(Doc).encode(DOC)
    assert data == (
        b'{"title":"t","body":"AP+A","owner":{"id":7,"active":true},"scores":{"a":1.5},"note":null}'
    )
    assert JsonCodec(Doc).decode(data) == DOC


def test_non_ascii_text_is_utf8_not_escaped():
    assert JsonCodec(str).encode("é") == '"é"'.encode()


def test_schemaless_round_trip_gives_plain_data():
    data = JsonCodec().encode(DOC)
    assert JsonCodec().decode(data)["owner"] == {"id": 7, "active": True}
    assert JsonCodec.for_value(DOC).decode(data) == DOC


def test_float_fields_accept_integral_json_numbers():
    assert JsonCodec(float).decode(b"2") == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id":1}', "missing"),
        ('{"id":1,"active":true,"x":0}', "unknown keys"),
        ('{"id":1,"id":2,"active":true}', "duplicate"),
        ('{"id":"1","active":true}', "expected int"),
        ("[1,true]", "expected a map"),
    ],
)
def test_strict_record_failures(text, message):
    with pytest.raises(CodecError, match=message):
        JsonCodec(Owner).decode(text.encode())


@pytest.mark.parametrize("text", ['"AP+"', '"AP+A!"', "[0,255]", '"é"'])
def test_bytes_must_be_valid_base64_strings(text):
    with pytest.raises(CodecError):
        JsonCodec(bytes).decode(text.encode())


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"\xff", b"NaN", b"-Infinity", b"1e999", b"[1] 2", b"[" * 100_000, b"1" * 5000],
)
def test_bad_input_raises_codec_error(data):
    with pytest.raises(CodecError):
        JsonCodec().decode(data)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {1: "int key"}, {"s": {1}}, "\ud800"]
)
def test_unencodable_values_are_refused(value):
    with pytest.raises(CodecError):
        JsonCodec().encode(value)


def test_output_is_standard_json():
    assert json.loads(JsonCodec().encode({"k": [1, None, "x"]})) == {"k": [1, None, "x"]}
