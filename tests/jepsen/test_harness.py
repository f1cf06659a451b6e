"""The harness notices a problem: stale reads, recorded through the same workers, make the
checker report an anomaly; so a green scenario means something."""

from __future__ import annotations

import threading
import time

import pytest

from testkit.history import History, Worker
from testkit.linearizability import Operation, OpKind, Verdict


def test_recorded_stale_read_is_an_anomaly():
    """write a, write b (both acknowledged), then a read returning a: not linearizable."""
    history = History()
    history.record(Operation(OpKind.WRITE, "k", 0.0, 1.0, value="a"), "ok")
    history.record(Operation(OpKind.WRITE, "k", 2.0, 3.0, value="b"), "ok")
    assert history.check().ok
    history.record(Operation(OpKind.READ, "k", 4.0, 5.0, value="a"), "ok")
    result = history.check()
    assert result.verdict is Verdict.ANOMALY
    assert "read() -> 'a'" in result.description


def test_recorded_lost_acknowledged_write_is_an_anomaly():
    """An acknowledged write that a later read does not see (the read sees the older value)."""
    history = History()
    history.record(Operation(OpKind.WRITE, "k", 0.0, 1.0, value="a"), "ok")
    history.record(Operation(OpKind.WRITE, "k", 2.0, None, value="maybe"), "indeterminate")
    history.record(Operation(OpKind.WRITE, "k", 3.0, 4.0, value="b"), "ok")
    history.record(Operation(OpKind.READ, "k", 5.0, 6.0, value="maybe"), "ok")
    assert history.check().ok  # the indeterminate write may land late
    history.record(Operation(OpKind.READ, "k", 7.0, 8.0, value="a"), "ok")
    assert history.check().verdict is Verdict.ANOMALY


@pytest.mark.slow
def test_stale_reads_from_an_isolated_leader_are_caught_and_linearizable_reads_are_not_stale(
    jepsen,
):
    """Isolate the leader, write through the majority, then read through the old leader:
    a `stale`-policy read returns the old value and the checker flags it; a linearizable
    read through the same node must fail or return the new value."""
    cluster = jepsen.cluster(3, seed=7)
    history = History()
    stop = threading.Event()
    deadline = time.monotonic() + 120

    def worker(number: int, node_ids: list[str], policy: str) -> Worker:
        client = cluster.client(node_ids, timeout=3.0, strict_writes=True)
        return Worker(
            number, client, history, ["k"], stop, seed=number, deadline=deadline, read_policy=policy
        )

    everywhere = worker(0, cluster.ids, "linearizable")
    everywhere.write("k")
    old = cluster.leader()
    cluster.isolate(old)
    majority = [n for n in cluster.ids if n != old]
    cluster.leader(among=majority)
    for _ in range(3):
        worker(1, majority, "linearizable").write("k")
    assert history.tally["ok"] == 4, history.summary()
    worker(2, [old], "linearizable").read("k")
    assert history.check().ok, "a linearizable read through the isolated old leader was stale"
    worker(3, [old], "stale").read("k")
    result = history.check()
    print(f"\n[jepsen] harness self-test: {history.summary()}; verdict {result.verdict.value}")
    assert result.verdict is Verdict.ANOMALY, history.operations()
    assert result.key == "k"
