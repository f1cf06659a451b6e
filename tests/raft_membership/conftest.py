"""Fixtures for transfer and membership tests; reuses the node tests' cluster helpers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "raft_node"))

from node_cluster import cluster  # noqa: E402, F401 - the shared `cluster` fixture
