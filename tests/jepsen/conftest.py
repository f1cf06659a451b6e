"""The Jepsen-style runner: a faulty `dref node` cluster, recording client workers, a nemesis,
then heal, final reads and the linearizability check with zero anomalies allowed.

`DREF_JEPSEN_SECONDS` sets how long each scenario's workload and nemesis run (default 10 s);
`DREF_JEPSEN_SEED` replays one seed; `DREF_JEPSEN_TLS=1` runs every scenario with mutual
TLS on every link and client.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dref.raft.client import Client
from testkit.cluster import FaultyCluster
from testkit.history import (
    History,
    LinearizabilityViolation,
    Mix,
    final_reads,
    run_workers,
)
from testkit.linearizability import Operation, OpKind

SECONDS = float(os.environ.get("DREF_JEPSEN_SECONDS", "10"))
"""How long each scenario's workload and nemesis run."""
ALWAYS_TLS = os.environ.get("DREF_JEPSEN_TLS") == "1"
"""Whether every cluster runs mutual TLS (one scenario always does)."""

WORKER_JOIN_TIMEOUT = 30.0
CHECK_TIME_LIMIT = 120.0


@dataclass
class Run:
    """What one scenario did: the history, the nemesis log and the cluster it ran on."""

    name: str
    seed: int
    cluster: FaultyCluster
    history: History
    deadline: float
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    def note(self, action: str) -> None:
        """Log a nemesis action at the history's current time."""
        self.notes.append(f"{self.history.now_ms():9.0f} ms  {action}")

    def left(self) -> float:
        """Seconds until the nemesis must stop."""
        return self.deadline - time.monotonic()

    def hold(self, seconds: float) -> None:
        """Keep the current fault (or calm) for `seconds`, not past the deadline: the
        experiment's own timing, not synchronisation."""
        time.sleep(max(0.0, min(seconds, self.left())))


Nemesis = Callable[[FaultyCluster, Run], None]
"""nemesis(cluster, run): inject faults until `run.deadline`, drawing from `run.rng`."""


class Jepsen:
    """Builds clusters under a temporary root and runs scenarios on them; closes them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clusters: list[FaultyCluster] = []

    def cluster(
        self, size: int = 3, *, seed: int = 0, tls: bool = False, **timings: int | None
    ) -> FaultyCluster:
        """A started cluster with an agreed leader (closed at teardown); `tls`: mutual TLS."""
        options: dict[str, int | None] = {"heartbeat_ms": 100, "election_ms": 1000, **timings}
        cluster = FaultyCluster(
            self.root / f"cluster{len(self.clusters)}",
            size,
            seed=seed,
            tls=tls or ALWAYS_TLS,
            **options,
        )
        self.clusters.append(cluster)
        cluster.start_all()
        cluster.leader()
        return cluster

    def start(
        self, name: str, cluster: FaultyCluster, *, seed: int | None = None, scale: float = 1.0
    ) -> Run:
        """A `Run` of `scale` x SECONDS on `cluster` from now, for scenarios with their own
        workloads; prints the seed to replay."""
        seed = _seed(seed)
        print(f"\n[jepsen] {name}: seed {seed} (replay with DREF_JEPSEN_SEED={seed})")
        deadline = time.monotonic() + SECONDS * scale
        return Run(name, seed, cluster, History(), deadline, random.Random(seed))

    def run(
        self,
        name: str,
        nemesis: Nemesis,
        *,
        size: int = 3,
        seed: int | None = None,
        scale: float = 1.0,
        keys: int = 4,
        workers: int = 6,
        op_timeout: float = 3.0,
        read_policy: str = "linearizable",
        mix: Mix | None = None,
        cluster: FaultyCluster | None = None,
        strict_writes: bool = True,
    ) -> Run:
        """Run workers and `nemesis` for `scale` x SECONDS, heal, read every key, check the history;
        fails with the seed, the anomaly and the nemesis log unless it is linearizable."""
        seed = _seed(seed)
        cluster = cluster or self.cluster(size, seed=seed)
        run = self.start(name, cluster, seed=seed, scale=scale)
        history = run.history
        deadline = run.deadline
        names = [f"{name}-k{i}" for i in range(keys)]
        stop = threading.Event()
        node_ids = cluster.ids

        def client(i: int) -> Client:
            order = node_ids[i % len(node_ids) :] + node_ids[: i % len(node_ids)]
            return cluster.client(order, timeout=op_timeout, strict_writes=strict_writes)

        threads = run_workers(
            history,
            client,
            names,
            workers,
            stop,
            seed=seed * 1000,
            deadline=deadline + 60.0,
            op_timeout=op_timeout,
            read_policy=read_policy,
            mix=mix,
            not_leader_is_definite=strict_writes,
        )
        try:
            nemesis(cluster, run)
            run.note("nemesis done")
            run.note("heal everything, resume and restart every node")
            cluster.heal()
            for node_id in cluster.ids:
                cluster.resume(node_id)
            cluster.start_all()
            leader = cluster.leader()
            run.note(f"leader {leader}; workers run on the healed cluster")
            time.sleep(2.0)  # part of the experiment: ops on the healed cluster
        except AssertionError as failure:
            notes = "\n".join(run.notes)
            raise AssertionError(f"{failure}\nnemesis:\n{notes}\n{cluster.logs()}") from None
        finally:
            stop.set()
            for thread in threads:
                thread.join(WORKER_JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a worker did not stop"
        values = final_reads(history, cluster.client(timeout=10.0), names)
        run.note(f"final reads {values}")
        result = history.check(CHECK_TIME_LIMIT)
        print(f"[jepsen] {name}: {history.summary()}; verdict {result.verdict.value}")
        print("\n".join(f"[jepsen]   {note}" for note in run.notes))
        if not result.ok:
            dump = cluster.root / "history.jsonl"
            _dump(run, dump)
            report = "\n".join(
                [
                    f"{name} (seed {seed}): {result.verdict.value}",
                    result.description,
                    _around(run, result.operations),
                    "nemesis:",
                    *run.notes,
                    history.summary(),
                    f"history: {dump}",
                    cluster.logs(),
                ]
            )
            raise LinearizabilityViolation(report)
        assert history.tally["ok"] > 0, "no operation succeeded"
        return run


def _around(run: Run, shown: tuple[Operation, ...], window_ms: float = 400.0) -> str:
    """Every op on the anomaly's key that overlaps the stuck op's neighbourhood, and the
    writes of the values those ops saw, with the node that answered (as the client saw it)."""
    if not shown:
        return ""
    stuck = shown[-1]
    low, high = stuck.invoke_ms - window_ms, stuck.invoke_ms + window_ms
    names = {address: node_id for node_id, address in run.cluster.addresses.items()}
    ops = [op for op in run.history.operations() if op.key == stuck.key]
    near = [op for op in ops if op.invoke_ms <= high and (op.complete_ms or float("inf")) >= low]
    seen = {op.value for op in near} | {op.expected for op in near}
    writers = [op for op in ops if op.kind is not OpKind.READ and op.value in seen]
    lines = [f"ops on {stuck.key!r} overlapping [{low:g}, {high:g}] ms, and their writers:"]
    for op in sorted(set(near) | set(writers), key=lambda o: o.invoke_ms):
        where = run.history.where(op)
        lines.append(f"  {op.describe()} via {names.get(where or '', where)}")
    return "\n".join(lines)


def _dump(run: Run, path: Path) -> None:
    """Write the whole history as JSON lines, for replaying the checker offline."""
    with path.open("w") as out:
        for op in run.history.operations():
            record = {
                "kind": op.kind.value,
                "key": op.key,
                "invoke_ms": op.invoke_ms,
                "complete_ms": op.complete_ms,
                "value": op.value,
                "expected": op.expected,
                "succeeded": op.succeeded,
                "client": op.client,
                "where": run.history.where(op),
            }
            out.write(json.dumps(record) + "\n")


def _seed(seed: int | None) -> int:
    replay = os.environ.get("DREF_JEPSEN_SEED")
    if replay:
        return int(replay)
    return seed if seed is not None else random.SystemRandom().randrange(1, 10**6)


@pytest.fixture
def jepsen(tmp_path: Path) -> Iterator[Jepsen]:
    """A `Jepsen` runner whose clusters are killed at teardown, pass or fail."""
    runner = Jepsen(tmp_path)
    try:
        yield runner
    finally:
        for cluster in runner.clusters:
            cluster.close()

