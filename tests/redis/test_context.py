"""The public API (`Context`, `DRef`, `Lock`) on Redis, across processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from dref.changes import Changed
from dref.context import Context
from dref.redis_backend import RedisBackend, redis_context

WORKER = str(Path(__file__).with_name("worker.py"))


def test_redis_context_factory(redis_url: str, raw: redis.Redis) -> None:
    with redis_context(redis_url, timeout=2.0, default_ttl=7.0) as ctx:
        assert isinstance(ctx.backend, RedisBackend) and ctx.backend.default_ttl == 7.0
        ref = ctx.ref("dref:compat:crosslang-test", {"value": "hello"})
        assert raw.get("dref:compat:crosslang-test") == bytes.fromhex("81a576616c7565a568656c6c6f")
        assert ref.get() == {"value": "hello"}
        raw.set("dref:compat:crosslang-test", bytes.fromhex("81a576616c7565a26869"))
        assert ref.get() == {"value": "hi"}


def test_change_stream_sees_updates(redis_url: str) -> None:
    with redis_context(redis_url, timeout=2.0) as ctx:
        ref = ctx.ref("n", 0)
        with ref.changes(timeout=5) as stream:
            ref.update(lambda n: n + 1)
            ref.set(5)
            first, second = stream.get(), stream.get()
        assert isinstance(first, Changed) and isinstance(second, Changed)
        assert (first.value, second.value) == (1, 5)


@pytest.mark.slow
def test_three_processes_of_eight_threads_update_exactly(
    run_workers: Callable[..., None], redis_url: str
) -> None:
    run_workers(WORKER, ["ctx-count", redis_url, "counter", "8", "20"], processes=3)
    with redis_context(redis_url) as ctx:
        assert ctx.ref("counter", 0).get() == 480


@pytest.mark.slow
def test_locks_exclude_across_processes_with_growing_fencing_tokens(
    run_workers: Callable[..., None], redis_url: str, raw: redis.Redis
) -> None:
    run_workers(WORKER, ["ctx-locks", redis_url, "lock:api", "15"], processes=3)
    log = [int(x) for x in raw.lrange("lock:api:log", 0, -1)]
    assert len(log) == 45
    assert log == sorted(log) and len(set(log)) == 45


@pytest.mark.slow
def test_killed_holder_releases_by_ttl(redis_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, WORKER, "ctx-hold", redis_url, "job", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().split()
        assert line[0] == b"held", line
        with Context(RedisBackend(redis_url, timeout=2.0, poll_interval=0.2)) as ctx:
            lock = ctx.lock("job", ttl=2, timeout=10)
            assert not lock.acquire(timeout=0.2)
            holder.kill()  # SIGKILL: no release, no keep-alive any more
            holder.wait(timeout=10)
            assert lock.acquire(timeout=10)
            assert lock.fencing_token > int(line[1])
            lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
