"""The storage writer: the only actor that touches the log, voter-state and snapshot files.

It group-commits: storage batches that queue up while an fsync runs are written together
by the next flush (one command-log write + fsync, one LMDB txn), then the consensus actor
learns in one `Durable` message that they are safe. Hard state is saved in the same flush,
before the ack, so no reply that depends on a term or vote leaves before it is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from dref.actors.consensus.effects import (
    AppendToLog,
    PersistHardState,
    RestoreSnapshot,
    TruncateLog,
)
from dref.actors.consensus.membership import Membership
from dref.actors.node_messages import (
    CommitReached,
    Connect,
    Durable,
    Flush,
    FsyncStats,
    SaveSnapshot,
    SnapshotSaved,
    StorageBatch,
)
from dref.actors.safe_tell import safe_tell
from dref.actors.simple_inbox import SimpleInboxActor
from dref.storage.entry_mapping import to_stored
from dref.storage.raft_log import RaftLog, StoredEntry
from dref.storage.snapshot_files import SnapshotFiles
from dref.storage.voter_state import VoterState, VoterStateFile

logger = logging.getLogger("dref.raft")

COMMIT_HEADER_PERIOD_S = 0.2
"""How often at most the commit index is rewritten in command-log's header (one fsync)."""


class StorageWriterActor(SimpleInboxActor):
    """Owns RaftLog, VoterStateFile and SnapshotFiles; see the module doc."""

    def __init__(
        self,
        log: RaftLog,
        voter_state: VoterStateFile,
        snapshots: SnapshotFiles,
        *,
        base_index: int,
        last_index: int,
        node_id: str,
        observe_fsync: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        self._observe_fsync = observe_fsync
        self._log = log
        self._voter_state = voter_state
        self._snapshots = snapshots
        self._base_index = base_index
        self._last_index = last_index
        self._queued: list[StorageBatch | SaveSnapshot] = []
        self._flush_scheduled = False
        self._commit_target = 0
        self._commit_written_at = 0.0
        self._latencies_ms: deque[float] = deque(maxlen=2000)
        self._flushes = 0
        self._tail: StoredEntry | None = None
        """The last entry appended by the flush in progress (what `Durable` reports)."""
        self._consensus: pykka.ActorRef[Any] | None = None
        self._thread_name = f"dref-storage-{node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_stop(self) -> None:
        self._consensus = None  # it is stopping too: write what is queued, ack nobody
        self._flush()
        self._write_commit_index(force=True)
        self._log.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StorageBatch | SaveSnapshot):
            self._queued.append(message)
            self._schedule_flush()
        elif isinstance(message, Flush):
            self._flush_scheduled = False
            self._flush()
        elif isinstance(message, CommitReached):
            self._commit_target = max(self._commit_target, message.index)
            self._schedule_flush()
        elif isinstance(message, FsyncStats):
            return self._stats()
        elif isinstance(message, Connect):
            self._consensus = message.consensus
        return None

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(Flush())

    def _flush(self) -> None:
        """Write everything queued, fsync, then ack once (see the module doc)."""
        queued, self._queued = self._queued, []
        if not queued:
            self._write_commit_index(force=False)
            return
        started = time.monotonic()
        hard_state = [
            e
            for b in queued
            if isinstance(b, StorageBatch)
            for e in b.effects
            if isinstance(e, PersistHardState)
        ]
        if hard_state:
            last = hard_state[-1]
            self._voter_state.save(VoterState(last.term, last.voted_for))
        appends: list[StoredEntry] = []
        self._tail = None
        for item in queued:
            if isinstance(item, SaveSnapshot):
                self._append(appends)
                self._save_snapshot(item)
                continue
            for effect in item.effects:
                if isinstance(effect, AppendToLog):
                    appends.extend(to_stored(e) for e in effect.entries)
                elif isinstance(effect, TruncateLog):
                    self._append(appends)
                    self._tail = None
                    self._log.truncate_from(effect.from_index)
                    self._last_index = max(
                        self._base_index, min(self._last_index, effect.from_index - 1)
                    )
                elif isinstance(effect, RestoreSnapshot):
                    self._append(appends)
                    self._tail = None
                    self._restore(effect)
        self._append(appends)
        tail = self._tail
        self._write_commit_index(force=False)
        elapsed = time.monotonic() - started
        self._latencies_ms.append(elapsed * 1000)
        if self._observe_fsync is not None:
            self._observe_fsync(elapsed)
        self._flushes += 1
        for item in queued:
            if isinstance(item, StorageBatch):
                for slot, reply in item.replies:
                    if not slot.done():
                        slot.set_result(reply)
        consensus = self._consensus
        if consensus is None:
            return
        last_seq = max((b.seq for b in queued if isinstance(b, StorageBatch)), default=None)
        if last_seq is not None:
            if tail is not None:
                safe_tell(consensus, Durable(last_seq, tail.index, tail.term))
            else:
                safe_tell(consensus, Durable(last_seq))
        for item in queued:
            if isinstance(item, SaveSnapshot):
                safe_tell(consensus, SnapshotSaved(item.index, item.term, item.data))

    def _append(self, entries: list[StoredEntry]) -> None:
        """Group-commit the pending appends (and clear the list)."""
        if entries:
            self._log.append(entries)
            self._tail = entries[-1]
            self._last_index = self._tail.index
            entries.clear()

    def _restore(self, effect: RestoreSnapshot) -> None:
        """A leader's snapshot replaces the whole log: stage its configuration, save it,
        then drop the log (recovery finishes the compaction after a crash in between)."""
        membership = Membership.of(effect.voters, effect.learners, effect.addresses)
        self._log.stage_snapshot_config(effect.index, membership.encode())
        self._snapshots.save(effect.index, effect.term, effect.data)
        self._log.truncate_from(self._base_index + 1)
        self._log.compact_through(effect.index, effect.term)
        self._base_index = self._last_index = effect.index

    def _save_snapshot(self, item: SaveSnapshot) -> None:
        """Save our own snapshot and compact behind it, unless a newer base already exists."""
        if item.index <= self._base_index:
            return
        self._snapshots.save(item.index, item.term, item.data)
        self._log.compact_through(item.index, item.term)
        self._base_index = item.index
        self._last_index = max(self._last_index, item.index)

    def _write_commit_index(self, *, force: bool) -> None:
        target = min(self._commit_target, self._last_index)
        now = time.monotonic()
        if target <= 0 or (not force and now - self._commit_written_at < COMMIT_HEADER_PERIOD_S):
            return
        self._log.set_commit_index(target)
        self._commit_written_at = now

    def _stats(self) -> tuple[float, float, int]:
        latencies = sorted(self._latencies_ms)
        if not latencies:
            return 0.0, 0.0, 0
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return p50, p99, self._flushes
