"""The `command-log` file (DRFL, spec 5.3): the replicated log of StateCommands.

Layout: a 13-byte header (magic `DRFL`, version 1, commit_seq u64 BE), then records back to
back: seq (u64 BE), command length (i32 BE; negative = error), an encoded StateCommand.
Loading has map semantics (a later record with the same seq replaces the earlier one) and,
like the Scala reader, tolerates a premature end of file inside the last record (a torn tail),
which `CommandLog.open` cuts off so that later appends never follow garbage.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from google.protobuf.message import DecodeError

from dref.errors import StorageError
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
    """A decoded command log: header commit_seq, records by seq in file order, any torn tail."""

    commit_seq: int
    records: dict[int, bytes] = field(default_factory=dict)
    torn_tail: TornTail | None = None


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


def decode_command_log(data: bytes, path: str, *, validate_commands: bool = True) -> LoadedLog:
    """Decode a DRFL byte image. An end of file inside the last record is reported as
    `torn_tail` (and logged); any other defect raises StorageError naming `path` and offset.
    With `validate_commands` off, commands need not parse as StateCommands."""
    if not data:
        return LoadedLog(commit_seq=0)
    check_header(data, path, MAGIC, _HEADER.size)
    loaded = LoadedLog(commit_seq=_HEADER.unpack_from(data)[2])
    offset = _HEADER.size
    while offset < len(data):
        remaining = len(data) - offset
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
        offset = start + length
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


def _scan(data: bytes) -> list[tuple[int, int]] | None:
    """(seq, offset) of every record of a valid DRFL image, or None unless the seqs strictly
    increase (only then may a compaction keep a byte suffix of the file as it is)."""
    index: list[tuple[int, int]] = []
    offset = _HEADER.size if data else 0
    while offset < len(data):
        seq, length = _RECORD.unpack_from(data, offset)
        if index and seq <= index[-1][0]:
            return None
        index.append((seq, offset))
        offset += _RECORD.size + length
    return index


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
    """

    def __init__(self, directory: Path, *, validate_commands: bool = True) -> None:
        ensure_directory(directory)
        self.path = directory / FILE_NAME
        self._validate = validate_commands
        self._fd: int | None = None
        self._end = 0  # length of the valid content; 0 = no header on disk yet
        self._commit_seq = 0
        self._opened = False
        self._index: list[tuple[int, int]] | None = []
        """(seq, offset) of each record in file order; None when seqs do not increase."""

    @property
    def commit_seq(self) -> int:
        """The commit_seq currently in the header."""
        return self._commit_seq

    def open(self) -> LoadedLog:
        """Load the log (missing file = commit 0, no records) and cut off any torn tail."""
        self.close()
        data = read_if_exists(self.path)
        loaded = self._decode(data or b"")
        self._end = len(data or b"")
        if loaded.torn_tail is not None:
            self._end = loaded.torn_tail.offset
            fd = self._file()
            os.ftruncate(fd, self._end)
            os.fsync(fd)
            logger.info("%s: truncated to %d bytes after a torn tail", self.path, self._end)
        self._commit_seq = loaded.commit_seq
        self._index = _scan((data or b"")[: self._end])
        self._opened = True
        return loaded

    def append(self, record: LogRecord) -> None:
        """Durably append one record."""
        self.append_many((record,))

    def append_many(self, records: Iterable[LogRecord]) -> None:
        """Durably append `records` with one write and one fsync (group commit)."""
        batch = list(records)
        parts = [encode_log_record(r, validate_commands=self._validate) for r in batch]
        data = b"".join(parts)
        self._check_open()
        if not data:
            return
        fd = self._with_header()
        try:
            _pwrite_all(fd, data, self._end)
            os.fdatasync(fd)  # data and the new size; skipping mtime saves a journal write
        except BaseException:
            self._discard_after(self._end)
            raise
        index = self._index
        offset = self._end
        for record, part in zip(batch, parts, strict=True):
            if index is not None and index and record.seq <= index[-1][0]:
                index = None
            if index is not None:
                index.append((record.seq, offset))
            offset += len(part)
        self._index = index
        self._end += len(data)

    def set_commit_seq(self, commit_seq: int) -> None:
        """Durably overwrite the header's commit_seq in place (the file size does not change)."""
        header = _encode_header(commit_seq)
        self._check_open()
        if self._end == 0:
            self._rewrite(header)
        else:
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
        """Release the file handle; `open()` may be called again later."""
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
        return self._decode(data[: self._end]).records

    def _decode(self, data: bytes) -> LoadedLog:
        return decode_command_log(data, str(self.path), validate_commands=self._validate)

    def _rewrite(self, data: bytes) -> None:
        self._close_fd()
        write_atomically(self.path, data)
        self._index = _scan(data)
        self._end = len(data)
        self._commit_seq = _HEADER.unpack_from(data)[2]

    def _with_header(self) -> int:
        if self._end == 0:
            self._rewrite(_encode_header(self._commit_seq))
        return self._file()

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        return self._fd

    def _discard_after(self, end: int) -> None:
        """Remove a failed append's bytes; if even that fails, refuse further use until the log
        is reopened (the reader then drops a partial record as a torn tail)."""
        try:
            fd = self._file()
            os.ftruncate(fd, end)
            os.fsync(fd)
        except OSError:
            self.close()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
