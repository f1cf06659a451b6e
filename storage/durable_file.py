"""Crash-safe file primitives and the header check shared by the three upstream file formats.

Every write that replaces a whole file goes through `write_atomically`, so a crash leaves either
the old or the new content under the real name, never a mix (spec 5.1-5.3, and 7.17: unlike
upstream we also fsync the directory so the rename itself survives a power loss).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dref.errors import StorageError

TMP_SUFFIX = ".tmp"


def fsync_directory(path: Path) -> None:
    """Fsync the directory `path` so that entries created, renamed or removed in it are durable."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_directory(path: Path) -> None:
    """Create `path` and missing parents, making each new directory durable in its parent."""
    if path.is_dir():
        return
    ensure_directory(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    fsync_directory(path.parent)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: write `<name>.tmp`, fsync it, rename it over `path`, fsync the
    directory. Readers see the old or the new content, never a partial file."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def read_if_exists(path: Path) -> bytes | None:
    """Return the whole content of `path`, or None when the file does not exist (= "empty")."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def check_header(data: bytes, path: str, magic: bytes, header_size: int) -> None:
    """Raise StorageError unless `data` starts with `magic`, version byte 1 and at least
    `header_size` bytes in all (the three formats share this prefix: magic at 0, version at 4)."""
    prefix = data[: len(magic)]
    if prefix != magic[: len(prefix)]:
        raise StorageError(path, 0, f"wrong magic {prefix.hex()}, expected {magic.hex()}")
    if len(data) > len(magic) and data[len(magic)] != 1:
        raise StorageError(path, len(magic), f"unsupported version {data[len(magic)]}, expected 1")
    if len(data) < header_size:
        raise StorageError(path, len(data), f"truncated header: {len(data)} of {header_size} bytes")
