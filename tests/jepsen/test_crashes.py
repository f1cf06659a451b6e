"""Process faults on real `dref node` processes during writes: SIGKILL of the leader or of
random nodes, SIGSTOP of the leader past an election, and SIGKILL of the whole cluster,
each followed by a restart from the data dirs. Every history must be linearizable."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sigkill_leader_and_random_nodes_then_restart(jepsen):
    """SIGKILL the leader (or, every other round, a random node) mid-write, keep it down a
    while, restart it from its data dir."""

    def nemesis(cluster, run):
        for round_ in range(50):
            if run.left() < 1.0:
                return
            victim = cluster.leader(timeout=30) if round_ % 2 == 0 else run.rng.choice(cluster.ids)
            run.note(f"SIGKILL {victim}")
            cluster.kill(victim)
            run.hold(run.rng.uniform(1.5, 3.0))
            run.note(f"restart {victim}")
            cluster.start(victim)
            run.hold(run.rng.uniform(1.0, 2.0))

    jepsen.run("sigkill", nemesis)


def test_paused_leader_neither_acknowledges_nor_serves_stale_reads_after_sigcont(jepsen):
    """SIGSTOP the leader for well over the election timeout (the others elect a new leader
    and move on), then SIGCONT it: whatever it had queued must not be acknowledged as if it
    were still leader, and no read may return its old state."""

    def nemesis(cluster, run):
        for _ in range(20):
            if run.left() < 1.0:
                return
            leader = cluster.leader(timeout=30)
            run.note(f"SIGSTOP leader {leader}")
            cluster.pause(leader)
            run.hold(run.rng.uniform(2.5, 4.0))
            run.note(f"SIGCONT {leader}")
            cluster.resume(leader)
            run.hold(run.rng.uniform(1.5, 2.5))

    jepsen.run("sigstop", nemesis)


def test_whole_cluster_sigkill_and_restart_keeps_every_acknowledged_write(jepsen):
    """SIGKILL every node at once mid-write, restart them all from their data dirs; the
    final reads (and every read after the restart) must see every acknowledged write."""

    def nemesis(cluster, run):
        for _ in range(20):
            if run.left() < 1.0:
                return
            run.hold(run.rng.uniform(1.5, 3.0))
            run.note("SIGKILL all nodes")
            cluster.kill_all()
            run.hold(run.rng.uniform(0.2, 1.0))
            run.note("restart all nodes")
            cluster.start_all()
            run.note(f"leader {cluster.leader(timeout=60)}")

    jepsen.run("whole-cluster-restart", nemesis)


def test_stock_client_never_applies_one_write_twice_across_leader_sigkill(jepsen):
    """The same workload through the stock `Client` (its own retries): SIGKILL the leader
    every few seconds, restart it; stop at the first anomaly (the history is checked after
    every round) or after 8 rounds. The client once retried writes that had reached a dying
    leader, and one set() then applied twice over newer writes."""

    def nemesis(cluster, run):
        for _ in range(8):
            if run.left() < 1.0:
                return
            leader = cluster.leader(timeout=30)
            run.note(f"SIGKILL leader {leader}")
            cluster.kill(leader)
            run.hold(2.0)
            run.note(f"restart {leader}")
            cluster.start(leader)
            run.hold(1.0)
            if not run.history.check(30).ok:
                run.note("anomaly found; stop")
                return

    jepsen.run("stock-client", nemesis, strict_writes=False, scale=3.0, keys=3)


def test_paused_leader_serves_no_stale_lease_read_after_sigcont(jepsen):
    """As the SIGSTOP scenario, but every read uses the `lease` policy: a leader resumed
    after its lease ran out (and a new leader took over) must not answer from its lease."""

    def nemesis(cluster, run):
        for _ in range(20):
            if run.left() < 1.0:
                return
            leader = cluster.leader(timeout=30)
            run.note(f"SIGSTOP leader {leader}")
            cluster.pause(leader)
            run.hold(run.rng.uniform(2.5, 4.0))
            run.note(f"SIGCONT {leader}")
            cluster.resume(leader)
            run.hold(run.rng.uniform(1.5, 2.5))

    jepsen.run("sigstop-lease", nemesis, read_policy="lease")
