"""`DataDirLock`: at most one node at a time in a data directory.

The holder keeps an exclusive `fcntl.flock` on `<data_dir>/LOCK` and writes its pid into it,
so whoever comes second is told which process to look at. A flock belongs to the open
file, not to the process: a second `Node` in the same process conflicts as well. The
kernel drops it when the holder's process dies, even by SIGKILL, so there is never a
stale lock to clean up. A child forked while the lock is held closes its inherited copy at
once, so the lock still goes with the process that took it. The file itself is kept on
release: removing it would let two openers lock two different files.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

from dref.errors import ConfigError, DataDirInUseError
from dref.storage.durable_file import ensure_directory

LOCK_FILE = "LOCK"

_held: weakref.WeakSet[DataDirLock] = weakref.WeakSet()
"""Locks this process holds, for the fork handler."""


class DataDirLock:
    """The held lock of one data directory; `release()` lets it go (idempotent)."""

    def __init__(self, directory: Path, *, lock_file: bool = True) -> None:
        """Lock `directory` (created if missing); DataDirInUseError at once if it is held.
        With `lock_file=False` the directory itself is locked and nothing is added to it
        (interop mode keeps upstream's three files only); the holder's pid is then unknown."""
        self.directory = directory
        self.path = directory / LOCK_FILE if lock_file else directory
        try:
            ensure_directory(directory)
            if lock_file:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            else:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot lock data directory {directory}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUseError(str(directory), holder) from None
        except OSError as exc:  # a file system without flock, for example
            os.close(fd)
            raise ConfigError(f"cannot lock data directory {directory}: {exc}") from None
        try:
            if lock_file:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # closing the only descriptor of the file also unlocks it
            raise
        self._fd = fd
        _held.add(self)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd >= 0

    def release(self) -> None:
        """Unlock and close the lock file; a no-op once released."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        _held.discard(self)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _drop_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking the parent's."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (None while it has not yet, or for a
    locked directory)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _drop_all_after_fork() -> None:
    """Let a forked child forget every lock its parent holds (see the module doc)."""
    for lock in list(_held):
        lock._drop_after_fork()
    _held.clear()


os.register_at_fork(after_in_child=_drop_all_after_fork)
