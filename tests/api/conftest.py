"""Shared fixtures for the backend-independent API tests.

`ctx` is parametrised by backend: every test written against it runs on each backend
listed in `BACKENDS`: "local" (in memory), "redis" (a redis-server started once per
session, flushed before each test) and "raft" (a `dref.raft_client(...)` context on a
3-node `dref node` cluster started once per session; each test's names get a fresh
prefix, since the cluster keeps every earlier test's data).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import dref
from dref.backend import Backend, ChangeEvent, Entry, Listener, ReadPolicyName
from dref.contracts.changes import HISTORY_PAGE

_TESTS = Path(__file__).resolve().parent.parent

SCALE = {"local": 1, "redis": 10, "raft": 100}
"""How much smaller heavy workloads are on each backend (network round trips per call)."""


def _load(path: Path, name: str) -> ModuleType:
    """Import another suite's conftest by path (the suite runs in importlib mode)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Prefixed(Backend):
    """Another backend with every name under `prefix` (events report the unprefixed name),
    so that tests on a shared, persistent backend start from fresh names."""

    def __init__(self, inner: Backend, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix
        self.default_ttl = inner.default_ttl
        self.max_value_size = inner.max_value_size

    def effective_ttl(self, ttl: float) -> float:
        return self.inner.effective_ttl(ttl)

    def reopen_after_fork(self) -> Backend:
        return Prefixed(self.inner.reopen_after_fork(), self.prefix)

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        return self.inner.set(self.prefix + name, value, ttl, timeout=timeout)

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        return self.inner.set_if_absent(self.prefix + name, value, ttl, timeout=timeout)

    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        return self.inner.get(self.prefix + name, policy=policy, timeout=timeout)

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        return self.inner.delete(self.prefix + name, timeout=timeout)

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        return self.inner.compare_and_set(self.prefix + name, expected, value, ttl, timeout=timeout)

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        return self.inner.compare_and_delete(self.prefix + name, expected, timeout=timeout)

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        return self.inner.increment(self.prefix + name, delta, fmt, timeout=timeout)

    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        return self.inner.expire(self.prefix + name, ttl, expected=expected, timeout=timeout)

    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        def unprefixed(event: ChangeEvent) -> None:
            listener(dataclasses.replace(event, name=name))

        return self.inner.subscribe(
            self.prefix + name, unprefixed, timeout=timeout, sees_own_writes=sees_own_writes
        )

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        page = self.inner.history(self.prefix + name, after, limit=limit, timeout=timeout)
        return [dataclasses.replace(event, name=name) for event in page]

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server shared by the session (tests/redis/conftest.py's)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (apt install redis-server)")
    redis_conftest = _load(_TESTS / "redis" / "conftest.py", "api_redis_conftest")
    server = redis_conftest.RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.kill()


_raft_logs: list[Path] = []
"""The node logs of the running raft cluster, shown with any test that fails."""


@pytest.fixture(scope="package")
def raft_addresses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The addresses of a 3-node `dref node` cluster shared by this folder's tests."""
    raft_conftest = _load(_TESTS / "raft_kv" / "conftest.py", "api_raft_conftest")
    cluster = raft_conftest.Cluster(
        tmp_path_factory.mktemp("raft"), 3, heartbeat_ms=50, election_ms=1000
    )
    try:
        cluster.start_all()
        _raft_logs[:] = [cluster.root / node_id / "node.log" for node_id in cluster.addresses]
        cluster.leader()
        yield list(cluster.addresses.values())
    finally:
        _raft_logs.clear()
        cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the tail of each raft node's log (elections,
    step-downs, stalls), which is what a failure on a loaded CI box needs explained."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and _raft_logs:
        for log in _raft_logs:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            report.sections.append((f"dref node log {log.parent.name}", tail))


_prefixes = itertools.count()


def _open(backend: str, request: pytest.FixtureRequest) -> dref.Context:
    if backend == "local":
        return dref.local()
    if backend == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url)
        client.flushall()
        client.close()
        return dref.redis(url)
    addresses = request.getfixturevalue("raft_addresses")
    inner = dref.raft_client(addresses, timeout=20).backend
    return dref.Context(Prefixed(inner, f"t{next(_prefixes)}/"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], dref.Context]] = {
    name: lambda request, name=name: _open(name, request) for name in SCALE
}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend this test runs on."""
    return str(request.param)


@pytest.fixture
def ctx(backend_name: str, request: pytest.FixtureRequest) -> Iterator[dref.Context]:
    """A fresh context on each backend (fresh names); closed after the test."""
    context = BACKENDS[backend_name](request)
    yield context
    context.close()


@pytest.fixture
def scaled(backend_name: str) -> Callable[[int], int]:
    """`scaled(n)`: the size of a heavy workload of `n` (on local) on this test's backend."""
    return lambda n: max(1, n // SCALE[backend_name])


Waiter = Callable[..., None]


def _wait_until(predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(message or f"condition not met within {timeout} s")
        time.sleep(0.005)  # a poll under a deadline, not synchronisation by sleeping


@pytest.fixture
def wait_until() -> Waiter:
    """`wait_until(predicate, timeout=10, message="")`: poll until true, else fail."""
    return _wait_until


@pytest.fixture
def dref_threads() -> Callable[[], list[str]]:
    """Names of the live threads started by dref (their names start with "dref-")."""

    def names() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("dref-")]

    return names
