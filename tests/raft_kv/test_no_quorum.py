"""With too few voters alive, every call says so: `NoQuorumError` naming how many voters
answer and which do not, whatever the client was connected to, within the call's timeout
plus a second; a node's status names its voters and the peers it cannot reach."""

from __future__ import annotations

import time

import pytest
from polling import wait_for

import dref
from dref.errors import LockTimeoutError, NoQuorumError, QuorumLostError
from dref.raft.client import EXPLAIN_BUDGET, Client

TIMEOUT = 2.0


def test_two_of_three_down_is_reported_as_lost_quorum_on_every_call(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=500)
    cluster.leader()
    everyone = list(cluster.addresses.values())
    with Client(everyone, timeout=10) as client:
        client.set("k", b"v")
    for node_id in ("n2", "n3"):
        cluster.processes[node_id].stop()
    survivor = cluster.addresses["n1"]
    with Client([survivor], timeout=5) as observer:
        wait_for(
            lambda: observer.status(survivor)["unreachable"] == ["n2", "n3"], 15, "n1 notices"
        )
        status = observer.status(survivor)
    assert status["voters"] == ["n1", "n2", "n3"]

    for addresses in (everyone, [survivor]):  # knowing every node, or only the survivor
        with Client(addresses, timeout=TIMEOUT) as client:
            for call in (
                lambda: client.get("k"),
                lambda: client.set("k", b"w"),
                lambda: client.delete("k"),
            ):
                started = time.monotonic()
                with pytest.raises(NoQuorumError) as info:
                    call()
                assert time.monotonic() - started < TIMEOUT + EXPLAIN_BUDGET + 1.0
                assert "no quorum: 1 of 3 voters reachable (n2, n3 not answering)" in str(
                    info.value
                )
                assert info.value.reachable == ["n1"]
                assert isinstance(info.value, QuorumLostError)


def test_a_lock_without_quorum_is_a_lock_timeout_within_its_timeout(make_cluster):
    """The bug report: `lock(timeout=3)` with the quorum gone raised after 13 s, and under
    faults sometimes `DRefTimeoutError` instead of `LockTimeoutError`."""
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=500)
    cluster.leader()
    everyone = list(cluster.addresses.values())
    for node_id in ("n2", "n3"):
        cluster.processes[node_id].stop()
    with dref.raft_client(everyone, timeout=10) as ctx:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(LockTimeoutError), ctx.lock("no-quorum-lock", timeout=3):
                pass
            assert time.monotonic() - started < 3 + 1.0
