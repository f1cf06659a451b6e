"""Snapshots sent in small chunks under message loss, duplication, crashes and partitions:
followers that fall behind catch up chunk by chunk, resuming after lost chunks, and every
safety and linearizability check of the simulator still holds.

DREF_SIM_SNAPSHOT_SEEDS sets the seed count (default 1000).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import replace

import pytest

from testkit.simulator import SimConfig, Simulation

SEEDS = int(os.environ.get("DREF_SIM_SNAPSHOT_SEEDS", "1000"))
CHUNKS = 2


def chunked_snapshot_config(seed: int) -> SimConfig:
    """A seed's random run with frequent snapshots, tiny chunks and lossy links."""
    rng = random.Random(seed)
    base = SimConfig.for_seed(rng)
    raft = replace(base.raft, snapshot_every=rng.choice((3, 6)), snapshot_chunk_bytes=8)
    return replace(base, raft=raft, drop_rate=rng.choice((0.05, 0.15)), crashes=True)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_chunked_snapshots_under_loss_stay_safe(chunk: int) -> None:
    totals: Counter[str] = Counter()
    for seed in range(chunk, SEEDS, CHUNKS):
        totals.update(Simulation(seed, chunked_snapshot_config(seed)).run())
    assert totals["snapshots_installed"] > SEEDS // (4 * CHUNKS)  # followers really caught up
    assert totals["snapshot_chunks"] > totals["snapshots_installed"]  # most in 3+ chunks
