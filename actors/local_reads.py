"""Lease reads answered in the caller's thread, without a round trip through the actors.

The consensus actor publishes the leader lease between turns (`publish`) and withdraws it
while a turn runs (`withdraw`), so a reader never acts on a lease that a turn in progress
may be ending (a leader transfer's TimeoutNow, a step-down). The applier holds `lock`
around every state-machine call and raises `applied_index` under it, so a reader that
takes the lock sees a state machine no other thread is changing, applied at least through
the commit index the lease was published with (every write acknowledged before the read
began is in it). Anything else falls back to the actor path.
"""

from __future__ import annotations

import threading

from dref.actors.ticker import monotonic_ms
from dref.contracts.state_machine import StateMachine


class LocalReads:
    """Shared by the node (readers), the consensus actor and the applier; see the module doc."""

    def __init__(self, state_machine: StateMachine, applied_index: int) -> None:
        self.lock = threading.Lock()
        """Held by the applier around every state-machine call, and by local readers."""
        self.applied_index = applied_index
        """Set by the applier under `lock`."""
        self._sm = state_machine
        self._lease: tuple[int, int] | None = None  # (expiry ms, commit index)

    def publish(self, expiry_ms: int | None, commit_index: int) -> None:
        """The consensus actor's lease after a turn (None: no lease)."""
        self._lease = None if expiry_ms is None else (expiry_ms, commit_index)

    def withdraw(self) -> None:
        """No local reads while a consensus turn runs."""
        self._lease = None

    def try_query(self, request: bytes) -> bytes | None:
        """The state machine's answer under a valid lease, or None (use the actor path)."""
        lease = self._lease
        if lease is None or monotonic_ms() >= lease[0]:
            return None
        with self.lock:
            if self.applied_index < lease[1]:
                return None
            return self._sm.query(request)

    def query_applied(self, request: bytes, read_index: int) -> bytes | None:
        """The state machine's answer if it has applied through `read_index`, else None
        (the applier answers once it has). Lets a confirmed ReadIndex read skip the hop
        to the applier when the leader is already caught up, as it usually is."""
        with self.lock:
            if self.applied_index < read_index:
                return None
            return self._sm.query(request)
