"""The client services and the Client against a real 3-node cluster of `dref node` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import grpc
import pytest

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.raft.client import Client
from dref.wire.client_protocol import LEADER_ADDRESS_KEY
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc


def test_a_follower_answers_not_leader_with_the_leaders_id_and_address(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.addresses if n != leader)
    stub = up_grpc.DRefRaftStub(grpc.insecure_channel(cluster.addresses[follower]))
    for call in (
        lambda: stub.SetElement(up.SetElementRequest(name="k", value=b"v"), timeout=10),
        lambda: stub.DeleteElement(up.DeleteElementRequest(name="k"), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details() == f"not-leader:{leader}"
        metadata = tuple(info.value.trailing_metadata())
        assert (LEADER_ADDRESS_KEY, cluster.addresses[leader]) in metadata


def test_get_endpoints_lists_the_peers_then_the_responders_own_id(cluster):
    for node_id, address in cluster.addresses.items():
        stub = up_grpc.DRefRaftStub(grpc.insecure_channel(address))
        ids = list(stub.GetEndpoints(up.GetEndpointsRequest(), timeout=10).ids)
        assert ids[-1] == node_id
        assert sorted(ids) == sorted(cluster.addresses)


def test_client_knowing_only_a_follower_reaches_the_leader(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.addresses if n != leader)
    with Client([cluster.addresses[follower]], timeout=20) as client:
        revision = client.set("via-follower", b"1")
        assert client.leader_address == cluster.addresses[leader]
        assert client.get("via-follower") == Entry(b"1", revision)
        later = client.compare_and_set("via-follower", Entry(b"1", revision), b"2")
        assert later is not None and later > revision
        # every node applies the write; a follower's stale read sees it eventually
        follower_client = Client([cluster.addresses[follower]], timeout=20)
        entry = None
        for _ in range(400):
            entry = follower_client.get("via-follower", policy="stale")
            if entry is not None and entry.value == b"2":
                break
            threading.Event().wait(0.025)  # a poll under a bounded count
        follower_client.close()
        assert entry == Entry(b"2", later)


def test_expired_entries_are_reaped_and_every_node_emits_the_delete(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.addresses if n != leader)
    with Client([cluster.addresses[follower]], timeout=20) as client:
        watch = client.watch("short-lived")
        assert watch.address == cluster.addresses[follower]  # no leader known yet: first one
        items: list[object] = []
        two = threading.Event()

        def read() -> None:
            for item in watch:
                items.append(item)
                if len(items) == 2:
                    two.set()
                    return

        threading.Thread(target=read, daemon=True).start()
        revision = client.set("short-lived", b"x", ttl=0.3)
        assert two.wait(20), items
        watch.cancel()
        assert items[0] == ChangeEvent("short-lived", ChangeKind.SET, b"x", revision)
        deleted = items[1]
        assert isinstance(deleted, ChangeEvent) and deleted.kind is ChangeKind.DELETE
        assert deleted.revision > revision
        assert client.get("short-lived") is None


def test_dref_status_command(cluster):
    leader = cluster.leader()
    address = cluster.addresses[leader]
    command = [sys.executable, "-m", "dref.cli", "status", address]
    raw = subprocess.run([*command, "--json"], capture_output=True, timeout=60, check=True)
    status = json.loads(raw.stdout)
    assert status["role"] == "leader" and status["node_id"] == leader
    assert set(status["match_indexes"]) == set(cluster.addresses) - {leader}
    assert {"elections_started", "proposals", "apply_lag", "fsync_p99_ms"} <= set(status["metrics"])
    text = subprocess.run(command, capture_output=True, timeout=60, check=True).stdout.decode()
    assert f"role      leader   term {status['term']}" in text
    assert "follower  " in text
    assert status["voters"] == sorted(cluster.addresses)
    assert f"voters    {', '.join(sorted(cluster.addresses))}   unreachable " in text
