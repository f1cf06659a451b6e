"""A whole cluster stopped at once (a paused VM, a laptop lid, SIGSTOP) resumes under the
same leader: no node blames its peers for time in which it did not run itself."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
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


def test_ref_creation_survives_a_leader_stepping_down_under_it(make_cluster):
    """Both followers stop, so the leader cannot commit and steps down (check-quorum): the
    write in flight ends with its outcome unknown. `ref` asks again, and once the
    followers resume and a leader is elected, the name exists with its initial value."""
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    leader = cluster.leader()
    followers = [p for n, p in cluster.processes.items() if n != leader]
    leader_log = cluster.root / leader / "node.log"
    with dref.raft_client(list(cluster.addresses.values()), timeout=30) as ctx:
        ctx.ref("warm-up", 0)
        for process in followers:
            os.kill(process.process.pid, signal.SIGSTOP)
        created: list[Any] = []
        creator = threading.Thread(target=lambda: created.append(ctx.ref("counter", 7)))
        creator.start()
        try:
            wait_for(lambda: "stepped down" in leader_log.read_text(), 30, "the step-down")
        finally:
            for process in followers:
                os.kill(process.process.pid, signal.SIGCONT)
        creator.join(60)
        assert not creator.is_alive() and created, "ref() raised; see the captured log"
        assert created[0].get() == 7
