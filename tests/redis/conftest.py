"""A real redis-server on a free loopback port, in a temporary directory, per test session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from dref.backend import ChangeEvent
from dref.raft.node_process import free_ports
from dref.redis_backend import RedisBackend

REDIS_SERVER = shutil.which("redis-server")

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests `redis`; skip them when there is no redis-server binary."""
    missing = pytest.mark.skip(reason="redis-server is not on PATH (apt install redis-server)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.redis)
            if REDIS_SERVER is None:
                item.add_marker(missing)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (outside the ephemeral
    range: tests restart redis-server on it)."""
    return free_ports(1)[0]


class RedisServer:
    """One redis-server process that tests can kill and start again on the same port.

    `config` adds command-line configuration (``--user ...``, TLS files); `tls` serves
    TLS only, on the same port. `admin` holds redis-py options (credentials, TLS files)
    that let `client()` in with every permission.
    """

    def __init__(
        self,
        directory: Path,
        *,
        config: Sequence[str] = (),
        tls: bool = False,
        admin: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.config = list(config)
        self.tls = tls
        self.admin = admin or {}
        self.log = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        """A redis-py client with the `admin` options (the caller closes it)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=self.tls,
            socket_timeout=5,
            socket_connect_timeout=5,
            **self.admin,
        )

    def start(self) -> None:
        """Start the server and wait (at most 20 s) until it answers PING; if it exits
        first, the RuntimeError quotes the end of its log."""
        assert REDIS_SERVER is not None
        ports = ["--port", "0", "--tls-port"] if self.tls else ["--port"]
        args = [REDIS_SERVER, *ports, str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        args += ["--logfile", str(self.log), *self.config]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = self.log.read_text()[-500:] if self.log.exists() else ""
                        self.kill()
                        raise RuntimeError(
                            f"redis-server on port {self.port} did not start: {log}"
                        ) from None
                    time.sleep(0.02)  # readiness poll under a deadline
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server and wait for it to be gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's shared server."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """`start_server(**RedisServer options)`: a started server of this test's own (each in a
    directory of its own), killed at the end of the test."""
    servers: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def own_server(start_server: Callable[..., RedisServer]) -> RedisServer:
    """A server of this test's own, for tests that kill and restart it."""
    return start_server()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client, standing in for an upstream Scala/Rust node."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def backend(redis_url: str) -> Iterator[RedisBackend]:
    """A backend with short timeouts and a fast vanish poll."""
    b = RedisBackend(redis_url, timeout=2.0, poll_interval=0.2)
    yield b
    b.close()


class Recorder:
    """A listener that keeps every event and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: ChangeEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[ChangeEvent]], bool], timeout: float = 5.0
    ) -> list[ChangeEvent]:
        """Block until `predicate(events)` holds; fail the test after `timeout` seconds."""
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.events), timeout)
            assert ok, f"condition not met within {timeout} s; events: {self.events}"
            return list(self.events)


@pytest.fixture
def recorder() -> type[Recorder]:
    """The `Recorder` class (tests cannot import conftest under importlib mode)."""
    return Recorder


def run_workers(script: str, args: list[str], processes: int, limit: float = 90) -> None:
    """Run `processes` copies of `script` with `args` at once; each must print "done"."""
    procs = [
        subprocess.Popen(
            [sys.executable, script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=limit)
            assert proc.returncode == 0 and out.strip().endswith(b"done"), err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(name="run_workers")
def run_workers_fixture() -> Callable[..., None]:
    """`run_workers(script, args, processes)` (tests cannot import conftest)."""
    return run_workers
