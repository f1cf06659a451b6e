"""Run inside a private network and mount namespace by `test_interop_dns.py`: the demo of
spec 1.8 as upstream's demo nodes run it, three `examples/interop_demo.py` processes, each a
node found through DREF_NODE_SERVICES=dref-interop on port 8082 (/etc/hosts answers the
name with 127.0.0.1-3).

    python demo_cluster.py HOSTS_FILE WORK_DIR

Exits 0 once every participant printed a message of each other one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit.namespaces import write_hosts

DEMO = Path(__file__).resolve().parents[2] / "examples" / "interop_demo.py"
HOSTS = (1, 2, 3)


def main() -> None:
    hosts_file, work = Path(sys.argv[1]), Path(sys.argv[2])
    write_hosts(hosts_file, "dref-interop", list(HOSTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREF_")}
    env.update({"DREF_NODE_SERVICES": "dref-interop", "DREF_AUTO_NAME": "py"})
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                str(DEMO),
                "--bind-host",
                f"127.0.0.{h}",
                "--data-dir",
                str(work / f"node{h}"),
                "--rounds",
                "8",
                "--interval-ms",
                "500",
            ],
            env={**env, "HOSTNAME": f"pod{h}-abcdef"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for h in HOSTS
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    for h, out in enumerate(outputs, start=1):
        (work / f"demo{h}.log").write_text(out)
    for h, (run, out) in enumerate(zip(runs, outputs, strict=True), start=1):
        if run.returncode != 0:
            raise AssertionError(f"demo {h} exited {run.returncode}:\n{out}")
        for other in HOSTS:
            if other != h and f"got from py-pod{other}-a: hello @" not in out:
                raise AssertionError(f"demo {h} never heard from pod{other}:\n{out}")
    print("interop demo ok", flush=True)


if __name__ == "__main__":
    main()
