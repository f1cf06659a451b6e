"""Snapshots: the log compacts behind them, a wiped follower (refused as a member, added
back as a new one) catches up by InstallSnapshot, and a restart restores the state machine
from the snapshot file."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from node_cluster import Cluster, wait_until

from dref.raft.node import Node
from dref.storage.snapshot_files import SnapshotFiles


def test_small_snapshot_every_compacts_and_a_wiped_follower_catches_up(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, snapshot_every=10).start_all()
    try:
        leader = cluster.leader()
        for i in range(35):
            leader.propose(f"s{i}".encode())
        cluster.wait_applied(35)
        wait_until(
            lambda: all(n.status().snapshot_index >= 20 for n in cluster.nodes.values()),
            what="every node compacted",
        )
        saved = SnapshotFiles(tmp_path / leader.node_id, upstream=False).load()
        assert saved is not None and saved.index >= 20

        victim = cluster.followers()[0].node_id
        cluster.stop(victim)
        for i in range(35, 60):
            leader.propose(f"s{i}".encode())
        wait_until(lambda: leader.status().snapshot_index >= 50, what="leader compacted past 50")
        shutil.rmtree(tmp_path / victim)
        # Started as a member again, the empty node refuses (it may have voted before)...
        refused = cluster.start(victim)
        wait_until(lambda: refused.refusal is not None, what=f"{victim} refuses")
        assert refused.status().blank_start == "refused" and str(tmp_path / victim) in (
            refused.refusal or ""
        )
        cluster.stop(victim)
        # ... so it is removed, and added back as a new member that joins empty.
        leader.remove(victim)
        shutil.rmtree(tmp_path / victim)
        joining = replace(cluster.config(victim), peers={}, join=True)
        cluster.nodes[victim] = Node(joining, cluster.machines[victim])
        leader.add_voter(victim, cluster.addresses[victim])
        cluster.wait_applied(60)
        expected = [f"s{i}".encode() for i in range(60)]
        assert cluster.machines[victim].snapshot_items() == expected
        restored = cluster.nodes[victim].status()
        assert restored.snapshot_index >= 50  # it got the leader's snapshot, not the whole log

        cluster.close()
        cluster.start_all()
        cluster.leader()
        cluster.wait_applied(60)
        for machine in cluster.machines.values():
            assert machine.snapshot_items() == expected
    finally:
        cluster.close()
