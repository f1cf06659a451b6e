"""The in-memory view of one node's log: a snapshot base followed by entries.

Indexes start at 1; index `snapshot_index` (0 for none) is covered by the snapshot and
has term `snapshot_term`. `durable_index` is how far the storage writer has confirmed an
fsync, which is what a leader may count for itself in a commit quorum.
"""

from __future__ import annotations

from collections.abc import Sequence

from dref.actors.consensus.log_entry import LogEntry


class InMemoryLog:
    """Entries after the snapshot base, with the lookups replication and voting need."""

    def __init__(
        self,
        snapshot_index: int = 0,
        snapshot_term: int = 0,
        entries: Sequence[LogEntry] = (),
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self._entries: list[LogEntry] = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != snapshot_index + 1 + offset:
                raise ValueError(f"log entries are not contiguous at {entry.index}")
        self.durable_index = self.last_index

    @property
    def last_index(self) -> int:
        """Index of the newest entry (the snapshot index when there are none)."""
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        """Term of the newest entry."""
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at `index`, or None when compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if offset < 0 or offset >= len(self._entries):
            return None
        return self._entries[offset].term

    def matches(self, index: int, term: int) -> bool:
        """True when the log holds an entry at `index` with `term` (the log matching check)."""
        return self.term_at(index) == term

    def entry(self, index: int) -> LogEntry:
        """The entry at `index`; it must be present."""
        return self._entries[index - self.snapshot_index - 1]

    def entries_between(self, first: int, last: int) -> list[LogEntry]:
        """Entries first..last inclusive; all must be present."""
        base = self.snapshot_index + 1
        return self._entries[first - base : last - base + 1]

    def batch_from(self, first: int, max_count: int, max_bytes: int) -> list[LogEntry]:
        """Up to `max_count` entries from `first` within `max_bytes` (always at least one)."""
        base = self.snapshot_index + 1
        batch: list[LogEntry] = []
        size = 0
        for entry in self._entries[first - base : first - base + max_count]:
            size += entry.size()
            if batch and size > max_bytes:
                break
            batch.append(entry)
        return batch

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """The election restriction: is a log ending at (last_index, last_term) at least ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def first_conflict(self, entries: Sequence[LogEntry]) -> int:
        """Position in `entries` of the first one this log lacks or holds with another term."""
        for position, entry in enumerate(entries):
            if self.term_at(entry.index) != entry.term:
                return position
        return len(entries)

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Append entries that continue the log exactly."""
        if entries and entries[0].index != self.last_index + 1:
            raise ValueError(f"append at {entries[0].index} does not follow {self.last_index}")
        self._entries.extend(entries)

    def truncate_from(self, index: int) -> None:
        """Drop the entry at `index` and everything after it."""
        del self._entries[index - self.snapshot_index - 1 :]
        self.durable_index = min(self.durable_index, index - 1)

    def mark_durable(self, index: int, term: int) -> bool:
        """Record an fsync ack for the log through (index, term); ignore stale acks."""
        if index <= self.durable_index or self.term_at(index) != term:
            return False
        self.durable_index = index
        return True

    def compact_through(self, index: int) -> None:
        """Forget entries through `index`, now covered by a snapshot."""
        term = self.term_at(index)
        if term is None or index <= self.snapshot_index:
            raise ValueError(f"cannot compact through {index}")
        del self._entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def reset_to_snapshot(self, index: int, term: int) -> None:
        """Discard the whole log: it now starts right after a freshly installed snapshot."""
        self._entries = []
        self.snapshot_index = index
        self.snapshot_term = term
        self.durable_index = index

    def reject_hint(self, prev_index: int) -> tuple[int, int]:
        """Where to retry after a failed match at `prev_index`: (index, term) of our best guess.

        Too short a log answers (last_index + 1, 0); otherwise the first index of the
        term we hold at prev_index, so the leader can skip that whole term at once.
        """
        if prev_index > self.last_index:
            return self.last_index + 1, 0
        term = self.term_at(prev_index) or 0
        index = prev_index
        while index - 1 > self.snapshot_index and self.term_at(index - 1) == term:
            index -= 1
        return index, term

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """Highest index <= `at_most` whose entry has exactly `term`, if any."""
        index = min(at_most, self.last_index)
        while index > self.snapshot_index:
            found = self.term_at(index)
            if found == term:
                return index
            if found is not None and found < term:
                return None
            index -= 1
        return None
