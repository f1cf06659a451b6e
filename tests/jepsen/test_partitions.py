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


def test_one_way_cuts_and_flapping_faults(jepsen):
    """Seeded rounds of one-way faults (nothing the leader sends arrives; nothing sent to
    the leader arrives; one random direction of one link) and of flapping: a node or the
    leader isolated for 0.3 to 1.5 election timeouts, healed briefly, three times over."""
    election_s = 1.0  # the harness's election timeout

    def nemesis(cluster, run):
        ids = list(cluster.ids)
        for _ in range(100):
            if run.left() < 0.5:
                return
            leader = _leader_or_none(cluster) or run.rng.choice(ids)
            others = [n for n in ids if n != leader]
            choice = run.rng.choice(["leader-out", "leader-in", "one-link", "flap"])
            if choice == "flap":
                victim = run.rng.choice([leader, *others])
                for _ in range(3):
                    run.note(f"flap: isolate {victim}")
                    cluster.isolate(victim)
                    run.hold(run.rng.uniform(0.3, 1.5) * election_s)
                    run.note("flap: heal")
                    cluster.heal()
                    run.hold(run.rng.uniform(0.1, 0.5) * election_s)
                continue
            if choice == "leader-out":
                run.note(f"nothing {leader} sends arrives")
                for other in others:
                    cluster.cut_one_way(leader, other)
            elif choice == "leader-in":
                run.note(f"nothing sent to {leader} arrives")
                for other in others:
                    cluster.cut_one_way(other, leader)
            else:
                a, b = run.rng.sample(ids, 2)
                run.note(f"nothing {a} sends to {b} arrives")
                cluster.cut_one_way(a, b)
            run.hold(run.rng.uniform(1.5, 3.0))
            run.note("heal")
            cluster.heal()
            run.hold(run.rng.uniform(0.5, 1.5))

    jepsen.run("one-way-and-flapping", nemesis)
