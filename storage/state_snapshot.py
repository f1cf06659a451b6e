"""The `state-snapshot` file (DRFS, spec 5.2): a protobuf ClusterSnapshot of the state machine.

Layout: magic `DRFS`, version 1, payload length (i32 BE; negative = error), the payload.
Bytes after the payload are ignored.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from google.protobuf.message import DecodeError

from dref.errors import StorageError
from dref.storage.checksums import StateSumsFile, crc_of_file
from dref.storage.durable_file import (
    check_header,
    ensure_directory,
    read_if_exists,
    write_atomically,
)
from dref.storage.snapshot_image import FileImage
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot

FILE_NAME = "state-snapshot"
MAGIC = b"DRFS"
_HEADER = struct.Struct(">4sBi")
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = 2**31 - 1


def encode_state_snapshot(snapshot: ClusterSnapshot) -> bytes:
    """Encode `snapshot` as a DRFS byte image with a canonical (deterministic) payload."""
    return encode_raw_snapshot(snapshot.SerializeToString(deterministic=True))


def encode_raw_snapshot(payload: bytes) -> bytes:
    """Frame any payload as a DRFS image (a user's own state machine, not upstream-readable)."""
    return frame_header(len(payload)) + payload


def frame_header(length: int) -> bytes:
    """The DRFS header of a `length`-byte payload; ValueError past the format's limit."""
    if length > MAX_PAYLOAD:
        raise ValueError(f"snapshot is {length} bytes; the state-snapshot format allows < 2 GiB")
    return _HEADER.pack(MAGIC, 1, length)


def decode_raw_snapshot(data: bytes, path: str) -> bytes:
    """The payload of a DRFS image, unparsed; StorageError if the frame is malformed."""
    length = _payload_length(data, len(data), path)
    return data[_HEADER.size : _HEADER.size + length]


def _payload_length(head: bytes, file_size: int, path: str) -> int:
    """The payload length a DRFS image of `file_size` bytes starting with `head` declares;
    StorageError if the frame is malformed or the file too short for it."""
    check_header(head, path, MAGIC, _HEADER.size)
    _, _, length = _HEADER.unpack_from(head)
    if length < 0:
        raise StorageError(path, 5, f"negative payload length {length}")
    if file_size < _HEADER.size + length:
        raise StorageError(
            path, _HEADER.size, f"truncated payload: {file_size - _HEADER.size} of {length} bytes"
        )
    return int(length)


def decode_state_snapshot(data: bytes, path: str) -> ClusterSnapshot:
    """Decode a DRFS byte image; raise StorageError (naming `path` and the offset) if it is
    malformed, truncated, or its payload is not a ClusterSnapshot."""
    payload = decode_raw_snapshot(data, path)
    snapshot = ClusterSnapshot()
    try:
        snapshot.ParseFromString(payload)
    except DecodeError as exc:
        raise StorageError(path, _HEADER.size, f"payload is not a ClusterSnapshot: {exc}") from None
    return snapshot


class StateSnapshotFile:
    """The `state-snapshot` file in a storage directory; missing means no snapshot.
    `checksums=True` (native mode) keeps and checks `state-snapshot.sums` beside it, as
    `voter-state` does (`dref.storage.checksums.StateSumsFile`)."""

    def __init__(self, directory: Path, *, checksums: bool = False) -> None:
        ensure_directory(directory)
        self.path = directory / FILE_NAME
        self._sums = StateSumsFile(self.path) if checksums else None

    def load(self) -> ClusterSnapshot | None:
        """Read the persisted snapshot, or None when the file does not exist."""
        data = self._read()
        if data is None:
            return None
        return decode_state_snapshot(data, str(self.path))

    def save(self, snapshot: ClusterSnapshot) -> None:
        """Durably replace the persisted snapshot; returns only after it survives a crash."""
        self._write(encode_state_snapshot(snapshot))

    def save_raw(self, payload: bytes) -> None:
        """Durably replace the persisted snapshot with any payload (see encode_raw_snapshot)."""
        self._write(encode_raw_snapshot(payload))

    def open_payload(self) -> FileImage | None:
        """The persisted payload as a file image, checked (frame and checksum) without reading
        it into memory; None when the file does not exist."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            if self._sums is not None:
                self._sums.verify_crc(None)
            return None
        try:
            size = os.fstat(fd).st_size
            length = _payload_length(os.pread(fd, _HEADER.size, 0), size, str(self.path))
            file_crc = crc_of_file(fd)
            if self._sums is not None:
                self._sums.verify_crc(file_crc)
        except BaseException:
            os.close(fd)
            raise
        return FileImage(fd, _HEADER.size, length, file_crc=file_crc)

    def put_in_place(self, image: FileImage) -> None:
        """Durably replace the persisted snapshot with a finished file image (written in
        this format by a `SnapshotSink` in this directory): synced, checksummed, renamed."""
        file_crc = image.sync()
        if self._sums is not None:
            self._sums.before_replace_crc(file_crc)
        image.adopt(self.path)

    def _read(self) -> bytes | None:
        data = read_if_exists(self.path)
        if self._sums is not None:
            self._sums.verify(data)
        return data

    def _write(self, image: bytes) -> None:
        if self._sums is not None:
            self._sums.before_replace(image)
        write_atomically(self.path, image)
