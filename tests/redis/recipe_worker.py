"""A separate process for the multi-process recipe tests: `python recipe_worker.py MODE URL ...`.

Modes (each prints "done" at the end, or exits non-zero):
  elect URL NAME ROUNDS          campaigns ROUNDS times; while leading, checks it is the only
                                 leader (Redis counter NAME:inside) and appends its fencing
                                 token to the Redis list NAME:log
  count URL NAME THREADS N       each thread increments the Counter NAME N times
  consume URL NAME TOTAL         takes items from the Queue NAME, appending each to the Redis
                                 list NAME:log, until NAME:taken (a Counter) reaches TOTAL
  limit URL NAME LIMIT THREADS N each thread holds the Semaphore NAME (of LIMIT) N times,
                                 checking NAME:inside never exceeds LIMIT
  hold URL NAME TTL              takes the Semaphore NAME (limit 1, lease TTL), prints "held",
                                 then waits forever (the test SIGKILLs it)
  meet URL NAME COUNT ROUNDS     enters and leaves the DoubleBarrier NAME ROUNDS times, checking
                                 NAME:entered and NAME:left reached COUNT per round when it passes
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable

import redis

import dref
from dref.errors import DRefTimeoutError
from dref.recipes import Counter, DoubleBarrier, Election, Queue, Semaphore


def in_threads(count: int, work: Callable[[], None]) -> None:
    """Run `work` on `count` threads; re-raise the first failure."""
    failures: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=body) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if failures:
        raise failures[0]


def elect(ctx: dref.Context, raw: redis.Redis, name: str, rounds: int) -> None:
    election = Election(ctx, name, uuid.uuid4().hex, ttl=10, timeout=60)
    for _ in range(rounds):
        token = election.campaign()
        assert raw.incr(f"{name}:inside") == 1, "two leaders"
        assert election.leader() == election.identity
        raw.rpush(f"{name}:log", token)
        assert raw.decr(f"{name}:inside") == 0
        election.resign()


def count(ctx: dref.Context, name: str, threads: int, times: int) -> None:
    counter = Counter(ctx, name)

    def work() -> None:
        for _ in range(times):
            counter.increment(timeout=60)

    in_threads(threads, work)


def consume(ctx: dref.Context, raw: redis.Redis, name: str, total: int) -> None:
    queue, taken = Queue(ctx, name), Counter(ctx, f"{name}:taken")
    deadline = time.monotonic() + 60
    while taken.value() < total:
        assert time.monotonic() < deadline, "items still missing after 60 s"
        try:
            item = queue.get(timeout=0.5)
        except DRefTimeoutError:
            continue
        raw.rpush(f"{name}:log", item)
        taken.increment()


def limit(ctx: dref.Context, raw: redis.Redis, name: str, cap: int, threads: int, n: int) -> None:
    def work() -> None:
        semaphore = Semaphore(ctx, name, cap, ttl=10, timeout=60)
        for _ in range(n):
            with semaphore:
                assert raw.incr(f"{name}:inside") <= cap, "too many holders"
                raw.decr(f"{name}:inside")

    in_threads(threads, work)


def meet(ctx: dref.Context, raw: redis.Redis, name: str, members: int, rounds: int) -> None:
    barrier = DoubleBarrier(ctx, name, members, timeout=60)
    for r in range(1, rounds + 1):
        raw.incr(f"{name}:entered")
        barrier.enter()
        assert int(raw.get(f"{name}:entered") or 0) >= members * r, "entered too early"
        raw.incr(f"{name}:left")
        barrier.leave()
        assert int(raw.get(f"{name}:left") or 0) >= members * r, "left too early"


def main(argv: list[str]) -> None:
    mode, url, name, *args = argv
    ctx = dref.redis(url, timeout=5.0, poll_interval=0.2)
    raw = redis.Redis.from_url(url, socket_timeout=5)
    try:
        if mode == "elect":
            elect(ctx, raw, name, int(args[0]))
        elif mode == "count":
            count(ctx, name, int(args[0]), int(args[1]))
        elif mode == "consume":
            consume(ctx, raw, name, int(args[0]))
        elif mode == "limit":
            limit(ctx, raw, name, int(args[0]), int(args[1]), int(args[2]))
        elif mode == "hold":
            Semaphore(ctx, name, 1, ttl=float(args[0])).acquire(timeout=10)
            print("held", flush=True)
            sys.stdin.read()  # until the test kills this process
        elif mode == "meet":
            meet(ctx, raw, name, int(args[0]), int(args[1]))
        else:
            raise SystemExit(f"unknown mode {mode}")
        print("done", flush=True)
    finally:
        ctx.close()
        raw.close()


if __name__ == "__main__":
    main(sys.argv[1:])
