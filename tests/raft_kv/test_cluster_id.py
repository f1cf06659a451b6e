"""Cluster identity: a cluster's leader creates its id once, every member records it in
`node-identity.json`, and a data directory of another cluster, started as one of the
members, is refused by the peers (and refuses them) with a message naming both ids,
without taking or giving a single entry."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from polling import wait_for

from dref.errors import DRefError
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports, node_arguments

pytestmark = pytest.mark.slow


def recorded_cluster_id(data_dir: Path) -> str | None:
    identity = json.loads((data_dir / "node-identity.json").read_text())
    return identity.get("cluster_id")


def test_every_member_records_the_same_cluster_id(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=800)
    cluster.leader()
    wait_for(
        lambda: len({recorded_cluster_id(cluster.root / n) for n in cluster.addresses}) == 1
        and recorded_cluster_id(cluster.root / "n1") is not None,
        30,
        "every node records one cluster id",
    )
    with (
        Client(list(cluster.addresses.values()), timeout=10) as client,
        pytest.raises(DRefError, match="kept for the nodes' own use"),
    ):
        client.set("__dref/cluster-id", b"mine")


@pytest.mark.parametrize("transport", ["socket", "grpc"])
def test_a_data_directory_of_another_cluster_is_refused(make_cluster, tmp_path, transport):
    """On either peer transport: the socket's handshake, or gRPC call metadata."""
    cluster = make_cluster(
        3,
        heartbeat_ms=50,
        election_ms=800,
        extra_args=lambda node_id: ["--peer-transport", transport],
    )
    cluster.leader()
    with Client(list(cluster.addresses.values()), timeout=10) as client:
        client.set("shared-counter", b"ours")
    wait_for(
        lambda: all(recorded_cluster_id(cluster.root / n) for n in cluster.addresses),
        30,
        "every member records the cluster id",
    )
    ours = recorded_cluster_id(cluster.root / "n1")

    # Another cluster: one node, also called n3, with its own value of the same key.
    (port,) = free_ports(1)
    other_dir = tmp_path / "other-n3"
    other = NodeProcess(
        node_arguments("n3", f"127.0.0.1:{port}", {}, other_dir), log=tmp_path / "other.log"
    )
    try:
        with Client([f"127.0.0.1:{port}"], timeout=10) as client:
            client.set("shared-counter", b"theirs")
        wait_for(lambda: recorded_cluster_id(other_dir) is not None, 30, "the other records")
    finally:
        other.stop()
    theirs = recorded_cluster_id(other_dir)
    assert theirs is not None and theirs != ours

    cluster.processes["n3"].stop()
    shutil.rmtree(cluster.root / "n3")
    shutil.copytree(other_dir, cluster.root / "n3")
    cluster.start("n3")
    logs = {n: cluster.root / n / "node.log" for n in cluster.addresses}
    refusal = f"belongs to cluster {theirs!r}; this is cluster {ours!r}"
    wait_for(
        lambda: any(refusal in logs[n].read_text(errors="replace") for n in ("n1", "n2")),
        30,
        "a member refuses the other cluster's n3",
    )
    time.sleep(1.0)  # part of the experiment: give n3 time to (wrongly) catch up
    ours_only = [cluster.addresses["n1"], cluster.addresses["n2"]]
    with Client(ours_only, timeout=10) as client:
        assert client.get("shared-counter").value == b"ours"
        leader = client.status(cluster.addresses["n1"])["leader_id"]
        assert leader in ("n1", "n2")
        client.set("shared-counter", b"ours, later")  # the n3 slot is not even needed
    # n3 took no entry of ours: it still holds the other cluster's log and value.
    with Client([cluster.addresses["n3"]], timeout=10) as alone:
        assert alone.get("shared-counter", policy="stale").value == b"theirs"
    assert recorded_cluster_id(cluster.root / "n3") == theirs
    log = logs["n3"].read_text(errors="replace")
    assert "belongs to cluster" in log, "n3 does not say why it cannot join"
