"""Run inside a private network and mount namespace by `test_interop_dns.py`: `dref node
--interop` processes configured only through DREF_NODE_SERVICES, whose name is answered by
an /etc/hosts this script rewrites (bind-mounted over the real one, so only this namespace
sees it).

    python dns_cluster.py HOSTS_FILE WORK_DIR

Exits 0 after: three nodes at 127.0.0.1-3 elect a leader; 127.0.0.4 appears in DNS and
every node adds it to its peer map; 127.0.0.3 leaves DNS (and is killed) and is dropped;
127.0.0.2 is killed too, and 127.0.0.1 and 127.0.0.4 still commit a write, which they
could not with the peer maps of the start (a quorum of 127.0.0.1-3 needs two of them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc

from dref.raft.node_process import NodeProcess
from dref.wire.proto import dref_pb2 as rpb
from dref.wire.proto.dref_pb2_grpc import DRefRaftStub
from testkit.namespaces import wait_for, write_hosts

PORT = 18083  # alone in its own network namespace: no other process can hold it
SERVICE = "dref-interop"
POLL_MS = 300
DEADLINE = 60.0


def logged(work: Path, host: int, text: str) -> bool:
    return text in (work / f"127.0.0.{host}.log").read_text(errors="replace")


def committed(hosts: list[int]) -> bool:
    """A write through whichever of `hosts` leads; False while none commits it."""
    for host in hosts:
        stub = DRefRaftStub(grpc.insecure_channel(f"127.0.0.{host}:{PORT}"))
        try:
            stub.SetElement(rpb.SetElementRequest(name="dns", value=b"ok"), timeout=3)
            return True
        except grpc.RpcError:
            continue
    return False


def main() -> None:
    hosts_file, work = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.update({"DREF_PORT": str(PORT), "DREF_NODE_SERVICES": SERVICE})
    write_hosts(hosts_file, SERVICE, [1, 2, 3])
    nodes: dict[int, NodeProcess] = {}

    def start(host: int) -> None:
        ip = f"127.0.0.{host}"
        nodes[host] = NodeProcess(
            ["node", "--interop", "--bind-host", ip, "--data-dir", str(work / ip),
             "--address-poll-ms", str(POLL_MS), "--election-ms", "400",
             "--heartbeat-ms", "50"],
            log=work / f"{ip}.log",
        )  # fmt: skip

    try:
        for host in (1, 2, 3):
            start(host)
        wait_for("a leader among 127.0.0.1-3", lambda: committed([1, 2, 3]), DEADLINE)

        write_hosts(hosts_file, SERVICE, [1, 2, 3, 4])
        start(4)
        grown = "peers now ['127.0.0.2', '127.0.0.3', '127.0.0.4'] (quorum 3)"
        wait_for("127.0.0.1 following DNS to 4 nodes", lambda: logged(work, 1, grown), DEADLINE)

        write_hosts(hosts_file, SERVICE, [1, 2, 4])
        nodes.pop(3).kill()
        shrunk = "peers now ['127.0.0.2', '127.0.0.4'] (quorum 2)"
        wait_for("127.0.0.1 dropping 127.0.0.3", lambda: logged(work, 1, shrunk), DEADLINE)
        wait_for(
            "127.0.0.4 dropping 127.0.0.3",
            lambda: logged(
                work, 4, shrunk.replace("'127.0.0.2', '127.0.0.4'", "'127.0.0.1', '127.0.0.2'")
            ),
            DEADLINE,
        )

        nodes.pop(2).kill()
        wait_for("a write on 127.0.0.1 and 127.0.0.4 alone", lambda: committed([1, 4]), DEADLINE)
        print("interop discovery ok", flush=True)
    finally:
        for node in nodes.values():
            node.stop()


if __name__ == "__main__":
    main()
