"""Snapshots as files from end to end (issue 13, item 5): the protobuf field stream, the
key/value state machine writing and reading its snapshot entry by entry, and
`SnapshotFiles` sinks, saves and loads through real files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dref.errors import CodecError, StorageError
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.storage.snapshot_files import SnapshotFiles
from dref.storage.snapshot_image import FileImage, open_image, restore_state
from dref.storage.state_snapshot import StateSnapshotFile
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.raft_pb2 import KeyValueSnapshot, KVEntry
from dref.wire.proto_stream import (
    LENGTH_DELIMITED,
    VARINT,
    encode_field,
    encode_varint,
    iter_fields,
)


def _filled(cmd, values: int = 50) -> KeyValueStateMachine:  # type: ignore[no-untyped-def]
    sm = KeyValueStateMachine(history_revisions=20)
    for i in range(values):
        sm.apply(cmd.set_(f"k{i % 30}", bytes([i]) * (i * 37 % 500), expire_at=10**13 + i))
    sm.apply(cmd.delete("k3"))
    return sm


# -- the field stream -------------------------------------------------------------------


def test_varints_and_fields_read_back_as_protobuf_wrote_them() -> None:
    for value in (1, 127, 128, 300, 2**32, 2**64 - 1):
        assert encode_field(2, VARINT, value) == ClusterSnapshot(last_seq=value).SerializeToString()
        assert list(iter_fields(io.BytesIO(encode_varint(2 << 3) + encode_varint(value)))) == [
            (2, VARINT, value)
        ]
    snap = ClusterSnapshot(last_seq=9)
    snap.entries.add(key="a", value=b"x" * 300)
    data = snap.SerializeToString()
    fields = list(iter_fields(io.BytesIO(data)))
    assert [(n, w) for n, w, _ in fields] == [(1, LENGTH_DELIMITED), (2, VARINT)]
    assert KVEntry.FromString(fields[0][2]).value == b"x" * 300  # type: ignore[arg-type]
    assert b"".join(encode_field(*f) for f in fields) == data  # type: ignore[arg-type]
    skipped = list(iter_fields(io.BytesIO(data), only=frozenset()))
    assert skipped == [(1, LENGTH_DELIMITED, None), (2, VARINT, 9)]


@pytest.mark.parametrize("only", [None, frozenset()])
def test_a_truncated_stream_names_the_offset(only: frozenset[int] | None) -> None:
    snap = ClusterSnapshot(last_seq=9)
    snap.entries.add(key="a", value=b"x" * 300)
    data = snap.SerializeToString()
    for cut in (1, 2, 3, 100, len(data) - 1):
        with pytest.raises(CodecError, match="offset"):
            list(iter_fields(io.BytesIO(data[:cut]), only=only))
    with pytest.raises(CodecError, match="wire type 7"):
        list(iter_fields(io.BytesIO(b"\x0f")))


# -- the key/value state machine ----------------------------------------------------------


def test_streamed_snapshot_is_the_whole_message_serialized(cmd) -> None:  # type: ignore[no-untyped-def]
    sm = _filled(cmd)
    streamed = sm.snapshot()
    whole = KeyValueSnapshot.FromString(streamed)
    assert len(whole.entries) == 29 and len(whole.history) == 20
    assert whole.SerializeToString(deterministic=True) == streamed
    out = io.BytesIO()
    sm.snapshot_to(out)
    assert out.getvalue() == streamed


def test_restore_from_a_file_keeps_everything_and_shares_history_values(cmd) -> None:  # type: ignore[no-untyped-def]
    sm = _filled(cmd)
    other = KeyValueStateMachine(history_revisions=20)
    other.restore_from(io.BufferedReader(io.BytesIO(sm.snapshot())))  # type: ignore[arg-type]
    assert other.snapshot() == sm.snapshot()
    assert other.revision == sm.revision
    kept = other._history.kept()
    newest = kept[-2]  # the last set before the delete
    assert newest.value is other.entry(newest.name).value  # type: ignore[union-attr]


def test_history_values_still_stored_are_written_once(cmd) -> None:  # type: ignore[no-untyped-def]
    sm = KeyValueStateMachine(history_revisions=100)
    for i in range(20):
        sm.apply(cmd.set_(f"k{i}", bytes([i]) * 10_000))
    sm.apply(cmd.set_("k0", b"new"))  # k0's first value is history only: written with it
    snapshot = sm.snapshot()
    assert 200_000 < len(snapshot) < 200_000 + 2_000
    other = KeyValueStateMachine(history_revisions=100)
    other.restore(snapshot)
    assert [c.value for c in other._history.kept()] == [c.value for c in sm._history.kept()]


def test_a_corrupt_snapshot_is_refused_and_leaves_the_store_empty(cmd) -> None:  # type: ignore[no-untyped-def]
    data = _filled(cmd).snapshot()
    bad_entry = encode_field(1, LENGTH_DELIMITED, b"\xff\xff")
    for bad in (data[: len(data) // 2], b"\x0f" + data, data + bad_entry):
        other = _filled(cmd, values=5)
        with pytest.raises(CodecError, match="not a ClusterSnapshot"):
            other.restore(bad)
        assert other.snapshot() == KeyValueStateMachine().snapshot()  # not half of it


# -- snapshot files -------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [False, True])
def test_a_sink_saved_loads_back_as_a_file_image(tmp_path: Path, upstream: bool, cmd) -> None:  # type: ignore[no-untyped-def]
    sm = _filled(cmd)
    files = SnapshotFiles(tmp_path, upstream=upstream, checksums=True)
    sink = files.sink(41, 3)
    with sink.writer() as out:
        sm.snapshot_to(out)
    image = sink.finish()
    assert image[0 : len(image)] == sm.snapshot()  # the payload, without the file's framing
    files.save(41, 3, image)
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []
    saved = SnapshotFiles(tmp_path, upstream=upstream, checksums=True).load()
    assert saved is not None and (saved.index, saved.term) == (41, 3)
    assert isinstance(saved.data, FileImage)
    restored = KeyValueStateMachine(history_revisions=20)
    restore_state(restored, saved.data)
    assert restored.snapshot() == sm.snapshot()
    if upstream:  # an upstream node reads a ClusterSnapshot with last_seq
        cluster = StateSnapshotFile(tmp_path).load()
        assert cluster is not None and cluster.last_seq == 41 and len(cluster.entries) == 29


def test_received_chunks_make_the_leaders_bytes_exactly(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, upstream=True, checksums=True)
    payload = ClusterSnapshot(entries=[KVEntry(key="a", value=b"v" * 3000)]).SerializeToString()
    sink = files.sink(7, 2)
    for start in range(0, len(payload), 1000):
        sink.append(payload[start : start + 1000])
        assert sink.size == min(len(payload), start + 1000)
    image = sink.finish()
    assert len(image) == len(payload) and image[0:5000] == payload
    assert open_image(image).read() == payload
    files.save(7, 2, image)
    with open_image(image) as reader:  # the descriptor outlives the rename
        assert reader.read() == payload


def test_an_image_outlives_its_file_being_replaced(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, upstream=False, checksums=True)
    first = files.sink(1, 1)
    first.append(b"first")
    older = first.finish()
    files.save(1, 1, older)
    loaded = files.load()
    assert loaded is not None
    files.save(2, 1, b"second")
    assert loaded.data[0:5] == b"first" and older[0:5] == b"first"
    again = files.load()
    assert again is not None and again.data[0:6] == b"second"


def test_dropped_sinks_and_unused_images_leave_no_file(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, upstream=False)
    sink = files.sink(1, 1)
    sink.append(b"partial")
    image = files.sink(2, 1)
    image.append(b"whole")
    finished = image.finish()
    assert len([p for p in tmp_path.iterdir() if ".part" in p.name]) == 2
    del sink, image, finished
    assert [p.name for p in tmp_path.iterdir()] == []


def test_parts_left_by_a_crash_are_deleted_at_start(tmp_path: Path) -> None:
    (tmp_path / "state-snapshot.part7").write_bytes(b"half a snapshot")
    SnapshotFiles(tmp_path, upstream=False)
    assert not (tmp_path / "state-snapshot.part7").exists()


def test_a_flipped_bit_in_a_saved_snapshot_stops_the_load(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, upstream=False, checksums=True)
    sink = files.sink(5, 1)
    sink.append(b"x" * 5000)
    files.save(5, 1, sink.finish())
    path = tmp_path / "state-snapshot"
    data = bytearray(path.read_bytes())
    data[3000] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="checksum mismatch"):
        SnapshotFiles(tmp_path, upstream=False, checksums=True).load()


def test_a_truncated_snapshot_file_names_the_cause(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, upstream=False)
    sink = files.sink(5, 1)
    sink.append(b"x" * 5000)
    files.save(5, 1, sink.finish())
    path = tmp_path / "state-snapshot"
    os.truncate(path, 4000)
    with pytest.raises(StorageError, match="truncated payload"):
        SnapshotFiles(tmp_path, upstream=False).load()
