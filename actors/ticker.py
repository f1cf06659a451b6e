"""The ticker: a named daemon thread that tells the consensus actor the time.

It only sends `Tick(now_ms)` from time.monotonic; it never waits on the actor, so
heartbeats and elections keep their pace whatever the disk does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from dref.actors.node_messages import Tick
from dref.actors.safe_tell import safe_tell


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
        while not self._stopped.wait(self._period):
            if not safe_tell(self._consensus, Tick(monotonic_ms())):
                return
