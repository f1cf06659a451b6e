"""The `command-log` file (DRFL, spec 5.3): the replicated log of StateCommands.

Layout: a 13-byte header (magic `DRFL`, version 1, commit_seq u64 BE), then records back to
back: seq (u64 BE), command length (i32 BE; negative = error), an encoded StateCommand.
Loading has map semantics (a later record with the same seq replaces the earlier one) and,
like the Scala reader, tolerates a premature end of file inside the last record (a torn tail),
which `CommandLog.open` cuts off so that later appends never follow garbage.

Checksums (native mode, `checksums=True`): `command-log.sums` beside the file holds a CRC32
of every record and the commit_seq values the header may hold (format in `checksums`), and
`open()` checks each record that has one, so a flipped bit is a StorageError naming the
offset of the record instead of wrong data. Invariants, for a SIGKILL at any point:

* Append: the records' checksum entries are written first, without a sync, then the records
  and one fdatasync of command-log, as before (the common append stays one write and one
  fdatasync plus one unsynced write of 28 bytes per record). A checksum whose record was
  never written, or was torn, is dropped with it. The page cache keeps unsynced entries
  across a process crash; after a power loss, records whose entries were not yet written
  back have none and are reopened like records from before checksums: accepted and
  checksummed from then on. `set_commit_seq` syncs the entries, which bounds that window.
* set_commit_seq: the new and the current value are written to the side file's two slots
  and synced before the header is overwritten, so the header holds one of them throughout.
* A rewrite (truncation, compaction): first the side file lists the checksums of both the
  old and the new file (records move when a compaction drops a prefix), then command-log is
  replaced, then the side file keeps only the new ones. Whichever command-log a crash leaves
  has a checksum for each of its records.

A record without a checksum (a file written by upstream or an older dref-py) is accepted and
checksummed on open; once it has one, a mismatch is a StorageError.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from google.protobuf.message import DecodeError

from dref.errors import StorageError
from dref.storage.checksums import (
    LogSums,
    LogSumsFile,
    RecordSum,
    by_offset,
    check_record,
    crc,
    record_sums,
)
from dref.storage.durable_file import (
    check_header,
    ensure_directory,
    read_if_exists,
    write_atomically,
)
from dref.wire.proto.state_command_pb2 import StateCommand

FILE_NAME = "command-log"
MAGIC = b"DRFL"
_HEADER = struct.Struct(">4sBQ")
_RECORD = struct.Struct(">Qi")
_COMMIT_OFFSET = 5
_AFTER_ANY_OFFSET = 2**64
"""Sorts after every (seq, offset) pair with the same seq (for bisect)."""

logger = logging.getLogger("dref.storage")


@dataclass(frozen=True)
class LogRecord:
    """One log entry: its sequence number and the encoded StateCommand."""

    seq: int
    command: bytes


@dataclass(frozen=True)
class TornTail:
    """An incomplete last record dropped on load: where it starts, how many bytes, and why."""

    offset: int
    dropped_bytes: int
    reason: str


@dataclass
class LoadedLog:
    """A decoded command log: header commit_seq, records by seq in file order, any torn tail,
    the checksum of every record in file order, and how many had no checksum to check."""

    commit_seq: int
    records: dict[int, bytes] = field(default_factory=dict)
    torn_tail: TornTail | None = None
    sums: list[RecordSum] = field(default_factory=list)
    unverified: int = 0


def _encode_header(commit_seq: int) -> bytes:
    if not 0 <= commit_seq < 2**64:
        raise ValueError(f"commit_seq {commit_seq} does not fit in a u64")
    return _HEADER.pack(MAGIC, 1, commit_seq)


def _is_state_command(command: bytes) -> bool:
    try:
        StateCommand().ParseFromString(command)
    except DecodeError:
        return False
    return True


def encode_log_record(record: LogRecord, *, validate_commands: bool = True) -> bytes:
    """Encode one record; refuse (ValueError) a seq outside u64 or, unless `validate_commands`
    is off, a command that is not a StateCommand (upstream readers could not load the log)."""
    if not 0 <= record.seq < 2**64:
        raise ValueError(f"seq {record.seq} does not fit in a u64")
    if len(record.command) >= 2**31:
        raise ValueError(f"command is {len(record.command)} bytes; the format allows < 2**31")
    if validate_commands and not _is_state_command(record.command):
        raise ValueError(f"command of seq {record.seq} is not an encoded StateCommand")
    return _RECORD.pack(record.seq, len(record.command)) + record.command


def encode_command_log(
    commit_seq: int, records: Iterable[LogRecord], *, validate_commands: bool = True
) -> bytes:
    """Encode a whole DRFL file: header with `commit_seq`, then `records` in the given order."""
    body = b"".join(encode_log_record(r, validate_commands=validate_commands) for r in records)
    return _encode_header(commit_seq) + body


def decode_command_log(
    data: bytes,
    path: str,
    *,
    validate_commands: bool = True,
    sums: Mapping[int, Sequence[RecordSum]] | None = None,
) -> LoadedLog:
    """Decode a DRFL byte image. An end of file inside the last record is reported as
    `torn_tail` (and logged); any other defect raises StorageError naming `path` and offset.
    With `validate_commands` off, commands need not parse as StateCommands. A record with
    checksums in `sums` (by offset) must match one of them."""
    if not data:
        return LoadedLog(commit_seq=0)
    check_header(data, path, MAGIC, _HEADER.size)
    loaded = LoadedLog(commit_seq=_HEADER.unpack_from(data)[2])
    view = memoryview(data)
    offset = _HEADER.size
    while offset < len(data):
        remaining = len(data) - offset
        candidates = sums.get(offset) if sums else None
        checked = check_record(data, offset, candidates, path) if candidates else None
        if candidates and checked is None:
            first = candidates[0]
            loaded.torn_tail = TornTail(
                offset,
                remaining,
                f"end of file inside the record of seq {first.seq} "
                f"({remaining} of {first.length} bytes)",
            )
            break
        if remaining < _RECORD.size:
            field_name = "seq" if remaining < 8 else "length"
            loaded.torn_tail = TornTail(offset, remaining, f"end of file inside the {field_name}")
            break
        seq, length = _RECORD.unpack_from(data, offset)
        if length < 0:
            raise StorageError(path, offset, f"record seq {seq}: negative length {length}")
        start = offset + _RECORD.size
        if start + length > len(data):
            loaded.torn_tail = TornTail(
                offset,
                remaining,
                f"end of file inside the command of seq {seq} "
                f"({len(data) - start} of {length} bytes)",
            )
            break
        command = data[start : start + length]
        if validate_commands and not _is_state_command(command):
            raise StorageError(path, offset, f"record seq {seq}: command is not a StateCommand")
        loaded.records[seq] = command
        end = start + length
        if checked is None:
            checked = RecordSum(seq, offset, end - offset, crc(view[offset:end]))
            loaded.unverified += 1
        loaded.sums.append(checked)
        offset = end
    if loaded.torn_tail is not None:
        tail = loaded.torn_tail
        logger.warning(
            "%s: torn tail at offset %d: dropped %d bytes (%s)",
            path,
            tail.offset,
            tail.dropped_bytes,
            tail.reason,
        )
    return loaded


def _spans(data: bytes) -> list[tuple[int, int, int]]:
    """(seq, offset, length with the record header) of every record of a valid DRFL image."""
    spans: list[tuple[int, int, int]] = []
    offset = _HEADER.size if data else 0
    while offset < len(data):
        seq, length = _RECORD.unpack_from(data, offset)
        spans.append((seq, offset, _RECORD.size + length))
        offset += _RECORD.size + length
    return spans


def _scan(spans: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]] | None:
    """(seq, offset) of every record, or None unless the seqs strictly increase (only then
    may a compaction keep a byte suffix of the file as it is)."""
    if any(b[0] <= a[0] for a, b in zip(spans, spans[1:], strict=False)):
        return None
    return [(seq, offset) for seq, offset, _ in spans]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class CommandLog:
    """The `command-log` file in a storage directory, written by a single thread.

    Every method that changes the file returns only after the change is fsynced.
    Call `open()` before anything else. `validate_commands=False` lets records carry
    payloads other than StateCommands (upstream nodes could not read such a log).
    `checksums=True` (native mode) keeps and checks `command-log.sums` (see the module doc).
    """

    def __init__(
        self, directory: Path, *, validate_commands: bool = True, checksums: bool = False
    ) -> None:
        ensure_directory(directory)
        self.path = directory / FILE_NAME
        self._validate = validate_commands
        self._fd: int | None = None
        self._end = 0  # length of the valid content; 0 = no header on disk yet
        self._commit_seq = 0
        self._opened = False
        self._index: list[tuple[int, int]] | None = []
        """(seq, offset) of each record in file order; None when seqs do not increase."""
        self._sums_file = LogSumsFile(self.path) if checksums else None
        self._sums: list[RecordSum] = []
        """The checksum of each record in file order (kept only with checksums)."""

    @property
    def commit_seq(self) -> int:
        """The commit_seq currently in the header."""
        return self._commit_seq

    def open(self) -> LoadedLog:
        """Load the log (missing file = commit 0, no records), check it against its checksums,
        cut off any torn tail, and checksum records that had none."""
        self.close()
        data = read_if_exists(self.path) or b""
        stored = self._sums_file.load() if self._sums_file is not None else None
        if stored is not None and not data and stored.entries:
            raise StorageError(
                str(self.path), 0, f"file is missing but has {len(stored.entries)} checksums"
            )
        loaded = decode_command_log(
            data,
            str(self.path),
            validate_commands=self._validate,
            sums=by_offset(stored.entries) if stored is not None else None,
        )
        if stored is not None and data and loaded.commit_seq not in stored.commits:
            reason = f"checksum mismatch in commit_seq {loaded.commit_seq}"
            raise StorageError(str(self.path), _COMMIT_OFFSET, reason)
        self._end = len(data)
        if loaded.torn_tail is not None:
            self._end = loaded.torn_tail.offset
            fd = self._file()
            os.ftruncate(fd, self._end)
            os.fsync(fd)
            logger.info("%s: truncated to %d bytes after a torn tail", self.path, self._end)
        self._commit_seq = loaded.commit_seq
        self._index = _scan(_spans(data[: self._end]))
        self._opened = True
        if self._sums_file is not None:
            self._adopt_sums(loaded, stored)
        return loaded

    def append(self, record: LogRecord) -> None:
        """Durably append one record."""
        self.append_many((record,))

    def append_many(self, records: Iterable[LogRecord]) -> None:
        """Durably append `records` with one write and one fsync (group commit); with
        checksums their entries are written just before, unsynced (see the module doc)."""
        batch = list(records)
        parts = [encode_log_record(r, validate_commands=self._validate) for r in batch]
        data = b"".join(parts)
        self._check_open()
        if not data:
            return
        fd = self._with_header()
        offsets = list(itertools.accumulate((len(p) for p in parts[:-1]), initial=self._end))
        sums: list[RecordSum] = []
        sums_end = 0
        if self._sums_file is not None:
            sums = [
                RecordSum(r.seq, o, len(p), crc(p))
                for r, o, p in zip(batch, offsets, parts, strict=True)
            ]
            sums_end = self._sums_file.end
        try:
            if self._sums_file is not None:
                self._sums_file.append(sums)
            _pwrite_all(fd, data, self._end)
            os.fdatasync(fd)  # data and the new size; skipping mtime saves a journal write
        except BaseException:
            self._discard_after(self._end, sums_end)
            raise
        index = self._index
        for record, offset in zip(batch, offsets, strict=True):
            if index is not None and index and record.seq <= index[-1][0]:
                index = None
            if index is not None:
                index.append((record.seq, offset))
        self._index = index
        self._sums.extend(sums)
        self._end += len(data)

    def set_commit_seq(self, commit_seq: int) -> None:
        """Durably overwrite the header's commit_seq in place (the file size does not change)."""
        header = _encode_header(commit_seq)
        self._check_open()
        if self._end == 0:
            self._rewrite(header)
        else:
            if self._sums_file is not None:
                self._sums_file.set_commits((commit_seq, self._commit_seq))
            fd = self._file()
            _pwrite_all(fd, header[_COMMIT_OFFSET:], _COMMIT_OFFSET)
            os.fsync(fd)
        self._commit_seq = commit_seq

    def truncate_through(self, seq: int) -> None:
        """Drop records with seq <= `seq` (covered by a snapshot); commit becomes min(old, seq).

        With increasing seqs the kept records are the file's byte suffix, copied as is (no
        decode and re-encode of the whole log on every compaction)."""
        commit_seq = min(self._commit_seq, seq)
        self._check_open()
        index = self._index
        if index is not None and self._end > 0:
            first = bisect.bisect_right(index, (seq, _AFTER_ANY_OFFSET))
            start = index[first][1] if first < len(index) else self._end
            tail = os.pread(self._file(), self._end - start, start)
            if len(tail) == self._end - start:
                self._rewrite(_encode_header(commit_seq) + tail)
                return
        kept = [LogRecord(s, c) for s, c in self._records().items() if s > seq]
        self._rewrite(encode_command_log(commit_seq, kept, validate_commands=self._validate))

    def truncate_from(self, seq: int) -> None:
        """Drop records with seq >= `seq` (an uncommitted tail); the commit_seq is kept."""
        kept = [LogRecord(s, c) for s, c in self._records().items() if s < seq]
        self._rewrite(encode_command_log(self._commit_seq, kept, validate_commands=self._validate))

    def close(self) -> None:
        """Release the file handles; `open()` may be called again later."""
        self._close_fd()
        self._opened = False

    def __enter__(self) -> CommandLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._opened:
            raise RuntimeError(f"{self.path}: open() the command log first")

    def _records(self) -> dict[int, bytes]:
        self._check_open()
        data = read_if_exists(self.path) or b""
        sums = by_offset(self._sums) if self._sums_file is not None else None
        return decode_command_log(
            data[: self._end], str(self.path), validate_commands=self._validate, sums=sums
        ).records

    def _adopt_sums(self, loaded: LoadedLog, stored: LogSums | None) -> None:
        """Make the side file list exactly the records kept (checksumming any that had none)."""
        assert self._sums_file is not None
        self._sums = loaded.sums
        if self._end == 0 or (stored is not None and stored.entries == self._sums):
            return
        if loaded.unverified:
            logger.info(
                "%s: %d records had no checksum (written by upstream, by dref-py before"
                " checksums, or not written back before a power loss); checksummed now",
                self.path,
                loaded.unverified,
            )
        self._sums_file.rewrite((self._commit_seq, self._commit_seq), self._sums)

    def _rewrite(self, data: bytes) -> None:
        """Replace the whole file; with checksums, in the three steps the module doc gives."""
        self._close_fd()
        commit_seq = _HEADER.unpack_from(data)[2]
        spans = _spans(data)
        if self._sums_file is not None:
            new = record_sums(data, spans)
            known = set(self._sums)
            added = [entry for entry in new if entry not in known]
            if added or commit_seq != self._commit_seq:
                self._sums_file.rewrite((commit_seq, self._commit_seq), [*self._sums, *added])
            write_atomically(self.path, data)
            self._sums_file.rewrite((commit_seq, commit_seq), new)
            self._sums = new
        else:
            write_atomically(self.path, data)
        self._index = _scan(spans)
        self._end = len(data)
        self._commit_seq = commit_seq

    def _with_header(self) -> int:
        if self._end == 0:
            self._rewrite(_encode_header(self._commit_seq))
        return self._file()

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        return self._fd

    def _discard_after(self, end: int, sums_end: int) -> None:
        """Remove a failed append's bytes (and checksums); if even that fails, refuse further
        use until the log is reopened (the reader then drops a partial record as a torn tail)."""
        try:
            fd = self._file()
            os.ftruncate(fd, end)
            os.fsync(fd)
            if self._sums_file is not None:
                self._sums_file.discard_after(sums_end)
        except OSError:
            self.close()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if self._sums_file is not None:
            self._sums_file.close()
