"""`dref.recipes` across OS processes on one Redis: one leader at a time, exact counts,
each queue item once, at most `limit` holders, a dead holder's slot reclaimed, barriers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import dref
from dref.recipes import Counter, Queue, Semaphore

WORKER = str(Path(__file__).with_name("recipe_worker.py"))

pytestmark = pytest.mark.slow


def test_three_processes_elect_one_leader_at_a_time(
    run_workers: Callable[..., None], redis_url: str, raw: redis.Redis
) -> None:
    run_workers(WORKER, ["elect", redis_url, "election", "10"], processes=3)
    log = [int(x) for x in raw.lrange("election:log", 0, -1)]
    assert len(log) == 30
    assert all(a < b for a, b in zip(log, log[1:], strict=False)), log


def test_three_processes_of_four_threads_count_exactly(
    run_workers: Callable[..., None], redis_url: str
) -> None:
    run_workers(WORKER, ["count", redis_url, "hits", "4", "25"], processes=3)
    with dref.redis(redis_url) as ctx:
        assert Counter(ctx, "hits").value() == 300


def test_three_processes_consume_each_queue_item_once(
    run_workers: Callable[..., None], redis_url: str, raw: redis.Redis
) -> None:
    with dref.redis(redis_url) as ctx:
        queue = Queue(ctx, "jobs")
        for n in range(60):
            queue.put(n)
    run_workers(WORKER, ["consume", redis_url, "jobs", "60"], processes=3)
    assert sorted(int(x) for x in raw.lrange("jobs:log", 0, -1)) == list(range(60))


def test_semaphore_caps_holders_across_processes(
    run_workers: Callable[..., None], redis_url: str
) -> None:
    run_workers(WORKER, ["limit", redis_url, "pool", "2", "3", "8"], processes=3)


def test_killed_semaphore_holder_is_reclaimed_after_its_lease(redis_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, WORKER, "hold", redis_url, "slot", "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        with dref.redis(redis_url) as ctx:
            semaphore = Semaphore(ctx, "slot", 1, ttl=10)
            with pytest.raises(dref.LockTimeoutError):
                semaphore.acquire(timeout=0.2)
            holder.kill()  # SIGKILL: no release, no renewal any more
            holder.wait(timeout=10)
            started = time.monotonic()
            semaphore.acquire(timeout=20)
            assert time.monotonic() - started < 15
            semaphore.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_three_processes_meet_at_a_double_barrier(
    run_workers: Callable[..., None], redis_url: str
) -> None:
    run_workers(WORKER, ["meet", redis_url, "meeting", "3", "3"], processes=3)
