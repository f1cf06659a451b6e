"""Membership under load on real nodes: one node grows to three, then to five, and shrinks
back to three while a writer keeps proposing; the leader is killed in the middle of a
change and comes back later. Every acknowledged write survives, exactly once, on every
remaining member."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from node_cluster import ListMachine, free_ports, start_member, wait_until

from dref.errors import DRefError
from dref.raft.node import Node

CHANGE_DEADLINE = 60.0


class Members:
    """The running nodes of the test, by id (nodes stop and start while others use them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = dict(zip([f"n{i}" for i in range(1, 6)], free_ports(5), strict=True))
        self.nodes: dict[str, Node] = {}
        self.machines: dict[str, ListMachine] = {}
        self.lock = threading.Lock()

    def address(self, node_id: str) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"

    def start(self, node_id: str) -> Node:
        node, machine = start_member(
            self.root, node_id, self.address(node_id), join=node_id != "n1"
        )
        with self.lock:
            self.nodes[node_id], self.machines[node_id] = node, machine
        return node

    def kill(self, node_id: str) -> None:
        with self.lock:
            node = self.nodes.pop(node_id)
        node.close()

    def running(self) -> list[Node]:
        with self.lock:
            return list(self.nodes.values())

    def leader(self) -> Node:
        def find() -> Node | None:
            for node in self.running():
                try:
                    if node.is_leader:
                        return node
                except DRefError:
                    continue
            return None

        return wait_until(find, 30, "a leader")


class Writer(threading.Thread):
    """Proposes w0, w1, ... to the leader at a light pace; records which were acknowledged."""

    def __init__(self, members: Members) -> None:
        super().__init__(name="membership-test-writer", daemon=True)
        self.members = members
        self.acknowledged: list[bytes] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.stopped.is_set():
            command = f"w{sequence}".encode()
            sequence += 1
            try:
                self.members.leader().propose(command, timeout=5)
                self.acknowledged.append(command)
            except (DRefError, AssertionError):
                pass  # not acknowledged: it may or may not be applied
            self.stopped.wait(0.01)  # a light load, not a benchmark

    def make_progress(self) -> None:
        """Wait until a few more writes were acknowledged (the cluster serves right now)."""
        count = len(self.acknowledged)
        wait_until(lambda: len(self.acknowledged) >= count + 3, 30, "writes to be acknowledged")


def change_until_done(
    members: Members, done: Callable[[Node], bool], step: Callable[[Node], None]
) -> None:
    """Run `step` on the leader until `done` holds there (retrying across leader changes)."""
    deadline = time.monotonic() + CHANGE_DEADLINE
    while True:
        try:
            leader = members.leader()
            if done(leader):
                return
            step(leader)
        except DRefError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("membership change did not complete")


def voters_are(expected: set[str]) -> Callable[[Node], bool]:
    def check(leader: Node) -> bool:
        view = leader.members()
        return (
            view.committed and view.membership.voters == expected and not view.membership.learners
        )

    return check


def add_voter(members: Members, node_id: str, voters: set[str]) -> None:
    def step(leader: Node) -> None:
        leader.add_voter(node_id, members.address(node_id), timeout=20)

    change_until_done(members, voters_are(voters | {node_id}), step)


def remove(members: Members, node_id: str, voters: set[str]) -> None:
    change_until_done(
        members, voters_are(voters - {node_id}), lambda leader: leader.remove(node_id, timeout=20)
    )


def test_grow_one_three_five_shrink_to_three_with_a_leader_kill(tmp_path: Path) -> None:
    members = Members(tmp_path)
    for node_id in members.ports:
        members.start(node_id)
    writer = Writer(members)
    try:
        wait_until(lambda: members.nodes["n1"].is_leader, what="the seed to lead")
        writer.start()
        voters = {"n1"}
        for node_id in ("n2", "n3"):
            add_voter(members, node_id, voters)
            voters.add(node_id)
            writer.make_progress()

        # Kill the leader right after it appended a change: the change may or may not
        # survive; the cluster must settle on one outcome and finish it.
        leader = members.leader()
        killed = leader.node_id
        change = threading.Thread(
            target=lambda: _ignore_errors(lambda: leader.add_learner("n4", members.address("n4"))),
            name="membership-test-change",
            daemon=True,
        )
        change.start()
        wait_until(lambda: "n4" in leader.members().membership.members, 10, "the change appended")
        members.kill(killed)
        change.join(30)
        add_voter(members, "n4", voters)
        voters.add("n4")
        writer.make_progress()
        members.start(killed)  # back from its own data dir, with its configuration
        add_voter(members, "n5", voters)
        voters.add("n5")
        writer.make_progress()

        for node_id in (killed, members.leader().node_id):  # shrink, the leader included
            remove(members, node_id, voters)
            voters.discard(node_id)
            writer.make_progress()
        assert len(voters) == 3
    finally:
        writer.stopped.set()
        writer.join(30)
    try:
        acknowledged = writer.acknowledged
        assert len(acknowledged) >= 20
        final = [members.machines[v] for v in sorted(voters)]
        wait_until(
            lambda: all(set(acknowledged) <= set(m.snapshot_items()) for m in final),
            30,
            "every acknowledged write on every remaining voter",
        )
        histories = [m.snapshot_items() for m in final]
        shortest = min(len(h) for h in histories)
        assert all(h[:shortest] == histories[0][:shortest] for h in histories)
        assert all(len(set(h)) == len(h) for h in histories)  # nothing applied twice
    finally:
        for node_id in list(members.nodes):
            members.kill(node_id)


def _ignore_errors(call: Callable[[], None]) -> None:
    try:
        call()
    except DRefError:
        pass
