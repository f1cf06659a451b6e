"""Coordination recipes on the public DRef API, so they work on every backend.

`Election` (one leader, fenced), `Semaphore` (at most n holders), `Barrier` and
`DoubleBarrier`, `Counter` (exact totals) and a small FIFO `Queue` (each item taken once).
Each class's docstring states the guarantee it gives. Every blocking call takes a
`timeout` and raises a `TimeoutError` subclass (`LockTimeoutError`, `DRefTimeoutError`)
when it passes; waiting is driven by change streams, not polling.
"""

from __future__ import annotations

from dref.recipes.barrier import Barrier, DoubleBarrier
from dref.recipes.counter import Counter
from dref.recipes.election import Election, LeaderChanges, LeaderWatch
from dref.recipes.fifo_queue import Queue
from dref.recipes.semaphore import Semaphore

__all__ = [
    "Barrier",
    "Counter",
    "DoubleBarrier",
    "Election",
    "LeaderChanges",
    "LeaderWatch",
    "Queue",
    "Semaphore",
]
