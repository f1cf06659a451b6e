"""Leadership transfers and membership changes of real `dref node` processes under load.

The nemesis drives the cluster through the `dref` command line (as an operator would):
`dref transfer-leader` to a random voter, and `dref members remove` of a voter followed by
`dref members add` of the same node (it catches up from its data directory), sometimes
with a SIGKILL of the leader while the change runs, sometimes with another node isolated
while a transfer or a change runs. Clients write and read throughout; the history must be
linearizable.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CLI_TIMEOUT = 20.0
"""Seconds one `dref` admin command may take (its own --timeout is shorter)."""


def test_transfers_and_membership_changes_under_load(jepsen):
    def nemesis(cluster, run):
        for _ in range(60):
            if run.left() < 1.0:
                return
            leader = _leader_or_none(cluster)
            if leader is None:
                run.hold(0.5)
                continue
            others = [n for n in cluster.ids if n != leader]
            step = run.rng.choice(
                ["transfer", "transfer-any", "transfer-cut", "cycle", "cycle-kill", "cycle-cut"]
            )
            bystander = None
            if step.endswith("-cut"):  # the change runs while another node is cut off
                bystander = run.rng.choice(others)
                others.remove(bystander)
                run.note(f"isolate {bystander}")
                cluster.isolate(bystander)
            if step in ("transfer", "transfer-cut"):
                target = run.rng.choice(others)
                done = _dref(cluster, leader, "transfer-leader", "--to", target, "--timeout", "5")
                run.note(f"transfer {leader} -> {target}: {done}")
            elif step == "transfer-any":
                done = _dref(cluster, leader, "transfer-leader", "--timeout", "5")
                run.note(f"transfer from {leader}: {done}")
            else:
                victim = run.rng.choice(others)
                done = _dref(cluster, leader, "members", "remove", victim, "--timeout", "10")
                run.note(f"remove {victim}: {done}")
                if step == "cycle-kill":
                    adding = subprocess.Popen(
                        _command(
                            cluster,
                            leader,
                            "members",
                            "add",
                            victim,
                            cluster.addresses[victim],
                            "--timeout",
                            "15",
                        ),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    run.hold(run.rng.uniform(0.05, 0.4))
                    run.note(f"SIGKILL leader {leader} while {victim} is being added")
                    cluster.kill(leader)
                    try:
                        adding.wait(CLI_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        adding.kill()
                        adding.wait(10)
                    cluster.start(leader)
                _readd(cluster, run, victim, away=bystander)
            if bystander is not None:
                run.note("heal")
                cluster.heal()
            run.hold(run.rng.uniform(0.3, 1.0))
        for node_id in cluster.ids:  # every node a voter again before the final checks
            _readd(cluster, run, node_id)

    jepsen.run("admin", nemesis, size=5, keys=4, workers=6, scale=1.5)


def _readd(cluster, run, node_id: str, away: str | None = None) -> None:
    """Make `node_id` a voter again (retrying while leadership moves), noting each try;
    `away`: a node cut off meanwhile, which cannot agree on the leader."""
    for _ in range(5):
        leader = _leader_or_none(
            cluster, among=[n for n in cluster.ids if n not in (node_id, away)]
        )
        if leader is None:  # a removed node hears no leader: it cannot agree yet
            continue
        members = _dref(cluster, leader, "members", "list", "--timeout", "5")
        if f"{node_id}\tvoter" in members:
            return
        outcome = _dref(
            cluster,
            leader,
            "members",
            "add",
            node_id,
            cluster.addresses[node_id],
            "--timeout",
            "15",
        )
        run.note(f"add {node_id}: {outcome}")
    raise AssertionError(f"{node_id} did not become a voter again")


def _command(cluster, via: str, *args: str) -> list[str]:
    """`dref transfer-leader ADDRESS ...` or `dref members ACTION ADDRESS ...` aimed at `via`."""
    words = 2 if args[0] == "members" else 1
    command = [sys.executable, "-m", "dref.cli", *args[:words], cluster.addresses[via]]
    command += args[words:]
    tls = cluster.tls
    if tls is not None:
        command += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(tls.ca)]
    return command


def _dref(cluster, via: str, *args: str) -> str:
    """Run a `dref` admin command against node `via`; its output, or why it failed."""
    try:
        done = subprocess.run(
            _command(cluster, via, *args), capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    text = (done.stdout or done.stderr).strip()
    return text if done.returncode == 0 else f"failed ({done.returncode}): {text[-200:]}"


def _leader_or_none(cluster, among=None):
    """The leader `among` (default: all running nodes) agree on within a few seconds."""
    try:
        return cluster.leader(timeout=5.0, among=among)
    except AssertionError:
        return None
