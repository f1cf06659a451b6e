"""A node whose actor failed says so (`healthy()`), so its process can exit and restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from node_cluster import ListMachine, wait_until

from dref.errors import BackendUnavailableError
from dref.raft import Node, NodeConfig


class _SnapshotFails(ListMachine):
    def snapshot(self) -> bytes:
        raise OSError("disk full while snapshotting")


def test_a_failed_actor_makes_the_node_unhealthy(tmp_path: Path) -> None:
    config = NodeConfig(
        node_id="solo",
        listen="127.0.0.1:0",
        peers={},
        data_dir=tmp_path,
        snapshot_every=2,
        upstream_files=False,
    )
    with Node(config, _SnapshotFails()) as node:
        node.wait_for_leader(timeout=20)
        assert node.healthy()
        node.propose(b"a", timeout=20)
        try:  # its snapshot, due now, fails: the applier stops and tells its waiting callers
            node.propose(b"b", timeout=20)
        except BackendUnavailableError:  # refused, or QuorumLostError: failed while waiting
            pass
        wait_until(lambda: not node.healthy(), timeout=20, what="the node to report the failure")
        with pytest.raises(BackendUnavailableError, match="has failed"):
            node.propose(b"c", timeout=20)  # refused at once, not left to time out
    assert not node.healthy()
