"""The `voter-state` file (DRFT, spec 5.1): the current term and the vote cast in it.

Layout: magic `DRFT`, version 1, term (u64 BE), voted_for length (i32 BE; negative = no vote),
voted_for UTF-8. Bytes after voted_for are ignored.

With checksums (native mode) `voter-state.sums` beside it holds the CRC32 of the current
image and of the one before: a save writes it (tmp, fsync, rename) before it replaces
`voter-state`, so a crash between the two leaves a checksum for whichever image survived,
and any flipped byte is a StorageError instead of, say, term 257. A save costs two atomic
file replacements instead of one. A `voter-state` without a side file (upstream's, or from
dref-py before checksums) is accepted and gets one on load.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from dref.errors import StorageError
from dref.storage.checksums import StateSumsFile
from dref.storage.durable_file import (
    check_header,
    ensure_directory,
    read_if_exists,
    write_atomically,
)

FILE_NAME = "voter-state"
MAGIC = b"DRFT"
_HEADER = struct.Struct(">4sBQi")
_NO_VOTE = -1


@dataclass(frozen=True)
class VoterState:
    """The persisted Raft voter state: `term` and the node voted for in it (None = no vote)."""

    term: int
    voted_for: str | None


def encode_voter_state(state: VoterState) -> bytes:
    """Encode `state` as the exact DRFT byte image upstream nodes write."""
    if not 0 <= state.term < 2**64:
        raise ValueError(f"term {state.term} does not fit in a u64")
    if state.voted_for is None:
        return _HEADER.pack(MAGIC, 1, state.term, _NO_VOTE)
    name = state.voted_for.encode("utf-8")
    if len(name) >= 2**31:
        raise ValueError(f"voted_for is {len(name)} bytes; the format allows < 2**31")
    return _HEADER.pack(MAGIC, 1, state.term, len(name)) + name


def decode_voter_state(data: bytes, path: str) -> VoterState:
    """Decode a DRFT byte image; raise StorageError (naming `path` and the offset) if it is
    malformed or truncated."""
    check_header(data, path, MAGIC, _HEADER.size)
    _, _, term, length = _HEADER.unpack_from(data)
    if length < 0:
        return VoterState(term, None)
    end = _HEADER.size + length
    if len(data) < end:
        raise StorageError(
            path, _HEADER.size, f"truncated voted_for: {len(data) - _HEADER.size} of {length} bytes"
        )
    try:
        voted_for = data[_HEADER.size : end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StorageError(path, _HEADER.size + exc.start, "voted_for is not UTF-8") from None
    return VoterState(term, voted_for)


class VoterStateFile:
    """The `voter-state` file in a storage directory; missing means term 0 and no vote.
    `checksums=True` (native mode) keeps and checks `voter-state.sums` (see the module doc)."""

    def __init__(self, directory: Path, *, checksums: bool = False) -> None:
        ensure_directory(directory)
        self.path = directory / FILE_NAME
        self._sums = StateSumsFile(self.path) if checksums else None

    def load(self) -> VoterState:
        """Read the persisted state (term 0, no vote when the file does not exist)."""
        data = read_if_exists(self.path)
        if self._sums is not None:
            self._sums.verify(data)
        if data is None:
            return VoterState(0, None)
        return decode_voter_state(data, str(self.path))

    def save(self, state: VoterState) -> None:
        """Durably replace the persisted state; returns only after it survives a crash."""
        image = encode_voter_state(state)
        if self._sums is not None:
            self._sums.before_replace(image)
        write_atomically(self.path, image)
