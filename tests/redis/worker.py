"""A separate process for the multi-process Redis tests: `python worker.py MODE URL NAME ...`.

Modes:
  count URL NAME THREADS N   each thread adds 1 to the counter NAME, N times (compare-and-set)
  locks URL NAME ROUNDS      takes lock NAME ROUNDS times; inside, checks it is alone and
                             appends its fencing token to the Redis list NAME:log
  hold URL NAME TTL          takes lock NAME with TTL, prints "held <revision>", then waits
                             forever (the test SIGKILLs it)
  ctx-count, ctx-locks, ctx-hold: the same through the public API (`dref.context.Context`:
                             `ref(...).update`, `lock(...)`, `Lock.fencing_token`)
Every mode prints "done" at the end, or exits non-zero.
"""

from __future__ import annotations

import random
import sys
import threading
import time

import redis

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.context import Context
from dref.redis_backend import RedisBackend
from dref.wire.lock_token import encode_lock_token, new_lock_token


def count(backend: RedisBackend, name: str, threads: int, times: int) -> None:
    failures: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(times):
                deadline = time.monotonic() + 60
                while True:
                    entry = backend.get(name)
                    assert entry is not None
                    new = str(int(entry.value) + 1).encode()
                    if backend.compare_and_set(name, entry, new) is not None:
                        break
                    assert time.monotonic() < deadline, "no progress"
                    time.sleep(random.uniform(0, 0.002))  # contention back-off
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise failures[0]


def acquire(backend: RedisBackend, name: str, ttl: float, limit: float = 30.0) -> Entry:
    """Take lock `name`: set-if-absent, waiting for DELETE events (or 50 ms) between tries."""
    token = encode_lock_token(new_lock_token())
    freed = threading.Event()

    def on_change(event: ChangeEvent) -> None:
        if event.kind is ChangeKind.DELETE:
            freed.set()

    cancel = backend.subscribe(name, on_change)
    try:
        deadline = time.monotonic() + limit
        while (revision := backend.set_if_absent(name, token, ttl)) is None:
            assert time.monotonic() < deadline, "lock not acquired"
            freed.wait(0.05)
            freed.clear()
        return Entry(token, revision)
    finally:
        cancel()


def locks(backend: RedisBackend, raw: redis.Redis, name: str, rounds: int) -> None:
    for _ in range(rounds):
        held = acquire(backend, name, ttl=10)
        assert raw.incr(f"{name}:inside") == 1, "two holders"
        raw.rpush(f"{name}:log", held.revision)
        assert raw.decr(f"{name}:inside") == 0
        assert backend.compare_and_delete(name, held)


def ctx_count(ctx: Context, name: str, threads: int, times: int) -> None:
    counter = ctx.ref(name, 0)
    failures: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(times):
                counter.update(lambda n: n + 1, timeout=60)
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise failures[0]


def ctx_locks(ctx: Context, raw: redis.Redis, name: str, rounds: int) -> None:
    for _ in range(rounds):
        with ctx.lock(name, ttl=10, timeout=30) as lock:
            assert raw.incr(f"{name}:inside") == 1, "two holders"
            raw.rpush(f"{name}:log", lock.fencing_token)
            assert raw.decr(f"{name}:inside") == 0


def main(argv: list[str]) -> None:
    mode, url, name = argv[:3]
    backend = RedisBackend(url, timeout=5.0, poll_interval=0.2)
    raw = redis.Redis.from_url(url, socket_timeout=5)
    try:
        if mode == "count":
            count(backend, name, int(argv[3]), int(argv[4]))
        elif mode == "locks":
            locks(backend, raw, name, int(argv[3]))
        elif mode == "hold":
            held = acquire(backend, name, ttl=float(argv[3]))
            print(f"held {held.revision}", flush=True)
            sys.stdin.read()  # until the test kills this process
        elif mode == "ctx-count":
            ctx_count(Context(backend), name, int(argv[3]), int(argv[4]))
        elif mode == "ctx-locks":
            ctx_locks(Context(backend), raw, name, int(argv[3]))
        elif mode == "ctx-hold":
            lock = Context(backend).lock(name, ttl=float(argv[3]))
            assert lock.acquire(timeout=10)
            print(f"held {lock.fencing_token}", flush=True)
            sys.stdin.read()  # until the test kills this process
        else:
            raise SystemExit(f"unknown mode {mode}")
        print("done", flush=True)
    finally:
        backend.close()
        raw.close()


if __name__ == "__main__":
    main(sys.argv[1:])
