"""The node's durable snapshot: the `state-snapshot` file plus what it needs beside it.

With upstream files the payload must be a ClusterSnapshot (its `last_seq` is set to the
snapshot index, as upstream expects) and the index's term lives in a small `snapshot-term`
file written first, so a crash between the two is detected by the index not matching.
Without upstream files the payload is the state machine's own bytes, prefixed by the
index and term (a DRFS frame only our nodes read).

Snapshots are files from end to end (`dref.storage.snapshot_image`): `sink` writes a new
one in this format beside the real one (the state machine streams into it, or a leader's
chunks arrive in it), `save` renames it into place, `load` reads it back as an image.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from dref.actors.consensus.durable_state import SnapshotImage
from dref.errors import CodecError, StorageError
from dref.storage.checksums import StateSumsFile
from dref.storage.durable_file import read_if_exists, write_atomically
from dref.storage.snapshot_image import FileImage, SnapshotSink
from dref.storage.state_snapshot import HEADER_SIZE, StateSnapshotFile, frame_header
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto_stream import VARINT, encode_field, iter_fields

TERM_FILE = "snapshot-term"
PART_MARK = ".part"
"""Snapshot files being written are named `state-snapshot.part<N>`."""
_POSITION = struct.Struct(">QQ")  # index, term
_LAST_SEQ = ClusterSnapshot.DESCRIPTOR.fields_by_name["last_seq"].number


@dataclass(frozen=True)
class SavedSnapshot:
    """A state-machine image covering the log through (index, term); `term` is None when
    a crash left the term unknown (the caller then derives it from the log)."""

    index: int
    term: int | None
    data: SnapshotImage


class SnapshotFiles:
    """Loads and saves the snapshot in upstream's format or the raw native one."""

    def __init__(self, directory: Path, *, upstream: bool, checksums: bool = False) -> None:
        """`checksums` (native mode): both files are checked against side files."""
        self._file = StateSnapshotFile(directory, checksums=checksums)
        self._term_path = directory / TERM_FILE
        self._term_sums = StateSumsFile(self._term_path) if checksums else None
        self._upstream = upstream
        self._parts = itertools.count(1)
        for leftover in directory.glob(self._file.path.name + PART_MARK + "*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()  # a crash interrupted writing or installing it

    def load(self) -> SavedSnapshot | None:
        """The persisted snapshot, or None when there is none."""
        image = self._file.open_payload()
        if image is None:
            return None
        if not self._upstream:
            if len(image) < _POSITION.size:
                raise StorageError(str(self._file.path), 9, "raw snapshot lacks index and term")
            index, term = _POSITION.unpack(image[0 : _POSITION.size])
            return SavedSnapshot(index, term, image.after(_POSITION.size))
        last_seq = self._last_seq(image)
        term = None
        position = read_if_exists(self._term_path)
        if self._term_sums is not None:
            self._term_sums.verify(position)
        if position is not None and len(position) == _POSITION.size:
            saved_index, saved_term = _POSITION.unpack(position)
            if saved_index == last_seq:
                term = saved_term
        return SavedSnapshot(last_seq, term, image)

    def sink(self, index: int, term: int) -> SnapshotSink:
        """A new snapshot file through (index, term) in this format, to write the state
        machine's bytes into and `save` once finished."""
        path = self._file.path.with_name(f"{self._file.path.name}{PART_MARK}{next(self._parts)}")
        # upstream's payload ends with last_seq (the last value read wins); ours starts
        # with the position
        position = b"" if self._upstream else _POSITION.pack(index, term)
        last_seq = encode_field(_LAST_SEQ, VARINT, index) if self._upstream else b""
        return SnapshotSink(
            path,
            frame_header(0) + position,
            last_seq,
            lambda total: frame_header(total - HEADER_SIZE) + position,
        )

    def save(self, index: int, term: int, data: SnapshotImage) -> None:
        """Durably replace the snapshot with `data` covering the log through (index, term):
        a finished `sink` is renamed into place, bytes are written."""
        if isinstance(data, FileImage):
            if self._upstream:
                self._save_term(index, term)
            self._file.put_in_place(data)
            return
        payload = data[0 : len(data)]
        if not self._upstream:
            self._file.save_raw(_POSITION.pack(index, term) + payload)
            return
        cluster = ClusterSnapshot()
        try:
            cluster.ParseFromString(payload)
        except DecodeError as exc:
            raise StorageError(str(self._file.path), 0, f"not a ClusterSnapshot: {exc}") from None
        cluster.last_seq = index
        self._save_term(index, term)
        self._file.save(cluster)

    def _save_term(self, index: int, term: int) -> None:
        """Write `snapshot-term` (before the snapshot, see the module doc)."""
        position = _POSITION.pack(index, term)
        if self._term_sums is not None:
            self._term_sums.before_replace(position)
        write_atomically(self._term_path, position)

    def _last_seq(self, image: FileImage) -> int:
        """The ClusterSnapshot's `last_seq`, found without reading its entries."""
        last_seq = 0
        try:
            for number, wire_type, value in iter_fields(image.reader(), only=frozenset()):
                if number == _LAST_SEQ and wire_type == VARINT:
                    assert isinstance(value, int)
                    last_seq = value
        except CodecError as exc:
            raise StorageError(
                str(self._file.path), HEADER_SIZE, f"payload is not a ClusterSnapshot: {exc}"
            ) from None
        return last_seq
