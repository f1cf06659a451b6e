"""Three `dref node --interop` processes under the fault proxy, with register workers
calling upstream's `DRefRaft` service and the linearizability checker.

Upstream's protocol permits one anomaly class, and this test names it instead of hiding it:
a write the leader applied (so reads saw it, and its client may have been told it
succeeded) is lost when its commit Heartbeat does not reach the next leader, because a new
leader drops its unapplied tail (spec 4.5, 4.4, 7.1; votes compare only last_seq, so even
a node that applied the write may lose the election to one that did not; native mode
keeps such writes). A leader cut off or killed right after a quorum stored a write does
exactly that. So the history is checked as recorded; if that fails, it is checked again
with what happened just around each fault that can depose the leader (from 0.2 s before
to 1 s after) relaxed: writes acknowledged then count as "may never have happened", and
reads answered then are left out. That history must be linearizable: any other anomaly
fails the test. The report says how the strict check went.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dref.interop_backend import InteropBackend
from dref.raft.interop.client import UpstreamClient
from testkit.cluster import FaultyCluster
from testkit.history import History, Mix, final_reads, run_workers
from testkit.linearizability import Operation, OpKind

KEYS = ["r1", "r2"]
LOSS_WINDOW_MS = (200.0, 1000.0)
"""What completed this long before and after a leader-deposing fault may have seen a write
that is lost: the commit Heartbeat's RPC timeout (at most the election timeout) plus slack."""


class _WorkerClient(InteropBackend):
    """An interop backend with the attribute the history workers report."""

    @property
    def leader_address(self) -> str | None:
        return self._client.leader_address


def _relaxed(ops: list[Operation], faults_ms: list[float]) -> tuple[list[Operation], int]:
    """`ops` with what completed within LOSS_WINDOW_MS of a fault relaxed: writes made
    indeterminate, reads dropped; returns them and how many were relaxed."""
    relaxed, count = [], 0
    for op in ops:
        done = op.complete_ms
        near = done is not None and any(
            fault - LOSS_WINDOW_MS[0] <= done <= fault + LOSS_WINDOW_MS[1] for fault in faults_ms
        )
        if near and op.kind is OpKind.READ:
            count += 1
            continue
        if near and op.kind is OpKind.WRITE:
            op = Operation(op.kind, op.key, op.invoke_ms, None, op.value, client=op.client)
            count += 1
        relaxed.append(op)
    return relaxed, count


@pytest.mark.timeout(180)
def test_interop_register_under_partitions_and_kills(tmp_path: Path) -> None:
    with FaultyCluster(tmp_path, heartbeat_ms=50, election_ms=400, interop=True) as cluster:
        cluster.start_all()
        cluster.leader(timeout=30)
        addresses = list(cluster.addresses.values())
        history = History()
        stop = threading.Event()
        deadline = time.monotonic() + 12

        def client(_: int) -> _WorkerClient:
            return _WorkerClient(
                UpstreamClient(addresses, timeout=3.0), default_ttl=10.0, max_value_size=1 << 20
            )

        workers = run_workers(
            history,
            client,  # type: ignore[arg-type]
            KEYS,
            4,
            stop,
            seed=1,
            deadline=deadline,
            op_timeout=3.0,
            mix=Mix(write=1.0, cas=0.0, read=2.0),
        )
        faults_ms: list[float] = []
        time.sleep(1.5)  # the workload runs on its own clock; the nemesis acts at fixed points
        for action in ("isolate-leader", "kill-leader", "isolate-follower"):
            leader = cluster.leader(timeout=30)
            if action == "isolate-follower":
                follower = next(n for n in cluster.ids if n != leader)
                cluster.isolate(follower)
            else:
                faults_ms.append(history.now_ms())
                if action == "isolate-leader":
                    cluster.isolate(leader)
                else:
                    cluster.kill(leader)
            time.sleep(2.0)
            cluster.heal()
            cluster.start_all()
            time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join(30)
        cluster.leader(timeout=30)
        final = client(99)
        try:
            final_reads(history, final, KEYS)  # type: ignore[arg-type]
        finally:
            final.close()
        for worker in workers:
            worker.client.close()

    ops = history.operations()
    writes = [op for op in ops if op.kind is OpKind.WRITE and op.complete_ms is not None]
    assert len(writes) >= 20, history.summary()
    strict = history.check()
    relaxed_ops, relaxed = _relaxed(ops, faults_ms)
    print(
        f"interop register: {history.summary()}; strict check: {strict.verdict.value};"
        f" operations relaxed around failovers: {relaxed}"
    )
    if strict.ok:
        return
    loose = History()
    for op in relaxed_ops:
        loose.record(op, "ok")
    verdict = loose.check()
    assert verdict.ok, f"an anomaly beyond lost-at-failover writes: {verdict}\n{cluster.logs()}"
