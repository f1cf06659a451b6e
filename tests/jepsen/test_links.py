"""Slow and flaky links between real `dref node` processes: delay on every link, random
connection resets, and bursts of resets of every open connection."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_link_delay_and_connection_resets_on_every_link(jepsen):
    """Every couple of seconds a new seeded fault mix on all links: a delay of up to 60 ms
    per chunk and/or resets at random chunks; now and then every connection is reset."""

    def nemesis(cluster, run):
        for _ in range(100):
            if run.left() < 0.5:
                return
            delay = run.rng.choice([0.0, 0.005, 0.02, 0.06])
            drop = run.rng.choice([0.0, 0.01, 0.05, 0.2])
            run.note(f"all links: delay {delay * 1000:g} ms, reset probability {drop:g}")
            cluster.heal()
            cluster.delay_all(delay)
            cluster.drop_all(drop)
            for _ in range(run.rng.randint(0, 3)):
                run.hold(run.rng.uniform(0.3, 1.0))
                run.note("reset every connection")
                cluster.reset_links()
            run.hold(run.rng.uniform(1.0, 2.5))

    jepsen.run("links", nemesis)
