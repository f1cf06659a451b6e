"""The one place that maps the core's log entries to the durable log's stored entries."""

from __future__ import annotations

from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.storage.raft_log import StoredEntry, StoredKind

_TO_STORED = {
    EntryKind.NORMAL: StoredKind.COMMAND,
    EntryKind.NOOP: StoredKind.NOOP,
    EntryKind.CONFIG: StoredKind.CONFIG,
}
_FROM_STORED = {stored: kind for kind, stored in _TO_STORED.items()}


def to_stored(entry: LogEntry) -> StoredEntry:
    """The durable form of a core entry."""
    return StoredEntry(entry.index, entry.term, _TO_STORED[entry.kind], entry.command)


def from_stored(entry: StoredEntry) -> LogEntry:
    """The core entry a durable entry came from."""
    return LogEntry(entry.index, entry.term, entry.data, _FROM_STORED[entry.kind])
