"""Helpers for the node tests: a tiny state machine and an in-process cluster on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dref.actors.transport import InMemoryNetwork
from dref.raft.config import NodeConfig
from dref.raft.node import Node
from dref.raft.node_process import free_ports

T = TypeVar("T")
ELECTION_DEADLINE = 20.0


class ListMachine:
    """Appends every command to a list; `apply` returns the new length, `query` the list."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.lock = threading.Lock()

    def apply(self, command: bytes) -> bytes:
        with self.lock:
            self.items.append(command)
            return str(len(self.items)).encode()

    def snapshot(self) -> bytes:
        with self.lock:
            return json.dumps([i.decode() for i in self.items]).encode()

    def restore(self, data: bytes) -> None:
        with self.lock:
            self.items = [i.encode() for i in json.loads(data)]

    def query(self, request: bytes) -> bytes:
        with self.lock:
            if request == b"len":
                return str(len(self.items)).encode()
            return b",".join(self.items)

    def snapshot_items(self) -> list[bytes]:
        with self.lock:
            return list(self.items)


def wait_until(
    predicate: Callable[[], T | None], timeout: float = ELECTION_DEADLINE, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


class Cluster:
    """Three (or n) nodes with fixed ports and data dirs; nodes can be stopped and restarted."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        network: InMemoryNetwork | None = None,
        **options: object,
    ) -> None:
        self.network = network
        """Peers talk over this in-process network instead of gRPC, when given."""
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        self.addresses = {
            node_id: f"127.0.0.1:{port}"
            for node_id, port in zip(self.ids, free_ports(size), strict=True)
        }
        self.root = root
        self.options = {
            "heartbeat_interval": 0.05,
            "election_timeout": 0.5,
            "max_clock_drift": 0.05,
            "upstream_files": False,
            "rpc_timeout": 1.0,
            **options,
        }
        self.nodes: dict[str, Node] = {}
        self.machines: dict[str, ListMachine] = {}

    def config(self, node_id: str) -> NodeConfig:
        return NodeConfig(
            node_id=node_id,
            listen=self.addresses[node_id],
            peers={p: a for p, a in self.addresses.items() if p != node_id},
            data_dir=self.root / node_id,
            **self.options,  # type: ignore[arg-type]
        )

    def start(self, node_id: str) -> Node:
        machine = ListMachine()
        network = self.network
        if network is None:
            node = Node(self.config(node_id), machine)
        else:
            node = Node(self.config(node_id), machine, transport=network.transport)
            network.attach(node_id, node.submit_peer_request)
        self.nodes[node_id], self.machines[node_id] = node, machine
        return node

    def start_all(self) -> Cluster:
        for node_id in self.ids:
            self.start(node_id)
        return self

    def stop(self, node_id: str) -> None:
        if self.network is not None:
            self.network.detach(node_id)
        self.nodes.pop(node_id).close()

    def close(self) -> None:
        for node_id in list(self.nodes):
            self.stop(node_id)

    def leader(self, timeout: float = ELECTION_DEADLINE) -> Node:
        """The single node that is leader (with every running node agreeing)."""

        def agreed() -> Node | None:
            leaders = [n for n in self.nodes.values() if n.is_leader]
            if len(leaders) != 1:
                return None
            leader = leaders[0]
            if all(n.leader_id == leader.node_id for n in self.nodes.values()):
                return leader
            return None

        return wait_until(agreed, timeout, "one agreed leader")

    def followers(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.is_leader]

    def wait_applied(self, count: int, node_ids: list[str] | None = None) -> None:
        """Every (named) running node applied at least `count` items."""
        ids = node_ids or list(self.nodes)
        wait_until(
            lambda: all(len(self.machines[i].snapshot_items()) >= count for i in ids),
            what=f"{count} items applied on {ids}",
        )


MEMBER_OPTIONS: dict[str, Any] = {
    "heartbeat_interval": 0.05,
    "election_timeout": 0.5,
    "max_clock_drift": 0.05,
    "upstream_files": False,
    "rpc_timeout": 1.0,
}
"""Fast timings for the membership tests (`start_member` applies them; tests may override)."""


def start_member(
    root: Path, node_id: str, listen: str, *, join: bool, **options: Any
) -> tuple[Node, ListMachine]:
    """A node with no configured peers: the seed of a cluster (join=False) or one that waits
    for a leader to add it (join=True); data in `root / node_id`."""
    machine = ListMachine()
    config = NodeConfig(
        node_id=node_id,
        listen=listen,
        peers={},
        data_dir=root / node_id,
        join=join,
        **{**MEMBER_OPTIONS, **options},
    )
    return Node(config, machine), machine


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A started 3-node cluster on loopback with real data dirs; closed after the test."""
    started = Cluster(tmp_path).start_all()
    try:
        yield started
    finally:
        started.close()
