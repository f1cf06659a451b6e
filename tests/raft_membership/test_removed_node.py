"""A `dref node` removed while cut off learns it once the links heal: it logs one warning
naming itself, who told it and the configuration entry, stops campaigning without moving
the others' term, and catches up as a voter again when `dref members add` brings it back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from node_cluster import wait_until

from testkit.cluster import FaultyCluster
from testkit.dref_command import run_dref

pytestmark = pytest.mark.slow

ELECTION_MS = 500


def test_a_removed_node_stops_campaigning_and_rejoins_when_added(tmp_path: Path) -> None:
    with FaultyCluster(tmp_path, heartbeat_ms=50, election_ms=ELECTION_MS) as cluster:
        cluster.start_all()
        leader = cluster.leader()
        victim = next(n for n in cluster.ids if n != leader)
        others = [n for n in cluster.ids if n != victim]
        client = cluster.client(others, timeout=10)
        client.set("before", b"1")

        def status(node_id: str) -> dict[str, Any]:
            found = cluster.status(node_id)
            assert found is not None, f"{node_id} does not answer"
            return found

        cluster.isolate(victim)
        removed = run_dref(
            "members", "remove", cluster.addresses[leader], victim, "--timeout", "20"
        )
        assert removed.returncode == 0, removed.stderr
        client.set("during", b"2")
        wait_until(
            lambda: status(victim)["role"] in ("pre_candidate", "candidate"),
            30,
            f"{victim}, cut off, campaigns",
        )
        terms = {n: status(n)["term"] for n in others}
        cluster.heal()

        wait_until(lambda: status(victim)["removed"], 30, f"{victim} learns it was removed")
        told = status(victim)
        assert told["removed_by"] in others and told["role"] == "follower"
        removal_index = told["removed_at"]
        assert removal_index > 0
        elections = told["metrics"]["elections_started"]
        # Watch it for six election timeouts: no campaign, and nobody's term moves.
        watch_until = time.monotonic() + 6 * ELECTION_MS / 1000
        while time.monotonic() < watch_until:
            assert status(victim)["role"] == "follower"
            time.sleep(0.1)  # sampling a window, not waiting for an event
        assert status(victim)["metrics"]["elections_started"] == elections
        assert {n: status(n)["term"] for n in others} == terms
        assert cluster.leader(among=others) == leader

        log = (tmp_path / victim / "node.log").read_text(errors="replace")
        warnings = [line for line in log.splitlines() if "was removed from the cluster" in line]
        assert len(warnings) == 1, warnings
        assert " WARNING " in warnings[0] and f"{victim} was removed" in warnings[0]
        assert f"(entry {removal_index})" in warnings[0] and told["removed_by"] in warnings[0]

        added = run_dref(
            "members",
            "add",
            cluster.addresses[leader],
            victim,
            cluster.addresses[victim],
            "--timeout",
            "30",
        )
        assert added.returncode == 0, added.stderr
        wait_until(
            lambda: not status(victim)["removed"] and victim in status(victim)["voters"],
            30,
            f"{victim} is a voter again",
        )
        client.set("after", b"3")
        alone = cluster.client([victim], timeout=10)

        def stale(name: str) -> bytes | None:
            entry = alone.get(name, policy="stale")
            return None if entry is None else entry.value

        wait_until(lambda: stale("after") == b"3", 30, f"{victim} catches up")
        assert stale("during") == b"2" and stale("before") == b"1"
        assert "is in the configuration again" in (tmp_path / victim / "node.log").read_text()
