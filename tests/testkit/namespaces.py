"""Running a script inside private user, mount and network namespaces (`unshare -rmn`)
whose /etc/hosts is a file the script may rewrite: real DNS answers that a test controls,
seen by no other process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])


def namespaces_work() -> bool:
    """Whether this machine lets an unprivileged `unshare -rmn` run (and `ip` exists)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-rmn", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def run_with_own_hosts(
    script: Path, work: Path, timeout: float
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `python script HOSTS_FILE WORK` in fresh namespaces with loopback up and
    HOSTS_FILE (in `work`, holding only localhost) mounted over /etc/hosts, `testkit`
    importable; returns the finished process and the tails of the `*.log` files in
    `work`, for failure reports."""
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    shell = 'ip link set lo up && mount --bind "$1" /etc/hosts && exec "$2" "$3" "$1" "$4"'
    result = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", shell, "sh", str(hosts), sys.executable,
         str(script), str(work)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
            _TESTS, os.environ.get("PYTHONPATH", ""))))},
    )  # fmt: skip
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(work.glob("*.log"))
    )
    return result, logs


def write_hosts(path: Path, name: str, hosts: list[int]) -> None:
    """Make `name` resolve to 127.0.0.H for each H of `hosts`, rewriting the mounted hosts
    file in place (the bind mount follows the inode, not the file name)."""
    lines = ["127.0.0.1 localhost"] + [f"127.0.0.{h} {name}" for h in hosts]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, seen: Callable[[], object] = str
) -> None:
    """Poll `check` every 0.2 s until it holds; AssertionError naming `what` (and what
    `seen()` reports) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s; last seen {seen()}")
        time.sleep(0.2)  # a poll under a deadline
