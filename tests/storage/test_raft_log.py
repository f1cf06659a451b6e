"""The native-mode durable log: command-log stays upstream's format, LMDB holds where terms
change and what is not a command, and recovery after a crash between the two stores keeps
exactly the acknowledged entries with their right terms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest

from dref.errors import StorageError
from dref.storage.command_log import CommandLog, LogRecord, decode_command_log
from dref.storage.raft_log import INDEX_DIR, RaftLog, StoredEntry, StoredKind, _sealed
from dref.wire.proto.state_command_pb2 import StateCommand

SET_A = StateCommand()
SET_A.set_element.name = "a"
SET_A.set_element.value = b"\x01"
SET_A_BYTES = SET_A.SerializeToString()


def _entries(first: int, count: int, term: int) -> list[StoredEntry]:
    return [
        StoredEntry(i, term, StoredKind.COMMAND, SET_A_BYTES) for i in range(first, first + count)
    ]


def _reopen(directory: Path) -> tuple[RaftLog, object]:
    log = RaftLog(directory)
    return log, log.open()


def test_round_trip_with_every_kind(tmp_path):
    log, recovered = _reopen(tmp_path)
    assert recovered.entries == [] and recovered.last_index == 0
    entries = [
        StoredEntry(1, 1, StoredKind.NOOP, b""),
        StoredEntry(2, 1, StoredKind.COMMAND, SET_A_BYTES),
        StoredEntry(3, 2, StoredKind.CONFIG, b"voters=a,b,c"),
    ]
    log.append(entries)
    log.set_commit_index(2)
    log.close()
    log, recovered = _reopen(tmp_path)
    assert recovered.entries == entries
    assert recovered.commit_index == 2
    assert recovered.dropped_unacknowledged == 0
    log.close()
    # command-log itself is upstream's format: noop and config are empty StateCommands.
    upstream_view = decode_command_log((tmp_path / "command-log").read_bytes(), "command-log")
    assert upstream_view.records == {1: b"", 2: SET_A_BYTES, 3: b""}
    assert upstream_view.commit_seq == 2


def test_append_must_follow_the_last_index_in_no_older_term(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 2, 3))
    with pytest.raises(StorageError, match="does not follow 2"):
        log.append(_entries(4, 1, 3))
    with pytest.raises(StorageError, match="terms never decrease"):
        log.append(_entries(3, 1, 2))
    log.close()


def test_truncate_from_then_append_a_new_term(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 5, 1))
    log.truncate_from(3)
    log.append(_entries(3, 2, 2))
    log.close()
    _, recovered = _reopen(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_compaction_keeps_later_entries_and_the_snapshot_base(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 6, 3))
    log.compact_through(4, 3)
    log.append(_entries(7, 1, 4))
    log.close()
    _, recovered = _reopen(tmp_path)
    assert (recovered.snapshot_index, recovered.snapshot_term) == (4, 3)
    assert [e.index for e in recovered.entries] == [5, 6, 7]
    assert set(decode_command_log((tmp_path / "command-log").read_bytes(), "x").records) == {
        5,
        6,
        7,
    }


def test_compaction_past_the_end_empties_the_log(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 3, 1))
    log.compact_through(10, 2)  # a snapshot installed from the leader
    log.append(_entries(11, 1, 2))
    log.close()
    _, recovered = _reopen(tmp_path)
    assert recovered.snapshot_index == 10
    assert [e.index for e in recovered.entries] == [11]


def test_compaction_keeps_the_newest_configuration_it_drops(tmp_path):
    log, recovered = _reopen(tmp_path)
    assert recovered.snapshot_config is None
    log.append(
        [
            StoredEntry(1, 1, StoredKind.CONFIG, b"first"),
            StoredEntry(2, 1, StoredKind.CONFIG, b"second"),
            *_entries(3, 2, 1),
            StoredEntry(5, 1, StoredKind.CONFIG, b"third"),
        ]
    )
    log.compact_through(3, 1)
    log.close()
    log, recovered = _reopen(tmp_path)
    assert recovered.snapshot_config == b"second"  # "third" is still in the log
    log.compact_through(4, 1)  # drops no configuration: the base one stays
    log.close()
    log, recovered = _reopen(tmp_path)
    assert recovered.snapshot_config == b"second"
    log.compact_through(5, 1)
    log.close()
    log, recovered = _reopen(tmp_path)
    assert recovered.snapshot_config == b"third"
    log.close()


def test_an_installed_snapshot_records_the_configuration_staged_for_it(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append([StoredEntry(1, 1, StoredKind.CONFIG, b"old"), *_entries(2, 2, 1)])
    log.stage_snapshot_config(10, b"leader's")
    log.truncate_from(1)
    log.compact_through(10, 2)
    log.stage_snapshot_config(20, b"never installed")  # a crash before the snapshot file
    log.close()
    log, recovered = _reopen(tmp_path)
    assert (recovered.snapshot_index, recovered.snapshot_config) == (10, b"leader's")
    log.compact_through(15, 2)  # a staged configuration of another index is not used
    log.close()
    log, recovered = _reopen(tmp_path)
    assert recovered.snapshot_config == b"leader's"
    log.close()


def _index_rows(directory: Path) -> dict[int, int]:
    """LMDB's rows: index -> term (read directly, as recovery would)."""
    env = lmdb.open(str(directory / INDEX_DIR), max_dbs=2)
    try:
        db = env.open_db(b"entries")
        with env.begin() as txn:
            return {
                int.from_bytes(k, "big"): int.from_bytes(v[:8], "big") for k, v in txn.cursor(db=db)
            }
    finally:
        env.close()


def _put_row(directory: Path, index: int, term: int) -> None:
    """Commit one command row the way RaftLog does, without its record or any check."""
    log = RaftLog(directory)
    log.open()
    key = index.to_bytes(8, "big")
    try:
        with log._write() as txn:
            row = term.to_bytes(8, "big") + bytes([StoredKind.COMMAND])
            txn.put(key, _sealed(key, row), db=log._entries_db)
            log._rows += 1
    finally:
        log.close()


def test_commands_in_the_term_before_them_need_no_lmdb_row(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 3, 1))
    log.append(_entries(4, 2, 1))
    log.append([StoredEntry(6, 1, StoredKind.NOOP, b""), *_entries(7, 1, 1)])
    log.append(_entries(8, 2, 3))
    log.close()
    assert _index_rows(tmp_path) == {1: 1, 6: 1, 8: 3}  # run starts and the no-op only
    # Records command-log holds beyond those rows belong to the run before them.
    commands = CommandLog(tmp_path)
    commands.open()
    commands.append_many([LogRecord(10, SET_A_BYTES)])
    commands.close()
    log, recovered = _reopen(tmp_path)
    assert [(e.index, e.term, e.kind) for e in recovered.entries] == [
        *[(i, 1, StoredKind.COMMAND) for i in range(1, 6)],
        (6, 1, StoredKind.NOOP),
        (7, 1, StoredKind.COMMAND),
        *[(i, 3, StoredKind.COMMAND) for i in range(8, 11)],
    ]
    assert recovered.dropped_unacknowledged == 0
    log.close()


def test_a_new_terms_row_without_its_records_is_dropped(tmp_path):
    """A crash after the row of a new term committed, before command-log was written."""
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 2, 1))
    log.close()
    _put_row(tmp_path, 3, 2)
    log, recovered = _reopen(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries] == [(1, 1), (2, 1)]
    assert recovered.dropped_unacknowledged == 1
    log.append(_entries(3, 1, 5))  # the stores agree again, so appends continue
    log.close()
    assert _index_rows(tmp_path) == {1: 1, 3: 5}
    _, recovered = _reopen(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries][-1] == (3, 5)


def test_a_truncation_cut_short_leaves_no_stale_term_behind(tmp_path):
    """A crash after command-log was truncated, before LMDB's rows were deleted: the row of
    the dropped term must not give its term to entries appended at that index later."""
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 2, 1))
    log.append(_entries(3, 2, 2))
    log.close()
    commands = CommandLog(tmp_path)
    commands.open()
    commands.truncate_from(3)
    commands.close()
    log, recovered = _reopen(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries] == [(1, 1), (2, 1)]
    assert recovered.dropped_unacknowledged == 1
    log.append(_entries(3, 1, 1))  # same term as entry 2: no row of its own
    log.close()
    _, recovered = _reopen(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries] == [(1, 1), (2, 1), (3, 1)]


def test_truncation_then_compaction_keep_terms_right(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 4, 1))
    log.append(_entries(5, 4, 2))
    log.truncate_from(7)
    log.append(_entries(7, 2, 4))
    log.compact_through(6, 2)
    log.append(_entries(9, 1, 4))
    log.close()
    log, recovered = _reopen(tmp_path)
    log.close()
    assert (recovered.snapshot_index, recovered.snapshot_term) == (6, 2)
    assert [(e.index, e.term) for e in recovered.entries] == [(7, 4), (8, 4), (9, 4)]
    assert _index_rows(tmp_path) == {7: 4}


def test_a_row_with_an_older_term_than_the_run_before_it_is_reported(tmp_path):
    log, _ = _reopen(tmp_path)
    log.append(_entries(1, 2, 3))
    log.close()
    _put_row(tmp_path, 2, 1)  # damage: a row whose term is older than the run before it
    with pytest.raises(StorageError, match="terms never decrease"):
        _reopen(tmp_path)


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dref.storage.raft_log import INDEX_DIR, StoredKind, RaftLog, StoredEntry
    log = RaftLog(Path(sys.argv[1]))
    recovered = log.open()
    index = recovered.last_index
    for batch in range(100000):
        entries = [StoredEntry(index + k + 1, 7, StoredKind.COMMAND, b"") for k in range(5)]
        log.append(entries)
        index += 5
        print(index, flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_entry(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    acknowledged = 0
    deadline = time.monotonic() + 60
    assert child.stdout is not None
    while acknowledged < 200 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert acknowledged >= 200, "the writer did not make progress"
    log, recovered = _reopen(tmp_path)
    indexes = [e.index for e in recovered.entries]
    assert indexes == list(range(1, len(indexes) + 1))
    assert indexes[-1] >= acknowledged
    assert all(e.term == 7 for e in recovered.entries)
    log.close()
