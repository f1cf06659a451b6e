"""A 5-node cluster of real `dref node` processes under a rolling mix of every fault."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_five_nodes_rolling_mix_of_faults(jepsen):
    """Seeded steps, each one of: isolate the leader, a random 2|3 split, a bridge, SIGKILL
    of the leader or of two random nodes (restarted later), SIGSTOP of the leader, slow and
    flaky links; healing and restarting between steps."""

    def nemesis(cluster, run):
        for _ in range(100):
            if run.left() < 1.0:
                return
            step = run.rng.choice(["isolate", "split", "bridge", "kill", "kill2", "pause", "links"])
            leader = _leader_or_none(cluster)
            shuffled = run.rng.sample(cluster.ids, len(cluster.ids))
            if leader is not None and step in ("isolate", "kill", "pause"):
                shuffled.remove(leader)
                shuffled.insert(0, leader)
            victims: list[str] = []
            if step == "isolate":
                run.note(f"isolate {shuffled[0]}")
                cluster.isolate(shuffled[0])
            elif step == "split":
                run.note(f"partition {shuffled[:2]} | {shuffled[2:]}")
                cluster.partition(shuffled[:2])
            elif step == "bridge":
                middle, left, right = shuffled[0], shuffled[1:3], shuffled[3:]
                run.note(f"bridge {left} <- {middle} -> {right}")
                for a in left:
                    for b in right:
                        cluster.cut(a, b)
            elif step in ("kill", "kill2"):
                victims = shuffled[: 1 if step == "kill" else 2]
                run.note(f"SIGKILL {victims}")
                for victim in victims:
                    cluster.kill(victim)
            elif step == "pause":
                run.note(f"SIGSTOP {shuffled[0]}")
                cluster.pause(shuffled[0])
            else:
                run.note("all links: delay 20 ms, reset probability 0.05")
                cluster.delay_all(0.02)
                cluster.drop_all(0.05)
            run.hold(run.rng.uniform(2.0, 3.5))
            run.note("heal, resume, restart")
            cluster.heal()
            for node_id in cluster.ids:
                cluster.resume(node_id)
            for victim in victims:
                cluster.start(victim)
            run.hold(run.rng.uniform(1.0, 2.0))

    jepsen.run("five-nodes", nemesis, size=5, keys=5, workers=8, scale=1.75)


def _leader_or_none(cluster):
    """The agreed leader if there is one within a few seconds, else None."""
    try:
        return cluster.leader(timeout=3.0)
    except AssertionError:
        return None
