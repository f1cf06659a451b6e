"""What survives a crash: hard state, the latest snapshot and the stored log entries."""

from __future__ import annotations

from dataclasses import dataclass

from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.membership import Addresses, Membership


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image covering the log through (index, term), with its membership."""

    index: int
    term: int
    data: bytes
    voters: frozenset[str]
    learners: frozenset[str] = frozenset()
    addresses: Addresses = ()

    @property
    def membership(self) -> Membership:
        """The configuration in force at the snapshot's index."""
        return Membership.of(self.voters, self.learners, self.addresses)


@dataclass(frozen=True, slots=True)
class DurableState:
    """Everything a restarting node reads back from disk before building its RaftCore."""

    term: int = 0
    voted_for: str | None = None
    snapshot: Snapshot | None = None
    entries: tuple[LogEntry, ...] = ()
