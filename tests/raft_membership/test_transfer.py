"""Leadership transfer on a real 3-node cluster (gRPC on loopback, real data dirs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from node_cluster import Cluster, wait_until

from dref.cli import main as cli_main
from dref.errors import LeaderTransferError, NotLeaderError


def test_transfer_to_a_named_voter_then_to_the_most_caught_up(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader.propose(b"before") == b"1"
    target = cluster.followers()[0]
    assert leader.transfer_leadership(target.node_id) == target.node_id
    assert cluster.leader() is target
    assert target.propose(b"after") == b"2"
    with pytest.raises(NotLeaderError):
        leader.transfer_leadership()
    chosen = target.transfer_leadership()
    assert chosen != target.node_id
    assert cluster.leader().node_id == chosen
    cluster.wait_applied(2)


def test_transfer_to_a_dead_voter_fails_and_the_leader_keeps_serving(cluster: Cluster) -> None:
    leader = cluster.leader()
    dead = cluster.followers()[0].node_id
    cluster.stop(dead)
    with pytest.raises(LeaderTransferError, match=dead):
        leader.transfer_leadership(dead)
    wait_until(lambda: leader.is_leader, what="the leader to keep leading")
    assert leader.propose(b"still leading", timeout=10) == b"1"


def test_the_cli_waits_for_an_election_instead_of_failing(tmp_path: Path, capsys) -> None:
    """With one member of three up there is no leader: `dref transfer-leader` hears
    not_leader with no hint and asks again until --timeout. Once a quorum is up, the same
    command waits out the election and transfers."""
    slow = Cluster(tmp_path)
    try:
        asked = slow.start("n1")
        started = time.monotonic()
        assert cli_main(["transfer-leader", asked.address, "--timeout", "1"]) == 1
        assert time.monotonic() - started >= 1.0  # asked until the timeout, not just once
        assert "no leader found" in capsys.readouterr().err
        slow.start("n2")
        slow.start("n3")
        assert cli_main(["transfer-leader", asked.address, "--timeout", "30"]) == 0
        new_leader = capsys.readouterr().out.strip().removeprefix("leader is now ")
        assert wait_until(lambda: slow.nodes[new_leader].is_leader, what="the new leader")
    finally:
        slow.close()
