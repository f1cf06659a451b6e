"""One thread per context that keeps every lock lease it holds alive.

A held lock needs its lease re-armed every 0.8 x TTL and a prompt look when its listener
sees a change that may not be its own. Starting and joining a thread per acquisition cost
more than the acquisition itself, so each context runs one `LeaseKeeper`: a heap of the
times at which each held lease wants looking at, and one daemon thread that calls the
lease's `tick()` at that time (or at once after `wake()`) and schedules the next look.
The thread starts with the first lock held and ends with the context.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Protocol

_log = logging.getLogger("dref.lock")

CLOSE_WAIT = 2.0
"""Seconds `close()` waits for a re-arm in flight (its backend call has its own timeout)."""

_SPARE_ENTRIES = 16
"""Skipped heap entries tolerated beyond twice the kept leases before pruning."""


class Lease(Protocol):
    """What the keeper schedules (a lock's grant)."""

    def tick(self, now: float) -> float | None:
        """Look at the lease; the monotonic time of the next look, None when done."""
        ...


class LeaseKeeper:
    """See the module doc."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()  # ties: first scheduled, first looked at
        self._wanted: dict[Lease, float] = {}
        """Each lease's next look; heap entries at other times are stale and skipped."""
        self._thread: threading.Thread | None = None
        self._closed = False

    def keep(self, lease: Lease, first_look: float) -> None:
        """Look at `lease` at monotonic time `first_look`, and from then on as it asks."""
        self._schedule(lease, first_look)

    def drop(self, lease: Lease) -> None:
        """Stop looking at `lease` (released) without waking the thread: its heap entries
        are skipped, and pruned once they outnumber the kept leases."""
        with self._cond:
            if self._wanted.pop(lease, None) is None:
                return
            if len(self._due) > 2 * len(self._wanted) + _SPARE_ENTRIES:
                self._due = [e for e in self._due if self._wanted.get(e[2]) == e[0]]
                heapq.heapify(self._due)

    def wake(self, lease: Lease) -> None:
        """Look at `lease` now (a change it must check, a loss to report), if it is kept."""
        self._schedule(lease, time.monotonic(), sooner_only=True)

    def close(self) -> None:
        """Stop looking at leases and end the thread (waiting up to CLOSE_WAIT seconds for
        a re-arm in flight). Idempotent."""
        with self._cond:
            self._closed = True
            self._due.clear()
            self._wanted.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT)

    def _schedule(self, lease: Lease, when: float, *, sooner_only: bool = False) -> None:
        with self._cond:
            if self._closed:
                return
            if sooner_only:
                wanted = self._wanted.get(lease)
                if wanted is None or wanted <= when:
                    return  # not kept (done, or not yet started), or looked at sooner
            self._wanted[lease] = when
            entry = (when, next(self._order), lease)
            heapq.heappush(self._due, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dref-lock-keepalive", daemon=True
                )
                self._thread.start()
            elif self._due[0] is entry:  # only a new earliest look changes its wait
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
                when, _, lease = heapq.heappop(self._due)
                if self._wanted.get(lease) != when:
                    continue  # superseded by a sooner or later look
            try:
                next_look = lease.tick(time.monotonic())
            except Exception:  # a bug in one lease must not stop the others' keep-alive
                _log.exception("keep-alive of a lock failed")
                next_look = None
            with self._cond:
                if self._wanted.get(lease) != when:
                    continue  # woken while it ran: that look is scheduled already
                if next_look is None:
                    del self._wanted[lease]
                else:
                    self._wanted[lease] = next_look
                    heapq.heappush(self._due, (next_look, next(self._order), lease))
