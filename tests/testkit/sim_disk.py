"""A fake disk for the simulator: writes are volatile until `sync`, and a crash loses them."""

from __future__ import annotations

from dref.actors.consensus.durable_state import DurableState, Snapshot
from dref.actors.consensus.effects import (
    AppendToLog,
    PersistHardState,
    RestoreSnapshot,
    StorageEffect,
    TruncateLog,
)
from dref.actors.consensus.log_entry import LogEntry


class FakeDisk:
    """Durable hard state, snapshot and log, plus a queue of not-yet-fsynced writes."""

    def __init__(self) -> None:
        self.term = 0
        self.voted_for: str | None = None
        self.snapshot: Snapshot | None = None
        self.entries: list[LogEntry] = []
        self.pending: list[StorageEffect] = []
        self.writes_issued = 0
        self.writes_synced = 0

    def write(self, effect: StorageEffect) -> None:
        """Queue a write; it is lost by a crash until `sync` runs."""
        self.pending.append(effect)
        self.writes_issued += 1

    def sync(self) -> tuple[int, int] | None:
        """Make every queued write durable; returns (index, term) of the last appended entry."""
        last: tuple[int, int] | None = None
        for effect in self.pending:
            if isinstance(effect, PersistHardState):
                self.term, self.voted_for = effect.term, effect.voted_for
            elif isinstance(effect, AppendToLog):
                self._append(effect.entries)
                if effect.entries:
                    last = (effect.entries[-1].index, effect.entries[-1].term)
            elif isinstance(effect, TruncateLog):
                keep = effect.from_index - self._base() - 1
                if keep < 0:
                    raise AssertionError(f"truncation at {effect.from_index} below the snapshot")
                del self.entries[keep:]
            elif isinstance(effect, RestoreSnapshot):
                self.snapshot = Snapshot(
                    effect.index, effect.term, effect.data, effect.voters, effect.learners
                )
                self.entries = []
        self.pending = []
        self.writes_synced = self.writes_issued
        return last

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Durably save a snapshot taken locally and drop the log entries it covers."""
        drop = snapshot.index - self._base()
        self.snapshot = snapshot
        del self.entries[: max(drop, 0)]

    def crash(self) -> None:
        """Power loss: every unsynced write is gone."""
        self.pending = []
        self.writes_synced = self.writes_issued

    def recover(self) -> DurableState:
        """What a restarting node reads back."""
        return DurableState(self.term, self.voted_for, self.snapshot, tuple(self.entries))

    def _base(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    def _append(self, entries: tuple[LogEntry, ...]) -> None:
        expected = self._base() + len(self.entries) + 1
        fresh = [e for e in entries if e.index > self._base()]  # a snapshot may cover some
        if fresh and fresh[0].index != expected:
            raise AssertionError(f"append at {fresh[0].index}; the disk log needs {expected}")
        self.entries.extend(fresh)
