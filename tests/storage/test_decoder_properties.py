"""Property tests: the decoders return a value, a reported torn tail, or StorageError, never
another exception; encoders and decoders round-trip."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dref.errors import StorageError
from dref.storage.command_log import LogRecord, decode_command_log, encode_command_log
from dref.storage.state_snapshot import decode_state_snapshot, encode_state_snapshot
from dref.storage.voter_state import VoterState, decode_voter_state, encode_voter_state
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.raft_pb2 import KVEntry
from dref.wire.proto.state_command_pb2 import (
    DeleteElementCommand,
    ExpireElementCommand,
    SetElementCommand,
    StateCommand,
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u64 = st.integers(min_value=0, max_value=2**64 - 1)
optional_u64 = st.none() | u64

voter_states = st.builds(VoterState, u64, st.none() | st.text(max_size=40))


@st.composite
def snapshots(draw: st.DrawFn) -> ClusterSnapshot:
    snapshot = ClusterSnapshot(last_seq=draw(u64))
    for key, value, expire_at in draw(
        st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=20), optional_u64), max_size=5)
    ):
        entry = KVEntry(key=key, value=value)
        if expire_at is not None:
            entry.expireAt = expire_at
        snapshot.entries.append(entry)
    return snapshot


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    name = draw(st.text(max_size=12))
    command = draw(
        st.sampled_from(
            [
                StateCommand(set_element=SetElementCommand(name=name, value=draw(st.binary()))),
                StateCommand(delete_element=DeleteElementCommand(name=name)),
                StateCommand(expire_element=ExpireElementCommand(name=name, expire_at=draw(u64))),
                StateCommand(),
            ]
        )
    )
    return command.SerializeToString()


log_records = st.lists(st.builds(LogRecord, u64, commands()), max_size=6)


@st.composite
def command_logs(draw: st.DrawFn) -> bytes:
    return encode_command_log(draw(u64), draw(log_records))


def decode_all(data: bytes) -> None:
    """Feed `data` to every decoder; each may only succeed or raise StorageError."""
    decoders: list[Callable[[bytes, str], object]] = [
        decode_voter_state,
        decode_state_snapshot,
        decode_command_log,
    ]
    for decode in decoders:
        try:
            decode(data, "prop")
        except StorageError as exc:
            assert exc.path == "prop" and 0 <= exc.offset <= len(data)


def flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for position, mask in flips:
        mutable[position % len(mutable)] ^= mask
    return bytes(mutable)


@PROPERTY
@given(
    prefix=st.sampled_from([b"", b"DRFT\x01", b"DRFS\x01", b"DRFL\x01"]),
    body=st.binary(max_size=80),
)
def test_arbitrary_bytes_only_decode_or_raise_storage_error(prefix: bytes, body: bytes) -> None:
    decode_all(prefix + body)


@PROPERTY
@given(
    data=st.one_of(
        voter_states.map(encode_voter_state),
        snapshots().map(encode_state_snapshot),
        command_logs(),
    ),
    cut=st.integers(min_value=0),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=4,
    ),
)
def test_damaged_valid_files_only_decode_or_raise_storage_error(
    data: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    decode_all(data[: cut % (len(data) + 1)])
    decode_all(flip(data, flips))


@PROPERTY
@given(state=voter_states)
def test_voter_state_round_trip(state: VoterState) -> None:
    assert decode_voter_state(encode_voter_state(state), "vs") == state


@PROPERTY
@given(snapshot=snapshots())
def test_snapshot_round_trip(snapshot: ClusterSnapshot) -> None:
    encoded = encode_state_snapshot(snapshot)
    decoded = decode_state_snapshot(encoded, "snap")
    assert decoded == snapshot
    assert encode_state_snapshot(decoded) == encoded


@PROPERTY
@given(commit_seq=u64, records=log_records)
def test_command_log_round_trip_with_map_semantics(
    commit_seq: int, records: list[LogRecord]
) -> None:
    loaded = decode_command_log(encode_command_log(commit_seq, records), "log")
    expected: dict[int, bytes] = {}
    for record in records:
        expected[record.seq] = record.command
    assert (loaded.commit_seq, loaded.torn_tail) == (commit_seq, None)
    assert list(loaded.records.items()) == list(expected.items())


@PROPERTY
@given(commit_seq=u64, records=log_records, cut=st.integers(min_value=0))
def test_truncated_command_log_keeps_every_complete_record(
    commit_seq: int, records: list[LogRecord], cut: int
) -> None:
    data = encode_command_log(commit_seq, records)
    boundaries = [len(encode_command_log(commit_seq, records[:n])) for n in range(len(records) + 1)]
    cut = 13 + cut % (len(data) - 12)
    complete = sum(1 for boundary in boundaries[1:] if boundary <= cut)
    loaded = decode_command_log(data[:cut], "log")
    expected: dict[int, bytes] = {}
    for record in records[:complete]:
        expected[record.seq] = record.command
    assert loaded.records == expected
    if cut == boundaries[complete]:
        assert loaded.torn_tail is None
    else:
        assert loaded.torn_tail is not None
        assert loaded.torn_tail.offset == boundaries[complete]
        assert loaded.torn_tail.dropped_bytes == cut - boundaries[complete]
