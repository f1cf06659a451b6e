"""The ticker: a named daemon thread that tells the consensus actor the time.

It only sends `Tick(now_ms)` from time.monotonic; it never waits on the actor, so
heartbeats and elections keep their pace whatever the disk does. A tick that comes far
later than its period (the process was stopped, swapped out or starved of CPU) says for
how long: the node did not run then, so that time must not count against its peers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from dref.actors.node_messages import Tick
from dref.actors.safe_tell import safe_tell

STALL_MS = 100
"""A tick later than its period by more than this reports a stall (a busy 2-core box
delays ticks by tens of milliseconds without the node being stopped)."""


def monotonic_ms() -> int:
    """The node's clock: monotonic milliseconds."""
    return int(time.monotonic() * 1000)


class Ticker:
    """Sends a Tick every `period` seconds until `stop()`."""

    def __init__(self, consensus: pykka.ActorRef[Any], period: float, *, node_id: str) -> None:
        self._consensus = consensus
        self._period = period
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"dref-ticker-{node_id}", daemon=True
        )

    def start(self) -> None:
        """Start ticking."""
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait for the thread to end."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        period_ms = int(self._period * 1000)
        last = monotonic_ms()
        while not self._stopped.wait(self._period):
            now = monotonic_ms()
            late = now - last - period_ms
            last = now
            stalled = late if late > STALL_MS else 0
            if not safe_tell(self._consensus, Tick(now, stalled)):
                return
