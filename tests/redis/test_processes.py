"""Several OS processes on one Redis: exact counters, exclusive fenced locks, dead holders."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from dref.backend import ChangeEvent, ChangeKind
from dref.redis_backend import RedisBackend
from dref.wire.lock_token import encode_lock_token, new_lock_token

WORKER = str(Path(__file__).with_name("worker.py"))

pytestmark = pytest.mark.slow


def test_three_processes_of_eight_threads_count_exactly(
    run_workers: Callable[..., None], redis_url: str, raw: redis.Redis
) -> None:
    raw.set("counter", b"0")
    run_workers(WORKER, ["count", redis_url, "counter", "8", "20"], processes=3)
    assert raw.get("counter") == b"480"


def test_locks_exclude_across_processes_with_growing_fencing_tokens(
    run_workers: Callable[..., None], redis_url: str, raw: redis.Redis
) -> None:
    run_workers(WORKER, ["locks", redis_url, "lock:shared", "20"], processes=3)
    log = [int(x) for x in raw.lrange("lock:shared:log", 0, -1)]
    assert len(log) == 60
    assert log == sorted(log) and len(set(log)) == 60


def test_killed_holder_releases_by_ttl(redis_url: str, backend: RedisBackend) -> None:
    holder = subprocess.Popen(
        [sys.executable, WORKER, "hold", redis_url, "lock:job", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().split()
        assert line[0] == b"held", line
        held_revision = int(line[1])
        freed = threading.Event()

        def on_change(event: ChangeEvent) -> None:
            if event.kind is ChangeKind.DELETE:
                freed.set()

        backend.subscribe("lock:job", on_change)
        token = encode_lock_token(new_lock_token())
        assert backend.set_if_absent("lock:job", token, 5) is None
        holder.kill()  # SIGKILL: no release, no keep-alive any more
        holder.wait(timeout=10)
        assert freed.wait(10), "no DELETE after the lease ran out"
        revision = backend.set_if_absent("lock:job", token, 5)
        assert revision is not None and revision > held_revision
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
