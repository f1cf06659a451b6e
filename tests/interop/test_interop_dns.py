"""An interop node follows DREF_NODE_SERVICES as upstream's do (spec 4.9, PeerMapSync): the
peer map, and with it the quorum, is whatever the name resolves to now.

Real DNS answers come from /etc/hosts inside a private network and mount namespace, where
`dns_cluster.py` runs real `dref node --interop` processes at 127.0.0.1-4 and rewrites the
name's addresses; skipped where namespaces cannot be made.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.namespaces import namespaces_work, run_with_own_hosts


@pytest.mark.slow
def test_peer_map_follows_the_service_name(tmp_path: Path) -> None:
    if not namespaces_work():
        pytest.skip("cannot create user, mount and network namespaces here (unshare -rmn)")
    result, logs = run_with_own_hosts(Path(__file__).parent / "dns_cluster.py", tmp_path, 200)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    assert "interop discovery ok" in result.stdout


@pytest.mark.slow
def test_demo_nodes_chat_as_upstreams_do(tmp_path: Path) -> None:
    """examples/interop_demo.py as a node, configured as spec 1.8's demo nodes are."""
    if not namespaces_work():
        pytest.skip("cannot create user, mount and network namespaces here (unshare -rmn)")
    result, logs = run_with_own_hosts(Path(__file__).parent / "demo_cluster.py", tmp_path, 200)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    assert "interop demo ok" in result.stdout
