"""examples/kv_service as three real service processes (each embedding a Raft member):
reads and writes through the leader and through a follower (307 to the leader, followed by
the example client), a watch's server-sent events, error codes, and writes going on after
the leader's process is killed."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dref.raft.node_process import free_ports

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kv_service"
DEADLINE = 30.0

pytestmark = pytest.mark.slow


def _load_client() -> ModuleType:
    """The example's client module, imported by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("kv_client", EXAMPLE / "client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kv = _load_client()


@dataclass
class Service:
    """One service process and its addresses."""

    node_id: str
    http: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.http}"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    """Three services on free ports, serving once a PUT through any of them works."""
    ports = free_ports(6)
    members = [(f"n{i}", f"127.0.0.1:{ports[i]}", f"127.0.0.1:{ports[i + 3]}") for i in range(3)]
    started: list[Service] = []
    try:
        for node_id, raft, http in members:
            command = [sys.executable, str(EXAMPLE / "server.py"), "--id", node_id]
            command += ["--raft", raft, "--http", http, "--data-dir", str(tmp_path / node_id)]
            for other_id, other_raft, other_http in members:
                if other_id != node_id:
                    command += ["--peer", f"{other_id}={other_raft},{other_http}"]
            with open(tmp_path / f"{node_id}.log", "wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            started.append(Service(node_id, http, process))
        try:
            kv.put("ready", True, [service.url for service in started], deadline=DEADLINE)
        except (kv.KvError, OSError) as e:
            logs = "".join((tmp_path / f"{s.node_id}.log").read_text() for s in started)
            pytest.fail(f"no service took a write within {DEADLINE:g} s: {e}\n{logs}")
        yield started
    finally:
        for service in started:
            service.process.kill()
        for service in started:
            service.process.wait(30)


def raw(service: Service, method: str, path: str, body: bytes | None = None) -> Any:
    """One request with http.client, which follows nothing: (status, headers, JSON body)."""
    connection = http.client.HTTPConnection(service.http, timeout=DEADLINE)
    try:
        connection.request(method, path, body=body)
        answer = connection.getresponse()
        return answer.status, answer.headers, json.loads(answer.read())
    finally:
        connection.close()


def leader_of(services: list[Service]) -> Service:
    """The service whose member leads: the one that makes a write instead of redirecting."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for service in services:
            status, _, _ = raw(service, "PUT", "/keys/probe", b'{"value": 0}')
            if status == 200:
                return service
        assert time.monotonic() < deadline, "no service made the write itself"


def test_reads_writes_watch_and_errors_through_leader_and_follower(services):
    leader = leader_of(services)
    follower = next(service for service in services if service is not leader)

    status, headers, body = raw(follower, "PUT", "/keys/colour", b'{"value": "red"}')
    assert status == 307
    assert headers["Location"] == f"{leader.url}/keys/colour"
    assert body["leader"] == leader.node_id

    first = kv.put("colour", {"name": "red", "rgb": [255, 0, 0]}, [leader.url])
    assert kv.get("colour", [follower.url]) == {
        "name": "colour",
        "value": {"name": "red", "rgb": [255, 0, 0]},
        "revision": first,
    }
    second = kv.put("colour", "blue", [follower.url])  # the client follows the 307
    assert second > first
    assert kv.get("colour", [leader.url])["value"] == "blue"
    assert kv.delete("colour", [follower.url]) > second
    with pytest.raises(kv.KvError) as absent:
        kv.get("colour", [follower.url])
    assert absent.value.status == 404

    status, _, body = raw(follower, "GET", "/keys/never-written")
    assert (status, body) == (404, {"error": "never-written not found"})
    for bad in (b"{not json", b'{"val": 1}', b"[1]", b'{"value": 1, "ttl": "soon"}'):
        status, _, body = raw(follower, "PUT", "/keys/bad", bad)
        assert status == 400, bad
        assert body["error"]
    too_large = json.dumps({"value": "x" * (1024 * 1024 + 1)}).encode()
    status, _, body = raw(leader, "PUT", "/keys/huge", too_large)
    assert status == 413
    assert "limit" in body["error"]


def test_a_watch_streams_sets_and_deletes_in_order(services):
    urls = [service.url for service in services]
    with kv.watch("light", [services[2].url], timeout=DEADLINE) as changes:
        assert changes.answer.headers["Content-Type"] == "text/event-stream"
        on = kv.put("light", "on", urls)
        off = kv.delete("light", urls)
        assert next(changes) == {"event": "set", "name": "light", "value": "on", "revision": on}
        assert next(changes) == {"event": "delete", "name": "light", "revision": off}


def test_writes_go_on_after_the_leader_is_killed(services):
    leader = leader_of(services)
    before = kv.put("door", "open", [leader.url])
    leader.process.kill()
    leader.process.wait(30)
    # The dead leader first, as a client that knew it would: it must move on by itself.
    urls = [leader.url, *(service.url for service in services if service is not leader)]
    after = kv.put("door", "closed", urls, deadline=DEADLINE)
    assert after > before
    survivors = [service for service in services if service is not leader]
    for service in survivors:
        assert kv.get("door", [service.url], deadline=DEADLINE)["value"] == "closed"
    assert leader_of(survivors).process.poll() is None  # a live member leads now
    assert kv.delete("door", [survivors[0].url], deadline=DEADLINE) > after


def test_the_client_command_line(services):
    urls = ",".join(service.url for service in services)
    env = {**os.environ, "KV_URLS": urls}

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(EXAMPLE / "client.py"), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    put = client("put", "cli", '{"n": 1}')
    assert put.returncode == 0, put.stderr
    got = client("get", "cli")
    assert json.loads(got.stdout) == {
        "name": "cli",
        "value": {"n": 1},
        "revision": json.loads(put.stdout)["revision"],
    }
    assert client("delete", "cli").returncode == 0
    missing = client("get", "cli")
    assert missing.returncode == 1
    assert "404" in missing.stderr
