"""What survives a crash: hard state, the latest snapshot and the stored log entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.membership import Addresses, Membership


class SnapshotImage(Protocol):
    """A snapshot's bytes as the core uses them: a length and slices (chunks to send).
    `bytes` is one; a node's are files (`dref.storage.snapshot_image.FileImage`), so a
    large state is never held whole in memory."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> bytes: ...


class IncomingSnapshot(Protocol):
    """A leader's snapshot being received, chunk by chunk, in order."""

    @property
    def size(self) -> int:
        """Bytes received so far."""
        ...

    def append(self, data: bytes) -> None:
        """Add the next chunk."""
        ...

    def finish(self) -> SnapshotImage:
        """All chunks are in: the whole image (quickly: a file is made durable later, by
        whoever saves it)."""
        ...


class BufferedSnapshot:
    """An `IncomingSnapshot` collected in memory (the simulator's, and the default); made
    for any (index, term), as `RaftCore(receive_snapshot=...)` calls it."""

    def __init__(self, index: int, term: int) -> None:
        self._data = bytearray()

    @property
    def size(self) -> int:
        return len(self._data)

    def append(self, data: bytes) -> None:
        self._data += data

    def finish(self) -> bytes:
        return bytes(self._data)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image covering the log through (index, term), with its membership."""

    index: int
    term: int
    data: SnapshotImage
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
