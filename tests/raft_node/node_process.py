"""Runs one Node in its own process for the crash tests.

Usage: node_process.py CONFIG_JSON [WRITERS]. Starts the node (with the ListMachine);
with WRITERS > 0 it proposes "w<thread>-<n>" from that many threads once it leads and
prints "ack <command>" after each proposal returns, until it is killed. With WRITERS = 0 it
is a follower for a cluster's tests: if it won the first election, it hands leadership to
a peer before it prints "ready".
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from node_cluster import ListMachine  # noqa: E402

from dref.errors import DRefError  # noqa: E402
from dref.raft.config import NodeConfig  # noqa: E402
from dref.raft.node import Node  # noqa: E402

print_lock = threading.Lock()


def write_forever(node: Node, worker: int) -> None:
    count = 0
    while True:
        command = f"w{worker}-{count}".encode()
        node.propose(command, timeout=30)
        with print_lock:
            print("ack", command.decode(), flush=True)
        count += 1


def main() -> None:
    options = json.loads(sys.argv[1])
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    options["data_dir"] = Path(options["data_dir"])
    node = Node(NodeConfig(**options), ListMachine())
    node.wait_for_leader(30)
    for _ in range(10):  # bounded: on a loaded machine a transfer may time out
        if writers > 0 or not node.is_leader:
            break
        with contextlib.suppress(DRefError):
            node.transfer_leadership(timeout=30)
    with print_lock:
        print("ready", node.address, flush=True)
    threads = [
        threading.Thread(target=write_forever, args=(node, w), daemon=True) for w in range(writers)
    ]
    for thread in threads:
        thread.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
