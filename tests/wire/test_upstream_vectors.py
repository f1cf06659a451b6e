"""Upstream's own golden file `vectors.json` (spec 2.3, 8.1), read in place, never copied."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dref.wire.change_payload import ChangePayload, decode_change_payload, encode_change_payload
from dref.wire.lock_token import decode_lock_token, encode_lock_token
from dref.wire.msgpack_codec import MsgPackCodec

UPSTREAM = Path(
    os.environ.get(
        "DREF_UPSTREAM_VECTORS",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "upstream-vectors",
    )
)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    path = UPSTREAM / "vectors.json"
    if not path.is_file():
        pytest.skip(f"upstream vectors not found at {path} (../shared is absent)")
    return dict(json.loads(path.read_text()))


def test_lock_value(vectors):
    case = vectors["lock_value"]
    assert encode_lock_token(case["value"]).hex() == case["hex"]
    assert decode_lock_token(bytes.fromhex(case["hex"])) == case["value"]


@pytest.mark.parametrize("name", ["msgpack_string_hello", "msgpack_wrapper_hello"])
@pytest.mark.parametrize("style", ["rust", "scala"])
def test_msgpack_values(vectors, name, style):
    case = vectors[name]
    assert MsgPackCodec(style=style).encode(case["value"]).hex() == case["hex"]
    assert MsgPackCodec().decode(bytes.fromhex(case["hex"])) == case["value"]


@pytest.mark.parametrize("name", ["change_payload_set", "change_payload_delete"])
@pytest.mark.parametrize("style", ["rust", "scala"])
def test_change_payloads(vectors, name, style):
    case = vectors[name]
    payload = ChangePayload(
        name=case["name"].encode(),
        value=bytes.fromhex(case.get("value_hex", "")),
        delete=case["delete"],
    )
    assert encode_change_payload(payload, style=style).hex() == case["payload_hex"]
    assert decode_change_payload(bytes.fromhex(case["payload_hex"])) == payload
