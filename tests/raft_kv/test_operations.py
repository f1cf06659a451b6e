"""Operating nodes: `dref node --config`, the DREF_* variables, `dref cluster up`, a child
that exits with its parent's pipe, and an in-process (isolate=False) embedded node."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import dref
from dref.errors import NotLeaderError
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports
from dref.raft_context import raft_client_context


def test_dref_node_reads_a_json_or_toml_config(tmp_path):
    (port,) = free_ports(1)
    config = {"node_id": "solo", "listen": f"127.0.0.1:{port}", "data_dir": str(tmp_path / "d")}
    (tmp_path / "node.json").write_text(json.dumps(config))
    toml = "\n".join(f'{key} = "{value}"' for key, value in config.items())
    (tmp_path / "node.toml").write_text(toml + "\nheartbeat_ms = 50\nelection_ms = 400\n")
    for name in ("node.json", "node.toml"):
        child = NodeProcess(["node", "--config", str(tmp_path / name)], log=tmp_path / "log")
        try:
            assert (child.node_id, child.address) == ("solo", f"127.0.0.1:{port}")
            with Client([child.address], timeout=20) as client:
                client.set("k", b"v")
                assert client.get("k").value == b"v"
        finally:
            assert child.stop() == 0


def test_dref_node_from_upstream_variables(tmp_path, monkeypatch):
    (port,) = free_ports(1)
    monkeypatch.setenv("DREF_PORT", str(port))
    monkeypatch.setenv("DREF_NODE_ADDRESSES", "127.0.0.1")
    child = NodeProcess(["node", "--data-dir", str(tmp_path)], log=tmp_path / "log")
    try:
        assert (child.node_id, child.address) == ("127.0.0.1", f"127.0.0.1:{port}")
        with Client([child.address], timeout=20) as client:
            assert client.endpoints(child.address) == ["127.0.0.1"]
    finally:
        assert child.stop() == 0


def test_a_node_exits_when_its_parents_pipe_closes(tmp_path):
    (port,) = free_ports(1)
    args = ["node", "--id", "x", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)]
    child = NodeProcess(args, log=tmp_path / "log")
    assert child.process.stdin is not None
    child.process.stdin.close()  # what the kernel does when the parent dies
    assert child.process.wait(timeout=30) == 0


class ClusterUp:
    """A `dref cluster up` process whose output lines are read with a deadline."""

    def __init__(self, *extra: str) -> None:
        command = [sys.executable, "-m", "dref.cli", "cluster", "up", "--nodes", "3"]
        command += ["--heartbeat-ms", "50", "--election-ms", "800", *extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        """Every line taken so far, matched or skipped."""
        threading.Thread(target=self._read, daemon=True).start()
        self.nodes = [self.expect("n").split() for _ in range(3)]
        self.addresses = [node[1] for node in self.nodes]
        self.pids = {node[0]: int(node[3]) for node in self.nodes}
        endpoints = self.expect("endpoints")
        assert endpoints.split()[1] == ",".join(self.addresses)
        self.data_line = self.expect("data in")
        self.expect("cluster up")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """The next output line starting with `prefix` (skipping others)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} within {timeout} s")

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=30)


def test_cluster_up_starts_serves_and_stops_on_ctrl_c(tmp_path):
    cluster = ClusterUp("--data-dir", str(tmp_path))
    try:
        assert cluster.data_line == f"data in {tmp_path}"
        with Client(cluster.addresses[2:], timeout=30) as client:
            client.set("k", b"v")
            assert client.get("k").value == b"v"
    finally:
        assert cluster.close() == 0
    cluster.expect("cluster stopped")


def test_cluster_up_keeps_the_others_when_a_node_dies_and_restarts_it_on_request(tmp_path):
    cluster = ClusterUp()  # data in a new temporary directory, never the working directory
    try:
        assert "dref-cluster-" in cluster.data_line
        os.kill(cluster.pids["n1"], signal.SIGKILL)
        assert "still running: n2, n3" in cluster.expect("n1 exited")
        with Client(cluster.addresses[1:], timeout=30) as client:
            client.set("k", b"after")  # two of three still form a quorum
    finally:
        cluster.close()

    restarting = ClusterUp("--restart", "--data-dir", str(tmp_path))
    try:
        pid = restarting.pids["n2"]
        with Client(restarting.addresses, timeout=30) as client:
            client.set("k", b"v1")  # n2 stays up for at least the restart pause
        os.kill(pid, signal.SIGKILL)
        assert "restarting it" in restarting.expect("n2 exited")
        assert int(restarting.expect("n2 ").split()[3]) != pid
        with Client(restarting.addresses[1:2], timeout=30) as client:  # via the new n2
            client.set("k", b"v2")
            assert client.get("k").value == b"v2"
    finally:
        assert restarting.close() == 0


def test_an_embedded_node_in_this_process(tmp_path):
    (port,) = free_ports(1)
    ctx = dref.raft(
        node_id="me",
        listen=f"127.0.0.1:{port}",
        peers={},
        data_dir=tmp_path,
        isolate=False,
        heartbeat_interval=0.05,
        election_timeout=0.4,
    )
    try:
        ref = ctx.ref("greeting", "hello")
        ref.update(lambda s: s + "!")
        assert ref.get() == "hello!"
    finally:
        ctx.close()
    started = time.monotonic()
    client_ctx = raft_client_context([f"127.0.0.1:{port}"], timeout=0.5)
    try:
        with pytest.raises(dref.BackendUnavailableError):
            client_ctx.backend.get("greeting")  # the node stopped with its context
    finally:
        client_ctx.close()
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_calls_fail_within_their_deadline_when_the_quorum_is_gone(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=800)
    leader = cluster.leader()
    for node_id, process in cluster.processes.items():
        if node_id != leader:
            process.stop()
    with Client([cluster.addresses[leader]], timeout=2) as client:
        for call in (
            lambda: client.set("k", b"v"),
            lambda: client.compare_and_set("k", None, b"v"),
            lambda: client.get("k"),
        ):
            started = time.monotonic()
            with pytest.raises(
                (dref.DRefTimeoutError, dref.BackendUnavailableError, NotLeaderError)
            ):
                call()
            assert time.monotonic() - started < 6


def test_python_dash_m_dref_is_the_dref_command(tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "dref", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0 and "cluster" in help_text.stdout
    (port,) = free_ports(1)
    args = ["node", "--id", "m", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)]
    child = NodeProcess(args, log=tmp_path / "log")  # started as python -m dref.cli
    try:
        status = subprocess.run(
            [sys.executable, "-m", "dref", "status", child.address, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["node_id"] == "m"
    finally:
        child.stop()


def test_cluster_up_with_tls_prints_its_client_certificate(tmp_path):
    pytest.importorskip("cryptography")
    cluster = ClusterUp("--tls", "--data-dir", str(tmp_path))
    try:
        (exported,) = [line.split() for line in cluster.seen if line.startswith("TLS: export")]
        files = dict(item.split("=", 1) for item in exported if "=" in item)
        tls = dref.TLS(files["DREF_TLS_CERT"], files["DREF_TLS_KEY"], files["DREF_TLS_CA"])
        with Client(cluster.addresses, timeout=30, tls=tls) as client:
            client.set("k", b"v")
            assert client.get("k").value == b"v"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DREF_")}
        plaintext = subprocess.run(
            [sys.executable, "-m", "dref.cli", "get", "k", "--endpoints", cluster.addresses[0]],
            capture_output=True, text=True, timeout=60, env=environment,
        )
        assert plaintext.returncode != 0
        assert "requires TLS" in plaintext.stderr
    finally:
        assert cluster.close() == 0
