"""Checksums of upstream's files, kept beside them (native mode): `command-log.sums`,
`voter-state.sums` (and the snapshot files' alike), and `raft-index.sums`.

Upstream's files must stay byte-identical, so their CRC32s live in side files of our own
format, which start with magic `DRSM` and version 1 like upstream's files do.

`command-log.sums`: the prefix, two commit_seq slots (u64 BE each: the header's commit_seq
must equal one of them) and a CRC32 of bytes 0..20 (u32 BE); then one 28-byte entry per
command-log record, in file order: seq (u64), the record's offset in command-log (u64), its
length including the 12-byte record header (u32), the CRC32 of those bytes (u32), and the
CRC32 of the entry's first 24 bytes (u32). A partial entry at the end is a torn write and
is dropped; an all-zero entry is a hole (data a power loss did not write back) and is
skipped; any other entry whose own CRC fails is damage.

`voter-state.sums`: the prefix, the CRC32s of the newest voter-state image and of the one
before it (u32 BE each; the CRC32 of no file is 0), and a CRC32 of bytes 0..12.

`raft-index.sums`: the generation of the LMDB index and the CRC32 of its file (see
`GenerationFile`); the index's rows carry their own CRC32s too (see `raft_log`).

`CommandLog` and `VoterStateFile` say when each is written and why a crash at any point
leaves the pair consistent.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dref.errors import StorageError
from dref.storage.durable_file import check_header, read_if_exists, write_atomically

SUFFIX = ".sums"
MAGIC = b"DRSM"
_PREFIX = struct.Struct(">4sB")
_COMMITS = struct.Struct(">QQ")
_LOG_HEADER_SIZE = _PREFIX.size + _COMMITS.size + 4
_ENTRY = struct.Struct(">QQII")
_ENTRY_SIZE = _ENTRY.size + 4
_STATE = struct.Struct(">4sBII")
_STATE_SIZE = _STATE.size + 4
_U32 = struct.Struct(">I")

logger = logging.getLogger("dref.storage")


def crc(data: bytes | memoryview) -> int:
    """The CRC32 every side file uses (zlib's, the IEEE polynomial)."""
    return zlib.crc32(data)


def crc_of_file(fd: int) -> int:
    """CRC32 of a whole open file, read in 1 MiB pieces (a snapshot is never held whole)."""
    value, offset = 0, 0
    while piece := os.pread(fd, 1 << 20, offset):
        value = zlib.crc32(piece, value)
        offset += len(piece)
    return value


def _crc_of_path(path: Path) -> int:
    """CRC32 of the file at `path`; that of no bytes when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return crc(b"")
    try:
        return crc_of_file(fd)
    finally:
        os.close(fd)


def sums_path(path: Path) -> Path:
    """The side file holding the checksums of `path`."""
    return path.with_name(path.name + SUFFIX)


def _sealed(body: bytes) -> bytes:
    """`body` followed by its own CRC32, so damage to a checksum is itself detected."""
    return body + _U32.pack(crc(body))


def _seal_ok(data: bytes | memoryview, size: int) -> bool:
    return _U32.unpack_from(data, size - 4)[0] == crc(data[: size - 4])


@dataclass(frozen=True, slots=True)
class RecordSum:
    """The checksum of one command-log record: its seq, where it is and how long, its CRC32."""

    seq: int
    offset: int
    length: int
    crc: int

    def encode(self) -> bytes:
        """The 28-byte entry of `command-log.sums`."""
        return _sealed(_ENTRY.pack(self.seq, self.offset, self.length, self.crc))


@dataclass(frozen=True)
class LogSums:
    """A decoded `command-log.sums`: the commit_seq slots and the record entries in file order."""

    commits: tuple[int, int]
    entries: list[RecordSum]


def by_offset(entries: Sequence[RecordSum]) -> dict[int, list[RecordSum]]:
    """Entries grouped by record offset (two at one offset during a rewrite: old and new)."""
    grouped: dict[int, list[RecordSum]] = {}
    for entry in entries:
        grouped.setdefault(entry.offset, []).append(entry)
    return grouped


def encode_log_sums(commits: tuple[int, int], entries: Sequence[RecordSum]) -> bytes:
    """A whole `command-log.sums` image."""
    header = _sealed(_PREFIX.pack(MAGIC, 1) + _COMMITS.pack(*commits))
    return header + b"".join(entry.encode() for entry in entries)


def decode_log_sums(data: bytes, path: str) -> LogSums:
    """Decode `command-log.sums`; StorageError naming `path` and the offset on damage."""
    check_header(data, path, MAGIC, _LOG_HEADER_SIZE)
    if not _seal_ok(data, _LOG_HEADER_SIZE):
        raise StorageError(path, _PREFIX.size, "checksum mismatch in the commit_seq slots")
    commits = _COMMITS.unpack_from(data, _PREFIX.size)
    entries: list[RecordSum] = []
    zero = bytes(_ENTRY_SIZE)
    view = memoryview(data)
    for offset in range(_LOG_HEADER_SIZE, len(data) - _ENTRY_SIZE + 1, _ENTRY_SIZE):
        raw = view[offset : offset + _ENTRY_SIZE]
        if raw == zero:
            continue
        if not _seal_ok(raw, _ENTRY_SIZE):
            raise StorageError(path, offset, "checksum entry is damaged (its own CRC fails)")
        entries.append(RecordSum(*_ENTRY.unpack_from(raw)))
    torn = (len(data) - _LOG_HEADER_SIZE) % _ENTRY_SIZE
    if torn:
        logger.warning("%s: dropped a torn checksum entry (%d bytes) at its end", path, torn)
    return LogSums((commits[0], commits[1]), entries)


def record_sums(data: bytes, spans: Sequence[tuple[int, int, int]]) -> list[RecordSum]:
    """The checksums of the records at `spans` (seq, offset, length) of a command-log image."""
    view = memoryview(data)
    return [RecordSum(s, o, n, crc(view[o : o + n])) for s, o, n in spans]


def check_record(
    data: bytes, offset: int, candidates: Sequence[RecordSum], path: str
) -> RecordSum | None:
    """The entry the record at `offset` matches; None when every entry reaches past the end of
    `data` (the record was torn while being written); StorageError when the bytes differ."""
    view = memoryview(data)
    fitting = [c for c in candidates if offset + c.length <= len(data)]
    for candidate in fitting:
        if crc(view[offset : offset + candidate.length]) == candidate.crc:
            return candidate
    if not fitting:
        return None
    raise StorageError(path, offset, f"checksum mismatch in record seq={fitting[0].seq}")


class LogSumsFile:
    """The `command-log.sums` file of one command log, written by its single writer thread."""

    def __init__(self, log_path: Path) -> None:
        self.path = sums_path(log_path)
        self._fd: int | None = None
        self._end = 0

    def load(self) -> LogSums | None:
        """The decoded file, or None when there is none (a log from before checksums)."""
        data = read_if_exists(self.path)
        if data is None:
            return None
        self._end = len(data) - (len(data) - _LOG_HEADER_SIZE) % _ENTRY_SIZE
        return decode_log_sums(data, str(self.path))

    def rewrite(self, commits: tuple[int, int], entries: Sequence[RecordSum]) -> None:
        """Durably replace the whole file (temporary file, fsync, rename)."""
        self.close()
        data = encode_log_sums(commits, entries)
        write_atomically(self.path, data)
        self._end = len(data)

    def append(self, entries: Sequence[RecordSum]) -> None:
        """Add entries at the end without syncing (the record write that follows is synced)."""
        data = b"".join(entry.encode() for entry in entries)
        fd = self._file()
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, self._end)
            view = view[written:]
            self._end += written

    def discard_after(self, end: int) -> None:
        """Cut the file back to `end` bytes (after a failed record write)."""
        os.ftruncate(self._file(), end)
        self._end = end

    @property
    def end(self) -> int:
        """The file's length as written so far."""
        return self._end

    def set_commits(self, commits: tuple[int, int]) -> None:
        """Durably overwrite the commit_seq slots in place (and sync appended entries too)."""
        header = _sealed(_PREFIX.pack(MAGIC, 1) + _COMMITS.pack(*commits))
        fd = self._file()
        os.pwrite(fd, header[_PREFIX.size :], _PREFIX.size)
        os.fdatasync(fd)

    def close(self) -> None:
        """Release the file handle."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        return self._fd


class StateSumsFile:
    """The checksums of a file replaced whole (`voter-state`, `state-snapshot`,
    `snapshot-term`): the CRC32s of its newest image and of the one before, so that a crash
    between writing them and renaming the file over the old one leaves a checksum for
    whichever image survived."""

    def __init__(self, path: Path) -> None:
        self.target = path
        self.path = sums_path(path)
        self._current: int | None = None
        """CRC32 of the target's image on disk, once known."""

    def verify(self, data: bytes | None) -> None:
        """Raise StorageError unless `data` (the target's content, None = no file) has a
        checksum here; a target without a side file yet (written before checksums) gets one."""
        self.verify_crc(None if data is None else crc(data))

    def verify_crc(self, image_crc: int | None) -> None:
        """`verify` for a target known by its CRC32 (None = no file)."""
        exists = image_crc is not None
        image_crc = crc(b"") if image_crc is None else image_crc
        raw = read_if_exists(self.path)
        if raw is None:
            if exists:
                logger.info("%s: had no checksum (written before checksums); added", self.target)
                write_atomically(self.path, _sealed(_STATE.pack(MAGIC, 1, image_crc, image_crc)))
            self._current = image_crc
            return
        check_header(raw, str(self.path), MAGIC, _STATE_SIZE)
        if not _seal_ok(raw, _STATE_SIZE):
            raise StorageError(str(self.path), _PREFIX.size, "checksums are damaged (CRC fails)")
        known = _STATE.unpack_from(raw)[2:]
        if image_crc not in known:
            what = "checksum mismatch" if exists else "file is missing but has a checksum"
            raise StorageError(str(self.target), 0, what)
        self._current = image_crc

    def before_replace(self, new_image: bytes) -> None:
        """Durably record the checksum of the image about to replace the target, keeping the
        current one's until the replacement is done."""
        self.before_replace_crc(crc(new_image))

    def before_replace_crc(self, new_crc: int) -> None:
        """`before_replace` for an image known by its CRC32."""
        if self._current is None:
            self._current = _crc_of_path(self.target)
        write_atomically(self.path, _sealed(_STATE.pack(MAGIC, 1, new_crc, self._current)))
        self._current = new_crc


class GenerationFile:
    """`raft-index.sums`: the newest generation of the LMDB index and the CRC32 of its file,
    kept outside it.

    LMDB keeps no checksums and trusts its page numbers: a flipped bit can make it open the
    transaction before the newest (a consistent but older index) or read past the end of
    its file, which kills the process with SIGBUS. So every write transaction of the index
    counts a generation inside it and then records here that count and the CRC32 of
    `data.mdb` as committed; before LMDB maps the file, its CRC32 must be one recorded here
    (see `raft_log`). Layout: the prefix, then two slots of (generation u64 BE, file CRC32
    u32 BE, CRC32 of those 12 bytes u32 BE); generation g goes to slot g % 2, so a torn
    slot leaves the one before it intact.
    """

    _SLOT = struct.Struct(">QI")

    def __init__(self, index_path: Path) -> None:
        self.path = sums_path(index_path)
        self._fd: int | None = None

    def load(self) -> list[tuple[int, int]] | None:
        """The (generation, file CRC32) pairs recorded, newest first; None when there is no file."""
        data = read_if_exists(self.path)
        if data is None:
            return None
        slot_size = self._SLOT.size + 4
        check_header(data, str(self.path), MAGIC, _PREFIX.size + 2 * slot_size)
        found = []
        for offset in (_PREFIX.size, _PREFIX.size + slot_size):
            slot = data[offset : offset + slot_size]
            if _seal_ok(slot, slot_size):
                found.append(self._SLOT.unpack_from(slot))
        if not found:
            raise StorageError(str(self.path), _PREFIX.size, "both generation slots are damaged")
        return sorted(found, reverse=True)

    def create(self, generation: int, image_crc: int) -> None:
        """Durably write a new file recording `generation` and its file's CRC32."""
        self.close()
        slots = [_sealed(self._SLOT.pack(generation, image_crc))] * 2
        write_atomically(self.path, _PREFIX.pack(MAGIC, 1) + b"".join(slots))

    def record(self, generation: int, image_crc: int) -> None:
        """Durably record `generation` in its slot, leaving the one before it intact."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        slot = _sealed(self._SLOT.pack(generation, image_crc))
        os.pwrite(self._fd, slot, _PREFIX.size + (generation % 2) * len(slot))
        os.fdatasync(self._fd)

    def close(self) -> None:
        """Release the file handle."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
