"""Network partitions between real `dref node` processes: an isolated leader, and random
majority/minority and bridge splits. Every history must be linearizable."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_isolated_leader_acknowledges_nothing_and_serves_no_stale_read(jepsen):
    """The leader is cut from both followers for longer than an election; the majority
    elects a new leader while the old one keeps running. Then heal, and again."""

    def nemesis(cluster, run):
        for _ in range(20):
            if run.left() < 1.0:
                return
            leader = cluster.leader(timeout=30)
            run.note(f"isolate leader {leader}")
            cluster.isolate(leader)
            run.hold(4.0)
            run.note("heal")
            cluster.heal()
            run.hold(2.5)

    jepsen.run("isolated-leader", nemesis)


def test_random_partitions(jepsen):
    """Every couple of seconds a seeded random split: majority/minority, a single node
    isolated, or a bridge (two halves that both see one middle node); calm in between.
    Half of the splits put the current leader on the minority side (or in the middle)."""

    def nemesis(cluster, run):
        ids = list(cluster.ids)
        for _ in range(100):
            if run.left() < 0.5:
                return
            shuffled = run.rng.sample(ids, len(ids))
            if run.rng.random() < 0.5:  # half the time the leader is on the minority side
                leader = _leader_or_none(cluster)
                if leader is not None:
                    shuffled.remove(leader)
                    shuffled.insert(0, leader)
            choice = run.rng.choice(["split", "isolate", "bridge", "calm"])
            if choice == "split":
                cut = run.rng.randint(1, len(ids) // 2)
                run.note(f"partition {shuffled[:cut]} | {shuffled[cut:]}")
                cluster.partition(shuffled[:cut])
            elif choice == "isolate":
                run.note(f"isolate {shuffled[0]}")
                cluster.isolate(shuffled[0])
            elif choice == "bridge":
                middle, rest = shuffled[0], shuffled[1:]
                half = len(rest) // 2
                run.note(f"bridge {rest[:half]} <- {middle} -> {rest[half:]}")
                cluster.heal()
                for a in rest[:half]:
                    for b in rest[half:]:
                        cluster.cut(a, b)
            else:
                run.note("heal")
                cluster.heal()
            run.hold(run.rng.uniform(1.5, 3.5))

    jepsen.run("random-partitions", nemesis)


def _leader_or_none(cluster):
    """The agreed leader if there is one within a few seconds, else None."""
    try:
        return cluster.leader(timeout=3.0)
    except AssertionError:
        return None


def test_random_partitions_with_tls(jepsen):
    """The random-partition nemesis on a cluster with mutual TLS on every link and client
    (certificates from `dref certs`): TLS changes no guarantee."""
    pytest.importorskip("cryptography")
    cluster = jepsen.cluster(tls=True)

    def nemesis(cluster, run):
        for _ in range(100):
            if run.left() < 0.5:
                return
            victim = run.rng.choice(cluster.ids)
            if run.rng.random() < 0.5:
                run.note(f"isolate {victim}")
                cluster.isolate(victim)
            else:
                run.note(f"kill {victim}")
                cluster.kill(victim)
            run.hold(run.rng.uniform(1.0, 2.5))
            run.note("heal and restart")
            cluster.heal()
            cluster.start_all()
            run.hold(run.rng.uniform(0.5, 1.5))

    jepsen.run("tls-partitions", nemesis, cluster=cluster)
