"""Configuring an interop node as upstream's nodes are: peers that list the node itself,
the DREF_* variables, and native-mode options refused with the reason."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dref.errors import ConfigError, DataDirInUseError
from dref.raft.config import NodeConfig
from dref.raft.interop.node import InteropNode
from dref.raft.node_process import NodeProcess, free_ports
from dref.wire.proto import dref_pb2 as rpb
from testkit.dref_command import run_dref
from testkit.upstream_peer import client_stub

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def test_peers_may_list_the_node_itself(tmp_path: Path) -> None:
    config = NodeConfig(
        "2",
        "127.0.0.1:7002",
        {"1": "127.0.0.1:7001", "2": "127.0.0.1:9999", "x": "127.0.0.1:7002"},
        tmp_path,
        interop=True,
    )
    assert config.peers == {"1": "127.0.0.1:7001"}  # left out by id, and by address
    with pytest.raises(ConfigError, match="join is a native-mode option"):
        NodeConfig("2", "127.0.0.1:7002", {}, tmp_path, interop=True, join=True)


def test_the_command_refuses_native_options(tmp_path: Path) -> None:
    done = run_dref(
        "node", "--interop", "--join", "--id", "1", "--listen", "127.0.0.1:0",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1
    assert "join is a native-mode option" in done.stderr


@pytest.fixture
def from_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Three nodes configured only by DREF_PORT and DREF_NODE_ADDRESSES, on three loopback
    addresses sharing one port; yields that port."""
    port = free_ports(1)[0]
    monkeypatch.setenv("DREF_PORT", str(port))
    monkeypatch.setenv("DREF_NODE_ADDRESSES", ",".join(HOSTS))
    nodes = []
    try:
        for host in HOSTS:
            arguments = ["node", "--interop", "--bind-host", host, "--data-dir"]
            arguments += [str(tmp_path / host), "--election-ms", "400", "--heartbeat-ms", "50"]
            nodes.append(NodeProcess(arguments, log=tmp_path / f"{host}.log"))
        yield str(port)
    finally:
        for node in nodes:
            node.kill()


def test_a_cluster_from_upstreams_variables(from_variables: str) -> None:
    leaders = set()
    for host in HOSTS:
        stub = client_stub(f"{host}:{from_variables}")
        ids = list(stub.GetEndpoints(rpb.GetEndpointsRequest(), timeout=5).ids)
        assert ids == [*(h for h in HOSTS if h != host), host]  # id = IP, itself last
        for _ in range(200):  # until the election is over (a bounded poll)
            try:
                stub.SetElement(rpb.SetElementRequest(name="k", value=b"v"), timeout=5)
            except grpc.RpcError as refused:
                hint = (refused.details() or "").removeprefix("not-leader:")
                if hint in HOSTS:
                    leaders.add(hint)
                    break
                time.sleep(0.05)  # no leader yet
                continue
            leaders.add(host)
            break
    assert len(leaders) == 1, leaders


def test_single_node_keeps_only_upstreams_files(tmp_path: Path) -> None:
    """Spec 8.6's pinned facts for a single node with storage, and nothing else on disk."""
    config = NodeConfig("5", "127.0.0.1:0", {}, tmp_path, interop=True)
    node = InteropNode(config)
    try:
        assert (tmp_path / "voter-state").read_bytes() == b"DRFT\x01" + struct.pack(">Qi", 1, -1)
        stub = client_stub(node.address)
        stub.SetElement(rpb.SetElementRequest(name="k", value=b"v"), timeout=5)
        assert sorted(os.listdir(tmp_path)) == ["command-log", "voter-state"]
        with pytest.raises(DataDirInUseError):
            InteropNode(config)
    finally:
        node.close()
    node = InteropNode(config)  # a restart never short-cuts to leader: it elects itself
    try:
        stub = client_stub(node.address)
        got = None
        for _ in range(100):  # bounded poll until its own election is over
            try:
                got = stub.GetElement(rpb.GetElementRequest(name="k"), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        assert got is not None and got.value == b"v"
        assert (tmp_path / "voter-state").read_bytes() == b"DRFT\x01" + struct.pack(
            ">Qi", 2, 1
        ) + b"5"
    finally:
        node.close()
    (tmp_path / "node-identity.json").write_text("{}")
    with pytest.raises(ConfigError, match="native-mode node"):
        InteropNode(config)
