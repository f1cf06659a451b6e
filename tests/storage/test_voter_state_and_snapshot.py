"""VoterStateFile and StateSnapshotFile through real files, and their typed decode errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dref.errors import StorageError
from dref.storage.state_snapshot import (
    StateSnapshotFile,
    decode_state_snapshot,
    encode_state_snapshot,
)
from dref.storage.voter_state import (
    VoterState,
    VoterStateFile,
    decode_voter_state,
    encode_voter_state,
)
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.raft_pb2 import KVEntry

TERM_42_NODE_7 = bytes.fromhex("4452465401000000000000002a000000066e6f64652d37")


def test_voter_state_missing_file_is_term_0_without_vote(tmp_path: Path) -> None:
    assert VoterStateFile(tmp_path).load() == VoterState(0, None)


def test_voter_state_save_and_load_through_the_file(tmp_path: Path) -> None:
    store = VoterStateFile(tmp_path / "nested" / "dir")
    store.save(VoterState(3, "node-1"))
    store.save(VoterState(2**64 - 1, "nœud-ü"))
    assert VoterStateFile(tmp_path / "nested" / "dir").load() == VoterState(2**64 - 1, "nœud-ü")
    assert sorted(p.name for p in (tmp_path / "nested" / "dir").iterdir()) == ["voter-state"]


@pytest.mark.parametrize(
    ("length_hex", "expected"),
    [("ffffffff", None), ("80000000", None), ("fffffffe", None), ("00000000", "")],
)
def test_voter_state_length_field(length_hex: str, expected: str | None) -> None:
    data = bytes.fromhex("44524654010000000000000005" + length_hex)
    assert decode_voter_state(data, "vs") == VoterState(5, expected)


def test_voter_state_empty_string_vote_is_not_no_vote() -> None:
    encoded = encode_voter_state(VoterState(1, ""))
    assert encoded[13:] == b"\x00\x00\x00\x00"
    assert decode_voter_state(encoded, "vs").voted_for == ""


def test_voter_state_ignores_bytes_after_the_vote() -> None:
    assert decode_voter_state(TERM_42_NODE_7 + b"junk", "vs") == VoterState(42, "node-7")


@pytest.mark.parametrize("cut", range(len(TERM_42_NODE_7)))
def test_truncated_voter_state_is_an_error(cut: int) -> None:
    with pytest.raises(StorageError) as info:
        decode_voter_state(TERM_42_NODE_7[:cut], "/x/voter-state")
    assert info.value.path == "/x/voter-state"
    expected_offset = cut if cut < 17 else 17
    assert info.value.offset == expected_offset
    assert f"/x/voter-state: at offset {expected_offset}:" in str(info.value)


def test_voter_state_errors_name_the_file_and_offset(tmp_path: Path) -> None:
    store = VoterStateFile(tmp_path)
    cases = [
        (b"DRFX" + TERM_42_NODE_7[4:], 0, "magic"),
        (TERM_42_NODE_7[:4] + b"\x02" + TERM_42_NODE_7[5:], 4, "version"),
        (TERM_42_NODE_7[:17] + b"node-\xff", 22, "UTF-8"),
    ]
    for data, offset, word in cases:
        store.path.write_bytes(data)
        with pytest.raises(StorageError, match=word) as info:
            store.load()
        assert (info.value.path, info.value.offset) == (str(store.path), offset)
        assert str(store.path) in str(info.value)


def test_voter_state_encoder_rejects_out_of_range_term() -> None:
    with pytest.raises(ValueError):
        encode_voter_state(VoterState(-1, None))
    with pytest.raises(ValueError):
        encode_voter_state(VoterState(2**64, None))


def _snapshot() -> ClusterSnapshot:
    snapshot = ClusterSnapshot(last_seq=9)
    snapshot.entries.append(KVEntry(key="b", value=b"\x00\xff", expireAt=1_700_000_000))
    snapshot.entries.append(KVEntry(key="a", value=b""))
    return snapshot


def test_snapshot_missing_file_is_none(tmp_path: Path) -> None:
    assert StateSnapshotFile(tmp_path).load() is None


def test_snapshot_save_and_load_through_the_file(tmp_path: Path) -> None:
    StateSnapshotFile(tmp_path).save(ClusterSnapshot(last_seq=1))
    StateSnapshotFile(tmp_path).save(_snapshot())
    loaded = StateSnapshotFile(tmp_path).load()
    assert loaded == _snapshot()
    assert loaded is not None and loaded.entries[0].HasField("expireAt")
    assert not loaded.entries[1].HasField("expireAt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-snapshot"]


def test_snapshot_ignores_bytes_after_the_payload() -> None:
    assert (
        decode_state_snapshot(encode_state_snapshot(_snapshot()) + b"\xff" * 5, "s") == _snapshot()
    )


def test_snapshot_encoding_is_canonical() -> None:
    first = encode_state_snapshot(_snapshot())
    reparsed = decode_state_snapshot(first, "s")
    assert encode_state_snapshot(reparsed) == first
    # last_seq (field 2) follows the entries (field 1) whatever order the fields were set in
    assert first[9] == 0x0A and first.endswith(bytes.fromhex("1009"))


@pytest.mark.parametrize(
    ("data_hex", "offset", "word"),
    [
        ("44524654010000000a", 0, "magic"),
        ("44524653000000000a", 4, "version"),
        ("4452465301ffffffff", 5, "negative"),
        ("44524653010000000a0a060a01", 9, "truncated payload"),
        ("4452465301000000", 8, "truncated header"),
        ("445246530100000003ffffff", 9, "not a ClusterSnapshot"),
    ],
)
def test_snapshot_errors_name_the_file_and_offset(
    tmp_path: Path, data_hex: str, offset: int, word: str
) -> None:
    store = StateSnapshotFile(tmp_path)
    store.path.write_bytes(bytes.fromhex(data_hex))
    with pytest.raises(StorageError, match=word) as info:
        store.load()
    assert (info.value.path, info.value.offset) == (str(store.path), offset)
    assert f"{store.path}: at offset {offset}:" in str(info.value)
