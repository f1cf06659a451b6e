"""Running a script inside private user, mount and network namespaces (`unshare -rmn`)
whose /etc/hosts is a file the script may rewrite: real DNS answers that a test controls,
seen by no other process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


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
    HOSTS_FILE (in `work`, holding only localhost) mounted over /etc/hosts; returns the
    finished process and the tails of the `*.log` files in `work`, for failure reports."""
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    shell = 'ip link set lo up && mount --bind "$1" /etc/hosts && exec "$2" "$3" "$1" "$4"'
    result = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", shell, "sh", str(hosts), sys.executable,
         str(script), str(work)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(work.glob("*.log"))
    )
    return result, logs
