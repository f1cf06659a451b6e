"""A whole cluster stopped at once (a paused VM, a laptop lid, SIGSTOP) resumes under the
same leader: no node blames its peers for time in which it did not run itself."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from polling import wait_for

import dref
from dref.raft.client import Client

STALL = 3.0
"""Three election timeouts: every timer of every node would have fired without the fix."""


def test_a_cluster_stopped_as_a_whole_keeps_its_leader_and_term(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    leader = cluster.leader()
    with Client(list(cluster.addresses.values()), timeout=20) as client:
        client.set("before", b"1")
        term = client.status(cluster.addresses[leader])["term"]
        pids = [process.process.pid for process in cluster.processes.values()]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(STALL)  # the fault itself: every node stays stopped this long
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        client.set("after", b"2")
        statuses = [client.status(address) for address in cluster.addresses.values()]
    assert {(s["leader_id"], s["term"]) for s in statuses} == {(leader, term)}
    logs = [(cluster.root / n / "node.log").read_text() for n in cluster.addresses]
    assert all("without running" in log for log in logs)  # each node noticed its stall
    terms = re.findall(
        r"term=(\d+) dref\.raft: (?:became leader|following \S+) in term (\d+)", "".join(logs)
    )
    assert len(terms) >= 3 and all(record == told for record, told in terms)  # records' term


def _under_a_step_down(cluster: Any, call: Callable[[], Any]) -> Any:
    """`call()`'s result, run while both followers are stopped: the leader cannot commit
    and steps down (check-quorum), so the write in flight ends with its outcome unknown.
    The followers resume once the leader's log shows the step-down."""
    leader = cluster.leader()
    followers = [p for n, p in cluster.processes.items() if n != leader]
    leader_log = cluster.root / leader / "node.log"
    for process in followers:
        os.kill(process.process.pid, signal.SIGSTOP)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(call()))
    caller.start()
    try:
        wait_for(lambda: "stepped down" in leader_log.read_text(), 30, "the step-down")
    finally:
        for process in followers:
            os.kill(process.process.pid, signal.SIGCONT)
    caller.join(60)
    assert not caller.is_alive() and results, "the call raised; see the captured log"
    return results[0]


def test_ref_creation_survives_a_leader_stepping_down_under_it(make_cluster):
    """`ref` asks again; once a leader is elected, the name holds its initial value."""
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    with dref.raft_client(list(cluster.addresses.values()), timeout=30) as ctx:
        ctx.ref("warm-up", 0)
        counter = _under_a_step_down(cluster, lambda: ctx.ref("counter", 7))
        assert counter.get() == 7


def test_lock_acquisition_survives_a_leader_stepping_down_under_it(make_cluster):
    """The lock's create may or may not have happened: a read of its token tells. Either
    way the caller holds the lock, and no orphaned lease blocks others until its TTL."""
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    with dref.raft_client(list(cluster.addresses.values()), timeout=30) as ctx:
        backend = ctx._open_backend()
        backend.subscribe("nightly", lambda event: None)  # so acquire's own is immediate
        lock = ctx.lock("nightly", ttl=60, timeout=30)
        assert _under_a_step_down(cluster, lock.acquire) is True
        held = backend.get("nightly")
        assert held is not None and held.revision == lock.fencing_token
        assert not ctx.lock("nightly", ttl=60).acquire(timeout=0.5)  # really held
        lock.release()
        assert ctx.lock("nightly", ttl=60).acquire(timeout=5)  # free at once, not in 60 s


def test_lock_release_survives_a_leader_stepping_down_under_it(make_cluster, caplog):
    """The delete may or may not have happened: a read tells, and an entry still ours is
    deleted again. Others get the lock at once, not after its 60 s lease, and the release
    is not reported as failed."""
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    with dref.raft_client(list(cluster.addresses.values()), timeout=30) as ctx:
        lock = ctx.lock("nightly", ttl=60, timeout=30)
        assert lock.acquire()
        _under_a_step_down(cluster, lambda: lock.release() or True)
        assert not lock.lost.is_set()
        assert "could not release" not in caplog.text
        assert ctx.lock("nightly", ttl=60).acquire(timeout=5)
