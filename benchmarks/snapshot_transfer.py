"""A large state reaching a new member as a snapshot, with the memory it costs.

Three `dref node` processes on loopback (fsync on). The state is written through the
public DRef API (`dref.raft_client`, threads of this process, distinct names); once the
leader's snapshot covers it, a fourth node starts empty with `--join` and `dref members
add` adds it: it receives the state as a snapshot (the leader reads chunks from its
snapshot file, the new member writes them into a file and restores from it entry by
entry). Printed: the state and snapshot sizes, the write and catch-up times, and resident
memory from /proc (VmRSS, peak VmHWM) of the new member and the leader.

    .venv/bin/python benchmarks/snapshot_transfer.py --megabytes 1024 --value-kib 256
"""

from __future__ import annotations

import argparse
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dref
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports, node_arguments

DREF = [sys.executable, "-m", "dref.cli"]

WRITERS = 4


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def wait_for(what: str, check: Any, limit_s: float) -> Any:
    """Poll `check` every 50 ms until it returns something true, or fail after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {limit_s:.0f} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=256, help="state size in MiB")
    parser.add_argument("--value-kib", type=int, default=256, help="size of each value")
    parser.add_argument("--limit-s", type=float, default=900.0, help="give up after this")
    options = parser.parse_args()
    values = options.megabytes * 1024 // options.value_kib
    every = max(16, values // 8)  # several snapshots while writing; the last covers most
    root = Path(tempfile.mkdtemp(prefix="dref-snapshot-bench-"))
    ids = ["n1", "n2", "n3"]
    ports = free_ports(4)
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip([*ids, "n4"], ports, strict=True)}

    def arguments(node_id: str) -> list[str]:
        peers = {p: a for p, a in addresses.items() if p not in (node_id, "n4")}
        return node_arguments(
            node_id, addresses[node_id], peers, root / node_id, snapshot_every=every
        )

    processes = {n: NodeProcess(arguments(n), log=root / f"{n}.log") for n in ids}
    founders = [addresses[n] for n in ids]
    client = Client([*founders, addresses["n4"]], timeout=30.0)
    context = dref.raft_client(founders, timeout=60.0)
    try:
        leader = wait_for("a leader", lambda: _leader(client, addresses), 60)
        started = time.monotonic()
        _write(context, values, options.value_kib * 1024)
        wrote_s = time.monotonic() - started
        target = client.status(addresses[leader])["applied_index"]
        wait_for(
            "the leader's snapshot",
            lambda: client.status(addresses[leader])["snapshot_index"] >= target - every,
            options.limit_s,
        )
        leader_status = client.status(addresses[leader])
        leader_pid = processes[leader].process.pid
        joined = time.monotonic()
        join = [*node_arguments("n4", addresses["n4"], {}, root / "n4"), "--join"]
        processes["n4"] = NodeProcess(join, log=root / "n4.log")
        pid = processes["n4"].process.pid
        at_start = memory_mib(pid)["VmRSS"]
        add = [*DREF, "members", "add", addresses[leader], "n4", addresses["n4"]]
        subprocess.run(add, check=True, capture_output=True, timeout=options.limit_s)
        caught = wait_for(
            "the new member to catch up",
            lambda: _applied(client, addresses["n4"], target),
            options.limit_s,
        )
        catch_up_s = time.monotonic() - joined
        member, leader_memory = memory_mib(pid), memory_mib(leader_pid)
    finally:
        context.close()
        client.close()
        for process in processes.values():
            process.kill()
        shutil.rmtree(root, ignore_errors=True)
    metrics = caught["metrics"]
    if not metrics["snapshot_installs"]:
        raise SystemExit("the new member caught up without a snapshot: nothing was measured")
    state_mib = values * options.value_kib / 1024
    print(
        f"state: {values} values of {options.value_kib} KiB = {state_mib:.0f} MiB, written in"
        f" {wrote_s:.1f} s by {WRITERS} threads; snapshot every {every} entries"
    )
    print()
    print("what                                   MiB")
    rows = [
        ("leader's snapshot (file)", leader_status["metrics"]["snapshot_bytes"] / 2**20),
        ("installed by the new member", metrics["snapshot_bytes_installed"] / 2**20),
        ("new member RSS at start", at_start),
        ("new member RSS peak (VmHWM)", member["VmHWM"]),
        ("new member RSS after catching up", member["VmRSS"]),
        ("new member peak above its final RSS", member["VmHWM"] - member["VmRSS"]),
        ("leader RSS", leader_memory["VmRSS"]),
        ("leader RSS peak (VmHWM)", leader_memory["VmHWM"]),
    ]
    for what, mib in rows:
        print(f"{what:<36} {mib:7.0f}")
    print()
    print(
        f"new member caught up in {catch_up_s:.1f} s (start, add, snapshot install, log tail);"
        f" snapshots installed: {metrics['snapshot_installs']}; leader {leader} before,"
        f" {caught['leader_id']} after"
    )


def _leader(client: Client, addresses: dict[str, str]) -> str | None:
    try:
        leader = client.status(next(iter(addresses.values())))["leader_id"]
    except dref.DRefError:
        return None
    return str(leader) if leader else None


def _applied(client: Client, address: str, target: int) -> dict[str, Any] | None:
    try:
        status = client.status(address, timeout=2.0)
    except dref.DRefError:
        return None
    return status if status["applied_index"] >= target else None


def _write(context: dref.Context, values: int, value_bytes: int) -> None:
    """Write `values` distinct names of `value_bytes` each from WRITERS threads (ASCII
    strings, which the default MsgPack codec stores as they are)."""
    blob = string.ascii_letters * (value_bytes // len(string.ascii_letters) + 1)
    failures: list[BaseException] = []

    def writer(first: int) -> None:
        try:
            for i in range(first, values, WRITERS):
                value = blob[: value_bytes - 8] + f"{i:08d}"
                context.ref(f"big-{i:07d}", "").set(value)
        except BaseException as exc:  # reported below: the run is void
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a write failed: {failures[0]!r}")


if __name__ == "__main__":
    sys.exit(main())
