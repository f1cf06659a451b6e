"""The DRef API on a cluster of three `dref node --interop` processes, through
`dref.raft_client(..., interop=True)` (upstream's client service only): values, TTLs,
update under upstream's modify lock from several threads, locks, change streams by polling,
what interop mode refuses, and a SIGKILLed leader."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import dref
from dref.errors import ConfigError, NotFoundError
from dref.raft.node_process import free_ports
from dref.wire.proto import dref_pb2 as rpb
from testkit.cluster import FaultyCluster
from testkit.dref_command import cli_env
from testkit.upstream_peer import client_stub


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyCluster]:
    root = tmp_path_factory.mktemp("interop")
    with FaultyCluster(root, heartbeat_ms=50, election_ms=400, interop=True) as nodes:
        nodes.start_all()
        nodes.leader()
        yield nodes


@pytest.fixture
def ctx(cluster: FaultyCluster) -> Iterator[dref.Context]:
    with dref.raft_client(list(cluster.addresses.values()), interop=True, timeout=10.0) as c:
        yield c


def test_values_ttls_and_refusals(ctx: dref.Context) -> None:
    ref = ctx.ref("interop-value", "first")
    assert ref.get() == "first"
    ref.set("second")
    assert ref.get() == "second"
    assert not ref.set_if_not_exist("third")
    short = ctx.ref("interop-short", "")
    short.set("soon gone", ttl=0.3)
    assert short.get() == "soon gone"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            short.get()
        except NotFoundError:
            break
        time.sleep(0.05)
    with pytest.raises(NotFoundError):
        short.get()
    ref.delete()
    with pytest.raises(NotFoundError):
        ref.get()
    with pytest.raises(ConfigError, match="interop mode"):
        ctx.ref("interop-history", 0).changes(after=1)


def test_updates_from_threads_hold_upstreams_modify_lock(ctx: dref.Context) -> None:
    counter = ctx.ref("interop-counter", 0)
    counter.set(0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                counter.update(lambda n: n + 1, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert counter.get() == 20


def test_lock_excludes_and_changes_arrive(ctx: dref.Context, cluster: FaultyCluster) -> None:
    ref = ctx.ref("interop-watched", 0)
    ref.set(0)
    with ref.changes(timeout=10.0) as changes:
        with dref.raft_client(list(cluster.addresses.values()), interop=True) as other:
            other.ref("interop-watched", 0).set(7)  # another client: seen by polling
        event = changes.get()
        assert event.value == 7

    inside: list[int] = []
    overlap: list[bool] = []

    def critical(worker: int) -> None:
        with ctx.lock("interop-lock", ttl=5, timeout=30):
            overlap.append(bool(inside))
            inside.append(worker)
            time.sleep(0.05)
            inside.remove(worker)

    threads = [threading.Thread(target=critical, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlap == [False, False, False]


def test_writes_go_on_after_the_leader_is_killed(ctx: dref.Context, cluster: FaultyCluster) -> None:
    ref = ctx.ref("interop-survivor", "before")
    ref.set("before")
    leader = cluster.leader()
    cluster.kill(leader)
    ref.set("after")  # retried by the client until the new leader answers
    assert ref.get() == "after"
    cluster.start(leader)  # back from its files, behind: a later write's AppendEntries
    snapshot = cluster.root / leader / "state-snapshot"  # is refused, and the leader
    deadline = time.monotonic() + 10  # installs a snapshot (once its channel reconnects)
    while time.monotonic() < deadline:
        ref.set("again")
        if snapshot.exists() and b"\xa5again" in snapshot.read_bytes():
            break
        time.sleep(0.1)
    assert b"\xa5again" in snapshot.read_bytes()
    assert ref.get() == "again"


def test_interop_demo_chats_through_one_dref(cluster: FaultyCluster) -> None:
    """examples/interop_demo.py (spec 1.8) as clients: a listening participant hears
    another's messages, stored as upstream's record codec writes them. (Without a node in
    the process, streams poll: changes between two polls fold, so the writer writes last.)"""
    demo = [sys.executable, str(Path(__file__).parents[2] / "examples" / "interop_demo.py")]
    demo += ["--connect", ",".join(cluster.addresses.values()), "--interval-ms", "300"]
    env = {**cli_env(), "DREF_AUTO_NAME": "py"}
    listener = subprocess.Popen(
        [*demo, "--rounds", "1", "--linger-ms", "30000", "--label", "alpha"],
        env={**env, "HOSTNAME": "alphahost"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert listener.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in listener.stdout])
    reader.start()
    heard: list[str] = []
    try:
        assert "py-alphah sent hello @1" in lines.get(timeout=60)
        writer = subprocess.run(
            [*demo, "--rounds", "2", "--linger-ms", "0", "--label", "beta"],
            env={**env, "HOSTNAME": "betahost"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert writer.returncode == 0, writer.stdout + writer.stderr
        assert "py-betaho sent hello @2" in writer.stdout
        deadline = time.monotonic() + 30
        while not any("got from py-betaho: hello @" in line for line in heard):
            heard.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
    finally:
        listener.kill()
        listener.wait(30)
        reader.join(30)
    stored = msgpack.unpackb(
        client_stub(cluster.addresses[cluster.leader()])
        .GetElement(rpb.GetElementRequest(name="interop-chat-message"))
        .value
    )
    assert list(stored) == ["name", "message"]
    assert stored == {"name": "py-betaho", "message": "hello @2 from Python"}


@pytest.mark.parametrize("isolate", [False, True])
def test_embedded_interop_node(tmp_path: Path, isolate: bool) -> None:
    """dref.raft(..., interop=True): a one-node cluster embedded here or in a child."""
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    with dref.raft(
        node_id="1", listen=listen, peers={}, data_dir=tmp_path, interop=True, isolate=isolate
    ) as ctx:
        hits = ctx.ref("hits", 0)
        assert hits.increment(2) == 2  # upstream has no add: an update under lock:hits
        with ctx.lock("job", ttl=5, timeout=10) as lock:
            assert lock.fencing_token == 0  # no revisions on upstream's wire
        assert hits.get() == 2
        if not isolate:  # the node's applied changes feed streams: none folded away
            with hits.changes(timeout=10) as changes:
                with dref.raft_client([listen], interop=True) as other:
                    for n in range(3, 8):
                        other.ref("hits", 0).set(n)
                assert [changes.get().value for _ in range(5)] == [3, 4, 5, 6, 7]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "node.log") == [
        "command-log",
        "voter-state",
    ]
