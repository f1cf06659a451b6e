"""Membership changes on real nodes: a one-node cluster grows to three with joining nodes
(learner, catch-up, promotion), the CLI lists and changes members and moves leadership,
and a removed member stops being replicated to. No acknowledged write is lost."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from node_cluster import free_ports, start_member, wait_until

from dref.cli import main as cli_main
from dref.errors import DRefTimeoutError, MembershipError


def test_grow_one_to_three_then_shrink_with_the_cli(tmp_path: Path, capsys) -> None:
    ports = free_ports(3)
    seed, seed_machine = start_member(tmp_path, "n1", f"127.0.0.1:{ports[0]}", join=False)
    joiners = [
        start_member(tmp_path, f"n{i + 2}", f"127.0.0.1:{ports[i + 1]}", join=True)
        for i in range(2)
    ]
    nodes = [seed, *(node for node, _ in joiners)]
    machines = [seed_machine, *(machine for _, machine in joiners)]
    try:
        wait_until(lambda: seed.is_leader, what="the single node to lead")
        acknowledged = [seed.propose(f"w{i}".encode()) for i in range(20)]
        for node, _ in joiners:
            seed.add_voter(node.node_id, node.address, timeout=60)
            acknowledged.append(seed.propose(f"after-{node.node_id}".encode()))
        view = seed.members()
        assert view.membership.voters == {"n1", "n2", "n3"} and view.committed
        wait_until(lambda: all(len(m.snapshot_items()) == 22 for m in machines), 30, "catch-up")

        assert cli_main(["transfer-leader", "--to", "n2", seed.address]) == 0
        assert "leader is now n2" in capsys.readouterr().out
        assert wait_until(lambda: nodes[1].is_leader, what="n2 to lead")
        assert cli_main(["members", "remove", seed.address, "n1"]) == 0
        listed = capsys.readouterr().out
        assert "n1" not in listed and "n2\tvoter" in listed and "n3\tvoter" in listed
        assert nodes[1].propose(b"two-node") == b"23"
        wait_until(lambda: len(machines[2].snapshot_items()) == 23, 30, "n3 to apply")
        assert len(seed_machine.snapshot_items()) == 22  # removed: no longer replicated to
        assert len(acknowledged) == 22
    finally:
        for node in nodes:
            node.close()


def test_changes_asked_at_once_wait_their_turn_instead_of_failing(tmp_path: Path) -> None:
    """Right after its election, and while another change is in flight, the leader refuses
    a change for a passing reason; the caller's add_* waits that out within its timeout."""
    ports = free_ports(3)
    seed, _ = start_member(tmp_path, "n1", f"127.0.0.1:{ports[0]}", join=False)
    joiners = [
        start_member(tmp_path, f"n{i + 2}", f"127.0.0.1:{ports[i + 1]}", join=True)[0]
        for i in range(2)
    ]
    try:
        wait_until(lambda: seed.is_leader, what="the single node to lead")
        with ThreadPoolExecutor(2) as pool:
            adds = [pool.submit(seed.add_learner, j.node_id, j.address) for j in joiners]
            for add in adds:
                add.result(timeout=60)
        view = seed.members()
        assert view.membership.learners == {"n2", "n3"} and view.committed
        with pytest.raises(MembershipError) as refused:
            seed.remove("nobody", timeout=5)
        assert not refused.value.retryable
    finally:
        for node in [seed, *joiners]:
            node.close()


def test_a_promotion_that_cannot_finish_ends_at_its_timeout_and_says_which(tmp_path: Path) -> None:
    """A learner that never answers (nothing runs at its address) is never promoted: the
    call ends at its timeout, and a timeout names the whole time, not what a retry had left."""
    (port, dead_port) = free_ports(2)
    seed, _ = start_member(tmp_path, "n1", f"127.0.0.1:{port}", join=False)
    try:
        wait_until(lambda: seed.is_leader, what="the single node to lead")
        seed.add_learner("n2", f"127.0.0.1:{dead_port}")
        started = time.monotonic()
        with pytest.raises((MembershipError, DRefTimeoutError)) as refused:
            seed.promote("n2", timeout=1.5)
        assert time.monotonic() - started < 1.5 + 2.0
        if isinstance(refused.value, DRefTimeoutError):
            assert "within 1.5 s" in str(refused.value)
    finally:
        seed.close()
