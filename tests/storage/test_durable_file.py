"""write_atomically, fsync_directory and ensure_directory on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dref.storage import durable_file
from dref.storage.durable_file import ensure_directory, fsync_directory, write_atomically


def test_write_atomically_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "voter-state"
    write_atomically(target, b"first")
    inode = target.stat().st_ino
    write_atomically(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert target.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voter-state"]


def test_stale_tmp_file_from_a_crash_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / "state-snapshot.tmp").write_bytes(b"garbage from a crashed write, longer")
    write_atomically(tmp_path / "state-snapshot", b"new")
    assert (tmp_path / "state-snapshot").read_bytes() == b"new"
    assert not (tmp_path / "state-snapshot.tmp").exists()


def test_directory_is_fsynced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_replace, real_fsync_directory = os.replace, durable_file.fsync_directory

    def replace(src: Path, dst: Path) -> None:
        events.append(f"rename {Path(src).name} {Path(dst).name}")
        real_replace(src, dst)

    def sync_directory(path: Path) -> None:
        events.append(f"fsync dir {path}")
        real_fsync_directory(path)

    monkeypatch.setattr(durable_file.os, "replace", replace)
    monkeypatch.setattr(durable_file, "fsync_directory", sync_directory)
    write_atomically(tmp_path / "command-log", b"x")
    assert events == ["rename command-log.tmp command-log", f"fsync dir {tmp_path}"]


def test_failed_write_keeps_the_old_content_and_removes_the_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "voter-state"
    write_atomically(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(durable_file.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voter-state"]


def test_ensure_directory_creates_missing_parents(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c"
    ensure_directory(nested)
    ensure_directory(nested)
    assert nested.is_dir()
    fsync_directory(nested)


def test_fsync_directory_of_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "absent")
