"""Liveness under a partition: while one node of three is cut from the other two, the
clients keep at least half the write rate they had with the cluster whole. Clients know
all three nodes (in the order a user lists them) and write through the public DRef API.
The election that follows a cut leader is not part of the measured window: it lasts one
to two election timeouts by design, and is bounded on its own."""

from __future__ import annotations

import threading
import time

import pytest

from dref.context import Context
from dref.errors import DRefError
from dref.raft_backend import RaftBackend

pytestmark = pytest.mark.slow

WINDOW = 4.0
"""Seconds each rate is measured over."""
CALLERS = 6
FAILOVER_LIMIT = 10.0
"""Seconds the other two may take to agree on a leader after the cut (at least 2x the
harness's 1 s election timeout, with room for a loaded box)."""
MIN_WHOLE_WRITES = 50
"""Fewest writes the whole cluster must make in a window for the ratio to mean anything."""


def _write_rate(contexts: list[Context], seconds: float, tag: str) -> tuple[float, int]:
    """Writes acknowledged per second by one thread per context in `seconds`, and how
    many writes failed."""
    counts = [0] * len(contexts)
    failures = [0] * len(contexts)
    deadline = time.monotonic() + seconds

    def write(i: int) -> None:
        ref = contexts[i].ref(f"live-{tag}-{i}", 0)
        value = 0
        while time.monotonic() < deadline:
            value += 1
            try:
                ref.set(value, timeout=max(deadline - time.monotonic(), 0.05))
                counts[i] += 1
            except DRefError:
                failures[i] += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(contexts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30.0)
    return sum(counts) / seconds, sum(failures)


@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_writes_keep_half_their_rate_while_one_node_is_isolated(jepsen, victim):
    """The names are created before the cut, so every write of the window is a plain
    `set` on a client that was connected when the node went away; the window after the
    cut opens once the other two agree on a leader."""
    cluster = jepsen.cluster()
    ids = cluster.ids
    orders = [ids[i % 3 :] + ids[: i % 3] for i in range(CALLERS)]  # each node first for some
    contexts = [Context(RaftBackend(cluster.client(order, timeout=2.0))) for order in orders]
    try:
        for tag in ("whole", "split"):
            for i, context in enumerate(contexts):
                context.ref(f"live-{tag}-{i}", 0)
        whole, _ = _write_rate(contexts, WINDOW, "whole")
        leader = cluster.leader()
        cut = leader if victim == "leader" else next(n for n in cluster.ids if n != leader)
        others = [n for n in cluster.ids if n != cut]
        cut_at = time.monotonic()
        cluster.isolate(cut)
        new_leader = cluster.leader(timeout=FAILOVER_LIMIT, among=others)
        failover = time.monotonic() - cut_at
        split, failed = _write_rate(contexts, WINDOW, "split")
        cluster.heal()
    finally:
        for context in contexts:
            context.close()
    rates = f"{whole:.0f} -> {split:.0f} writes/s ({failed} failed)"
    print(f"\n[liveness] isolate {victim} {cut}: leader {new_leader} in {failover:.1f} s, {rates}")
    assert whole * WINDOW >= MIN_WHOLE_WRITES, f"the whole cluster made only {whole:.0f} writes/s"
    assert split >= 0.5 * whole, (
        f"with {victim} {cut} isolated the writes fell to {split:.0f}/s from {whole:.0f}/s"
        f" ({failed} failed)\n{cluster.logs()}"
    )
