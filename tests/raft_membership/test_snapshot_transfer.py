"""A 20 MB state moves to a new member in 1 MiB InstallSnapshot chunks over a link that
resets connections in the middle of the transfer: the leader resumes from the last
acknowledged offset (a restart from zero would rarely get through) and keeps serving
writes meanwhile. Real nodes on loopback, the peer socket (and the gRPC port it is
learnt from) behind FaultProxies, real data dirs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node_cluster import free_ports, start_member, wait_until

from testkit.fault_proxy import FaultProxy

FREQUENT_SNAPSHOTS = {"snapshot_every": 5, "rpc_timeout": 2.0}
ITEM = "x" * 1_000_000
ITEMS = 20
RESET_PROBABILITY = 0.01
"""Per forwarded 64 KiB: a 20 MB stream survives whole with probability 0.99**320 = 4 %."""


def test_a_20_mb_snapshot_reaches_a_new_member_across_connection_resets(tmp_path: Path) -> None:
    leader_port, learner_port, learner_socket = free_ports(3)
    leader, leader_machine = start_member(
        tmp_path, "n1", f"127.0.0.1:{leader_port}", join=False, **FREQUENT_SNAPSHOTS
    )
    learner, learner_machine = start_member(
        tmp_path,
        "n2",
        f"127.0.0.1:{learner_port}",
        join=True,
        peer_listen=f"127.0.0.1:{learner_socket}",
        **FREQUENT_SNAPSHOTS,
    )
    proxy = FaultProxy(("127.0.0.1", learner_port), seed=7)
    socket_proxy = FaultProxy(("127.0.0.1", learner_socket), seed=8)
    to_learner = {"n2": f"127.0.0.1:{socket_proxy.port}"}  # the leader reaches n2 through it
    stop_writes = threading.Event()
    write_latencies: list[float] = []

    def write_meanwhile() -> None:
        count = 0
        while not stop_writes.is_set():
            started = time.monotonic()
            leader.propose(f"small-{count}".encode(), timeout=10)
            write_latencies.append(time.monotonic() - started)
            count += 1
            stop_writes.wait(0.02)  # a light load

    writer = threading.Thread(target=write_meanwhile, name="snapshot-test-writer", daemon=True)
    try:
        wait_until(lambda: leader.is_leader, what="n1 to lead")
        for _ in range(ITEMS):
            leader.propose(ITEM.encode(), timeout=30)
        wait_until(lambda: leader.status().snapshot_index >= ITEMS, 60, "a 20 MB snapshot")
        # Back with snapshots as rare as by default: the writes below must not replace the
        # 20 MB snapshot faster than it can travel.
        leader.close()
        leader, leader_machine = start_member(
            tmp_path,
            "n1",
            f"127.0.0.1:{leader_port}",
            join=False,
            rpc_timeout=2.0,
            peer_sockets=to_learner,
        )
        wait_until(lambda: leader.is_leader, what="n1 to lead again")
        # recovered from a snapshot with no configuration entry: it still knows its address
        assert leader.members().membership.address_map()["n1"] == f"127.0.0.1:{leader_port}"
        assert leader.propose(b"restarted", timeout=30) == str(ITEMS + 1).encode()

        writer.start()
        socket_proxy.drop(RESET_PROBABILITY)
        leader.add_learner("n2", f"127.0.0.1:{proxy.port}", timeout=30)
        socket_proxy.reset()  # whatever was in flight right after the change, too
        wait_until(
            lambda: learner.status().snapshot_index >= ITEMS,
            30,  # a few seconds when resuming; restarting from zero takes ~10x longer
            "n2 to install the snapshot",
        )
        socket_proxy.heal()
        assert socket_proxy.forwarded_bytes > ITEMS * len(ITEM) // 2  # the snapshot took it
        stop_writes.set()
        writer.join(30)
        assert not writer.is_alive()
        assert len(write_latencies) >= 10
        assert max(write_latencies) < 5.0  # the leader kept committing during the transfer
        wait_until(
            lambda: learner_machine.snapshot_items() == leader_machine.snapshot_items(),
            60,
            "n2 to hold exactly the leader's state",
        )
        assert len(learner_machine.snapshot_items()) == ITEMS + 1 + len(write_latencies)
    finally:
        stop_writes.set()
        proxy.close()
        socket_proxy.close()
        leader.close()
        learner.close()
