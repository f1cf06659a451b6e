"""The `state-snapshot` file (DRFS, spec 5.2): a protobuf ClusterSnapshot of the state machine.

Layout: magic `DRFS`, version 1, payload length (i32 BE; negative = error), the payload.
Bytes after the payload are ignored.
"""

from __future__ import annotations

import struct
from pathlib import Path

from google.protobuf.message import DecodeError

from dref.errors import StorageError
from dref.storage.checksums import StateSumsFile
from dref.storage.durable_file import (
    check_header,
    ensure_directory,
    read_if_exists,
    write_atomically,
)
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot

FILE_NAME = "state-snapshot"
MAGIC = b"DRFS"
_HEADER = struct.Struct(">4sBi")


def encode_state_snapshot(snapshot: ClusterSnapshot) -> bytes:
    """Encode `snapshot` as a DRFS byte image with a canonical (deterministic) payload."""
    return encode_raw_snapshot(snapshot.SerializeToString(deterministic=True))


def encode_raw_snapshot(payload: bytes) -> bytes:
    """Frame any payload as a DRFS image (a user's own state machine, not upstream-readable)."""
    if len(payload) >= 2**31:
        raise ValueError(f"snapshot payload is {len(payload)} bytes; the format allows < 2**31")
    return _HEADER.pack(MAGIC, 1, len(payload)) + payload


def decode_raw_snapshot(data: bytes, path: str) -> bytes:
    """The payload of a DRFS image, unparsed; StorageError if the frame is malformed."""
    check_header(data, path, MAGIC, _HEADER.size)
    _, _, length = _HEADER.unpack_from(data)
    if length < 0:
        raise StorageError(path, 5, f"negative payload length {length}")
    end = _HEADER.size + length
    if len(data) < end:
        raise StorageError(
            path, _HEADER.size, f"truncated payload: {len(data) - _HEADER.size} of {length} bytes"
        )
    return data[_HEADER.size : end]


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

    def load_raw(self) -> bytes | None:
        """The persisted payload without parsing it, or None when the file does not exist."""
        data = self._read()
        if data is None:
            return None
        return decode_raw_snapshot(data, str(self.path))

    def save_raw(self, payload: bytes) -> None:
        """Durably replace the persisted snapshot with any payload (see encode_raw_snapshot)."""
        self._write(encode_raw_snapshot(payload))

    def _read(self) -> bytes | None:
        data = read_if_exists(self.path)
        if self._sums is not None:
            self._sums.verify(data)
        return data

    def _write(self, image: bytes) -> None:
        if self._sums is not None:
            self._sums.before_replace(image)
        write_atomically(self.path, image)
