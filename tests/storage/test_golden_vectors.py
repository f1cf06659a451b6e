"""Golden bytes of spec 8.3-8.5, both ways, plus the upstream vector files when they are present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dref.storage.command_log import LogRecord, decode_command_log, encode_command_log
from dref.storage.state_snapshot import decode_state_snapshot, encode_state_snapshot
from dref.storage.voter_state import VoterState, decode_voter_state, encode_voter_state
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.raft_pb2 import KVEntry

# The shared folder sits beside the repository (spec 8), in a checkout as in CI.
UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream-vectors"
SET_ELEMENT = bytes.fromhex("0a130a066d792d6b657912030102031880e2cfaa06")

# (name, hex, entries as (key, value, expire_at), last_seq) from spec 8.3
SNAPSHOTS = [
    ("empty_snapshot", "445246530100000000", [], 0),
    (
        "single_entry_key_a_value_01",
        "4452465301000000080a060a0161120101",
        [("a", b"\x01", None)],
        0,
    ),
    (
        "single_entry_key_a_value_01_last_seq_42",
        "44524653010000000a0a060a0161120101102a",
        [("a", b"\x01", None)],
        42,
    ),
]
# (name, hex, term, voted_for) from spec 8.4
VOTER_STATES = [
    ("term_7_no_vote", "44524654010000000000000007ffffffff", 7, None),
    ("term_42_voted_node_7", "4452465401000000000000002a000000066e6f64652d37", 42, "node-7"),
]
# (name, hex, commit_seq, records) from spec 8.5
COMMAND_LOGS = [
    ("empty_header", "4452464c010000000000000000", 0, []),
    (
        "single_set_element_record",
        "4452464c0100000000000000000000000000000001000000150a130a066d792d6b65791203010203"
        "1880e2cfaa06",
        0,
        [LogRecord(1, SET_ELEMENT)],
    ),
]


def _snapshot(entries: list[tuple[str, bytes, int | None]], last_seq: int) -> ClusterSnapshot:
    snapshot = ClusterSnapshot(last_seq=last_seq)
    for key, value, expire_at in entries:
        entry = KVEntry(key=key, value=value)
        if expire_at is not None:
            entry.expireAt = expire_at
        snapshot.entries.append(entry)
    return snapshot


@pytest.mark.parametrize(("name", "hex_", "entries", "last_seq"), SNAPSHOTS)
def test_snapshot_vectors(
    name: str, hex_: str, entries: list[tuple[str, bytes, int | None]], last_seq: int
) -> None:
    expected = _snapshot(entries, last_seq)
    assert encode_state_snapshot(expected).hex() == hex_
    decoded = decode_state_snapshot(bytes.fromhex(hex_), name)
    assert decoded == expected
    assert [e.HasField("expireAt") for e in decoded.entries] == [False] * len(entries)


@pytest.mark.parametrize(("name", "hex_", "term", "voted_for"), VOTER_STATES)
def test_voter_state_vectors(name: str, hex_: str, term: int, voted_for: str | None) -> None:
    assert encode_voter_state(VoterState(term, voted_for)).hex() == hex_
    assert decode_voter_state(bytes.fromhex(hex_), name) == VoterState(term, voted_for)


@pytest.mark.parametrize(("name", "hex_", "commit_seq", "records"), COMMAND_LOGS)
def test_command_log_vectors(
    name: str, hex_: str, commit_seq: int, records: list[LogRecord]
) -> None:
    assert encode_command_log(commit_seq, records).hex() == hex_
    loaded = decode_command_log(bytes.fromhex(hex_), name)
    assert loaded.commit_seq == commit_seq
    assert loaded.records == {r.seq: r.command for r in records}
    assert loaded.torn_tail is None


def _upstream(file_name: str) -> list[dict[str, Any]]:
    path = UPSTREAM / file_name
    if not path.is_file():
        pytest.skip(f"upstream vectors not available: {path} is absent")
    vectors: list[dict[str, Any]] = json.loads(path.read_text())["vectors"]
    assert vectors, f"{path} holds no vectors"
    return vectors


def test_upstream_snapshot_vectors() -> None:
    for vector in _upstream("snapshot_vectors.json"):
        entries = [
            (e["key"], bytes.fromhex(e["value_hex"]), e["expire_at"]) for e in vector["entries"]
        ]
        expected = _snapshot(entries, vector.get("last_seq", 0))
        assert encode_state_snapshot(expected).hex() == vector["hex"], vector["name"]
        assert decode_state_snapshot(bytes.fromhex(vector["hex"]), vector["name"]) == expected


def test_upstream_voter_state_vectors() -> None:
    for vector in _upstream("voter_state_vectors.json"):
        expected = VoterState(vector["term"], vector["voted_for"])
        assert encode_voter_state(expected).hex() == vector["hex"], vector["name"]
        assert decode_voter_state(bytes.fromhex(vector["hex"]), vector["name"]) == expected


def test_upstream_command_log_vectors() -> None:
    for vector in _upstream("command_log_vectors.json"):
        records = []
        if "seq" in vector:
            records.append(LogRecord(vector["seq"], bytes.fromhex(vector["command_payload_hex"])))
        assert encode_command_log(vector["commit_seq"], records).hex() == vector["hex"]
        loaded = decode_command_log(bytes.fromhex(vector["hex"]), vector["name"])
        assert (loaded.commit_seq, loaded.records) == (
            vector["commit_seq"],
            {r.seq: r.command for r in records},
        )
