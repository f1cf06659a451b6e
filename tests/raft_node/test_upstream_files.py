"""With upstream_files the data directory holds upstream's formats: StateCommand records in
command-log and a ClusterSnapshot (last_seq = snapshot index) in state-snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

from node_cluster import Cluster, wait_until

from dref.raft.config import NodeConfig
from dref.raft.node import Node
from dref.storage.command_log import CommandLog
from dref.storage.state_snapshot import StateSnapshotFile
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.raft_pb2 import KVEntry
from dref.wire.proto.state_command_pb2 import SetElementCommand, StateCommand


class KeyValueMachine:
    """Applies SetElement commands; snapshots are ClusterSnapshots, as upstream's are."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def apply(self, command: bytes) -> bytes:
        parsed = StateCommand.FromString(command)
        with self.lock:
            self.values[parsed.set_element.name] = parsed.set_element.value
        return b""

    def snapshot(self) -> bytes:
        with self.lock:
            entries = [KVEntry(key=k, value=v) for k, v in sorted(self.values.items())]
        return ClusterSnapshot(entries=entries).SerializeToString()

    def restore(self, data: bytes) -> None:
        with self.lock:
            self.values = {e.key: e.value for e in ClusterSnapshot.FromString(data).entries}

    def query(self, request: bytes) -> bytes:
        with self.lock:
            return self.values.get(request.decode(), b"")


def set_command(name: str, value: bytes) -> bytes:
    return StateCommand(set_element=SetElementCommand(name=name, value=value)).SerializeToString()


def test_files_are_upstream_formats_and_survive_a_restart(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, size=1, upstream_files=True, snapshot_every=5)
    config: NodeConfig = cluster.config("n1")
    machine = KeyValueMachine()
    with Node(config, machine) as node:
        node.wait_for_leader(20)
        for i in range(12):
            node.propose(set_command(f"k{i}", f"v{i}".encode()))
        wait_until(lambda: node.status().snapshot_index >= 10, what="a snapshot")
    snapshot = StateSnapshotFile(tmp_path / "n1").load()
    assert snapshot is not None and snapshot.last_seq >= 10
    assert {e.key for e in snapshot.entries} >= {f"k{i}" for i in range(9)}
    records = CommandLog(tmp_path / "n1").open().records
    assert all(seq > snapshot.last_seq for seq in records)
    restarted = KeyValueMachine()
    with Node(config, restarted) as node:
        node.wait_for_leader(20)
        assert node.read(b"k11") == b"v11"
        assert node.read(b"k0") == b"v0"
