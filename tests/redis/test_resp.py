"""`pack_command` sends the bytes redis-py would: every argument type the backend passes,
large values in chunks of their own, and refusals of what redis-py refuses."""

from __future__ import annotations

import pytest
import redis

from dref.redis_resp import pack_command

CASES = [
    ("EVALSHA", "ab" * 20, 2, b"k", b"dref:rev:{k}", b"dref-change", 1000, b"\x00\xff", "0", -3),
    ("SET", "k\u00e9", b"v" * 6001, "EX", 5),
    ("SET", b"k", bytearray(b"v" * 7000)),
    ("EXPIRE", b"k", 1.5),
    ("PING", ""),
    ("MGET", *(b"k%d" % i for i in range(600))),
]


@pytest.mark.parametrize("args", CASES, ids=[str(case[0]) for case in CASES])
def test_the_bytes_are_redis_pys(args: tuple[object, ...]) -> None:
    ours = pack_command(args)  # type: ignore[arg-type]
    assert b"".join(ours) == b"".join(redis.Connection().pack_command(*args))


def test_a_large_value_is_a_chunk_of_its_own() -> None:
    value = b"v" * 100_000
    assert value in pack_command(("SET", b"k", value))


@pytest.mark.parametrize("bad", [True, None, object()])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        pack_command(("SET", b"k", bad))  # type: ignore[arg-type]
