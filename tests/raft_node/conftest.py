"""Fixtures for the node tests; makes `node_cluster` (the shared helpers) importable."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from node_cluster import cluster  # noqa: E402, F401 - the shared `cluster` fixture
