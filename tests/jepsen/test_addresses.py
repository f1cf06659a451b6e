"""Addresses come only from their owner: with a fault proxy on every link, snapshot
installs and leader changes never make a node dial a peer anywhere but the address it was
configured with (another node's view of that peer), and clients given the nodes' real
addresses never follow a hint onto a link meant for peers."""

from __future__ import annotations

import os
import time

import pytest

from dref.raft.client import Client

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("transport", ["socket", "grpc"])
def test_nodes_and_clients_dial_only_the_addresses_configured_for_them(
    jepsen, transport, monkeypatch
):
    """On gRPC every link dials the membership address; on sockets the peer sockets are
    configured, and discovery still asks the gRPC address."""
    monkeypatch.setenv("DREF_PEER_TRANSPORT", transport)  # inherited by every node
    cluster = jepsen.cluster(snapshot_every=20)
    client = Client(list(cluster.addresses.values()), timeout=20, tls=cluster.tls)  # no map
    try:
        for round_number in range(3):
            # A follower misses enough writes that the leader compacts past it: on return
            # it installs a snapshot, which carries the leader's map of addresses.
            leader = cluster.leader()
            follower = next(n for n in cluster.ids if n != leader)
            cluster.kill(follower)
            for i in range(60):
                client.set(f"addresses-{round_number}-{i}", b"x" * 64)
            installs = (cluster.status(leader) or {}).get("metrics", {}).get("snapshot_sends")
            cluster.start(follower)
            deadline = time.monotonic() + 30
            while True:  # the leader sends it a snapshot
                sends = (cluster.status(leader) or {}).get("metrics", {}).get("snapshot_sends")
                if (sends or {}).get(follower, 0) > (installs or {}).get(follower, 0):
                    break
                assert time.monotonic() < deadline, f"no snapshot sent to {follower}: {sends}"
                time.sleep(0.1)  # a poll under a deadline
            # A leader change: isolate the leader until another one is elected.
            cluster.isolate(leader)
            cluster.leader(among=[n for n in cluster.ids if n != leader])  # a new one
            cluster.heal()
            for i in range(20):  # every client call goes to the new leader by its hints
                client.set(f"after-{round_number}-{i}", b"y")
        cluster.leader()
        assert client.get("after-2-19").value == b"y"
        status = cluster.status(cluster.leader()) or {}
        assert status.get("snapshot_index", 0) > 0, "no snapshot was ever taken"
    finally:
        client.close()
    me = os.getpid()
    for (source, target), proxy in [*cluster.proxies.items(), *cluster.socket_proxies.items()]:
        callers = [pid for pid in proxy.callers if pid is not None]
        strangers = [pid for pid in callers if pid not in cluster.pids[source]]
        assert me not in callers, f"a client dialed the {source}->{target} peer link"
        assert not strangers, (
            f"the {source}->{target} link was dialed by pids {strangers}, not by {source}"
            f" ({sorted(cluster.pids[source])}); node pids: {cluster.pids}"
        )
    links = cluster.socket_proxies if transport == "socket" else cluster.proxies
    dialed = [p for p in links.values() if p.callers]
    assert len(dialed) >= len(cluster.ids), f"the nodes never dialed their {transport} links"
