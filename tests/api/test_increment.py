"""`DRef.increment`: an atomic add done by the store on every backend (a native command on
Raft, one Lua script on Redis, under the lock locally), exact under many threads, with a
typed error for absent and non-integer values and a CAS fallback for other codecs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgpack
import pytest

import dref
from dref.errors import CodecError, NotFoundError
from dref.wire.json_codec import JsonCodec

THREADS = 16


def test_increment_returns_the_new_value_and_notifies(ctx: dref.Context) -> None:
    hits = ctx.ref("hits", 40)
    with hits.changes(timeout=5.0) as changes:
        assert hits.increment() == 41
        assert hits.increment(-3) == 38
        assert hits.increment(0) == 38
        assert hits.get() == 38
        seen = [changes.get().value for _ in range(3)]  # type: ignore[union-attr]
    assert seen == [41, 38, 38]


def test_many_threads_add_exactly(ctx: dref.Context, scaled: Callable[[int], int]) -> None:
    counter = ctx.ref("counter", 0)
    per_thread = scaled(500) + 5
    returned: list[int] = []
    lock = threading.Lock()

    def add() -> None:
        for _ in range(per_thread):
            value = counter.increment()
            with lock:
                returned.append(value)

    threads = [threading.Thread(target=add) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    total = THREADS * per_thread
    assert counter.get() == total
    assert sorted(returned) == list(range(1, total + 1))  # each caller got its own value


def test_json_counters_stay_json(ctx: dref.Context) -> None:
    counter = ctx.ref("json-counter", 7, codec=JsonCodec(int))
    assert counter.increment(5) == 12
    assert ctx.backend.get("json-counter").value == b"12"  # type: ignore[union-attr]


def test_other_codecs_fall_back_to_compare_and_set(ctx: dref.Context) -> None:
    class Doubled:
        """A codec whose bytes a store cannot add to."""

        def encode(self, value: int) -> bytes:
            return str(value * 2).encode() + b"!"

        def decode(self, data: bytes) -> int:
            return int(data[:-1]) // 2

    odd = ctx.ref("odd", 1, codec=Doubled())
    assert odd.increment(2) == 3 and odd.get() == 3


def test_absent_and_non_integer_values_are_refused(ctx: dref.Context) -> None:
    gone = ctx.ref("gone", 1)
    gone.delete()
    with pytest.raises(NotFoundError):
        gone.increment()
    text = ctx.ref("text", "seven")
    with pytest.raises(CodecError, match="not an int"):
        text.increment()
    ratio = ctx.ref("ratio", 0.5)
    with pytest.raises(CodecError, match="not an int|float"):
        ratio.increment()
    assert text.get() == "seven" and ratio.get() == 0.5  # unchanged
    with pytest.raises(TypeError, match="takes an int"):
        ctx.ref("n", 0).increment(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "codec"),
    [
        (msgpack.packb("seven"), None),
        (msgpack.packb(0.5), None),
        (msgpack.packb(True), None),
        (b'"seven"', JsonCodec(int)),
        (b"1.5", JsonCodec(int)),
    ],
)
def test_the_store_refuses_bytes_that_are_not_an_integer(
    ctx: dref.Context, stored: bytes, codec: JsonCodec[int] | None
) -> None:
    """Written by another program: the ref's codec says int, the bytes do not."""
    ctx.backend.set("foreign", stored)
    counter = ctx.ref("foreign", 0, codec=codec)
    with pytest.raises(CodecError, match="cannot increment"):
        counter.increment()
    assert ctx.backend.get("foreign").value == stored  # type: ignore[union-attr]
