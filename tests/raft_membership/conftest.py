"""Fixtures for transfer and membership tests; reuses the node tests' cluster helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "raft_node"))

from node_cluster import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A started 3-node cluster on loopback with real data dirs; closed after the test."""
    started = Cluster(tmp_path).start_all()
    try:
        yield started
    finally:
        started.close()
