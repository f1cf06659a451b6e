"""Start-up: read everything durable and reconcile it into the core's `DurableState`.

Order: voter-state, then the snapshot, then the log (RaftLog.open reconciles a crash
between command-log and LMDB). A snapshot newer than the log's base means a crash came
between saving the snapshot and compacting behind it: the compaction is finished here.
The snapshot's membership is the configuration LMDB recorded at the log base.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dref.actors.consensus.durable_state import DurableState, Snapshot
from dref.actors.consensus.membership import Membership
from dref.errors import StorageError
from dref.storage.entry_mapping import from_stored
from dref.storage.raft_log import INDEX_DIR, RaftLog, StoredEntry
from dref.storage.snapshot_files import SavedSnapshot, SnapshotFiles
from dref.storage.voter_state import VoterStateFile

logger = logging.getLogger("dref.raft")


@dataclass
class RecoveredNode:
    """The open stores and what the core and the state machine start from."""

    log: RaftLog
    voter_state: VoterStateFile
    snapshots: SnapshotFiles
    durable: DurableState
    commit_index: int

    @property
    def base_index(self) -> int:
        """Index covered by the snapshot (0 without one)."""
        return self.durable.snapshot.index if self.durable.snapshot else 0

    @property
    def base_term(self) -> int:
        """Term of the snapshot's last entry (0 without one)."""
        return self.durable.snapshot.term if self.durable.snapshot else 0

    @property
    def last_index(self) -> int:
        """Index of the last durable entry."""
        entries = self.durable.entries
        return entries[-1].index if entries else self.base_index


def recover(
    directory: Path,
    voters: frozenset[str],
    *,
    upstream_files: bool,
    addresses: Mapping[str, str] | None = None,
) -> RecoveredNode:
    """Open and reconcile the stores in `directory` (see the module doc); `voters` and
    their `addresses` are the configured membership, used when none was recorded."""
    voter_state = VoterStateFile(directory, checksums=True)
    hard = voter_state.load()
    snapshots = SnapshotFiles(directory, upstream=upstream_files, checksums=True)
    saved = snapshots.load()
    log = RaftLog(directory, validate_commands=upstream_files)
    try:
        opened = log.open()
        entries = opened.entries
        base_index, base_term = opened.snapshot_index, opened.snapshot_term
        if saved is None and base_index > 0:
            raise StorageError(str(directory), 0, f"log starts after {base_index} but no snapshot")
        if saved is not None and saved.index < base_index:
            raise StorageError(
                str(directory),
                0,
                f"snapshot at {saved.index} is older than the log base {base_index}",
            )
        if saved is not None and saved.index > base_index:
            entries, base_term = _finish_compaction(log, saved, entries, base_index)
            base_index = saved.index
        membership = _base_membership(log, voters, addresses or {}, directory)
    except Exception:
        log.close()
        raise
    snapshot = None
    if saved is not None:
        snapshot = Snapshot(
            base_index,
            base_term,
            saved.data,
            membership.voters,
            membership.learners,
            membership.addresses,
        )
    durable = DurableState(
        term=hard.term,
        voted_for=hard.voted_for,
        snapshot=snapshot,
        entries=tuple(from_stored(e) for e in entries),
    )
    commit = max(opened.commit_index, base_index)
    return RecoveredNode(log, voter_state, snapshots, durable, commit)


def _base_membership(
    log: RaftLog, voters: frozenset[str], addresses: Mapping[str, str], directory: Path
) -> Membership:
    """The configuration at the snapshot base: the one recorded at compaction, else (a data
    directory from before configurations were recorded) the configured voters."""
    if log.snapshot_config is None:
        return Membership.of(voters, (), addresses)
    try:
        return Membership.decode(log.snapshot_config)
    except ValueError as exc:
        where = str(directory / INDEX_DIR)
        raise StorageError(where, 0, f"snapshot configuration: {exc}") from None


def _finish_compaction(
    log: RaftLog, saved: SavedSnapshot, entries: list[StoredEntry], base_index: int
) -> tuple[list[StoredEntry], int]:
    """Compact the log behind a snapshot saved just before a crash; returns (entries, term)."""
    held = {e.index: e.term for e in entries}
    term = saved.term if saved.term is not None else held.get(saved.index)
    if term is None:
        logger.warning("snapshot at %d has no known term; assuming 0", saved.index)
        term = 0
    if held.get(saved.index) != term:
        log.truncate_from(base_index + 1)  # the log does not continue this snapshot
        entries = []
    log.compact_through(saved.index, term)
    return [e for e in entries if e.index > saved.index], term
