"""A 3-node cluster in one process: election, replication, routing errors, reads, failover
and restart from the data directories."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from node_cluster import Cluster, wait_until

from dref.errors import NotLeaderError, QuorumLostError


def test_elects_exactly_one_leader_that_every_node_follows(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert sum(n.is_leader for n in cluster.nodes.values()) == 1
    for node in cluster.nodes.values():
        assert node.wait_for_leader(20) == leader.node_id
        status = node.status()
        assert status.leader_address == leader.address
        assert status.term >= 1


def test_proposals_commit_and_apply_on_every_node_in_order(cluster: Cluster) -> None:
    leader = cluster.leader()
    results = [leader.propose(f"c{i}".encode()) for i in range(30)]
    assert results == [str(i + 1).encode() for i in range(30)]
    cluster.wait_applied(30)
    expected = [f"c{i}".encode() for i in range(30)]
    for machine in cluster.machines.values():
        assert machine.snapshot_items() == expected
    status = leader.status()
    assert status.role == "leader"
    assert status.metrics.proposals == 30
    assert all(match >= status.commit_index - 30 for match in status.match_indexes.values())


def test_concurrent_callers_share_group_commits(cluster: Cluster) -> None:
    leader = cluster.leader()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(10):
                leader.propose(f"w{worker}-{i}".encode())
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    cluster.wait_applied(160)
    items = [m.snapshot_items() for m in cluster.machines.values()]
    assert items[0] == items[1] == items[2]
    assert sorted(items[0]) == sorted(f"w{w}-{i}".encode() for w in range(16) for i in range(10))
    assert leader.status().metrics.group_commits < 160


def test_follower_rejects_writes_naming_the_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    with pytest.raises(NotLeaderError) as caught:
        follower.propose(b"nope")
    assert caught.value.leader_id == leader.node_id
    assert caught.value.leader_address == leader.address


def test_reads_see_the_latest_acknowledged_write(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    for i in range(5):
        leader.propose(f"r{i}".encode())
        for policy in ("linearizable", "lease"):
            assert leader.read(b"len", policy=policy) == str(i + 1).encode()
        assert follower.read(b"len") == str(i + 1).encode()  # ReadIndex via the leader
    wait_until(lambda: follower.read(b"len", policy="stale") == b"5", what="stale read")


def test_leader_failover_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    old = cluster.leader()
    acknowledged = [f"a{i}".encode() for i in range(10)]
    for command in acknowledged:
        old.propose(command)
    cluster.stop(old.node_id)
    new = cluster.leader()
    assert new.node_id != old.node_id
    new.propose(b"after")
    survivors = list(cluster.nodes)
    cluster.wait_applied(11, survivors)
    for node_id in survivors:
        assert cluster.machines[node_id].snapshot_items() == [*acknowledged, b"after"]
    restarted = cluster.start(old.node_id)
    cluster.wait_applied(11)
    assert cluster.machines[restarted.node_id].snapshot_items() == [*acknowledged, b"after"]


def test_whole_cluster_restarts_from_its_data_dirs(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path).start_all()
    try:
        leader = cluster.leader()
        for i in range(12):
            leader.propose(f"p{i}".encode())
        cluster.close()
        cluster.start_all()
        leader = cluster.leader()
        cluster.wait_applied(12)
        expected = [f"p{i}".encode() for i in range(12)]
        for machine in cluster.machines.values():
            assert machine.snapshot_items() == expected
        assert leader.propose(b"more") == b"13"
    finally:
        cluster.close()


def test_isolated_leader_fails_waiting_proposals_instead_of_hanging(cluster: Cluster) -> None:
    leader = cluster.leader()
    for follower in cluster.followers():
        cluster.stop(follower.node_id)
    # CheckQuorum makes the leader step down within about an election timeout; whatever it
    # accepted meanwhile may or may not commit later, so it must say so, not time out.
    with pytest.raises((QuorumLostError, NotLeaderError)):
        leader.propose(b"unreplicated", timeout=60)
    with pytest.raises(NotLeaderError):
        leader.propose(b"after stepping down", timeout=60)
