"""The durable Raft log of a native-mode node: `command-log` plus an LMDB index beside it.

Upstream's `command-log` holds (seq, command) records and nothing else, so it stays
byte-identical while what native Raft also needs lives in LMDB (`raft-index/`). No-op and
configuration entries appear in `command-log` as empty StateCommands, which upstream
applies as no-ops.

LMDB holds a row only where the log changes character: the first entry of each term run
(terms never decrease along a log), and every entry that is not a command (its kind, and
the payload of a configuration). A command without a row has the term of the entry
before it (the snapshot's term right after the base). So the common append, commands
in the term of the entry before them, is one command-log write and one fdatasync.

The configuration at the base survives compaction: `compact_through` keeps the newest
CONFIG payload it drops (or one staged for an installed snapshot) in LMDB meta, so a node
whose CONFIG entries were compacted restarts with the right membership.

Write order and recovery. An append that needs rows commits them (synced) before it
writes command-log; a truncation cuts command-log before it deletes rows; a compaction
moves the snapshot base in LMDB before it cuts command-log. So after a crash every
command-log entry has its rows, and a row past command-log's end belongs to an entry
never written: `open()` drops such rows (and reports them), and both stores agree again.

Integrity. command-log is checked against `command-log.sums` (see `command_log`). LMDB keeps
no checksums of its own and trusts its page numbers, so it is guarded from outside. Each
write transaction counts one more generation inside the index (with the number of entry
rows), then records that count and the CRC32 of `data.mdb` in `raft-index.sums`
(`checksums.GenerationFile`). Before LMDB maps the file its CRC32 must be a recorded one;
when it is not (a crash before the record, or damage), a copy is read in a child process
first (`index_probe`), as a damaged page can kill the reader with SIGBUS. Every value
stored ends with the CRC32 of its key and itself, checked when the log opens, and the row
count must match. An index behind its recorded generation (LMDB opened an older
transaction after a flipped bit in its meta page) is reported, not used; so is damage
LMDB notices, and a missing `raft-index/` beside a command-log this code wrote (there is a
`command-log.sums`): the terms it held are nowhere else, so it cannot be rebuilt. An index
from before these checks gets them when it opens. Without `command-log.sums` the
directory holds upstream's files, and the index is rebuilt from command-log: every record
a command in the snapshot's term, as upstream keeps no terms.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lmdb

from dref.errors import StorageError
from dref.storage.checksums import GenerationFile, crc, sums_path
from dref.storage.command_log import CommandLog, LogRecord, TornTail
from dref.storage.durable_file import ensure_directory
from dref.storage.index_probe import probe_index

INDEX_DIR = "raft-index"
_ENTRY = struct.Struct(">QB")  # term, kind; then the payload of non-command entries
_U64 = struct.Struct(">Q")
_SNAPSHOT_INDEX = b"snapshot_index"
_SNAPSHOT_TERM = b"snapshot_term"
_SNAPSHOT_CONFIG = b"snapshot_config"
_STAGED_CONFIG = b"staged_config"  # u64 index, then the configuration of a snapshot to install
_GENERATION = b"generation"  # u64 write transactions so far, u64 entry rows
_GENERATION_VALUE = struct.Struct(">QQ")
_SEAL = struct.Struct(">I")  # after every stored value: CRC32 of its key and the value

_INDEX_FILE = "data.mdb"
_INDEX_ADVICE = (
    "restore raft-index/ from a backup, or move the data directory away and start the node"
    " empty so that it copies the log from the leader"
)
_DAMAGE = (
    lmdb.InvalidError,
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.VersionMismatchError,
    lmdb.BadTxnError,  # what a transaction that met a damaged page says next
    lmdb.BadValsizeError,
    lmdb.NotFoundError,  # a table name is gone
)
"""LMDB errors that mean the index's files are damaged."""

logger = logging.getLogger("dref.storage")


class StoredKind(enum.IntEnum):
    """What a log entry carries."""

    COMMAND = 0  # a state-machine command, stored in command-log
    NOOP = 1  # appended by a new leader to commit entries of earlier terms
    CONFIG = 2  # a cluster configuration, stored in LMDB only


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One durable log entry."""

    index: int
    term: int
    kind: StoredKind
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


def _sealed(key: bytes, body: bytes) -> bytes:
    """`body` followed by the CRC32 of `key` and `body`, so a flipped bit in either is seen."""
    return body + _SEAL.pack(crc(key + body))


def _meta_u64(meta: dict[bytes, bytes], key: bytes) -> int:
    raw = meta.get(key)
    return _U64.unpack(raw)[0] if raw is not None else 0


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
        self._index_path = str(directory / INDEX_DIR)
        self._commands = CommandLog(directory, validate_commands=validate_commands, checksums=True)
        self._generations = GenerationFile(directory / INDEX_DIR)
        self._recorded = self._generations.load()
        """(generation, data.mdb CRC32) pairs in `raft-index.sums`, newest first."""
        self._unrecorded_image = False
        """data.mdb is not an image recorded in `raft-index.sums` (but reads back whole)."""
        formed = self._recorded is not None
        index_file = directory / INDEX_DIR / _INDEX_FILE
        if self._recorded is not None and index_file.exists():
            self._check_image(index_file, self._recorded)
        elif not index_file.exists():
            if sums_path(self._commands.path).exists():
                raise StorageError(
                    self._index_path,
                    0,
                    f"missing, and the entry terms it held are nowhere else: {_INDEX_ADVICE}",
                )
            if self._commands.path.exists():
                logger.warning("%s: missing; rebuilding it from command-log", self._index_path)
        try:
            self._env = lmdb.open(
                self._index_path, map_size=map_size, max_dbs=2, sync=True, metasync=True
            )
        except lmdb.Error as exc:
            raise self._damaged(exc) from None
        try:  # an index with a generation file has both tables: a lost name is damage
            self._entries_db = self._env.open_db(b"entries", create=not formed)
            self._meta_db = self._env.open_db(b"meta", create=not formed)
        except lmdb.Error as exc:
            self._env.close()
            raise self._damaged(exc) from None
        self._last_index = 0
        self._generation = 0
        self._rows = 0
        """Entry rows in the index, counted in the `generation` meta value."""
        self._snapshot_index = 0
        self._snapshot_term = 0
        self._runs: list[tuple[int, int]] = []
        """(first index, term) of each term run after the snapshot base, oldest first."""
        self.snapshot_config: bytes | None = None
        """The CONFIG payload in force at the snapshot base (None when never recorded)."""

    # -- recovery -------------------------------------------------------------------------

    def open(self) -> RecoveredLog:
        """Load both stores, reconcile them after a crash, and return the surviving log."""
        loaded = self._commands.open()
        self._check_generation()
        with self._txn() as txn:
            meta = {
                bytes(key): self._unseal(key, value, f"meta value {bytes(key)!r}")
                for key, value in txn.cursor(db=self._meta_db)
            }
            rows = {
                self._row_index(key): self._unseal(key, value, f"row {bytes(key).hex()}")
                for key, value in txn.cursor(db=self._entries_db)
            }
        if len(rows) != self._rows:
            raise StorageError(
                self._index_path,
                0,
                f"holds {len(rows)} entry rows, but its generation counted {self._rows}:"
                f" {_INDEX_ADVICE}",
            )
        snapshot_index = _meta_u64(meta, _SNAPSHOT_INDEX)
        snapshot_term = _meta_u64(meta, _SNAPSHOT_TERM)
        self.snapshot_config = meta.get(_SNAPSHOT_CONFIG)
        last_good = snapshot_index
        while last_good + 1 in loaded.records:
            last_good += 1
        stale_rows = [i for i in rows if i > last_good or i <= snapshot_index]
        stale_records = [s for s in loaded.records if s > last_good]
        if stale_rows:
            with self._write() as txn:
                for row in stale_rows:
                    txn.delete(_u64(row), db=self._entries_db)
                self._rows -= len(stale_rows)
        if stale_records:
            self._commands.truncate_from(last_good + 1)
        if any(s <= snapshot_index for s in loaded.records):
            self._commands.truncate_through(snapshot_index)
        dropped = len([i for i in stale_rows if i > last_good]) + len(stale_records)
        if dropped:
            logger.warning(
                "%s: dropped %d unacknowledged entries after index %d (crash between stores)",
                self.directory,
                dropped,
                last_good,
            )
        self._snapshot_index, self._snapshot_term = snapshot_index, snapshot_term
        entries = self._rebuild(snapshot_index, last_good, rows, loaded.records)
        self._last_index = last_good
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

    def _rebuild(
        self, base: int, last: int, rows: dict[int, bytes], commands: dict[int, bytes]
    ) -> list[StoredEntry]:
        """The entries base+1..last from command-log and their LMDB rows; notes term runs."""
        entries: list[StoredEntry] = []
        self._runs = []
        term = self._snapshot_term
        for index in range(base + 1, last + 1):
            row = rows.get(index)
            if row is None:
                entries.append(StoredEntry(index, term, StoredKind.COMMAND, commands[index]))
                continue
            entry = self._entry(index, row, commands[index])
            if entry.term < term:
                raise StorageError(
                    self._index_path,
                    index,
                    f"term {entry.term} follows term {term}: terms never decrease in a log",
                )
            if entry.term != term:
                self._runs.append((index, entry.term))
                term = entry.term
            entries.append(entry)
        return entries

    # -- writes ---------------------------------------------------------------------------

    def append(self, entries: Sequence[StoredEntry]) -> None:
        """Durably append entries that directly follow the last one (group commit: one
        command-log write and fdatasync, after one synced LMDB transaction when a new term
        starts or an entry is not a command; see the module doc)."""
        if not entries:
            return
        expected = self._last_index + 1
        term = self._last_term
        rows: list[StoredEntry] = []
        runs: list[tuple[int, int]] = []
        for offset, entry in enumerate(entries):
            if entry.index != expected + offset:
                raise StorageError(
                    str(self.directory),
                    entry.index,
                    f"append of index {entry.index} does not follow {expected + offset - 1}",
                )
            if entry.term < term:
                raise StorageError(
                    str(self.directory),
                    entry.index,
                    f"append of term {entry.term} after term {term}: terms never decrease",
                )
            if entry.term != term:
                runs.append((entry.index, entry.term))
                term = entry.term
                rows.append(entry)
            elif entry.kind is not StoredKind.COMMAND:
                rows.append(entry)
        if rows:
            with self._write() as txn:
                for entry in rows:
                    payload = b"" if entry.kind is StoredKind.COMMAND else entry.data
                    key = _u64(entry.index)
                    value = _sealed(key, _ENTRY.pack(entry.term, entry.kind) + payload)
                    txn.put(key, value, db=self._entries_db, append=True)
                self._rows += len(rows)
        self._commands.append_many(
            [LogRecord(e.index, e.data if e.kind is StoredKind.COMMAND else b"") for e in entries]
        )
        self._runs.extend(runs)
        self._last_index = entries[-1].index

    def truncate_from(self, index: int) -> None:
        """Durably drop the entries at `index` and after (a conflicting, uncommitted tail)."""
        if index > self._last_index:
            return
        self._commands.truncate_from(index)
        first = max(index, self._snapshot_index + 1)
        with self._write() as txn:
            cursor = txn.cursor(db=self._entries_db)
            if cursor.set_range(_u64(first)):
                while cursor.delete():
                    self._rows -= 1
        self._runs = [run for run in self._runs if run[0] < index]
        self._last_index = max(index - 1, self._snapshot_index)

    def stage_snapshot_config(self, index: int, config: bytes) -> None:
        """Durably note the configuration of a snapshot at `index` about to be installed;
        the `compact_through(index, ...)` that follows (or recovery's) records it."""
        with self._write() as txn:
            txn.put(_STAGED_CONFIG, _sealed(_STAGED_CONFIG, _u64(index) + config), db=self._meta_db)

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
        with self._write() as txn:
            cursor = txn.cursor(db=self._entries_db)
            while cursor.first() and _U64.unpack(cursor.key())[0] <= index:
                key = cursor.key()
                value = self._unseal(key, cursor.value(), f"row {bytes(key).hex()}")
                if value[_ENTRY.size - 1] == StoredKind.CONFIG:
                    config = value[_ENTRY.size :]
                cursor.delete()
                self._rows -= 1
            staged = txn.pop(_STAGED_CONFIG, db=self._meta_db)
            if staged is not None:
                staged = self._unseal(_STAGED_CONFIG, staged, "meta value b'staged_config'")
                if _U64.unpack_from(staged)[0] == index:
                    config = staged[_U64.size :]
            if config is not None:
                txn.put(_SNAPSHOT_CONFIG, _sealed(_SNAPSHOT_CONFIG, config), db=self._meta_db)
            txn.put(_SNAPSHOT_INDEX, _sealed(_SNAPSHOT_INDEX, _u64(index)), db=self._meta_db)
            txn.put(_SNAPSHOT_TERM, _sealed(_SNAPSHOT_TERM, _u64(term)), db=self._meta_db)
        self.snapshot_config = config
        self._commands.truncate_through(index)
        self._last_index = max(self._last_index, index)
        self._snapshot_index, self._snapshot_term = index, term
        self._runs = [run for run in self._runs if run[0] > index]

    def set_commit_index(self, index: int) -> None:
        """Durably record the commit index in command-log's header (upstream's recovery uses it)."""
        if index > self._commands.commit_seq:
            self._commands.set_commit_seq(index)

    def close(self) -> None:
        """Close both stores. Idempotent."""
        self._commands.close()
        self._generations.close()
        self._env.close()

    # -- helpers --------------------------------------------------------------------------

    def _damaged(self, exc: lmdb.Error) -> StorageError:
        """The error that reports the index damaged, and what to do about it."""
        return StorageError(self._index_path, 0, f"damaged ({exc}): {_INDEX_ADVICE}")

    def _check_generation(self) -> None:
        """Compare the index's generation with `raft-index.sums` (see the module doc); seal the
        rows of an index from before row checksums."""
        with self._txn() as txn:
            raw = txn.get(_GENERATION, db=self._meta_db)
            held = self._unseal(_GENERATION, raw, "generation") if raw is not None else None
        recorded = self._recorded[0][0] if self._recorded is not None else None
        name = self._generations.path.name
        if held is None:
            if recorded is not None:
                raise StorageError(
                    self._index_path,
                    0,
                    f"has no generation, but {name} records {recorded}: the index was replaced"
                    f" or damaged: {_INDEX_ADVICE}",
                )
            self._seal_every_value()
            self._generations.create(self._generation, self._image_crc())
            return
        self._generation, self._rows = _GENERATION_VALUE.unpack(held)
        if recorded is None:
            logger.warning("%s: missing; recording generation %d", name, self._generation)
            self._generations.create(self._generation, self._image_crc())
        elif self._generation == recorded + 1 or (
            self._generation == recorded and self._unrecorded_image
        ):  # a crash between the commit and its record, or damage in unused pages
            self._generations.record(self._generation, self._image_crc())
        elif self._generation != recorded:
            raise StorageError(
                self._index_path,
                0,
                f"holds generation {self._generation}, but {name} records {recorded}: the index"
                f" was rolled back or replaced: {_INDEX_ADVICE}",
            )

    def _seal_every_value(self) -> None:
        """Give every value of an index from before row checksums its CRC32, and count the
        generation from 1 (one transaction)."""
        with self._txn(write=True) as txn:
            for db in (self._entries_db, self._meta_db):
                values = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                for key, value in values:
                    txn.put(key, _sealed(key, value), db=db)
            self._rows = txn.stat(self._entries_db)["entries"]
            self._generation = 1
            self._put_generation(txn)
        if self._rows:
            logger.info("%s: added checksums to %d rows", self._index_path, self._rows)

    @contextlib.contextmanager
    def _write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction that counts one more generation (with the rows it leaves),
        recorded in `raft-index.sums` once it has committed."""
        rows = self._rows
        with self._txn(write=True) as txn:
            try:
                yield txn
                self._generation += 1
                self._put_generation(txn)
            except BaseException:
                self._rows = rows
                raise
        self._generations.record(self._generation, self._image_crc())

    def _image_crc(self) -> int:
        return crc((Path(self._index_path) / _INDEX_FILE).read_bytes())

    def _check_image(self, index_file: Path, recorded: list[tuple[int, int]]) -> None:
        """Before LMDB maps `index_file`: it must be an image `raft-index.sums` recorded, or,
        when not (a crash before the record, or damage), a copy must read back whole in a
        child process (`index_probe`), as LMDB may crash the process on a damaged page."""
        if crc(index_file.read_bytes()) in {image_crc for _, image_crc in recorded}:
            return
        failure = probe_index(index_file.parent)
        if failure is not None:
            raise StorageError(self._index_path, 0, f"damaged ({failure}): {_INDEX_ADVICE}")
        logger.warning("%s: not the file last recorded, but it reads back whole", index_file)
        self._unrecorded_image = True

    def _put_generation(self, txn: lmdb.Transaction) -> None:
        value = _GENERATION_VALUE.pack(self._generation, self._rows)
        txn.put(_GENERATION, _sealed(_GENERATION, value), db=self._meta_db)

    def _row_index(self, key: bytes | memoryview) -> int:
        """The log index an entry row's key names; StorageError for a key of another size."""
        if len(key) != _U64.size:
            raise StorageError(self._index_path, 0, f"row key {bytes(key).hex()} is not 8 bytes")
        return int(_U64.unpack(key)[0])

    def _unseal(self, key: bytes | memoryview, value: bytes | memoryview, what: str) -> bytes:
        """`value` without its CRC32, after checking it; StorageError when they differ."""
        body = bytes(value[: -_SEAL.size])
        sealed = len(value) >= _SEAL.size and _SEAL.unpack_from(value, len(body))[0]
        if sealed is False or sealed != crc(bytes(key) + body):
            raise StorageError(self._index_path, 0, f"{what}: checksum mismatch: {_INDEX_ADVICE}")
        return body

    @contextlib.contextmanager
    def _txn(self, *, write: bool = False) -> Iterator[lmdb.Transaction]:
        """An LMDB transaction in which damage LMDB notices becomes a StorageError."""
        try:
            with self._env.begin(write=write) as txn:
                yield txn
        except _DAMAGE as exc:
            raise self._damaged(exc) from None

    @property
    def _last_term(self) -> int:
        """The term of the last entry (the snapshot's when none follows the base)."""
        return self._runs[-1][1] if self._runs else self._snapshot_term

    def _entry(self, index: int, row: bytes, command: bytes) -> StoredEntry:
        if len(row) < _ENTRY.size:
            raise StorageError(self._index_path, index, "index row is truncated")
        term, kind_value = _ENTRY.unpack_from(row)
        try:
            kind = StoredKind(kind_value)
        except ValueError:
            raise StorageError(
                self._index_path, index, f"unknown entry kind {kind_value}"
            ) from None
        data = command if kind is StoredKind.COMMAND else row[_ENTRY.size :]
        return StoredEntry(index=index, term=term, kind=kind, data=data)
