"""A node whose CONFIG entries were compacted into a snapshot restarts with the membership
it had, not the one its NodeConfig names (real nodes, real data dirs, real restarts)."""

from __future__ import annotations

from pathlib import Path

from node_cluster import free_ports, start_member, wait_until

from dref.raft.node import Node


def test_restarted_nodes_keep_a_membership_whose_entries_were_compacted(tmp_path: Path) -> None:
    ports = dict(zip(["n1", "n2", "n3"], free_ports(3), strict=True))
    joins = {"n1": False, "n2": True, "n3": True}
    started = {
        n: start_member(tmp_path, n, f"127.0.0.1:{ports[n]}", join=joins[n], snapshot_every=10)
        for n in ports
    }
    nodes = {n: node for n, (node, _) in started.items()}
    try:
        seed = nodes["n1"]
        wait_until(lambda: seed.is_leader, what="the single node to lead")
        for joiner in ("n2", "n3"):
            seed.add_voter(joiner, nodes[joiner].address, timeout=60)
        written = [f"w{i}".encode() for i in range(40)]
        for command in written:
            seed.propose(command)
        wait_until(
            lambda: all(n.status().snapshot_index >= 30 for n in nodes.values()),
            30,
            "every node to compact past its CONFIG entries",
        )
        for node in nodes.values():
            node.close()

        # n1's config still says "alone", n2's and n3's say "joining, no peers": only the
        # recorded configuration can bring the three-node cluster back.
        started = {
            n: start_member(tmp_path, n, f"127.0.0.1:{ports[n]}", join=joins[n], snapshot_every=10)
            for n in ports
        }
        nodes = {n: node for n, (node, _) in started.items()}
        for node in nodes.values():
            view = node.members()
            assert view.membership.voters == {"n1", "n2", "n3"}
            assert view.membership.address_map() == {n: f"127.0.0.1:{p}" for n, p in ports.items()}

        def one_leader() -> Node | None:
            leaders = [n for n in nodes.values() if n.is_leader]
            return leaders[0] if len(leaders) == 1 else None

        leader = wait_until(one_leader, 30, "one leader of the restarted cluster")
        assert leader.propose(b"after restart") == b"41"
        wait_until(
            lambda: all(
                m.snapshot_items() == [*written, b"after restart"] for _, m in started.values()
            ),
            30,
            "every node to apply the write after the restart",
        )
    finally:
        for node in nodes.values():
            node.close()
