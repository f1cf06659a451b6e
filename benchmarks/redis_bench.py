"""DRef on Redis against plain redis-py, same server, same run.

    python benchmarks/redis_bench.py [--url redis://...] [--ops 20000] [--seconds 10]

Without --url it starts its own redis-server on a free loopback port. Each row runs one
operation on 1 and on 16 threads (each thread on its own key, so the numbers show client
overhead, not contention), stopping after --ops operations or --seconds, whichever comes
first, in 5 alternating DRef/raw rounds, each row on a fresh context. The last column is
raw ops/s divided by DRef ops/s: 1.0 means as fast as redis-py. "cpu us" is this
process's CPU per operation (all its threads, from /proc/self/stat) while the row ran.

Pairs: DRef `set` / `SET`; DRef `get` / `GET`; DRef `update` (compare-and-set) / a
WATCH-GET-MULTI-SET-EXEC transaction; `ctx.lock` acquire+release / `redis.lock.Lock`.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from raft_bench import cpu_seconds

from dref.context import Context
from dref.redis_backend import redis_context

Op = Callable[[], object]
ROUNDS = 5
VALUE = {"value": "hello"}
RAW_VALUE = bytes.fromhex("81a576616c7565a568656c6c6f")  # the same MsgPack bytes


@dataclass
class Result:
    """Throughput, latency percentiles and client CPU of one (operation, client, threads) run."""

    ops: int
    seconds: float
    latencies: list[float]
    cpu: float = 0.0
    """CPU seconds this process used meanwhile (every thread: callers, pub/sub, keep-alive)."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_per_op(self) -> float:
        """Client CPU microseconds per operation."""
        return self.cpu / max(self.ops, 1) * 1e6

    def add(self, other: Result) -> None:
        """Fold another run of the same row into this one."""
        self.ops += other.ops
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.cpu += other.cpu

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6


def measure(make_op: Callable[[int], Op], threads: int, ops: int, seconds: float) -> Result:
    """Run `make_op(i)()` on `threads` threads until `ops` calls in total or `seconds`."""
    per_thread = max(1, ops // threads)
    ready = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    deadline = [0.0]

    def worker(i: int) -> None:
        op = make_op(i)
        op()  # warm up: connections, script cache
        mine = latencies[i]
        ready.wait()
        clock = time.perf_counter
        for _ in range(per_thread):
            started = clock()
            op()
            mine.append(clock() - started)
            if started > deadline[0]:
                break

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    ready.wait()
    started, cpu = time.perf_counter(), cpu_seconds()
    for t in pool:
        t.join()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    flat = [x for xs in latencies for x in xs]
    return Result(len(flat), elapsed, flat, cpu)


def dref_ops(ctx: Context) -> dict[str, Callable[[int], Op]]:
    def set_op(i: int) -> Op:
        ref = ctx.ref(f"bench:dref:set:{i}", VALUE)
        return lambda: ref.set(VALUE)

    def get_op(i: int) -> Op:
        ref = ctx.ref(f"bench:dref:get:{i}", VALUE)
        return ref.get

    def update_op(i: int) -> Op:
        ref = ctx.ref(f"bench:dref:update:{i}", 0)
        return lambda: ref.update(lambda n: n + 1)

    def lock_op(i: int) -> Op:
        lock = ctx.lock(f"bench:dref:lock:{i}")

        def take() -> None:
            with lock:
                pass

        return take

    return {"set": set_op, "get": get_op, "update": update_op, "lock": lock_op}


def raw_ops(client: redis.Redis) -> dict[str, Callable[[int], Op]]:
    def set_op(i: int) -> Op:
        return lambda: client.set(f"bench:raw:set:{i}", RAW_VALUE)

    def get_op(i: int) -> Op:
        client.set(f"bench:raw:get:{i}", RAW_VALUE)
        return lambda: client.get(f"bench:raw:get:{i}")

    def update_op(i: int) -> Op:
        key = f"bench:raw:update:{i}"
        client.set(key, 0)

        def increment() -> None:
            with client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        n = int(pipe.get(key) or 0)
                        pipe.multi()
                        pipe.set(key, n + 1)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue

        return increment

    def lock_op(i: int) -> Op:
        def take() -> None:
            with client.lock(f"bench:raw:lock:{i}", timeout=20):
                pass

        return take

    return {"set": set_op, "get": get_op, "update": update_op, "lock": lock_op}


@contextmanager
def own_server() -> Iterator[str]:
    """A redis-server on a free loopback port in a temporary directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH; pass --url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.02)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


def run(url: str, ops: int, seconds: float, thread_counts: list[int]) -> None:
    client = redis.Redis.from_url(url, max_connections=64)
    theirs = raw_ops(client)
    header = (
        f"{'op':<7}{'thr':>4} | {'dref ops/s':>10}{'p50 us':>9}{'p99 us':>9}{'cpu us':>8} | "
        f"{'raw ops/s':>10}{'p50 us':>9}{'p99 us':>9}{'cpu us':>8} | {'dref/raw':>8}"
    )
    print(header)
    print("-" * len(header))
    for threads in thread_counts:
        for name in ("set", "get", "update", "lock"):
            raw, dref = Result(0, 0.0, []), Result(0, 0.0, [])
            with redis_context(url) as ctx:  # fresh: no pub/sub thread left by earlier rows
                ours = dref_ops(ctx)
                for _ in range(ROUNDS):  # alternate, so load changes hit both alike
                    raw.add(measure(theirs[name], threads, ops // ROUNDS, seconds / ROUNDS))
                    dref.add(measure(ours[name], threads, ops // ROUNDS, seconds / ROUNDS))
            print(
                f"{name:<7}{threads:>4} | {dref.rate:>10.0f}{dref.percentile(0.5):>9.0f}"
                f"{dref.percentile(0.99):>9.0f}{dref.cpu_per_op:>8.0f} | {raw.rate:>10.0f}"
                f"{raw.percentile(0.5):>9.0f}{raw.percentile(0.99):>9.0f}"
                f"{raw.cpu_per_op:>8.0f} | {raw.rate / dref.rate:>8.2f}",
                flush=True,
            )
    client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis (default: start one)")
    parser.add_argument("--ops", type=int, default=20000, help="operations per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap per row")
    parser.add_argument("--threads", default="1,16", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.threads.split(",")]
    if args.url:
        run(args.url, args.ops, args.seconds, counts)
    else:
        with own_server() as url:
            run(url, args.ops, args.seconds, counts)


if __name__ == "__main__":
    main(sys.argv[1:])
