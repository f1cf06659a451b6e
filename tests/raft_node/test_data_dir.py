"""A node's data directory is its own: locked while the node runs (a second node on it fails
at once, naming the holder's pid), unlocked by close(), and bound to the node id it first
started with."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from node_cluster import ListMachine

from dref.errors import DataDirInUseError, NodeIdMismatchError
from dref.raft.config import NodeConfig
from dref.raft.node import Node
from dref.storage.data_dir_lock import LOCK_FILE
from dref.storage.node_identity import FILE_NAME
from dref.storage.voter_state import VoterStateFile

FAST = {"heartbeat_interval": 0.05, "election_timeout": 0.5, "max_clock_drift": 0.05}


def solo(data_dir: Path, node_id: str = "n1", *, upstream_files: bool = False) -> NodeConfig:
    """A one-node cluster on a free port."""
    return NodeConfig(
        node_id=node_id,
        listen="127.0.0.1:0",
        peers={},
        data_dir=data_dir,
        upstream_files=upstream_files,
        **FAST,
    )


def test_a_second_node_on_the_directory_fails_at_once_until_the_first_closes(
    tmp_path: Path,
) -> None:
    with Node(solo(tmp_path / "d"), ListMachine()) as first:
        first.wait_for_leader(20)
        started = time.monotonic()
        with pytest.raises(DataDirInUseError, match=f"in use by pid {os.getpid()}"):
            Node(solo(tmp_path / "d"), ListMachine())
        assert time.monotonic() - started < 5
        assert first.propose(b"still-serving") == b"1"
    with Node(solo(tmp_path / "d"), ListMachine()) as again:
        again.wait_for_leader(20)
        assert again.read(b"all") == b"still-serving"


def test_a_directory_of_n1_started_as_n3_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    with Node(solo(tmp_path / "d", "n1"), ListMachine()) as node:
        node.wait_for_leader(20)
    files = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()}
    with pytest.raises(NodeIdMismatchError, match="belongs to node 'n1', not 'n3'"):
        Node(solo(tmp_path / "d", "n3"), ListMachine())
    after = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()}
    assert after == files
    with Node(solo(tmp_path / "d", "n1"), ListMachine()) as node:  # the refusal let go
        node.wait_for_leader(20)


def test_the_identity_lives_beside_upstreams_files(tmp_path: Path) -> None:
    with Node(solo(tmp_path, upstream_files=True), ListMachine()) as node:
        node.wait_for_leader(20)
    assert json.loads((tmp_path / FILE_NAME).read_text())["node_id"] == "n1"
    assert (tmp_path / LOCK_FILE).exists()
    state = VoterStateFile(tmp_path).load()  # upstream's decoder reads it unchanged
    assert state.term >= 1 and state.voted_for == "n1"
