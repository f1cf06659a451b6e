"""The durable Raft log of a native-mode node: `command-log` plus an LMDB index beside it.

Upstream's `command-log` holds (seq, command) records and nothing else, so it stays
byte-identical while what native Raft also needs lives in LMDB (`raft-index/`): the term
and kind of every entry, the payload of entries that are not commands (configuration
changes), and the snapshot's base index, term and configuration. No-op and configuration
entries appear in `command-log` as empty StateCommands, which upstream applies as no-ops.

The configuration at the base survives compaction: `compact_through` keeps the newest
CONFIG payload it drops (or one staged for an installed snapshot) in LMDB meta, so a node
whose CONFIG entries were compacted restarts with the right membership.

Write order and recovery: an append writes and fsyncs `command-log` in a helper thread
while it commits the LMDB transaction (synced) in the caller's, so the fsyncs overlap
(os.fsync releases the GIL); it returns once both are durable. A truncation updates LMDB
first, then `command-log`; a compaction moves the snapshot base in LMDB first, then
truncates `command-log`. Nothing is acknowledged before both stores are durable, so on
`open()` any entry present in only one store was never acknowledged: it is dropped and
reported, and both stores agree again.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lmdb

from dref.errors import StorageError
from dref.storage.command_log import CommandLog, LogRecord, TornTail
from dref.storage.durable_file import ensure_directory

INDEX_DIR = "raft-index"
_ENTRY = struct.Struct(">QB")  # term, kind; then the payload of non-command entries
_U64 = struct.Struct(">Q")
_SNAPSHOT_INDEX = b"snapshot_index"
_SNAPSHOT_TERM = b"snapshot_term"
_SNAPSHOT_CONFIG = b"snapshot_config"
_STAGED_CONFIG = b"staged_config"  # u64 index, then the configuration of a snapshot to install

logger = logging.getLogger("dref.storage")


class EntryKind(enum.IntEnum):
    """What a log entry carries."""

    COMMAND = 0  # a state-machine command, stored in command-log
    NOOP = 1  # appended by a new leader to commit entries of earlier terms
    CONFIG = 2  # a cluster configuration, stored in LMDB only


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One durable log entry."""

    index: int
    term: int
    kind: EntryKind
    data: bytes


@dataclass(frozen=True)
class RecoveredLog:
    """What `RaftLog.open()` found: the snapshot base (and its configuration payload, None
    when never recorded), the entries after it, the durable commit index, and what recovery
    had to drop."""

    snapshot_index: int
    snapshot_term: int
    snapshot_config: bytes | None
    entries: list[StoredEntry]
    commit_index: int
    torn_tail: TornTail | None
    dropped_unacknowledged: int

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index


def _u64(value: int) -> bytes:
    return _U64.pack(value)


class RaftLog:
    """The durable log, used by the storage writer only (one thread).

    `validate_commands` keeps upstream's rule that every command-log record is a
    StateCommand; a node replicating its own state machine turns it off.
    """

    def __init__(
        self, directory: Path, *, validate_commands: bool = True, map_size: int = 1 << 30
    ) -> None:
        ensure_directory(directory)
        self.directory = directory
        self._commands = CommandLog(directory, validate_commands=validate_commands)
        self._env = lmdb.open(
            str(directory / INDEX_DIR), map_size=map_size, max_dbs=2, sync=True, metasync=True
        )
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="dref-log-sync")
        """Writes and fsyncs command-log while LMDB commits (see the module doc)."""
        self._entries_db = self._env.open_db(b"entries")
        self._meta_db = self._env.open_db(b"meta")
        self._last_index = 0
        self._snapshot_index = 0
        self.snapshot_config: bytes | None = None
        """The CONFIG payload in force at the snapshot base (None when never recorded)."""

    # -- recovery -------------------------------------------------------------------------

    def open(self) -> RecoveredLog:
        """Load both stores, reconcile them after a crash, and return the surviving log."""
        loaded = self._commands.open()
        with self._env.begin() as txn:
            snapshot_index = self._meta_u64(txn, _SNAPSHOT_INDEX)
            snapshot_term = self._meta_u64(txn, _SNAPSHOT_TERM)
            config = txn.get(_SNAPSHOT_CONFIG, db=self._meta_db)
            self.snapshot_config = bytes(config) if config is not None else None
            index_rows = {
                _U64.unpack(key)[0]: bytes(value) for key, value in txn.cursor(db=self._entries_db)
            }
        entries: list[StoredEntry] = []
        index = snapshot_index + 1
        while index in index_rows and index in loaded.records:
            entries.append(self._entry(index, index_rows[index], loaded.records[index]))
            index += 1
        last_good = index - 1
        stale_rows = [i for i in index_rows if i > last_good or i <= snapshot_index]
        stale_records = [s for s in loaded.records if s > last_good]
        if stale_rows:
            with self._env.begin(write=True) as txn:
                for row in stale_rows:
                    txn.delete(_u64(row), db=self._entries_db)
        if stale_records:
            self._commands.truncate_from(last_good + 1)
        if any(s <= snapshot_index for s in loaded.records):
            self._commands.truncate_through(snapshot_index)
        dropped = len({i for i in index_rows if i > last_good} | set(stale_records))
        if dropped:
            logger.warning(
                "%s: dropped %d unacknowledged entries after index %d (crash between stores)",
                self.directory,
                dropped,
                last_good,
            )
        self._last_index = last_good
        self._snapshot_index = snapshot_index
        commit = max(snapshot_index, min(self._commands.commit_seq, last_good))
        return RecoveredLog(
            snapshot_index=snapshot_index,
            snapshot_term=snapshot_term,
            snapshot_config=self.snapshot_config,
            entries=entries,
            commit_index=commit,
            torn_tail=loaded.torn_tail,
            dropped_unacknowledged=dropped,
        )

    # -- writes ---------------------------------------------------------------------------

    def append(self, entries: Sequence[StoredEntry]) -> None:
        """Durably append entries that directly follow the last one (group commit: one
        command-log write and fsync, one synced LMDB transaction)."""
        if not entries:
            return
        expected = self._last_index + 1
        for offset, entry in enumerate(entries):
            if entry.index != expected + offset:
                raise StorageError(
                    str(self.directory),
                    entry.index,
                    f"append of index {entry.index} does not follow {expected + offset - 1}",
                )
        records = [
            LogRecord(e.index, e.data if e.kind is EntryKind.COMMAND else b"") for e in entries
        ]
        commands = self._syncer.submit(self._commands.append_many, records)
        try:
            with self._env.begin(write=True) as txn:
                for entry in entries:
                    payload = b"" if entry.kind is EntryKind.COMMAND else entry.data
                    txn.put(
                        _u64(entry.index),
                        _ENTRY.pack(entry.term, entry.kind) + payload,
                        db=self._entries_db,
                        append=True,
                    )
        finally:
            commands.result()  # both stores durable (or the first failure raised) on return
        self._last_index = entries[-1].index

    def truncate_from(self, index: int) -> None:
        """Durably drop the entries at `index` and after (a conflicting, uncommitted tail)."""
        if index > self._last_index:
            return
        with self._env.begin(write=True) as txn:
            for row in range(max(index, self._snapshot_index + 1), self._last_index + 1):
                txn.delete(_u64(row), db=self._entries_db)
        self._commands.truncate_from(index)
        self._last_index = max(index - 1, self._snapshot_index)

    def stage_snapshot_config(self, index: int, config: bytes) -> None:
        """Durably note the configuration of a snapshot at `index` about to be installed;
        the `compact_through(index, ...)` that follows (or recovery's) records it."""
        with self._env.begin(write=True) as txn:
            txn.put(_STAGED_CONFIG, _u64(index) + config, db=self._meta_db)

    def compact_through(self, index: int, term: int) -> None:
        """Drop entries up to `index`, now covered by a durable snapshot taken at (index, term).

        The caller must have saved that snapshot first. Entries after `index` are kept; a
        follower whose log conflicts with an installed snapshot calls `truncate_from` first.
        The base configuration becomes the one staged for `index`, else the newest CONFIG
        entry dropped, else stays as it was.
        """
        if index <= self._snapshot_index:
            return
        config = self.snapshot_config
        with self._env.begin(write=True) as txn:
            for row in range(self._snapshot_index + 1, min(index, self._last_index) + 1):
                value = txn.pop(_u64(row), db=self._entries_db)
                if value is not None and value[_ENTRY.size - 1] == EntryKind.CONFIG:
                    config = bytes(value[_ENTRY.size :])
            staged = txn.pop(_STAGED_CONFIG, db=self._meta_db)
            if staged is not None and _U64.unpack_from(staged)[0] == index:
                config = bytes(staged[_U64.size :])
            if config is not None:
                txn.put(_SNAPSHOT_CONFIG, config, db=self._meta_db)
            txn.put(_SNAPSHOT_INDEX, _u64(index), db=self._meta_db)
            txn.put(_SNAPSHOT_TERM, _u64(term), db=self._meta_db)
        self.snapshot_config = config
        self._commands.truncate_through(index)
        self._last_index = max(self._last_index, index)
        self._snapshot_index = index

    def set_commit_index(self, index: int) -> None:
        """Durably record the commit index in command-log's header (upstream's recovery uses it)."""
        if index > self._commands.commit_seq:
            self._commands.set_commit_seq(index)

    def close(self) -> None:
        """Close both stores. Idempotent."""
        self._syncer.shutdown(wait=True)
        self._commands.close()
        self._env.close()

    # -- helpers --------------------------------------------------------------------------

    def _meta_u64(self, txn: lmdb.Transaction, key: bytes) -> int:
        raw = txn.get(key, db=self._meta_db)
        return _U64.unpack(raw)[0] if raw is not None else 0

    def _entry(self, index: int, row: bytes, command: bytes) -> StoredEntry:
        if len(row) < _ENTRY.size:
            raise StorageError(str(self.directory / INDEX_DIR), index, "index row is truncated")
        term, kind_value = _ENTRY.unpack_from(row)
        try:
            kind = EntryKind(kind_value)
        except ValueError:
            raise StorageError(
                str(self.directory / INDEX_DIR), index, f"unknown entry kind {kind_value}"
            ) from None
        data = command if kind is EntryKind.COMMAND else row[_ENTRY.size :]
        return StoredEntry(index=index, term=term, kind=kind, data=data)
