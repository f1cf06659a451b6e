"""A `dref node` restarted on a wiped data directory refuses to start: it may have voted in
the cluster's current term before it lost its state. It exits with one line naming the
directory and what to do, writes nothing (so it refuses again on the next start), loses no
acknowledged write; started empty with --join it waits, and it votes again only once
removed and added back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from node_cluster import wait_until

from dref.raft.node_process import NodeProcess, node_arguments
from testkit.cluster import FaultyCluster
from testkit.dref_command import run_dref

pytestmark = pytest.mark.slow

TIMINGS = {"heartbeat_ms": 50, "election_ms": 500}


def test_a_wiped_member_refuses_to_start_and_rejoins_once_removed(tmp_path: Path) -> None:
    with FaultyCluster(tmp_path / "cluster", **TIMINGS) as cluster:
        cluster.start_all()  # every node starts blank: a new cluster still elects
        leader = cluster.leader()
        client = cluster.client(timeout=10)
        written = {f"k{i}": str(i).encode() for i in range(20)}
        for name, value in written.items():
            client.set(name, value)
        victim = next(n for n in cluster.ids if n != leader)
        data = cluster.root / victim
        terms = {n: (cluster.status(n) or {}).get("term") for n in cluster.ids if n != victim}

        for attempt in range(2):  # the refusal wrote nothing: a second start refuses too
            cluster.kill(victim)
            if attempt == 0:
                shutil.rmtree(data)
            cluster.start(victim)
            process = cluster.processes[victim].process
            assert process.wait(timeout=30) == 1
            lines = (data / "node.log").read_text(errors="replace").splitlines()
            refusals = [line for line in lines if "refuses to start" in line]
            assert len(refusals) == 1, lines[-20:]
            assert " ERROR " in refusals[0] and str(data) in refusals[0]
            assert "dref members remove" in refusals[0] and "--join" in refusals[0]
            (data / "node.log").unlink()

        for name, value in written.items():  # nothing acknowledged was lost
            entry = client.get(name)
            assert entry is not None and entry.value == value
        assert cluster.leader(among=[n for n in cluster.ids if n != victim]) == leader
        assert {n: (cluster.status(n) or {}).get("term") for n in terms} == terms

        # Started empty with --join while still a voter, it follows the leader but waits to
        # be seen as a learner before it would ever vote (the leader, which counts it as
        # holding what the lost directory held, sends it nothing older anyway).
        shutil.rmtree(data)
        address = cluster.addresses[victim]
        joining = NodeProcess(
            [
                *node_arguments(victim, address, {}, data, **TIMINGS),
                *("--join", "--peer-listen", f"127.0.0.1:{cluster.socket_ports[victim]}"),
            ],
            log=tmp_path / f"{victim}-joined.log",
            ready_timeout=60.0,
        )
        try:
            alone = cluster.client([victim], timeout=10)

            def stale(name: str) -> bytes | None:
                entry = alone.get(name, policy="stale")
                return None if entry is None else entry.value

            def follows() -> dict[str, Any] | None:
                status = alone.status(address)
                return status if status["leader_id"] == leader else None

            waiting = wait_until(follows, 30, f"{victim} follows the leader")
            assert waiting["blank_start"] == "waiting" and waiting["term"] == terms[leader]

            # The remedy: remove it and add it back; it is admitted as a learner, promoted.
            via = cluster.addresses[leader]
            removed = run_dref("members", "remove", via, victim, "--timeout", "20")
            assert removed.returncode == 0, removed.stderr
            added = run_dref("members", "add", via, victim, address, "--timeout", "30")
            assert added.returncode == 0, added.stderr
            client.set("after", b"rejoined")
            wait_until(lambda: stale("after") == b"rejoined", 30, f"{victim} catches up")
            assert all(stale(name) == value for name, value in written.items())
            status = alone.status(address)
            assert status["blank_start"] is None and victim in status["voters"]
            assert '"joining"' not in (data / "node-identity.json").read_text()
        finally:
            joining.stop()
