"""Run inside a private network and mount namespace by `test_discovery.py`: `dref node`s
configured only through DREF_NODE_SERVICES, whose name is answered by an /etc/hosts this
script rewrites (bind-mounted over the real one, so only this namespace sees it).

    python discovery_cluster.py HOSTS_FILE WORK_DIR

Exits 0 after: three nodes at 127.0.0.1-3 form a cluster; 127.0.0.4 appears in DNS and
its node becomes a voter; 127.0.0.3 leaves DNS (and is killed) and is removed; a write
then commits on the three voters left. Any failure raises with what was seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dref.raft.node_process import NodeProcess
from testkit.namespaces import wait_for, write_hosts

PORT = 18082  # alone in its own network namespace: no other process can hold it
SERVICE = "dref-peers"
POLL_MS = 300
DEADLINE = 60.0


def dref(*arguments: str) -> str:
    """Run the `dref` command; its output (raises with stderr on failure)."""
    result = subprocess.run(
        [sys.executable, "-m", "dref.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dref {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def voters(address: str) -> set[str]:
    """The voters the leader reports (through any node); empty while that fails."""
    try:
        out = dref("members", "list", address, "--timeout", "5")
    except (RuntimeError, subprocess.TimeoutExpired):
        return set()
    return {line.split("\t")[0] for line in out.splitlines() if "\tvoter\t" in line}


def main() -> None:
    hosts_file, work = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.update({"DREF_PORT": str(PORT), "DREF_NODE_SERVICES": SERVICE})
    write_hosts(hosts_file, SERVICE, [1, 2, 3])
    nodes: dict[int, NodeProcess] = {}

    def start(host: int) -> None:
        ip = f"127.0.0.{host}"
        nodes[host] = NodeProcess(
            [
                "node",
                "--bind-host",
                ip,
                "--data-dir",
                str(work / ip),
                "--address-poll-ms",
                str(POLL_MS),
                "--election-ms",
                "1000",
                "--heartbeat-ms",
                "100",
            ],
            log=work / f"{ip}.log",
        )

    try:
        for host in (1, 2, 3):
            start(host)
        first = f"127.0.0.1:{PORT}"
        initial = {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
        wait_for(
            "the three nodes form a cluster",
            lambda: voters(first) == initial,
            DEADLINE,
            lambda: voters(first),
        )

        write_hosts(hosts_file, SERVICE, [1, 2, 3, 4])
        start(4)
        grown = initial | {"127.0.0.4"}
        wait_for(
            "127.0.0.4 becomes a voter",
            lambda: voters(first) == grown,
            DEADLINE,
            lambda: voters(first),
        )

        write_hosts(hosts_file, SERVICE, [1, 2, 4])
        nodes.pop(3).kill()
        shrunk = {"127.0.0.1", "127.0.0.2", "127.0.0.4"}
        wait_for(
            "127.0.0.3 is removed", lambda: voters(first) == shrunk, DEADLINE, lambda: voters(first)
        )

        endpoints = ",".join(f"127.0.0.{h}:{PORT}" for h in (1, 2, 4))
        dref("set", "discovered", "yes", "--endpoints", endpoints, "--codec", "raw")
        value = dref("get", "discovered", "--endpoints", endpoints, "--codec", "raw").strip()
        if value != "yes":
            raise AssertionError(f"read back {value!r} after the membership changes")
        logs = "".join((work / f"127.0.0.{h}.log").read_text() for h in (1, 2, 3, 4))
        for line in ("discovery: adding 127.0.0.4", "discovery: removing 127.0.0.3"):
            if line not in logs:
                raise AssertionError(f"no {line!r} in the node logs")
        print("discovery ok", flush=True)
    finally:
        for node in nodes.values():
            node.stop()


if __name__ == "__main__":
    main()
