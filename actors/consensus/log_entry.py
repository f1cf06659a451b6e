"""One replicated log entry: the unit the leader ships and every node applies in order."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EntryKind(enum.Enum):
    """What an entry carries: a client command, a leader's no-op, or a membership change."""

    NORMAL = "normal"
    NOOP = "noop"
    CONFIG = "config"  # reserved for membership changes; nothing proposes it yet


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An entry at `index`, created by the leader of `term`; `command` is opaque to Raft."""

    index: int
    term: int
    command: bytes = b""
    kind: EntryKind = EntryKind.NORMAL

    def size(self) -> int:
        """Approximate wire size, used to bound the bytes in one AppendEntries."""
        return len(self.command) + 24
