"""CommandLog through real files: appends, in-place commit, truncations, torn tails, errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dref.errors import StorageError
from dref.storage import command_log
from dref.storage.command_log import (
    CommandLog,
    LogRecord,
    decode_command_log,
    encode_command_log,
    encode_log_record,
)
from dref.wire.proto.state_command_pb2 import (
    DeleteElementCommand,
    SetElementCommand,
    StateCommand,
)


def cmd(name: str, value: bytes = b"v") -> bytes:
    return StateCommand(set_element=SetElementCommand(name=name, value=value)).SerializeToString()


def records(*seqs: int) -> list[LogRecord]:
    return [LogRecord(s, cmd(f"k{s}")) for s in seqs]


def as_map(recs: list[LogRecord]) -> dict[int, bytes]:
    return {r.seq: r.command for r in recs}


def reopen(directory: Path) -> tuple[int, list[tuple[int, bytes]]]:
    with CommandLog(directory) as log:
        loaded = log.open()
    assert loaded.torn_tail is None
    return loaded.commit_seq, list(loaded.records.items())


def test_missing_file_opens_empty_and_is_not_created(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        loaded = log.open()
        assert (loaded.commit_seq, loaded.records, loaded.torn_tail) == (0, {}, None)
    assert not (tmp_path / "command-log").exists()


def test_append_creates_header_and_writes_exact_bytes(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append(LogRecord(1, cmd("a")))
        log.append_many(records(2, 3))
        log.append_many([])
    assert (tmp_path / "command-log").read_bytes() == encode_command_log(
        0, [LogRecord(1, cmd("a")), *records(2, 3)]
    )
    assert not (tmp_path / "command-log.tmp").exists()


def test_append_many_then_reopen_reads_everything_in_order(tmp_path: Path) -> None:
    batch = [LogRecord(s, cmd(f"k{s}", os.urandom(s))) for s in range(1, 101)]
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many(batch[:60])
        log.append_many(batch[60:])
    assert reopen(tmp_path) == (0, [(r.seq, r.command) for r in batch])


def test_set_commit_seq_overwrites_header_in_place(tmp_path: Path) -> None:
    path = tmp_path / "command-log"
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many(records(1, 2))
        before = path.read_bytes()
        inode = path.stat().st_ino
        log.set_commit_seq(0x0102030405060708)
        after = path.read_bytes()
        assert log.commit_seq == 0x0102030405060708
        assert path.stat().st_ino == inode
        assert len(after) == len(before)
        assert after[5:13] == bytes.fromhex("0102030405060708")
        assert after[:5] == before[:5] and after[13:] == before[13:]
        log.append_many(records(3))
    assert reopen(tmp_path) == (0x0102030405060708, [(r.seq, r.command) for r in records(1, 2, 3)])


def test_set_commit_seq_on_missing_file_creates_header(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.set_commit_seq(7)
        log.append(LogRecord(8, cmd("x")))
    assert (tmp_path / "command-log").read_bytes()[:13] == bytes.fromhex(
        "4452464c010000000000000007"
    )
    assert reopen(tmp_path) == (7, [(8, cmd("x"))])


def test_truncate_through_keeps_later_records_and_lowers_commit(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many(records(1, 2, 3, 4, 5))
        log.set_commit_seq(5)
        log.truncate_through(3)
        assert log.commit_seq == 3
        log.append(LogRecord(6, cmd("k6")))
    assert reopen(tmp_path) == (3, [(r.seq, r.command) for r in records(4, 5, 6)])


def test_truncate_through_keeps_a_lower_commit(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many(records(1, 2, 3))
        log.set_commit_seq(1)
        log.truncate_through(2)
        assert log.commit_seq == 1
    assert reopen(tmp_path) == (1, [(3, cmd("k3"))])


def test_truncate_from_drops_the_tail_and_keeps_commit(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many(records(1, 2, 3, 4))
        log.set_commit_seq(2)
        log.truncate_from(3)
        assert log.commit_seq == 2
        log.append(LogRecord(3, cmd("other")))
    assert reopen(tmp_path) == (2, [(1, cmd("k1")), (2, cmd("k2")), (3, cmd("other"))])
    assert not (tmp_path / "command-log.tmp").exists()


def test_later_duplicates_overwrite_earlier_ones(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append_many([LogRecord(1, cmd("a")), LogRecord(2, cmd("b"))])
        log.append(LogRecord(1, cmd("c")))
    assert reopen(tmp_path) == (0, [(1, cmd("c")), (2, cmd("b"))])


def test_empty_file_opens_as_empty_log_and_gets_a_header(tmp_path: Path) -> None:
    (tmp_path / "command-log").write_bytes(b"")
    with CommandLog(tmp_path) as log:
        assert log.open().records == {}
        log.append(LogRecord(1, cmd("a")))
    assert reopen(tmp_path) == (0, [(1, cmd("a"))])


THREE = records(1, 2, 3)
FULL = encode_command_log(4, THREE)
BOUNDARIES = [13]
for _record in THREE:
    BOUNDARIES.append(BOUNDARIES[-1] + len(encode_log_record(_record)))


@pytest.mark.parametrize("cut", range(13, len(FULL)))
def test_torn_tail_at_every_cut_point_is_reported_and_repaired(
    tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "command-log"
    path.write_bytes(FULL[:cut])
    complete = [b for b in BOUNDARIES if b <= cut]
    survivors = THREE[: len(complete) - 1]
    with caplog.at_level(logging.WARNING, logger="dref.storage"), CommandLog(tmp_path) as log:
        loaded = log.open()
        assert loaded.records == as_map(survivors)
        assert loaded.commit_seq == 4
        if cut == complete[-1]:
            assert loaded.torn_tail is None
            assert not caplog.records
        else:
            assert loaded.torn_tail is not None
            assert loaded.torn_tail.offset == complete[-1]
            assert loaded.torn_tail.dropped_bytes == cut - complete[-1]
            assert any(str(path) in r.getMessage() for r in caplog.records)
        assert path.read_bytes() == FULL[: complete[-1]]
        log.append(LogRecord(9, cmd("after")))
    expected = [(r.seq, r.command) for r in survivors] + [(9, cmd("after"))]
    assert reopen(tmp_path) == (4, expected)


@pytest.mark.parametrize("cut", range(1, 13))
def test_truncated_header_is_an_error(tmp_path: Path, cut: int) -> None:
    (tmp_path / "command-log").write_bytes(FULL[:cut])
    with pytest.raises(StorageError, match="truncated header") as info:
        CommandLog(tmp_path).open()
    assert info.value.offset == cut


def _record_bytes(seq: int, length: int, payload: bytes) -> bytes:
    return seq.to_bytes(8, "big") + length.to_bytes(4, "big", signed=True) + payload


@pytest.mark.parametrize(
    ("data", "offset", "word"),
    [
        (b"DRFS" + FULL[4:], 0, "magic"),
        (b"XX", 0, "magic"),
        (FULL[:4] + b"\x02" + FULL[5:], 4, "version"),
        (FULL[:13] + _record_bytes(1, -1, b""), 13, "negative"),
        (FULL[:13] + _record_bytes(1, -5, b"abcdefgh"), 13, "negative"),
        (FULL[:13] + _record_bytes(1, 3, b"\xff\xff\xff"), 13, "not a StateCommand"),
        (FULL + _record_bytes(4, 3, b"\xff\xff\xff"), len(FULL), "not a StateCommand"),
        (FULL[:13] + _record_bytes(1, 2, b"\x0a\x05") + FULL[13:], 13, "not a StateCommand"),
    ],
)
def test_corruption_raises_storage_error_naming_file_and_offset(
    tmp_path: Path, data: bytes, offset: int, word: str
) -> None:
    path = tmp_path / "command-log"
    path.write_bytes(data)
    with pytest.raises(StorageError, match=word) as info:
        CommandLog(tmp_path).open()
    assert (info.value.path, info.value.offset) == (str(path), offset)
    assert f"{path}: at offset {offset}:" in str(info.value)
    assert path.read_bytes() == data


def test_length_beyond_end_of_file_is_a_torn_tail() -> None:
    data = FULL[:13] + _record_bytes(1, 1000, cmd("k1"))
    loaded = decode_command_log(data, "log")
    assert loaded.records == {}
    assert loaded.torn_tail is not None and loaded.torn_tail.offset == 13


def test_commands_of_every_kind_are_accepted() -> None:
    delete = StateCommand(delete_element=DeleteElementCommand(name="x")).SerializeToString()
    data = encode_command_log(0, [LogRecord(1, delete), LogRecord(2, b"")])
    assert decode_command_log(data, "log").records == {1: delete, 2: b""}


def test_encoder_refuses_records_that_would_make_the_log_unloadable() -> None:
    with pytest.raises(ValueError, match="StateCommand"):
        encode_log_record(LogRecord(1, b"\xff\xff\xff"))
    with pytest.raises(ValueError, match="u64"):
        encode_log_record(LogRecord(-1, b""))
    with pytest.raises(ValueError, match="u64"):
        encode_command_log(2**64, [])


def test_rejected_append_leaves_the_file_untouched(tmp_path: Path) -> None:
    with CommandLog(tmp_path) as log:
        log.open()
        log.append(LogRecord(1, cmd("a")))
        before = (tmp_path / "command-log").read_bytes()
        with pytest.raises(ValueError):
            log.append_many([LogRecord(2, cmd("b")), LogRecord(3, b"\xff")])
        assert (tmp_path / "command-log").read_bytes() == before


def test_use_before_open_is_refused(tmp_path: Path) -> None:
    log = CommandLog(tmp_path)
    for call in (
        lambda: log.append(LogRecord(1, cmd("a"))),
        lambda: log.set_commit_seq(1),
        lambda: log.truncate_from(1),
        lambda: log.truncate_through(1),
    ):
        with pytest.raises(RuntimeError, match="open"):
            call()
    assert not (tmp_path / "command-log").exists()


def test_failed_fsync_removes_the_unacknowledged_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "command-log"
    with CommandLog(tmp_path) as log:
        log.open()
        log.append(LogRecord(1, cmd("a")))
        before = path.read_bytes()
        real_fdatasync = os.fdatasync
        calls: list[int] = []

        def fdatasync_failing_once(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                raise OSError(5, "simulated I/O error")
            real_fdatasync(fd)

        monkeypatch.setattr(command_log.os, "fdatasync", fdatasync_failing_once)  # appends
        with pytest.raises(OSError, match="simulated"):
            log.append_many(records(2, 3))
        assert path.read_bytes() == before
        log.append(LogRecord(2, cmd("b")))
    assert reopen(tmp_path) == (0, [(1, cmd("a")), (2, cmd("b"))])


def test_log_that_cannot_remove_a_failed_batch_must_be_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object) -> None:
        raise OSError(28, "simulated: no space left")

    with CommandLog(tmp_path) as log:
        log.open()
        log.append(LogRecord(1, cmd("a")))
        monkeypatch.setattr(command_log.os, "fdatasync", failing)
        monkeypatch.setattr(command_log.os, "ftruncate", failing)
        with pytest.raises(OSError, match="no space"):
            log.append(LogRecord(2, cmd("b")))
        monkeypatch.undo()
        with pytest.raises(RuntimeError, match="open"):
            log.append(LogRecord(3, cmd("c")))
        loaded = log.open()
        assert loaded.records == {1: cmd("a"), 2: cmd("b")}


def test_validation_can_be_turned_off_for_non_state_command_payloads(tmp_path: Path) -> None:
    opaque = b"\xff\xff\xff"
    with CommandLog(tmp_path, validate_commands=False) as log:
        log.open()
        log.append_many([LogRecord(1, opaque), LogRecord(2, b"\x0a\x05")])
        log.truncate_from(2)
    with pytest.raises(StorageError, match="not a StateCommand"):
        CommandLog(tmp_path).open()
    with CommandLog(tmp_path, validate_commands=False) as log:
        assert log.open().records == {1: opaque}
