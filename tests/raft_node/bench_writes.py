"""Write throughput and latency of a 3-node loopback cluster with fsync on.

Run: .venv/bin/python tests/raft_node/bench_writes.py [SECONDS]
Prints ops/s, p50 and p99 for 1 caller and for 32 concurrent callers (no assertions).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from node_cluster import Cluster  # noqa: E402

from dref.raft.node import Node  # noqa: E402


def measure(leader: Node, callers: int, seconds: float) -> tuple[float, float, float, int]:
    """Propose from `callers` threads for `seconds`; returns (ops/s, p50 ms, p99 ms, ops)."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(worker: int) -> None:
        mine: list[float] = []
        count = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            leader.propose(f"b{worker}-{count}".encode() * 4)
            mine.append((time.monotonic() - started) * 1000)
            count += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(w,)) for w in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, p50, p99, len(latencies)


def main(seconds: float = 5.0) -> None:
    with tempfile.TemporaryDirectory() as directory:
        cluster = Cluster(
            Path(directory),
            heartbeat_interval=0.1,
            election_timeout=1.0,
            max_clock_drift=0.1,
            rpc_timeout=2.0,
        ).start_all()
        try:
            leader = cluster.leader()
            leader.propose(b"warm-up")
            for callers in (1, 32):
                ops, p50, p99, count = measure(leader, callers, seconds)
                print(
                    f"{callers:>2} caller(s): {ops:8.0f} ops/s  p50 {p50:6.2f} ms  "
                    f"p99 {p99:6.2f} ms  ({count} writes in {seconds:g} s)"
                )
            metrics = leader.status().metrics
            print(
                f"leader fsync p50 {metrics.fsync_p50_ms:.2f} ms "
                f"p99 {metrics.fsync_p99_ms:.2f} ms, "
                f"{metrics.group_commits} group commits for {metrics.proposals} proposals"
            )
        finally:
            cluster.close()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
