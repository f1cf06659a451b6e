"""`LeaseKeeper`: one thread looks at every held lease when it asks, at once when woken,
and never again once the lease is dropped."""

from __future__ import annotations

import threading
import time

from dref.lease_keeper import LeaseKeeper

DEADLINE = 10.0


class Recorded:
    """A lease that records its looks and asks to be looked at again after `every` s."""

    def __init__(self, every: float | None) -> None:
        self.every = every
        self.looks: list[float] = []
        self.looked = threading.Event()

    def tick(self, now: float) -> float | None:
        self.looks.append(now)
        self.looked.set()
        return None if self.every is None else now + self.every


def test_a_woken_lease_is_looked_at_at_once_and_a_dropped_one_never_again():
    keeper = LeaseKeeper()
    try:
        lease = Recorded(every=3600.0)
        keeper.keep(lease, time.monotonic() + 3600.0)
        keeper.wake(lease)
        assert lease.looked.wait(DEADLINE), "a woken lease was not looked at"
        lease.looked.clear()
        keeper.drop(lease)
        keeper.wake(lease)  # dropped: waking it does nothing
        soon = Recorded(every=None)
        keeper.keep(soon, time.monotonic())
        assert soon.looked.wait(DEADLINE), "a lease due now was not looked at"
        assert not lease.looked.is_set() and len(lease.looks) == 1
    finally:
        keeper.close()


def test_dropped_leases_do_not_pile_up():
    keeper = LeaseKeeper()
    try:
        kept = Recorded(every=3600.0)
        keeper.keep(kept, time.monotonic() + 3600.0)
        for _ in range(1000):
            lease = Recorded(every=3600.0)
            keeper.keep(lease, time.monotonic() + 3600.0)
            keeper.drop(lease)
        assert len(keeper._due) <= 2 * 1 + 16 + 1  # pruned as they go
        keeper.wake(kept)
        assert kept.looked.wait(DEADLINE), "the kept lease was lost in the pruning"
    finally:
        keeper.close()
