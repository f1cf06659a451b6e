"""Real nodes (actors, storage, fsync) whose peers talk over an in-process network instead
of gRPC: the `PeerTransport` seam carries elections, replication and partitions."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from node_cluster import Cluster, wait_until

from dref.actors.transport import InMemoryNetwork


@pytest.fixture
def memory_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, network=InMemoryNetwork()).start_all()
    try:
        yield cluster
    finally:
        cluster.close()


def test_writes_from_many_threads_replicate_over_the_in_memory_transport(memory_cluster):
    leader = memory_cluster.leader()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: leader.propose(f"w{i}".encode(), timeout=10), range(40)))
    assert sorted(int(r) for r in results) == list(range(1, 41))
    memory_cluster.wait_applied(40)
    assert leader.read(b"len", timeout=10) == b"40"
    orders = {tuple(m.snapshot_items()) for m in memory_cluster.machines.values()}
    assert len(orders) == 1  # every node applied the same sequence


def test_a_cut_off_leader_is_replaced_and_catches_up_after_healing(memory_cluster):
    network = memory_cluster.network
    assert network is not None
    old = memory_cluster.leader()
    old.propose(b"before", timeout=10)
    for other in memory_cluster.ids:
        if other != old.node_id:
            network.cut(old.node_id, other)
    others = [n for n in memory_cluster.nodes.values() if n is not old]
    new = wait_until(
        lambda: next((n for n in others if n.is_leader), None), what="a leader among the others"
    )
    assert new.node_id != old.node_id
    new.propose(b"after", timeout=10)
    network.heal()
    memory_cluster.wait_applied(2)
    wait_until(lambda: not old.is_leader and old.leader_id == new.node_id, what="old steps down")
    assert memory_cluster.machines[old.node_id].snapshot_items() == [b"before", b"after"]
