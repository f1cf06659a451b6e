"""A node in its own process is SIGKILLed in the middle of writes; after a restart from its
data directory nothing it acknowledged is lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from node_cluster import Cluster, ListMachine, free_ports

from dref.raft.config import NodeConfig
from dref.raft.node import Node

SCRIPT = Path(__file__).parent / "node_process.py"
TIMING = {"heartbeat_interval": 0.05, "election_timeout": 0.5, "max_clock_drift": 0.05}


def run_and_kill(options: dict[str, object], writers: int, acks_before_kill: int) -> list[bytes]:
    """Start the node process, SIGKILL it after `acks_before_kill` acks; return every ack."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), json.dumps(options), str(writers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[bytes] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # bounded: the process is killed after enough acks
            if line.startswith("ack "):
                acked.append(line.split()[1].encode())
                if len(acked) >= acks_before_kill:
                    process.send_signal(signal.SIGKILL)
                    break
        # What the process printed before the kill landed; a last line the kill cut short
        # (no newline, maybe "ack " alone) names no complete command, so it is left out.
        acked.extend(
            line.split()[1].encode()
            for line in process.stdout
            if line.startswith("ack ") and line.endswith("\n") and len(line.split()) == 2
        )
    finally:
        process.kill()
        process.wait(timeout=30)
    assert len(acked) >= acks_before_kill, "the node process died before enough writes"
    return acked


@pytest.mark.slow
def test_single_node_killed_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    options = {
        "node_id": "solo",
        "listen": f"127.0.0.1:{port}",
        "peers": {},
        "data_dir": str(tmp_path / "solo"),
        "upstream_files": False,
        "snapshot_every": 50,
        **TIMING,
    }
    acked = run_and_kill(options, writers=8, acks_before_kill=300)
    machine = ListMachine()
    config = NodeConfig(**{**options, "data_dir": tmp_path / "solo"})  # type: ignore[arg-type]
    with Node(config, machine) as node:
        node.wait_for_leader(20)
        node.propose(b"after-restart")
        items = machine.snapshot_items()
    assert set(acked) <= set(items)
    assert len(items) == len(set(items)), "an entry was applied twice"


@pytest.mark.slow
def test_cluster_member_process_killed_mid_write_rejoins_with_everything(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, size=3, **TIMING)
    victim = cluster.ids[0]
    for node_id in cluster.ids[1:]:
        cluster.start(node_id)
    options = {
        "node_id": victim,
        "listen": cluster.addresses[victim],
        "peers": {p: a for p, a in cluster.addresses.items() if p != victim},
        "data_dir": str(tmp_path / victim),
        "upstream_files": False,
        **TIMING,
    }
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), json.dumps(options), "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        # a new cluster elects once every founder runs, and the child may win: it then hands
        # leadership to an in-process node before it says "ready" (node_process.py)
        assert process.stdout is not None and process.stdout.readline().startswith("ready")
        leader = cluster.leader()
        written = [f"c{i}".encode() for i in range(120)]
        for command in written[:80]:
            leader.propose(command)
        process.send_signal(signal.SIGKILL)  # mid-stream: the follower was appending
        process.wait(timeout=30)
        for command in written[80:]:
            leader.propose(command)
        cluster.start(victim)
        cluster.wait_applied(len(written))
        assert cluster.machines[victim].snapshot_items() == written
        assert cluster.leader() is leader
    finally:
        process.kill()
        process.wait(timeout=30)
        cluster.close()


@pytest.mark.slow
def test_write_benchmark_prints_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs bench_writes briefly so its numbers show up with `pytest -s -m slow`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_writes import main

    main(1.0)
    assert "32 caller(s)" in capsys.readouterr().out
