"""A large state reaches a follower through files (issue 13, item 5): the key/value state
machine streams its snapshot into a file, the leader sends chunks read from it, the
follower writes them into a file and restores from it entry by entry, so no node holds
a copy of the snapshot in memory beside the state itself.

Checked on real `dref node` processes by the follower's peak resident memory (VmHWM)
against its resident memory once it caught up, and its growth: keeping the snapshot as
bytes (received, joined, parsed whole) peaked at 300 MiB above the final size for this
40 MiB state, and grew the follower by 740 MiB."""

from __future__ import annotations

from pathlib import Path

from node_cluster import wait_until

from dref.context import Context
from dref.raft_backend import RaftBackend
from testkit.cluster import FaultyCluster

VALUE_BYTES = 64 * 1024
VALUES = 640
STATE_BYTES = VALUE_BYTES * VALUES  # 40 MiB
LIMIT_S = 90.0


def _memory_kib(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of `pid`, in KiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0])
    return found


def test_a_large_snapshot_reaches_a_follower_without_a_copy_in_memory(tmp_path: Path) -> None:
    cluster = FaultyCluster(tmp_path, size=3, snapshot_every=64).start_all()
    try:
        leader = cluster.leader()
        victim = next(n for n in cluster.ids if n != leader)
        cluster.kill(victim)
        context = Context(RaftBackend(cluster.client([leader], timeout=20.0)))
        blob = bytes(range(256)) * (VALUE_BYTES // 256)
        for i in range(VALUES):
            context.ref(f"big-{i:04d}", b"").set(blob[:-8] + i.to_bytes(8, "big"))
        last = context.ref("last", 0)
        last.set(1)
        written = wait_until(lambda: cluster.status(leader), LIMIT_S, "the leader's status")
        wait_until(
            lambda: (
                (s := cluster.status(leader))
                and s["snapshot_index"] > written["applied_index"] - 64
            ),
            LIMIT_S,
            "a snapshot covering the writes",
        )
        cluster.restart(victim)
        pid = cluster.processes[victim].process.pid
        started = _memory_kib(pid)["VmRSS"] * 1024
        caught_up = wait_until(
            lambda: (
                (s := cluster.status(victim))
                and s["applied_index"] >= written["applied_index"]
                and s
            ),
            LIMIT_S,
            "the restarted follower to catch up",
        )
        metrics = caught_up["metrics"]
        assert metrics["snapshot_installs"] >= 1, "the follower caught up without a snapshot"
        assert metrics["snapshot_bytes_installed"] >= STATE_BYTES
        memory = _memory_kib(pid)
        above = (memory["VmHWM"] - memory["VmRSS"]) * 1024
        assert above < STATE_BYTES // 2, (
            f"the follower peaked {above >> 20} MiB above its resident size after installing "
            f"a {STATE_BYTES >> 20} MiB state ({memory})"
        )
        grew = memory["VmHWM"] * 1024 - started
        assert grew < 3 * STATE_BYTES, (
            f"the follower grew by {grew >> 20} MiB to install a {STATE_BYTES >> 20} MiB state"
            " (its values and their history, which shares them)"
        )
        follower = Context(RaftBackend(cluster.client([victim], timeout=20.0)))
        sample = follower.ref("big-0321", b"").get(policy="stale")
        assert sample == blob[:-8] + (321).to_bytes(8, "big")
    finally:
        cluster.close()
