"""The data directory lock: one holder at a time, in this process or another, named by pid
when refused, and gone when the holder releases it or its process dies (SIGKILL too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dref.errors import ConfigError, DataDirInUseError
from dref.storage.data_dir_lock import LOCK_FILE, DataDirLock

HOLD = """
import os, sys
from pathlib import Path
from dref.storage.data_dir_lock import DataDirLock
lock = DataDirLock(Path(sys.argv[1]))
if len(sys.argv) > 2:  # fork a child that outlives us, then report its pid
    ready, told = os.pipe()
    child = os.fork()
    if child == 0:  # the fork handlers have run by the time fork() returns here
        os.close(1)
        os.write(told, b"x")
        sys.stdin.read()
        os._exit(0)
    os.read(ready, 1)  # not "locked" before the child is past its fork handlers
    print(child, flush=True)
print("locked", flush=True)
sys.stdin.read()
"""


class Holder:
    """A process that takes the lock of a directory and keeps it until its stdin closes."""

    def __init__(self, directory: Path, *, fork_child: bool = False) -> None:
        extra = ["fork"] if fork_child else []
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(directory), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.child_pid = int(self.process.stdout.readline()) if fork_child else None
        assert self.process.stdout.readline() == "locked\n"  # blocks until then (or EOF)

    def kill(self) -> None:
        """SIGKILL the holder and reap it."""
        self.process.kill()
        self.process.wait(timeout=30)

    def close(self) -> None:
        for pid in (self.child_pid,) if self.child_pid else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            assert stream is not None
            stream.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    """Holders started by a test; all killed at its end."""
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.close()


def test_a_second_lock_in_the_same_process_is_refused_at_once(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "d")
    with pytest.raises(DataDirInUseError, match=rf"{tmp_path / 'd'} is in use by pid") as info:
        DataDirLock(tmp_path / "d")
    assert info.value.holder_pid == os.getpid()
    assert "(this process)" in str(info.value)
    assert isinstance(info.value, ConfigError)
    first.release()
    first.release()  # idempotent
    assert not first.held
    second = DataDirLock(tmp_path / "d")
    assert second.held
    second.release()


def test_the_lock_file_holds_the_holders_pid(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_another_process_is_named_and_its_death_releases_the_lock(
    tmp_path: Path, holders: list[Holder]
) -> None:
    holder = Holder(tmp_path)
    holders.append(holder)
    with pytest.raises(DataDirInUseError, match=f"in use by pid {holder.process.pid};") as info:
        DataDirLock(tmp_path)
    assert info.value.holder_pid == holder.process.pid
    assert info.value.directory == str(tmp_path)
    holder.kill()  # SIGKILL: no chance to release; the kernel does
    DataDirLock(tmp_path).release()


def test_a_child_forked_by_the_holder_does_not_keep_the_lock(
    tmp_path: Path, holders: list[Holder]
) -> None:
    holder = Holder(tmp_path, fork_child=True)
    holders.append(holder)
    holder.kill()
    assert holder.child_pid is not None
    os.kill(holder.child_pid, 0)  # the forked child still runs ...
    DataDirLock(tmp_path).release()  # ... and yet the lock went with its parent


def test_a_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot lock data directory"):
        DataDirLock(tmp_path / "file" / "d")
