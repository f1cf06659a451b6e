"""Snapshot images in files, so a large state is never held whole in memory: the leader
reads the chunks it sends from one, a follower writes the chunks it receives into one, the
state machine streams into and out of one.

Crash and cleanup notes: a file being written (`SnapshotSink`) and a finished image not yet
put in place are deleted when dropped, so an interrupted transfer or a snapshot that was
not needed leaves nothing behind; `adopt` renames a finished one into place (its reader
keeps working: reads go through the open descriptor, not the name). Names a crash leaves
behind are deleted by `SnapshotFiles` at the next start.
"""

from __future__ import annotations

import io
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dref.actors.consensus.durable_state import SnapshotImage
from dref.contracts.state_machine import StateMachine
from dref.storage.checksums import crc_of_file
from dref.storage.durable_file import fsync_directory

_READ_BUFFER = 1 << 20


class FileImage:
    """`length` bytes at `offset` of an open file, read with pread (several threads may
    read one image at once; see the module doc for its lifetime)."""

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        *,
        file_crc: int | None = None,
        path: Path | None = None,
    ) -> None:
        """`file_crc`: the whole file's CRC32 when known (a file read back), else `sync`
        finds it. `path`: the file's name while this image owns it (deleted when dropped)."""
        self._fd = fd
        self.offset = offset
        self.length = length
        self._file_crc = file_crc
        self._owned: list[Path] = [] if path is None else [path]
        weakref.finalize(self, _release, fd, self._owned)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: slice, /) -> bytes:
        start, stop, step = key.indices(self.length)
        if step != 1:
            raise ValueError("a snapshot image is read in contiguous slices")
        return _pread_exact(self._fd, max(0, stop - start), self.offset + start)

    def reader(self) -> IO[bytes]:
        """The image as a buffered, seekable binary file."""
        return io.BufferedReader(_ImageReader(self), buffer_size=_READ_BUFFER)

    def after(self, skip: int) -> FileImage:
        """The same file without its first `skip` bytes (its own descriptor, owning no name)."""
        return FileImage(
            os.dup(self._fd), self.offset + skip, self.length - skip, file_crc=self._file_crc
        )

    def sync(self) -> int:
        """Make the file durable (once) and return its CRC32, headers included (for its
        checksum side file). Slow for a large file: the storage writer calls it."""
        if self._file_crc is None:
            os.fsync(self._fd)
            self._file_crc = crc_of_file(self._fd)
        return self._file_crc

    def adopt(self, target: Path) -> None:
        """Durably rename this image's file to `target` (replacing it); it is kept from then on."""
        if not self._owned:
            raise RuntimeError("this snapshot image owns no file to put in place")
        os.replace(self._owned[0], target)
        self._owned.clear()
        fsync_directory(target.parent)


class SnapshotSink:
    """A snapshot file being written: `prefix` bytes, then the payload (appended chunk by
    chunk, or streamed through `writer`); `finish` adds `suffix`, rewrites the prefix as
    `frame(total file size)` returns it and hands the file over as a `FileImage` of the
    payload (what was appended, no more), to be made durable by `FileImage.sync`: quick
    enough for the consensus thread, which collects a leader's chunks in one. Also an
    `IncomingSnapshot`."""

    def __init__(
        self, path: Path, prefix: bytes, suffix: bytes, frame: Callable[[int], bytes]
    ) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._owned = [path]
        self._finalizer = weakref.finalize(self, _release, self._fd, self._owned)
        self._prefix_size = len(prefix)
        self._suffix = suffix
        self._frame = frame
        self._size = 0
        self._write(prefix)

    @property
    def size(self) -> int:
        """Payload bytes written so far."""
        return self._size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write the next payload bytes."""
        self._write(data)
        self._size += len(data)

    def writer(self) -> IO[bytes]:
        """A buffered binary file appending to the payload (flush it before `finish`)."""
        return io.BufferedWriter(_SinkWriter(self), buffer_size=_READ_BUFFER)  # type: ignore[type-var]

    def finish(self) -> FileImage:
        """Complete the file (see the class doc); the sink is used up."""
        self._write(self._suffix)
        total = self._prefix_size + self._size + len(self._suffix)
        prefix = self._frame(total)
        assert len(prefix) == self._prefix_size
        os.pwrite(self._fd, prefix, 0)
        self._finalizer.detach()
        return FileImage(self._fd, self._prefix_size, self._size, path=self._path)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view) :]


def open_image(image: SnapshotImage) -> IO[bytes]:
    """Any snapshot image as a binary file to read it from."""
    if isinstance(image, FileImage):
        return image.reader()
    return io.BytesIO(image[0 : len(image)])


def restore_state(machine: StateMachine, image: SnapshotImage) -> None:
    """Replace `machine`'s state with `image`, streamed when it implements `restore_from`."""
    restore_from = getattr(machine, "restore_from", None)
    if restore_from is None:
        machine.restore(image[0 : len(image)])
        return
    with open_image(image) as source:
        restore_from(source)


class _ImageReader(io.RawIOBase):
    """A FileImage as a raw, seekable file (a position of its own, reads through pread)."""

    def __init__(self, image: FileImage) -> None:
        self._image = image
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._image[self._position : self._position + len(buffer)]
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._image)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position


class _SinkWriter(io.RawIOBase):
    """A SnapshotSink as a raw, write-only file."""

    def __init__(self, sink: SnapshotSink) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._sink.append(data)
        return len(data)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(f"snapshot file ends {length - len(data)} bytes early")
        data += more
    return data


def _release(fd: int, owned: list[Path]) -> None:
    """Close the descriptor and delete the name still owned (never raises: runs at GC)."""
    os.close(fd)
    for path in owned:
        try:
            os.unlink(path)
        except OSError:
            pass
