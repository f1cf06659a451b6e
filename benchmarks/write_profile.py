"""Where a single caller's write spends the servers' CPU: three `dref node` processes on
loopback (fsync on), one thread of this process calling `ref.set` through
`dref.raft_client` for `--seconds`; prints the CPU per write of each member (utime + stime
from /proc/<pid>/stat) and, when `py-spy` is installed, the leader's and a follower's
samples holding the interpreter lock (`py-spy record --gil`), by thread and by function.

    .venv/bin/pip install py-spy
    .venv/bin/python benchmarks/write_profile.py --seconds 10
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dref
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports, node_arguments

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, all threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=15, help="functions listed per member")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dref-write-profile-"))
    ids = ["n1", "n2", "n3"]
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(ids, free_ports(3), strict=True)}
    processes = {
        n: NodeProcess(
            node_arguments(
                n, addresses[n], {p: a for p, a in addresses.items() if p != n}, root / n
            ),
            log=root / f"{n}.log",
        )
        for n in ids
    }
    client = Client(list(addresses.values()), timeout=10.0)
    context = dref.raft_client(list(addresses.values()))
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        leader = _leader(client, addresses)
        follower = next(n for n in ids if n != leader)
        ref = context.ref("profiled", 0)
        ref.set(0)  # connections made and the ref created before measuring
        pids = {n: processes[n].process.pid for n in ids}
        before = {n: cpu_seconds(pid) for n, pid in pids.items()}
        recorders = {
            n: _record(spy, pids[n], options.seconds, root / f"{n}.txt")
            for n in (leader, follower)
            if Path(spy).exists()
        }
        writes = 0
        deadline = time.monotonic() + options.seconds
        while time.monotonic() < deadline:
            writes += 1
            ref.set(writes)
        spent = {n: cpu_seconds(pid) - before[n] for n, pid in pids.items()}
        for recorder in recorders.values():
            recorder.join()
    finally:
        context.close()
        client.close()
        for process in processes.values():
            process.kill()
    rate = writes / options.seconds
    print(f"{writes} writes in {options.seconds:.0f} s from 1 caller ({rate:.0f}/s)")
    for node_id in ids:
        role = "leader" if node_id == leader else "follower"
        print(f"  {node_id} ({role}): {spent[node_id] / writes * 1e6:7.0f} us CPU per write")
    print(f"  all three: {sum(spent.values()) / writes * 1e6:7.0f} us CPU per write")
    for node_id in recorders:
        _report(
            root / f"{node_id}.txt",
            node_id,
            "leader" if node_id == leader else "follower",
            options.top,
        )
    shutil.rmtree(root, ignore_errors=True)


def _leader(client: Client, addresses: dict[str, str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            leader = client.status(next(iter(addresses.values())))["leader_id"]
        except dref.DRefError:
            leader = None
        if leader:
            return str(leader)
        time.sleep(0.1)
    raise SystemExit("no leader within 60 s")


def _record(spy: str, pid: int, seconds: float, out: Path) -> threading.Thread:
    """Run `py-spy record --gil` on `pid` for `seconds` (raw collapsed stacks to `out`)."""
    command = [
        spy, "record", "--gil", "--threads", "--nonblocking", "--rate", "500",
        "--duration", str(max(1, int(seconds) - 1)), "--format", "raw", "--output", str(out),
        "--pid", str(pid),
    ]  # fmt: skip
    thread = threading.Thread(
        target=subprocess.run,
        args=(command,),
        kwargs={"capture_output": True, "timeout": seconds + 60},
    )
    thread.start()
    return thread


def _report(raw: Path, node_id: str, role: str, top: int) -> None:
    """Print the GIL samples of one member by thread and by innermost project function."""
    if not raw.exists():
        print(f"\n{node_id}: py-spy wrote nothing (is ptrace allowed?)")
        return
    by_thread: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_thread[frames[0].split(" ")[-1].strip('"()') if frames else "?"] += count
        ours = [f for f in frames[1:] if "/dref/" in f or "dref/" in f.split(" ")[-1]]
        by_function[(ours[-1] if ours else frames[-1]).split(" (")[0]] += count
    print(f"\n{node_id} ({role}): {total} samples holding the interpreter lock")
    print("  by thread:")
    for name, count in by_thread.most_common(8):
        print(f"    {count / total:6.1%}  {name}")
    print("  by innermost dref function (with its callees outside dref; else the leaf):")
    for name, count in by_function.most_common(top):
        print(f"    {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
