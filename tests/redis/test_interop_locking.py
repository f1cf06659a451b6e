"""`interop_locking=True` updates under upstream's `lock:<name>`; lock leases follow the
whole-second TTLs Redis really grants."""

from __future__ import annotations

import threading
import time

import redis

from dref.context import Context
from dref.redis_backend import RedisBackend, redis_context


def test_update_holds_the_upstream_lock_while_f_runs(redis_url: str, raw: redis.Redis) -> None:
    with redis_context(redis_url, timeout=2.0, interop_locking=True) as ctx:
        ref = ctx.ref("interop-counter", 0)
        seen: list[bytes | None] = []

        def bump(n: int) -> int:
            seen.append(raw.get("lock:interop-counter"))
            return n + 1

        assert ref.update_and_get(bump) == 1
        assert seen and seen[0] is not None and len(seen[0]) == 8  # an upstream 8-byte token
        assert raw.get("lock:interop-counter") is None  # released afterwards


def test_interop_updates_from_threads_do_not_lose_increments(redis_url: str) -> None:
    with redis_context(redis_url, timeout=5.0, interop_locking=True) as ctx:
        ref = ctx.ref("interop-threads", 0)

        def work() -> None:
            for _ in range(25):
                ref.update(lambda n: n + 1, timeout=60)

        threads = [threading.Thread(target=work, name=f"interop-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert ref.get() == 100


def test_sub_second_part_of_a_lock_ttl_is_not_counted_on(redis_url: str) -> None:
    with Context(RedisBackend(redis_url, timeout=2.0)) as ctx:
        lock = ctx.lock("rounded-lease", ttl=1.5, timeout=5)
        assert lock.ttl == 1.0  # Redis grants EX 1; renewing every 1.2 s would lose it
        with lock:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline and not lock.lost.is_set():
                lock.lost.wait(0.1)
            assert not lock.lost.is_set()
