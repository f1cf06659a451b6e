"""Fixtures of the key/value Raft suite: command builders, in-process clusters of
`KeyValueNode`s, and clusters of `dref node` child processes, all on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))  # the suite's helper modules (polling.py) are importable


def _load(name: str) -> ModuleType:
    """Import a helper module of this folder by path (the suite runs in importlib mode)."""
    spec = importlib.util.spec_from_file_location(f"raft_kv_{name}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cmd() -> ModuleType:
    """Builders of encoded commands, queries and results (commands.py)."""
    return _load("commands")


class KvCluster:
    """`KeyValueNode`s n1..nN in this process (real gRPC, real data dirs); stop and restart
    any of them on the same port and data."""

    def __init__(
        self, root: Path, size: int, config: dict[str, Any] | None = None, **node_options: Any
    ) -> None:
        from dref.raft.node_process import free_ports

        self.root = root
        self.config = {"heartbeat_interval": 0.05, "election_timeout": 1.0, **(config or {})}
        self.node_options = node_options
        ports = free_ports(size)
        self.addresses = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
        self.nodes: dict[str, Any] = {}
        for node_id in self.addresses:
            self.start(node_id)

    def start(self, node_id: str) -> Any:
        from dref.raft.config import NodeConfig
        from dref.raft.kv_node import KeyValueNode

        peers = {p: a for p, a in self.addresses.items() if p != node_id}
        address, data = self.addresses[node_id], self.root / node_id
        node_config = NodeConfig(node_id, address, peers, data, **self.config)
        self.nodes[node_id] = KeyValueNode(node_config, **self.node_options)
        return self.nodes[node_id]

    def stop(self, node_id: str) -> None:
        self.nodes.pop(node_id).close()

    def leader(self, timeout: float = 30.0) -> Any:
        """The node every running node agrees leads (polls under a deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = {node.status().leader_id for node in self.nodes.values()}
            if len(leaders) == 1 and None not in leaders:
                return self.nodes[leaders.pop()]
            time.sleep(0.02)  # a poll under a deadline
        raise AssertionError(f"no agreed leader within {timeout} s")

    def followers(self) -> list[Any]:
        leader = self.leader()
        return [node for node in self.nodes.values() if node is not leader]

    def close(self) -> None:
        for node_id in list(self.nodes):
            self.stop(node_id)


@pytest.fixture(scope="module")
def kv_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KvCluster]:
    """Three in-process `KeyValueNode`s with an elected leader, shared by a test module
    (tests must not stop its nodes); values above 1000 bytes are refused."""
    cluster = KvCluster(tmp_path_factory.mktemp("kv"), 3, max_value_size=1000)
    try:
        cluster.leader()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def make_kv_cluster(tmp_path: Path) -> Iterator[Any]:
    """`make_kv_cluster(size, config=None, **node_options)`: a KvCluster of this test's own
    (`config`: NodeConfig fields, `node_options`: KeyValueNode's)."""
    made: list[KvCluster] = []

    def make(size: int, config: dict[str, Any] | None = None, **node_options: Any) -> KvCluster:
        made.append(KvCluster(tmp_path / f"kv{len(made)}", size, config, **node_options))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


class Cluster:
    """`dref node` child processes n1..nN on free 127.0.0.1 ports; `extra_args(node_id)`
    adds options to a node's command line, `tls` is what this harness's clients use."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        extra_args: Callable[[str], list[str]] | None = None,
        tls: Any = None,
        **timings: Any,
    ) -> None:
        from dref.raft.node_process import free_ports

        self.root = root
        self.timings = timings
        self.extra_args = extra_args
        self.tls = tls
        ports = free_ports(size)
        self.addresses = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
        self.processes: dict[str, Any] = {}

    def start(self, node_id: str) -> None:
        from dref.raft.node_process import NodeProcess, node_arguments

        peers = {p: a for p, a in self.addresses.items() if p != node_id}
        data = self.root / node_id
        data.mkdir(parents=True, exist_ok=True)
        args = node_arguments(node_id, self.addresses[node_id], peers, data, **self.timings)
        if self.extra_args is not None:
            args += self.extra_args(node_id)
        self.processes[node_id] = NodeProcess(args, log=data / "node.log")

    def start_all(self) -> Cluster:
        for node_id in self.addresses:
            self.start(node_id)
        return self

    def leader(self, timeout: float = 30.0) -> str:
        """The id of the leader every running node agrees on (polls under a deadline)."""
        from dref.raft.client import Client

        deadline = time.monotonic() + timeout
        with Client(list(self.addresses.values()), timeout=2, tls=self.tls) as client:
            while time.monotonic() < deadline:
                leaders = set()
                for node_id, process in self.processes.items():
                    try:
                        leaders.add(client.status(self.addresses[node_id])["leader_id"])
                    except Exception:
                        leaders.add(None)
                        if not process.alive:
                            raise AssertionError(f"{node_id} died; see its node.log") from None
                if len(leaders) == 1 and None not in leaders:
                    return str(leaders.pop())
                time.sleep(0.05)  # a poll under a deadline
        raise AssertionError(f"no agreed leader within {timeout} s")

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running 3-node cluster shared by a test module (tests must not stop its nodes)."""
    running = Cluster(tmp_path_factory.mktemp("cluster"), 3, heartbeat_ms=50, election_ms=1000)
    try:
        running.start_all()
        running.leader()
        yield running
    finally:
        running.stop()


def _make_n1_lead(cluster: Cluster, timeout: float = 90.0) -> None:
    """Wait for a leader and, if it is not n1, hand leadership to n1 (`dref transfer-leader`):
    timings alone cannot promise who wins the first election on a slow machine."""
    from dref.cli import main as cli_main
    from dref.raft.client import Client

    n1 = cluster.addresses["n1"]
    deadline = time.monotonic() + timeout
    with Client([n1], timeout=2) as client:
        while (status := client.status(n1))["role"] != "leader":
            assert time.monotonic() < deadline, "n1 did not become the leader"
            leader = status.get("leader_id")
            if leader and leader != "n1":
                cli_main(["transfer-leader", "--to", "n1", "--timeout", "10", n1])
            time.sleep(0.05)  # a poll under a deadline


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Any]]:
    """`raft_context` (what `dref.raft(...)` calls) embedding n1, isolated in a child process,
    with n2, n3 as `dref node` processes whose long election timeouts keep them followers;
    n1 is made the leader (by transfer if another node won the first election)."""
    from dref.raft_context import raft_context

    root = tmp_path_factory.mktemp("embedded")
    cluster = Cluster(root, 3, heartbeat_ms=50, election_ms=10_000)
    ctx = None
    try:
        peers = {p: a for p, a in cluster.addresses.items() if p != "n1"}
        ctx = raft_context(
            node_id="n1",
            listen=cluster.addresses["n1"],
            peers=peers,
            data_dir=root / "n1",
            heartbeat_interval=0.05,
            election_timeout=1.0,  # the default; CheckQuorum steps down after this without acks
        )
        cluster.start("n2")
        cluster.start("n3")
        _make_n1_lead(cluster)
        yield cluster, ctx
    finally:
        if ctx is not None:
            ctx.close()
        cluster.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Any]:
    """`make_cluster(size, **timings)`: a started Cluster of its own, stopped after the test."""
    made: list[Cluster] = []

    def make(size: int, **timings: Any) -> Cluster:
        made.append(Cluster(tmp_path / f"c{len(made)}", size, **timings))
        return made[-1].start_all()

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_type() -> type[Cluster]:
    """The `Cluster` class, for module fixtures that build their own (test modules cannot
    import this conftest by name: several folders have one)."""
    return Cluster
