"""`NodeProcess`: a `dref node` child process, for `dref cluster up`, isolated embedded nodes
(`dref.raft(...)`) and multi-process tests.

The child runs with ``--exit-on-stdin-close``: it keeps a pipe from this process on its
stdin and shuts down cleanly when that pipe closes, so it never outlives its parent (also
when the parent is SIGKILLed). It prints ``dref-node-ready <id> <address>`` once serving.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from dref.errors import BackendUnavailableError, ConfigError

__all__ = ["READY_PREFIX", "NodeProcess", "free_ports", "node_arguments"]

READY_PREFIX = "dref-node-ready"


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_FIXED_PORTS = (10000, 65535)
"""Where `free_ports` looks, minus the kernel's ephemeral range."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports nothing is bound to right now, outside the kernel's
    ephemeral range: a node restarted on the same port cannot find it taken meanwhile by
    the local end of some outgoing connection (which an ephemeral port can be)."""
    low, high = _ephemeral_range()
    rng = random.Random()
    ports: list[int] = []
    for _ in range(count * 200):  # bounded: a busy range falls back to any free port
        if len(ports) == count:
            return ports
        port = rng.randint(*_FIXED_PORTS)
        if low <= port <= high or port in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        ports.append(port)
    return ports + _kernel_ports(count - len(ports), host)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _kernel_ports(count: int, host: str) -> list[int]:
    """`count` ports the kernel picks (from its ephemeral range)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _log_tail(log: IO[bytes] | Path | None, lines: int = 5) -> str:
    """The last lines the child logged, to end an error message with (empty when none)."""
    if not isinstance(log, Path):
        return ""
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return (":\n  " + "\n  ".join(tail)) if tail else ""


def node_arguments(
    node_id: str,
    listen: str,
    peers: Mapping[str, str],
    data_dir: Path,
    *,
    heartbeat_ms: int | None = None,
    election_ms: int | None = None,
    snapshot_every: int | None = None,
    keepalive_ms: int | None = None,
) -> list[str]:
    """The `dref node` arguments for one node."""
    args = ["node", "--id", node_id, "--listen", listen, "--data-dir", str(data_dir)]
    for peer_id, address in peers.items():
        args += ["--peer", f"{peer_id}={address}"]
    for flag, value in (
        ("--heartbeat-ms", heartbeat_ms),
        ("--election-ms", election_ms),
        ("--snapshot-every", snapshot_every),
        ("--keepalive-ms", keepalive_ms),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


class NodeProcess:
    """One `dref node` child; see the module doc."""

    def __init__(
        self,
        arguments: list[str],
        *,
        ready_timeout: float = 30.0,
        log: IO[bytes] | Path | None = None,
    ) -> None:
        self.arguments = arguments
        command = [sys.executable, "-m", "dref.cli", *arguments, "--exit-on-stdin-close"]
        log_file = open(log, "ab") if isinstance(log, Path) else log  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            if isinstance(log, Path) and log_file is not None:
                log_file.close()
        self.node_id = ""
        self.address = ""
        ready = threading.Event()
        self._reader = threading.Thread(
            target=self._read_stdout, args=(ready,), name="dref-node-stdout", daemon=True
        )
        self._reader.start()
        if not ready.wait(ready_timeout):
            self.kill()
            raise BackendUnavailableError(
                f"dref node {' '.join(arguments)} did not become ready within {ready_timeout:g} s"
                f"{_log_tail(log)}"
            )
        if not self.address:  # it exited first: its own error names the cause
            code = self.process.wait(30)
            self._close_pipes()
            tail = _log_tail(log)
            error = ConfigError if "dref node:" in tail else BackendUnavailableError
            raise error(f"dref node {' '.join(arguments)} exited with status {code}{tail}")

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:  # drained to the end so the child never blocks
            line = raw.decode(errors="replace").split()
            if len(line) == 3 and line[0] == READY_PREFIX and not ready.is_set():
                self.node_id, self.address = line[1], line[2]
                ready.set()
        ready.set()  # the child exited (address stays empty if it never got ready)

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to `timeout` for a clean exit (then SIGKILL); the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        self._close_pipes()
        return code

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.alive:
            self.process.kill()
        self.process.wait(30)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        self._reader.join(timeout=5)
