"""What an upstream Scala/Rust node sees in Redis is exactly what it would have written itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import redis

from dref.backend import ChangeKind, Entry
from dref.errors import CodecError
from dref.redis_backend import RedisBackend
from dref.wire.lock_token import decode_lock_token
from dref.wire.msgpack_codec import MsgPackCodec

GOLDEN_SET = bytes.fromhex("83a46e616d65966d792d6b6579a576616c756593010203a664656c657465c2")
GOLDEN_DELETE = bytes.fromhex("83a46e616d65966d792d6b6579a576616c756590a664656c657465c3")
WRAPPER_HELLO = bytes.fromhex("81a576616c7565a568656c6c6f")  # MsgPack {"value": "hello"}
CROSSLANG_KEY = "dref:compat:crosslang-test"
CROSSLANG_LOCK = "dref:compat:crosslang-lock"
CROSSLANG_TOKEN = bytes.fromhex("1234567890abcdef")


@dataclass
class Wrapper:
    """The record upstream's cross-language Redis test stores."""

    value: str


def upstream_payload(name: bytes, value: bytes, delete: bool, *, scala: bool) -> bytes:
    """A ChangePayload as Scala (signed bytes) or Rust (unsigned bytes) encodes it (spec 2.4)."""

    def array(data: bytes) -> bytes:
        head = (
            bytes([0x90 + len(data)]) if len(data) < 16 else b"\xdc" + len(data).to_bytes(2, "big")
        )
        body = bytearray()
        for b in data:
            if b < 0x80 or (scala and b >= 0xE0):
                body.append(b)
            else:
                body += bytes([0xD0 if scala else 0xCC, b])
        return head + bytes(body)

    flag = b"\xc3" if delete else b"\xc2"
    return b"\x83\xa4name" + array(name) + b"\xa5value" + array(value) + b"\xa6delete" + flag


def redis_repr(data: bytes) -> str:
    """How MONITOR prints an argument (Redis's sdscatrepr, without the quotes)."""
    escapes = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 7: "\\a", 8: "\\b"}
    return "".join(escapes.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in data)


class ChangeTap:
    """A plain redis-py subscriber of `dref-change`, like an upstream node's listener."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("dref-change")
        deadline = time.monotonic() + 5
        while self._client.pubsub_numsub("dref-change")[0][1] < 1:
            self._pubsub.get_message(timeout=0.05)  # reads the subscribe confirmation
            assert time.monotonic() < deadline, "tap did not subscribe"

    def next(self, timeout: float = 5.0) -> bytes:
        """The next payload published on `dref-change`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None:
                return bytes(message["data"])
        raise AssertionError("no dref-change message")

    def nothing_more(self, grace: float = 0.3) -> bool:
        """True if no further payload arrives within `grace` seconds."""
        return self._pubsub.get_message(timeout=grace) is None

    def close(self) -> None:
        """Unsubscribe and disconnect."""
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def tap(redis_url: str) -> Iterator[ChangeTap]:
    t = ChangeTap(redis_url)
    yield t
    t.close()


HISTORY_COMMANDS = ("EXISTS ", "XREVRANGE ", "XADD ")
"""What our scripts run for the change history (a stream of our own), beside upstream's."""


def lua_commands(raw: redis.Redis, action: Any, expected: int) -> list[str]:
    """The commands our scripts ran on the server while `action()` ran, from MONITOR,
    without those kept for the change history."""
    commands: list[str] = []
    with raw.monitor() as monitor:
        action()
        for _ in range(200):
            entry = monitor.next_command()
            if entry["client_type"] == "lua" and not entry["command"].startswith(
                HISTORY_COMMANDS
            ):
                commands.append(entry["command"])
                if len(commands) == expected:
                    break
    return commands


def test_helper_matches_golden_vectors() -> None:
    assert upstream_payload(b"my-key", b"\x01\x02\x03", False, scala=False) == GOLDEN_SET
    assert upstream_payload(b"my-key", b"\x01\x02\x03", False, scala=True) == GOLDEN_SET
    assert upstream_payload(b"my-key", b"", True, scala=True) == GOLDEN_DELETE


def test_set_stores_raw_bytes_and_publishes_golden_payload(
    backend: RedisBackend, raw: redis.Redis, tap: ChangeTap
) -> None:
    backend.set("my-key", b"\x01\x02\x03")
    assert raw.get("my-key") == b"\x01\x02\x03"
    assert raw.ttl("my-key") == -1
    assert tap.next() == GOLDEN_SET
    keys = [b"dref:history:{my-key}", b"dref:rev:{my-key}", b"my-key"]
    assert sorted(raw.keys("*")) == keys


def test_delete_publishes_golden_payload_even_when_absent(
    backend: RedisBackend, raw: redis.Redis, tap: ChangeTap
) -> None:
    backend.delete("my-key")
    assert tap.next() == GOLDEN_DELETE
    backend.set("my-key", b"\x01\x02\x03")
    assert tap.next() == GOLDEN_SET
    backend.delete("my-key")
    assert tap.next() == GOLDEN_DELETE
    assert raw.exists("my-key") == 0


def test_scripts_issue_upstream_commands(backend: RedisBackend, raw: redis.Redis) -> None:
    name = "dref:compat:wire"
    value = b"\x81\xa5value\xa5hi\x00\xff"
    commands = lua_commands(raw, lambda: backend.set(name, value, 2.9), 4)
    assert commands[:2] == [f"INCR dref:rev:{{{name}}}", f"SET {name} {redis_repr(value)} EX 2"]
    assert commands[2] == f"PUBLISH dref:change-rev 1:{name}"
    assert commands[3].startswith("PUBLISH dref-change ")
    commands = lua_commands(raw, lambda: backend.set_if_absent("x", b"t", 0.2), 1)
    assert commands == ["SET x t NX EX 1"]
    commands = lua_commands(raw, lambda: backend.set(name, b"v"), 2)
    assert commands[1] == f"SET {name} v"
    commands = lua_commands(raw, lambda: backend.delete(name), 2)
    assert commands[1] == f"DEL {name}"


def test_lock_written_like_upstream(
    backend: RedisBackend, raw: redis.Redis, tap: ChangeTap
) -> None:
    revision = backend.set_if_absent(CROSSLANG_LOCK, CROSSLANG_TOKEN, 30.0)
    assert revision is not None
    assert raw.get(CROSSLANG_LOCK) == CROSSLANG_TOKEN
    assert 29 <= raw.ttl(CROSSLANG_LOCK) <= 30
    expected = upstream_payload(CROSSLANG_LOCK.encode(), CROSSLANG_TOKEN, False, scala=False)
    assert tap.next() == expected
    assert backend.set_if_absent(CROSSLANG_LOCK, b"\x00" * 8, 30.0) is None
    assert tap.nothing_more()
    assert raw.get(CROSSLANG_LOCK) == CROSSLANG_TOKEN


def test_lock_written_by_upstream_reads_and_releases(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    assert raw.set(CROSSLANG_LOCK, CROSSLANG_TOKEN, nx=True, ex=30)
    entry = backend.get(CROSSLANG_LOCK)
    assert entry == Entry(CROSSLANG_TOKEN, 0)
    assert decode_lock_token(entry.value) == 0x1234567890ABCDEF
    assert backend.set_if_absent(CROSSLANG_LOCK, b"\x00" * 8, 5.0) is None
    assert backend.expire(CROSSLANG_LOCK, 60, expected=entry)
    assert raw.ttl(CROSSLANG_LOCK) > 30
    assert not backend.compare_and_delete(CROSSLANG_LOCK, Entry(b"\x00" * 8, 0))
    assert backend.compare_and_delete(CROSSLANG_LOCK, entry)
    assert raw.exists(CROSSLANG_LOCK) == 0


def test_crosslang_value_both_ways(backend: RedisBackend, raw: redis.Redis, tap: ChangeTap) -> None:
    raw.set(CROSSLANG_KEY, WRAPPER_HELLO)
    assert backend.get(CROSSLANG_KEY) == Entry(WRAPPER_HELLO, 0)
    backend.set(CROSSLANG_KEY, WRAPPER_HELLO)
    assert raw.get(CROSSLANG_KEY) == WRAPPER_HELLO
    rust = upstream_payload(CROSSLANG_KEY.encode(), WRAPPER_HELLO, False, scala=False)
    assert tap.next() == rust


def test_crosslang_value_through_codec(backend: RedisBackend, raw: redis.Redis) -> None:
    codec = MsgPackCodec(Wrapper)
    raw.set(CROSSLANG_KEY, WRAPPER_HELLO)
    entry = backend.get(CROSSLANG_KEY)
    assert entry is not None
    assert codec.decode(entry.value) == Wrapper("hello")
    backend.set(CROSSLANG_KEY, codec.encode(Wrapper("hi")))
    assert raw.get(CROSSLANG_KEY) == bytes.fromhex("81a576616c7565a26869")


def test_scala_style_payload_published(redis_url: str, tap: ChangeTap) -> None:
    backend = RedisBackend(redis_url, style="scala", timeout=2.0)
    try:
        backend.set(CROSSLANG_KEY, WRAPPER_HELLO + b"\xff\xe0\xdf")
        value = WRAPPER_HELLO + b"\xff\xe0\xdf"
        assert tap.next() == upstream_payload(CROSSLANG_KEY.encode(), value, False, scala=True)
    finally:
        backend.close()


@pytest.mark.parametrize("scala", [True, False], ids=["scala", "rust"])
def test_upstream_writes_and_payloads_reach_listeners(
    backend: RedisBackend, raw: redis.Redis, recorder: Any, scala: bool
) -> None:
    events = recorder()
    backend.subscribe(CROSSLANG_KEY, events)
    value = WRAPPER_HELLO + bytes([0x80, 0xCC, 0xD0, 0xE0, 0xFF])
    raw.set(CROSSLANG_KEY, value)
    raw.publish("dref-change", upstream_payload(CROSSLANG_KEY.encode(), value, False, scala=scala))
    raw.delete(CROSSLANG_KEY)
    raw.publish("dref-change", upstream_payload(CROSSLANG_KEY.encode(), b"", True, scala=scala))
    got = events.wait_for(lambda e: len(e) >= 2 and e[-1].kind is ChangeKind.DELETE)
    sets = [(e.value, e.revision) for e in got if e.kind is ChangeKind.SET]
    assert sets == [(value, 0)]  # (DELETEs may repeat: the baseline read can race them)


def test_value_written_through_dref_read_by_upstream_after_upstream_overwrite(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    first = backend.set("shared", b"ours")
    raw.set("shared", b"theirs")  # an upstream node's plain SET does not touch our counter
    assert backend.get("shared") == Entry(b"theirs", first)
    assert backend.compare_and_set("shared", Entry(b"ours", first), b"x") is None
    assert backend.compare_and_set("shared", Entry(b"theirs", first), b"x") == first + 1
    assert raw.get("shared") == b"x"


@pytest.mark.parametrize("style", ["rust", "scala"])
@pytest.mark.parametrize(
    ("start", "delta"), [(0, 1), (120, 80), (-40, 5), (70000, -140000), (2**40, 1)]
)
def test_increment_publishes_the_payload_upstream_would(
    redis_url: str, raw: redis.Redis, tap: ChangeTap, style: str, start: int, delta: int
) -> None:
    """The Lua script builds the ChangePayload of the new value itself, byte for byte."""
    backend = RedisBackend(redis_url, timeout=2.0, style=style)  # type: ignore[arg-type]
    try:
        backend.set("n", msgpack.packb(start))
        tap.next()
        number, revision = backend.increment("n", delta, "msgpack")
        assert number == start + delta and revision == 2
        value = msgpack.packb(start + delta)
        assert raw.get("n") == value
        assert tap.next() == upstream_payload(b"n", value, False, scala=style == "scala")
    finally:
        backend.close()


def test_increment_beyond_2_to_the_53_is_refused(backend: RedisBackend, raw: redis.Redis) -> None:
    """Lua adds in doubles: what it cannot add exactly is refused, never rounded."""
    backend.set("big", msgpack.packb(2**53 - 2))
    assert backend.increment("big", 1, "msgpack")[0] == 2**53 - 1
    with pytest.raises(CodecError, match="2\\^53"):
        backend.increment("big", 1, "msgpack")
    assert raw.get("big") == msgpack.packb(2**53 - 1)
    with pytest.raises(CodecError, match="2\\*\\*53"):
        backend.increment("big", -(2**53), "msgpack")
    backend.set("huge", msgpack.packb(2**60))
    with pytest.raises(CodecError, match="beyond the integers"):
        backend.increment("huge", -1, "msgpack")
