"""The leader's linearizable reads: ReadIndex rounds batched behind one heartbeat, and leases.

A read arriving at the leader gets read index = the commit index at arrival, and may be
served once a quorum has acknowledged a heartbeat sent after it arrived (so no newer
leader can have committed anything by then). Reads that arrive while a round is in
flight wait and share the next round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dref.actors.consensus.messages import RequestId


@dataclass(frozen=True, slots=True)
class PendingRead:
    """A read request; `origin` is the follower that forwarded it, None when local."""

    request_id: RequestId
    origin: str | None


@dataclass(slots=True)
class ReadRound:
    """Reads waiting for a quorum to acknowledge heartbeat `beat`."""

    beat: int
    read_index: int
    reads: list[PendingRead]


@dataclass(slots=True)
class ReadTracker:
    """Reads waiting for a round, and the one round in flight."""

    waiting: list[PendingRead] = field(default_factory=list)
    in_flight: ReadRound | None = None

    def add(self, read: PendingRead) -> None:
        """Queue a read for the next round."""
        self.waiting.append(read)

    def start_round(self, beat: int, read_index: int) -> None:
        """All waiting reads ride on heartbeat `beat`."""
        self.in_flight = ReadRound(beat, read_index, self.waiting)
        self.waiting = []

    def can_start(self) -> bool:
        """A new round starts only when none is in flight and someone waits."""
        return self.in_flight is None and bool(self.waiting)

    def take_confirmed(self, acked_by_quorum: int) -> ReadRound | None:
        """Return and clear the in-flight round if the quorum acked its heartbeat or later."""
        round_ = self.in_flight
        if round_ is None or acked_by_quorum < round_.beat:
            return None
        self.in_flight = None
        return round_

    def drain(self) -> list[PendingRead]:
        """Every read still held, for rejection when leadership ends."""
        reads = list(self.waiting)
        if self.in_flight is not None:
            reads.extend(self.in_flight.reads)
        self.waiting, self.in_flight = [], None
        return reads
