"""The node's durable snapshot: the `state-snapshot` file plus what it needs beside it.

With upstream files the payload must be a ClusterSnapshot (its `last_seq` is set to the
snapshot index, as upstream expects) and the index's term lives in a small `snapshot-term`
file written first, so a crash between the two is detected by the index not matching.
Without upstream files the payload is the state machine's own bytes, prefixed by the
index and term (a DRFS frame only our nodes read).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from dref.errors import StorageError
from dref.storage.checksums import StateSumsFile
from dref.storage.durable_file import read_if_exists, write_atomically
from dref.storage.state_snapshot import StateSnapshotFile
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot

TERM_FILE = "snapshot-term"
_POSITION = struct.Struct(">QQ")  # index, term


@dataclass(frozen=True)
class SavedSnapshot:
    """A state-machine image covering the log through (index, term); `term` is None when
    a crash left the term unknown (the caller then derives it from the log)."""

    index: int
    term: int | None
    data: bytes


class SnapshotFiles:
    """Loads and saves the snapshot in upstream's format or the raw native one."""

    def __init__(self, directory: Path, *, upstream: bool, checksums: bool = False) -> None:
        """`checksums` (native mode): both files are checked against side files."""
        self._file = StateSnapshotFile(directory, checksums=checksums)
        self._term_path = directory / TERM_FILE
        self._term_sums = StateSumsFile(self._term_path) if checksums else None
        self._upstream = upstream

    def load(self) -> SavedSnapshot | None:
        """The persisted snapshot, or None when there is none."""
        if not self._upstream:
            payload = self._file.load_raw()
            if payload is None:
                return None
            if len(payload) < _POSITION.size:
                raise StorageError(str(self._file.path), 9, "raw snapshot lacks index and term")
            index, term = _POSITION.unpack_from(payload)
            return SavedSnapshot(index, term, payload[_POSITION.size :])
        cluster = self._file.load()
        if cluster is None:
            return None
        term = None
        position = read_if_exists(self._term_path)
        if self._term_sums is not None:
            self._term_sums.verify(position)
        if position is not None and len(position) == _POSITION.size:
            saved_index, saved_term = _POSITION.unpack(position)
            if saved_index == cluster.last_seq:
                term = saved_term
        return SavedSnapshot(cluster.last_seq, term, cluster.SerializeToString(deterministic=True))

    def save(self, index: int, term: int, data: bytes) -> None:
        """Durably replace the snapshot with `data` covering the log through (index, term)."""
        if not self._upstream:
            self._file.save_raw(_POSITION.pack(index, term) + data)
            return
        cluster = ClusterSnapshot()
        try:
            cluster.ParseFromString(data)
        except DecodeError as exc:
            raise StorageError(str(self._file.path), 0, f"not a ClusterSnapshot: {exc}") from None
        cluster.last_seq = index
        position = _POSITION.pack(index, term)
        if self._term_sums is not None:
            self._term_sums.before_replace(position)
        write_atomically(self._term_path, position)
        self._file.save(cluster)
