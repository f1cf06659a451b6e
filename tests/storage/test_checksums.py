"""Native mode's checksums beside upstream's files: a flipped byte anywhere in command-log,
voter-state or their side files is a StorageError naming the file and an offset, never
wrong data; a crash at any point still opens; truncation and compaction keep the side file
right; directories without checksums open and get them; a damaged or missing LMDB index is
reported, not a traceback."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dref.errors import StorageError
from dref.storage import command_log as command_log_module
from dref.storage.checksums import LogSumsFile, decode_log_sums, record_sums, sums_path
from dref.storage.command_log import CommandLog, LogRecord
from dref.storage.raft_log import INDEX_DIR, RaftLog, RecoveredLog, StoredEntry, StoredKind
from dref.storage.snapshot_files import SnapshotFiles
from dref.storage.voter_state import VoterState, VoterStateFile
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.state_command_pb2 import StateCommand

FLIPS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOG_FILES = ("command-log", "command-log.sums")
VOTER_FILES = ("voter-state", "voter-state.sums")
SNAPSHOT_FILES = ("state-snapshot", "state-snapshot.sums", "snapshot-term", "snapshot-term.sums")


def _set(name: str, value: bytes = b"\x01") -> bytes:
    command = StateCommand()
    command.set_element.name = name
    command.set_element.value = value
    return command.SerializeToString()


def _open(directory: Path) -> RecoveredLog:
    log = RaftLog(directory)
    try:
        return log.open()
    finally:
        log.close()


def _seen(recovered: RecoveredLog) -> tuple[object, ...]:
    """Everything a node starts from, to compare a reopened log with the original."""
    return (
        recovered.snapshot_index,
        recovered.snapshot_term,
        recovered.entries,
        recovered.commit_index,
        recovered.torn_tail,
    )


def _flipped_copies(source: Path, work: Path, name: str, mask: int) -> Iterator[Path]:
    """A fresh copy of `source` with one byte of `name` XORed by `mask`, for every position."""
    size = (source / name).stat().st_size
    for position in range(size):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        data = bytearray((work / name).read_bytes())
        data[position] ^= mask
        (work / name).write_bytes(bytes(data))
        yield work


def _assert_reported(exc: StorageError, directory: Path, names: tuple[str, ...]) -> None:
    assert Path(exc.path).parent == directory and Path(exc.path).name in names, exc
    assert 0 <= exc.offset <= (Path(exc.path)).stat().st_size, exc


entries_strategy = st.lists(
    st.tuples(
        st.sampled_from(list(StoredKind)),
        st.integers(min_value=0, max_value=2),  # term increment
        st.text(min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=4,
)


def _written(
    directory: Path, batches: list[list[tuple[StoredKind, int, str]]]
) -> tuple[RaftLog, int]:
    """An open log holding `batches` (kind, term increment, name) appended one batch at a
    time, and its last index."""
    log = RaftLog(directory)
    log.open()
    index, term = 0, 1
    for batch in batches:
        entries = []
        for kind, step, name in batch:
            index, term = index + 1, term + step
            data = _set(name) if kind is StoredKind.COMMAND else name.encode()
            entries.append(StoredEntry(index, term, kind, b"" if kind is StoredKind.NOOP else data))
        log.append(entries)
    return log, index


@FLIPS
@given(
    batches=st.lists(entries_strategy, min_size=1, max_size=3),
    mask=st.integers(min_value=1, max_value=255),
    commit=st.integers(min_value=0, max_value=12),
)
def test_every_flipped_byte_of_the_log_or_its_sums_is_reported(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[StoredKind, int, str]]],
    mask: int,
    commit: int,
) -> None:
    source = tmp_path_factory.mktemp("log")
    log, index = _written(source, batches)
    log.set_commit_index(min(commit, index))
    log.close()
    original = _seen(_open(source))
    work = tmp_path_factory.mktemp("work") / "d"
    for name in LOG_FILES:
        for directory in _flipped_copies(source, work, name, mask):
            try:
                reopened = _open(directory)
            except StorageError as exc:
                _assert_reported(exc, directory, LOG_FILES)
            else:
                # A flip that turns commit_seq into the value before it looks like a crash
                # between the side file and the header, and is kept: a durable commit index
                # is a lower bound that the leader raises again, never a wrong entry.
                if reopened.commit_index == 0 != original[3]:
                    reopened = dataclasses.replace(reopened, commit_index=original[3])
                assert _seen(reopened) == original, name


@FLIPS
@given(
    states=st.lists(
        st.builds(VoterState, st.integers(0, 2**64 - 1), st.none() | st.text(max_size=12)),
        min_size=1,
        max_size=3,
    ),
    mask=st.integers(min_value=1, max_value=255),
)
def test_every_flipped_byte_of_the_voter_state_or_its_sums_is_reported(
    tmp_path_factory: pytest.TempPathFactory, states: list[VoterState], mask: int
) -> None:
    source = tmp_path_factory.mktemp("voter")
    for state in states:
        VoterStateFile(source, checksums=True).save(state)
    assert VoterStateFile(source, checksums=True).load() == states[-1]
    work = tmp_path_factory.mktemp("work") / "d"
    for name in VOTER_FILES:
        for directory in _flipped_copies(source, work, name, mask):
            try:
                loaded = VoterStateFile(directory, checksums=True).load()
            except StorageError as exc:
                _assert_reported(exc, directory, VOTER_FILES)
            else:
                assert loaded == states[-1], name


@FLIPS
@given(
    snapshots=st.lists(
        st.tuples(st.integers(1, 2**40), st.integers(1, 2**20), st.binary(max_size=16)),
        min_size=1,
        max_size=2,
    ),
    mask=st.integers(min_value=1, max_value=255),
)
def test_every_flipped_byte_of_the_snapshot_files_or_their_sums_is_reported(
    tmp_path_factory: pytest.TempPathFactory,
    snapshots: list[tuple[int, int, bytes]],
    mask: int,
) -> None:
    source = tmp_path_factory.mktemp("snapshot")
    for index, term, payload in snapshots:
        cluster = ClusterSnapshot(last_seq=index)
        cluster.entries.add(key="k", value=payload)
        image = cluster.SerializeToString(deterministic=True)
        SnapshotFiles(source, upstream=True, checksums=True).save(index, term, image)
    original = SnapshotFiles(source, upstream=True, checksums=True).load()
    assert original is not None and (original.index, original.term) == snapshots[-1][:2]
    work = tmp_path_factory.mktemp("work") / "d"
    for name in SNAPSHOT_FILES:
        for directory in _flipped_copies(source, work, name, mask):
            try:
                loaded = SnapshotFiles(directory, upstream=True, checksums=True).load()
            except StorageError as exc:
                _assert_reported(exc, directory, SNAPSHOT_FILES)
            else:
                assert loaded == original, name


def _three_records(directory: Path) -> RaftLog:
    log = RaftLog(directory)
    log.open()
    log.append([StoredEntry(i, 1, StoredKind.COMMAND, _set(f"key-{i}")) for i in (1, 2, 3)])
    return log


def test_the_reported_error_names_the_file_the_record_and_its_offset(tmp_path: Path) -> None:
    _three_records(tmp_path).close()
    path = tmp_path / "command-log"
    data = bytearray(path.read_bytes())
    position = data.index(b"key-2")
    data[position + 4] ^= 0x01  # the key would silently have become "key-3"
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError) as info:
        _open(tmp_path)
    record_offset = position - 12 - 4  # record header, then the StateCommand's tags
    assert (info.value.path, info.value.offset) == (str(path), record_offset)
    assert info.value.reason == "checksum mismatch in record seq=2"


def test_voter_state_flip_is_not_term_257(tmp_path: Path) -> None:
    store = VoterStateFile(tmp_path, checksums=True)
    store.save(VoterState(1, "n1"))
    path = tmp_path / "voter-state"
    data = bytearray(path.read_bytes())
    data[11] ^= 0x01  # the term's second-lowest byte: term 257
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="checksum mismatch") as info:
        VoterStateFile(tmp_path, checksums=True).load()
    assert info.value.path == str(path)


def test_a_torn_record_is_dropped_with_its_checksum_at_every_cut(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _three_records(source).close()
    full = (source / "command-log").read_bytes()
    last = record_sums(full, [(3, len(full) - len(_set("key-3")) - 12, len(_set("key-3")) + 12)])
    for cut in range(last[0].offset + 1, len(full)):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(source, work)
        (work / "command-log").write_bytes(full[:cut])
        recovered = _open(work)
        assert [e.index for e in recovered.entries] == [1, 2]
        assert recovered.torn_tail is not None and recovered.torn_tail.offset == last[0].offset
        stored = decode_log_sums((work / "command-log.sums").read_bytes(), "sums")
        assert [s.seq for s in stored.entries] == [1, 2]
        log = RaftLog(work)
        log.open()
        log.append([StoredEntry(3, 1, StoredKind.COMMAND, _set("again"))])
        log.close()
        assert [e.data for e in _open(work).entries][-1] == _set("again")


def test_checksums_past_the_end_of_the_log_are_dropped(tmp_path: Path) -> None:
    """A crash after the checksums of a batch were written, before its records were."""
    _three_records(tmp_path).close()
    commands = CommandLog(tmp_path)  # writes records but no checksums
    commands.open()
    commands.append_many([LogRecord(4, _set("later"))])
    commands.close()
    sums = LogSumsFile(tmp_path / "command-log")
    stored = sums.load()
    assert stored is not None and len(stored.entries) == 3
    data = (tmp_path / "command-log").read_bytes()
    (tmp_path / "command-log").write_bytes(data[: stored.entries[-1].offset])  # lose 3 and 4
    sums.append(record_sums(data, [(4, stored.entries[-1].offset, 20)]))  # a checksum of nothing
    sums.close()
    assert [e.index for e in _open(tmp_path).entries] == [1, 2]
    assert len(decode_log_sums((tmp_path / "command-log.sums").read_bytes(), "s").entries) == 2


def test_a_torn_checksum_entry_leaves_its_record_unverified_then_checksummed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a power loss the checksums of the last records may be lost or torn (they are
    not synced with the records): those records open, and get checksums again."""
    _three_records(tmp_path).close()
    sums = tmp_path / "command-log.sums"
    for keep in (len(sums.read_bytes()) - 5, len(sums.read_bytes()) - 28 * 2):
        sums.write_bytes(sums.read_bytes()[:keep])
        with caplog.at_level(logging.INFO, logger="dref.storage"):
            assert [e.index for e in _open(tmp_path).entries] == [1, 2, 3]
        assert "had no checksum" in caplog.text
        assert len(decode_log_sums(sums.read_bytes(), "s").entries) == 3
    data = bytearray((tmp_path / "command-log").read_bytes())
    data[-1] ^= 0x40
    (tmp_path / "command-log").write_bytes(bytes(data))
    with pytest.raises(StorageError, match="seq=3"):
        _open(tmp_path)


def test_truncation_and_compaction_keep_the_checksums_exact(tmp_path: Path) -> None:
    log = RaftLog(tmp_path)
    log.open()
    log.append([StoredEntry(i, 1, StoredKind.COMMAND, _set(f"k{i}")) for i in range(1, 9)])
    log.set_commit_index(4)
    log.truncate_from(7)
    log.append([StoredEntry(7, 2, StoredKind.COMMAND, _set("new"))])
    log.compact_through(3, 1)
    log.append([StoredEntry(8, 2, StoredKind.COMMAND, _set("newer"))])
    log.close()
    data = (tmp_path / "command-log").read_bytes()
    stored = decode_log_sums((tmp_path / "command-log.sums").read_bytes(), "s")
    offsets = [s.offset for s in stored.entries]
    spans = [(s.seq, s.offset, s.length) for s in stored.entries]
    assert stored.entries == record_sums(data, spans)
    assert offsets[0] == 13 and offsets[-1] + stored.entries[-1].length == len(data)
    assert [s.seq for s in stored.entries] == [4, 5, 6, 7, 8]
    assert [e.index for e in _open(tmp_path).entries] == [4, 5, 6, 7, 8]


@pytest.mark.parametrize("crash_at", ["command-log replaced", "side file trimmed"])
def test_a_crash_inside_a_compaction_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    log = RaftLog(tmp_path)
    log.open()
    log.append([StoredEntry(i, 1, StoredKind.COMMAND, _set(f"k{i}")) for i in range(1, 6)])
    real_rewrite = LogSumsFile.rewrite
    calls: list[int] = []

    def crashing_rewrite(self: LogSumsFile, *args: object) -> None:
        calls.append(1)
        if crash_at == "side file trimmed" and len(calls) == 2:
            raise KeyboardInterrupt("crash")
        real_rewrite(self, *args)  # type: ignore[arg-type]

    def crashing_replace(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt("crash")

    monkeypatch.setattr(LogSumsFile, "rewrite", crashing_rewrite)
    if crash_at == "command-log replaced":
        monkeypatch.setattr(command_log_module, "write_atomically", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        log.compact_through(2, 1)
    monkeypatch.undo()
    log.close()
    stored = decode_log_sums((tmp_path / "command-log.sums").read_bytes(), "s")
    assert len(stored.entries) == 5 + 3  # the old layout's and the new one's
    recovered = _open(tmp_path)  # the LMDB base moved first; recovery compacts again
    assert [e.index for e in recovered.entries] == [3, 4, 5]
    assert len(decode_log_sums((tmp_path / "command-log.sums").read_bytes(), "s").entries) == 3


def test_a_directory_without_checksums_opens_and_gets_them(tmp_path: Path) -> None:
    """Upstream's files (no raft-index/, no side files), as an older dref-py or upstream
    left them: accepted as they are, checked from then on."""
    commands = CommandLog(tmp_path)
    commands.open()
    commands.append_many([LogRecord(i, _set(f"k{i}")) for i in (1, 2)])
    commands.set_commit_seq(2)
    commands.close()
    VoterStateFile(tmp_path).save(VoterState(7, "n2"))
    assert not sums_path(tmp_path / "command-log").exists()
    recovered = _open(tmp_path)
    assert [(e.index, e.term) for e in recovered.entries] == [(1, 0), (2, 0)]
    assert VoterStateFile(tmp_path, checksums=True).load() == VoterState(7, "n2")
    for name in (*LOG_FILES, *VOTER_FILES):
        assert (tmp_path / name).exists(), name
    data = bytearray((tmp_path / "voter-state").read_bytes())
    data[12] ^= 0x01
    (tmp_path / "voter-state").write_bytes(bytes(data))
    with pytest.raises(StorageError, match="checksum mismatch"):
        VoterStateFile(tmp_path, checksums=True).load()


def test_an_older_dref_py_directory_with_an_index_but_no_checksums_opens(tmp_path: Path) -> None:
    _three_records(tmp_path).close()
    for name in (tmp_path / "command-log.sums",):
        name.unlink()
    assert [(e.index, e.term) for e in _open(tmp_path).entries] == [(1, 1), (2, 1), (3, 1)]
    assert (tmp_path / "command-log.sums").exists()


def test_a_crash_between_the_voter_checksum_and_the_file_keeps_either_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VoterStateFile(tmp_path, checksums=True)
    store.save(VoterState(3, "n1"))
    from dref.storage import voter_state as voter_state_module

    def crash(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt("crash")

    monkeypatch.setattr(voter_state_module, "write_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(VoterState(4, None))
    monkeypatch.undo()
    assert VoterStateFile(tmp_path, checksums=True).load() == VoterState(3, "n1")
    VoterStateFile(tmp_path, checksums=True).save(VoterState(4, None))
    assert VoterStateFile(tmp_path, checksums=True).load() == VoterState(4, None)


def test_a_voter_state_deleted_behind_its_checksum_is_reported(tmp_path: Path) -> None:
    """Not after the first save: a crash during it leaves no file, which must open."""
    store = VoterStateFile(tmp_path, checksums=True)
    store.save(VoterState(5, "n1"))
    (tmp_path / "voter-state").unlink()
    assert VoterStateFile(tmp_path, checksums=True).load() == VoterState(0, None)
    store.save(VoterState(5, "n1"))
    store.save(VoterState(6, None))
    (tmp_path / "voter-state").unlink()
    with pytest.raises(StorageError, match="missing"):
        VoterStateFile(tmp_path, checksums=True).load()


@pytest.mark.parametrize("damage", ["garbage", "zeros", "cut"])
def test_a_damaged_index_is_a_storage_error_saying_what_to_do(tmp_path: Path, damage: str) -> None:
    _three_records(tmp_path).close()
    index_file = tmp_path / INDEX_DIR / "data.mdb"
    size = index_file.stat().st_size
    index_file.write_bytes(
        {"garbage": bytes(range(256)) * (size // 256), "zeros": bytes(size), "cut": b"x" * 100}[
            damage
        ]
    )
    with pytest.raises(StorageError, match="damaged .*restore raft-index/ from a backup") as info:
        _open(tmp_path)
    assert info.value.path == str(tmp_path / INDEX_DIR)


@pytest.mark.parametrize("what", ["directory", "data.mdb"])
def test_a_missing_index_beside_a_checksummed_log_is_reported(tmp_path: Path, what: str) -> None:
    _three_records(tmp_path).close()
    if what == "directory":
        shutil.rmtree(tmp_path / INDEX_DIR)
    else:
        (tmp_path / INDEX_DIR / "data.mdb").unlink()
    for _ in range(2):  # and it is not silently recreated by the first attempt
        with pytest.raises(StorageError, match="missing, and the entry terms"):
            _open(tmp_path)


def test_a_new_directory_creates_its_index_and_checksums(tmp_path: Path) -> None:
    assert _open(tmp_path).entries == []
    _three_records(tmp_path).close()
    assert [e.index for e in _open(tmp_path).entries] == [1, 2, 3]


@pytest.mark.slow
def test_a_node_refuses_to_start_on_a_flipped_byte_naming_the_file(tmp_path: Path) -> None:
    """The bug report's case end to end: a key written through a real `dref node`, one byte
    of its name flipped while the node is down, and the node exits with one clear line."""
    from dref.raft.node_process import NodeProcess, free_ports
    from testkit.dref_command import run_dref

    data = tmp_path / "n1"
    (port,) = free_ports(1)
    arguments = ["node", "--id", "n1", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)]
    node = NodeProcess(arguments, log=tmp_path / "log")
    try:
        written = run_dref("set", "shared-count", "1", "--endpoints", node.address)
        assert written.returncode == 0, written.stderr
    finally:
        assert node.stop() == 0
    log = data / "command-log"
    image = bytearray(log.read_bytes())
    image[image.index(b"shared-count") + 11] ^= ord("t") ^ ord("Z")
    log.write_bytes(bytes(image))
    result = run_dref(*arguments, timeout=60)
    assert result.returncode == 1 and result.stdout == "", result.stderr
    assert result.stderr.startswith(f"dref node: {log}: at offset ")
    assert "checksum mismatch in record seq=" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def _index_positions(data: bytes, page: int = 4096) -> list[int]:
    """The bytes of an LMDB file worth flipping: every non-zero byte, the first 256 bytes of
    both meta pages (page 0 and 1: transaction ids, roots) and every page's 16-byte header.
    The rest is zeros in free space, which no reader looks at."""
    positions = {i for i, value in enumerate(data) if value}
    positions.update(range(min(256, len(data))))
    positions.update(range(page, min(page + 256, len(data))))
    for start in range(0, len(data), page):
        positions.update(range(start, min(start + 16, len(data))))
    return sorted(positions)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(entries_strategy, min_size=1, max_size=3),
    mask=st.sampled_from([1, 0x80, 0xFF]),
    data=st.data(),
)
def test_every_flipped_byte_of_the_index_or_its_generation_is_reported(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[StoredKind, int, str]]],
    mask: int,
    data: st.DataObject,
) -> None:
    """The LMDB index keeps no checksums of its own: a flipped byte in a row, a key, a page
    or a meta page (which can make LMDB open the transaction before the newest, or read
    past the end of its file) is a StorageError naming raft-index/, never a wrong term, a
    lost configuration or a crashed process. Every byte of raft-index.sums is flipped; of
    data.mdb's 50 KiB, 40 of the bytes LMDB reads (a damaged one costs a child process)."""
    source = tmp_path_factory.mktemp("index")
    log, _ = _written(source, batches)
    log.stage_snapshot_config(1, b"staged")
    log.compact_through(1, 1 + batches[0][0][1])
    log.close()
    original = _seen(_open(source))
    work = tmp_path_factory.mktemp("work") / "d"
    mdb = (source / INDEX_DIR / "data.mdb").read_bytes()
    sampled = data.draw(st.lists(st.sampled_from(_index_positions(mdb)), max_size=40, unique=True))
    index_files = {
        f"{INDEX_DIR}/data.mdb": sampled,
        f"{INDEX_DIR}.sums": range((source / f"{INDEX_DIR}.sums").stat().st_size),
    }
    for name, positions in index_files.items():
        image = (source / name).read_bytes()
        for position in positions:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(source, work)
            flipped = bytearray(image)
            flipped[position] ^= mask
            (work / name).write_bytes(bytes(flipped))
            try:
                reopened = _open(work)
            except StorageError as exc:
                assert exc.path in (str(work / INDEX_DIR), str(work / f"{INDEX_DIR}.sums")), exc
            else:
                assert _seen(reopened) == original, (name, position)


def test_an_index_lmdb_would_crash_on_is_reported(tmp_path: Path) -> None:
    """LMDB trusts its page numbers: a data.mdb cut short under pages its meta page names
    kills a process that reads it with SIGBUS. The node reads a copy in a child first."""
    log = _three_records(tmp_path)
    log.append([StoredEntry(4, 2, StoredKind.CONFIG, b"c" * 5000)])  # an overflow page
    log.close()
    index_file = tmp_path / INDEX_DIR / "data.mdb"
    image = index_file.read_bytes()
    index_file.write_bytes(image[: 2 * 4096 + 100])
    with pytest.raises(StorageError, match="damaged") as info:
        _open(tmp_path)
    assert info.value.path == str(tmp_path / INDEX_DIR)


def test_an_index_rolled_back_one_transaction_is_reported(tmp_path: Path) -> None:
    """What a flipped transaction id in LMDB's meta page does: the index as it was before
    its newest write. Its rows are consistent, but raft-index.sums knows it is behind."""
    log = _three_records(tmp_path)
    log.close()
    before = (tmp_path / INDEX_DIR / "data.mdb").read_bytes()
    log = RaftLog(tmp_path)
    log.open()
    log.append([StoredEntry(4, 2, StoredKind.COMMAND, _set("key-4"))])  # a new term: a row
    log.close()
    (tmp_path / INDEX_DIR / "data.mdb").write_bytes(before)
    with pytest.raises(StorageError, match="rolled back or replaced"):
        _open(tmp_path)


def test_a_crash_before_the_generation_is_recorded_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index commits, then raft-index.sums is written: a crash between them leaves the
    index one generation ahead, which is the newest state and opens."""
    _three_records(tmp_path).close()
    log = RaftLog(tmp_path)
    log.open()

    def crash(generation: int, image_crc: int) -> None:
        raise OSError("power loss")

    monkeypatch.setattr(log._generations, "record", crash)
    with pytest.raises(OSError, match="power loss"):
        log.append([StoredEntry(4, 2, StoredKind.COMMAND, _set("key-4"))])
    log.close()
    monkeypatch.undo()
    assert [(e.index, e.term) for e in _open(tmp_path).entries] == [(1, 1), (2, 1), (3, 1)]
    log = RaftLog(tmp_path)
    log.open()
    log.append([StoredEntry(4, 3, StoredKind.COMMAND, _set("key-4"))])
    log.close()
    assert [(e.index, e.term) for e in _open(tmp_path).entries][-1] == (4, 3)


def test_an_index_from_before_row_checksums_gets_them(tmp_path: Path) -> None:
    """An older dref-py stored rows without CRCs and no generation: they open as they are
    and are checked from then on."""
    _three_records(tmp_path).close()
    env = lmdb.open(str(tmp_path / INDEX_DIR), max_dbs=2)
    with env.begin(write=True) as txn:
        for name in (b"entries", b"meta"):
            db = env.open_db(name, txn=txn)
            for key, value in list(txn.cursor(db=db)):
                if name == b"meta" and key == b"generation":
                    txn.delete(key, db=db)
                else:
                    txn.put(key, value[:-4], db=db)  # the row as it was stored before CRCs
    env.close()
    (tmp_path / f"{INDEX_DIR}.sums").unlink()
    assert [(e.index, e.term) for e in _open(tmp_path).entries] == [(1, 1), (2, 1), (3, 1)]
    assert (tmp_path / f"{INDEX_DIR}.sums").exists()
    assert [(e.index, e.term) for e in _open(tmp_path).entries] == [(1, 1), (2, 1), (3, 1)]
