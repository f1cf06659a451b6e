"""Fixtures of the data CLI tests: a 3-node `dref node` cluster and a redis-server (the
cluster and server classes of tests/raft_kv and tests/redis), each shared by the module."""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

_TESTS = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    """Import another suite's conftest by path (the suite runs in importlib mode)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def raft_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`--endpoints` of a running 3-node `dref node` cluster shared by the module."""
    raft_conftest = _load(_TESTS / "raft_kv" / "conftest.py", "cli_raft_conftest")
    cluster = raft_conftest.Cluster(
        tmp_path_factory.mktemp("raft"), 3, heartbeat_ms=50, election_ms=1000
    )
    try:
        cluster.start_all()
        cluster.leader()
        yield ",".join(cluster.addresses.values())
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server shared by the module."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (apt install redis-server)")
    redis_conftest = _load(_TESTS / "redis" / "conftest.py", "cli_redis_conftest")
    server = redis_conftest.RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.kill()


@pytest.fixture(params=["raft", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> list[str]:
    """The `dref` options that select this test's backend."""
    if request.param == "raft":
        return ["--endpoints", request.getfixturevalue("raft_endpoints")]
    return ["--redis", request.getfixturevalue("redis_url")]


@pytest.fixture
def name() -> str:
    """A name no other test uses (the backends keep every test's data)."""
    return f"cli-{uuid.uuid4().hex[:10]}"
