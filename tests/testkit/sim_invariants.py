"""Raft's safety properties, checked by the simulator as the cluster runs.

Election safety, leader completeness, state-machine safety and log matching, stated over
what the simulator observes: which node led which term, which entries were applied
(hence committed) where, and every node's log.
"""

from __future__ import annotations

from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import Membership
from dref.actors.consensus.raft import RaftCore


class SafetyViolation(AssertionError):
    """A Raft safety property failed."""


class SafetyMonitor:
    """Accumulates observations and raises `SafetyViolation` on the first broken property."""

    def __init__(self, initial_voters: frozenset[str] = frozenset()) -> None:
        self.initial_voters = initial_voters
        self.config_changes = 0
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, LogEntry] = {}
        self.commit_term: dict[int, int] = {}
        """Lowest term any node was in when applying the entry: it was committed by then."""

    def on_leader(self, core: RaftCore) -> None:
        """Election safety, and leader completeness: a leader holds every entry committed in
        an earlier term. (A leader of an older term may be elected late, off delayed votes.)"""
        term, node = core.state.term, core.node_id
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise SafetyViolation(f"election safety: {other} and {node} both lead term {term}")
        log = core.log
        for index, entry in self.committed.items():
            if self.commit_term[index] >= term or index <= log.snapshot_index:
                continue
            if log.term_at(index) != entry.term:
                raise SafetyViolation(
                    f"leader completeness: leader {node} of term {term} lacks committed "
                    f"entry {index} (term {entry.term}); it has term {log.term_at(index)}"
                )

    def on_apply(self, node: str, entry: LogEntry, node_term: int) -> None:
        """State-machine safety: every node applies the same entry at an index."""
        previous = self.commit_term.get(entry.index, node_term)
        self.commit_term[entry.index] = min(previous, node_term)
        first_seen = entry.index not in self.committed
        known = self.committed.setdefault(entry.index, entry)
        if known != entry:
            raise SafetyViolation(
                f"state machine safety: {node} applied {entry} at {entry.index}, "
                f"another node applied {known}"
            )
        if entry.kind is EntryKind.CONFIG and first_seen:
            self._check_config_step(entry)

    def _check_config_step(self, entry: LogEntry) -> None:
        """Committed configurations change at most one voter at a time."""
        voters = Membership.decode(entry.command).voters
        earlier = [
            e for i, e in self.committed.items() if i < entry.index and e.kind is EntryKind.CONFIG
        ]
        before = (
            Membership.decode(max(earlier, key=lambda e: e.index).command).voters
            if earlier
            else self.initial_voters
        )
        if self.initial_voters and len(voters ^ before) > 1:
            raise SafetyViolation(
                f"membership: committed config at {entry.index} changes {sorted(voters ^ before)}"
                f" at once ({sorted(before)} -> {sorted(voters)})"
            )
        self.config_changes += 1

    def check_logs(self, cores: list[RaftCore]) -> None:
        """Log matching: equal (index, term) means equal entries and equal predecessors."""
        seen: dict[tuple[int, int], tuple[LogEntry, int | None]] = {}
        for core in cores:
            log = core.log
            for index in range(log.snapshot_index + 1, log.last_index + 1):
                entry = log.entry(index)
                record = (entry, log.term_at(index - 1))
                known = seen.setdefault((index, entry.term), record)
                if known != record:
                    raise SafetyViolation(
                        f"log matching: {core.node_id} holds {record} at ({index}, {entry.term}),"
                        f" another log holds {known}"
                    )
