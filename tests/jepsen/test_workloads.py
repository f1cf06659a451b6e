"""Locks, resumable change streams, TTL expiry and client sessions on real `dref node`
processes under faults: SIGKILLed and SIGSTOPped leaders, whole-cluster kills and isolated
nodes, with every workload running at once through the public DRef API. Checked after
the heal:

- locks: fencing tokens unique and increasing in real-time order, and a storage that
  refuses stale tokens counts every protected increment (no two holders interleaved);
- watches: every resumable stream and `on_change` subscriber delivered exactly the
  committed history of its key after its start revision: no gap, no duplicate;
- TTL: no linearizable read invoked after an expiry was delivered returned that value;
- sessions: a counter incremented through the stock client's retries is neither short of
  its acknowledged increments nor past them plus the unknown ones; no set applied twice.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import pytest

from dref.context import Context
from dref.raft_backend import RaftBackend
from testkit.cluster import FaultyCluster
from testkit.workloads import CounterWorkload, LockWorkload, TtlWorkload, WatchWorkload

pytestmark = pytest.mark.slow

OP_TIMEOUT = 3.0
JOIN_TIMEOUT = 30.0


def _run_workloads(jepsen, name: str, nemesis, *, scale: float = 1.0, **timings: int) -> None:
    """Start every workload on a new cluster (`timings` as `jepsen.cluster` takes them),
    run `nemesis`, heal, stop and check them all."""
    cluster: FaultyCluster = jepsen.cluster(**timings)
    ids = cluster.ids

    def context_for(i: int) -> Context:
        order = ids[i % len(ids) :] + ids[: i % len(ids)]
        return Context(RaftBackend(cluster.client(order, timeout=OP_TIMEOUT), default_ttl=2.0))

    locks = LockWorkload(f"{name}-lock")
    watches = WatchWorkload([f"{name}-w0", f"{name}-w1"])
    ttl = TtlWorkload(f"{name}-ttl")
    counter = CounterWorkload(f"{name}-counter")
    stop = threading.Event()
    threads = [
        *locks.start(context_for, stop),
        *watches.start(context_for, stop),
        *ttl.begin(context_for, stop),
        *counter.begin(context_for, stop),
    ]
    run = jepsen.start(name, cluster, scale=scale)
    try:
        nemesis(cluster, run)
        run.note("heal everything, resume and restart every node")
        cluster.heal()
        for node_id in ids:
            cluster.resume(node_id)
        cluster.start_all()
        run.note(f"leader {cluster.leader()}; workloads run on the healed cluster")
        time.sleep(2.0)  # part of the experiment: work on the healed cluster
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker did not stop"
    reader = context_for(0)
    try:
        summaries = [
            locks.check(),
            watches.check(reader),
            ttl.check(reader),
            counter.check(reader),
        ]
    except AssertionError as failure:
        notes = "\n".join(run.notes)
        raise AssertionError(f"{failure}\nnemesis:\n{notes}\n{cluster.logs()}") from None
    finally:
        reader.close()
    print("\n".join(f"[jepsen] {name}: {line}" for line in summaries))


def test_workloads_through_kills_pauses_and_isolation(jepsen):
    """Rounds of: SIGKILL the leader and restart it, SIGKILL every node and restart them,
    SIGSTOP the leader past an election and SIGCONT it, isolate the leader or a follower
    and heal, each held for a few seconds, drawn from the seed. Nodes snapshot every 100
    entries, so restarts and catch-ups go through snapshots and the history they carry."""

    def nemesis(cluster: FaultyCluster, run: Any) -> None:
        for _ in range(30):
            if run.left() < 1.0:
                return
            leader = cluster.leader(timeout=30)
            follower = run.rng.choice([n for n in cluster.ids if n != leader])
            faults = {
                "kill": (
                    f"SIGKILL leader {leader}",
                    partial(cluster.kill, leader),
                    (1.5, 2.5),
                    f"restart {leader}",
                    partial(cluster.start, leader),
                ),
                "kill-all": (
                    "SIGKILL every node",
                    cluster.kill_all,
                    (0.2, 1.0),
                    "restart every node",
                    cluster.start_all,
                ),
                "pause": (
                    f"SIGSTOP leader {leader}",
                    partial(cluster.pause, leader),
                    (1.5, 2.5),
                    f"SIGCONT {leader}",
                    partial(cluster.resume, leader),
                ),
                "isolate-leader": (
                    f"isolate {leader}",
                    partial(cluster.isolate, leader),
                    (1.5, 2.5),
                    "heal",
                    cluster.heal,
                ),
                "isolate-follower": (
                    f"isolate {follower}",
                    partial(cluster.isolate, follower),
                    (1.5, 2.5),
                    "heal",
                    cluster.heal,
                ),
            }
            what, inject, (low, high), undo_what, undo = faults[run.rng.choice(sorted(faults))]
            run.note(what)
            inject()
            run.hold(run.rng.uniform(low, high))
            run.note(undo_what)
            undo()
            run.hold(run.rng.uniform(1.0, 2.0))

    _run_workloads(jepsen, "workloads", nemesis, scale=1.25, snapshot_every=100)
