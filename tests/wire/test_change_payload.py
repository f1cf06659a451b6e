"""The dref-change payload: golden bytes (spec 2.3), both byte styles (2.4), typed failures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dref.errors import CodecError
from dref.wire.change_payload import ChangePayload, decode_change_payload, encode_change_payload

SET = ChangePayload(name=b"my-key", value=b"\x01\x02\x03", delete=False)
SET_HEX = "83a46e616d65966d792d6b6579a576616c756593010203a664656c657465c2"
DELETE = ChangePayload(name=b"my-key", value=b"", delete=True)
DELETE_HEX = "83a46e616d65966d792d6b6579a576616c756590a664656c657465c3"


@pytest.mark.parametrize("style", ["rust", "scala"])
@pytest.mark.parametrize(("payload", "hexed"), [(SET, SET_HEX), (DELETE, DELETE_HEX)])
def test_golden_payloads(style, payload, hexed):
    assert encode_change_payload(payload, style=style).hex() == hexed
    assert decode_change_payload(bytes.fromhex(hexed)) == payload


def test_field_order_is_name_value_delete():
    assert [f for f in ChangePayload.__dataclass_fields__] == ["name", "value", "delete"]


HIGH = ChangePayload(name=b"k", value=bytes([0x7F, 0x80, 0xDF, 0xE0, 0xFF, 0x00]), delete=False)
HIGH_PREFIX = "83a46e616d65916ba576616c756596"
HIGH_SUFFIX = "a664656c657465c2"
HIGH_RUST = HIGH_PREFIX + "7fcc80ccdfcce0ccff00" + HIGH_SUFFIX
HIGH_SCALA = HIGH_PREFIX + "7fd080d0dfe0ff00" + HIGH_SUFFIX


def test_high_bytes_in_each_style():
    assert encode_change_payload(HIGH).hex() == HIGH_RUST
    assert encode_change_payload(HIGH, style="scala").hex() == HIGH_SCALA


@pytest.mark.parametrize("hexed", [HIGH_RUST, HIGH_SCALA])
def test_both_styles_decode_to_the_same_payload(hexed):
    assert decode_change_payload(bytes.fromhex(hexed)) == HIGH


def test_scala_payload_carrying_a_record_value():
    """A struct value starts with 0x8N, so Scala writes it as int8 (spec 2.4)."""
    value = bytes.fromhex("82a46e616d65a0a76d657373616765a0")
    payload = ChangePayload(b"interop-chat-message", value, False)
    data = encode_change_payload(payload, style="scala")
    expected = (
        "83a46e616d65dc0014"
        + b"interop-chat-message".hex()  # name: array16 of 20 ASCII bytes
        + "a576616c7565dc0010"  # value: array16 of 16 bytes, each >= 0x80 as int8
        + "d082"
        + "d0a4"
        + b"name".hex()
        + "d0a0"
        + "d0a7"
        + b"message".hex()
        + "d0a0"
        + "a664656c657465c2"
    )
    assert data.hex() == expected
    assert decode_change_payload(data) == payload


@pytest.mark.parametrize(
    "hexed",
    [
        SET_HEX[:-2],  # truncated
        SET_HEX + "c0",  # trailing byte
        SET_HEX.replace("c2", "00"),  # delete is not a bool
        SET_HEX.replace("a664656c657465c2", "a4657874726100").replace("83", "84", 1),  # extra key
        "82a46e616d65966d792d6b6579a576616c756590",  # delete missing
        "83a46e616d65a66d792d6b6579a576616c756590a664656c657465c3",  # name is a str, not bytes
        "83a46e616d6591cd0100a576616c756590a664656c657465c3",  # name byte 256
        "83a46e616d6591d1ff00a576616c756590a664656c657465c3",  # name byte -256
        "83a46e616d6590a46e616d6590a664656c657465c3",  # name twice, value missing
        "83a46e616d6591c3a576616c756590a664656c657465c3",  # a bool among the bytes
        "83a46e616d6591cb3ff0000000000000a576616c756590a664656c657465c3",  # a float byte
        "c0",
    ],
)
def test_malformed_payloads_raise_codec_error(hexed):
    with pytest.raises(CodecError):
        decode_change_payload(bytes.fromhex(hexed))


def test_encode_refuses_non_bytes_fields_and_unknown_styles():
    with pytest.raises(CodecError):
        encode_change_payload(ChangePayload("my-key", b"", True))
    with pytest.raises(CodecError, match="style"):
        encode_change_payload(SET, style="java")


@given(name=st.binary(max_size=40), value=st.binary(max_size=300), delete=st.booleans())
def test_direct_encoding_matches_the_record_schema(name, value, delete):
    from dref.wire.msgpack_codec import MsgPackCodec

    payload = ChangePayload(name, value, delete)
    for style in ("rust", "scala"):
        assert encode_change_payload(payload, style=style) == MsgPackCodec(
            ChangePayload, style=style
        ).encode(payload)


@given(name=st.binary(max_size=40), value=st.binary(max_size=300), delete=st.booleans())
def test_payloads_of_either_style_decode_to_what_was_encoded(name, value, delete):
    payload = ChangePayload(name, value, delete)
    for style in ("rust", "scala"):
        assert decode_change_payload(encode_change_payload(payload, style=style)) == payload
