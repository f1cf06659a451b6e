"""Randomized runs with leadership transfers and one-server membership changes (learners
added, promoted, members removed, the leader often killed mid-change) under every fault
kind: safety, the one-voter-per-committed-config rule and linearizability must hold.

DREF_SIM_ADMIN_SEEDS sets the seed count (default 800); DREF_SIM_ADMIN_SEED replays one.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from testkit.simulator import Simulation, run_seed

SEEDS = int(os.environ.get("DREF_SIM_ADMIN_SEEDS", "800"))
CHUNKS = 4


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_transfers_and_membership_changes_stay_safe(chunk: int) -> None:
    totals: Counter[str] = Counter()
    for seed in range(chunk, SEEDS, CHUNKS):
        simulation = Simulation(seed, admin=True)
        result = simulation.run()
        totals["config_changes"] += result["config_changes"]
        totals.update(simulation.admin_outcomes.values())
    assert totals["config_changes"] > SEEDS // CHUNKS  # clusters really grew and shrank
    assert totals["ok"] > 0 and totals["refused"] > 0


def test_admin_replay() -> None:
    """Re-run the admin seed a failure report named."""
    seed = os.environ.get("DREF_SIM_ADMIN_SEED")
    if seed is None:
        pytest.skip("set DREF_SIM_ADMIN_SEED=<n> to replay an admin seed")
    print(run_seed(int(seed), admin=True))
