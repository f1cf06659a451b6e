"""The consensus transport: every core message survives the codec, bad RPC bytes get
INVALID_ARGUMENT, unknown senders FAILED_PRECONDITION, and the node keeps working."""

from __future__ import annotations

import grpc
import pytest
from node_cluster import Cluster

from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    PreVote,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
)
from dref.errors import CodecError
from dref.wire.consensus_codec import (
    Rpc,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    rpc_of,
)
from dref.wire.proto import dref_consensus_pb2 as pb

REQUESTS: list[Message] = [
    AppendEntries(
        sender="a",
        term=3,
        prev_index=4,
        prev_term=2,
        entries=(
            LogEntry(5, 2, b"x", EntryKind.NORMAL),
            LogEntry(6, 3, b"", EntryKind.NOOP),
            LogEntry(7, 3, b'{"addresses": {}, "learners": [], "voters": ["a"]}', EntryKind.CONFIG),
        ),
        leader_commit=4,
    ),
    AppendEntries(sender="a", term=1, prev_index=0, prev_term=0, entries=(), leader_commit=0),
    Heartbeat(sender="a", term=3, commit=9, context=77),
    PreVote(sender="b", term=4, last_log_index=10, last_log_term=3),
    RequestVote(sender="b", term=4, last_log_index=10, last_log_term=3),
    InstallSnapshot(
        sender="a",
        term=3,
        last_index=50,
        last_term=2,
        voters=frozenset({"a", "b", "c"}),
        learners=frozenset(),
        offset=0,
        data=b"image",
        done=True,
    ),
    ReadIndexRequest(sender="c", term=3, context=12),
]

REPLIES: list[tuple[Rpc, Message]] = [
    (
        Rpc.APPEND_ENTRIES,
        AppendEntriesResponse(
            sender="b", term=3, success=False, rejected_prev_index=4, hint_index=3, hint_term=1
        ),
    ),
    (Rpc.APPEND_ENTRIES, AppendEntriesResponse(sender="b", term=3, success=True, match_index=7)),
    (Rpc.HEARTBEAT, HeartbeatResponse(sender="b", term=3, context=77)),
    (Rpc.HEARTBEAT, AppendEntriesResponse(sender="b", term=5, success=False)),
    (Rpc.PRE_VOTE, PreVoteResponse(sender="b", term=4, granted=True)),
    (Rpc.REQUEST_VOTE, RequestVoteResponse(sender="b", term=4, granted=False)),
    (Rpc.INSTALL_SNAPSHOT, InstallSnapshotResponse(sender="b", term=3, match_index=50)),
    (Rpc.INSTALL_SNAPSHOT, AppendEntriesResponse(sender="b", term=6, success=False)),
    (
        Rpc.FORWARD_READ_INDEX,
        ReadIndexResponse(sender="b", term=3, context=12, success=True, read_index=40),
    ),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_requests_round_trip(message: Message) -> None:
    rpc = rpc_of(message)
    assert rpc is not None
    data = encode_request(message).SerializeToString()
    assert decode_request(rpc, data) == message


@pytest.mark.parametrize(("rpc", "reply"), REPLIES, ids=lambda r: getattr(r, "name", ""))
def test_replies_round_trip(rpc: Rpc, reply: Message) -> None:
    proto = rpc.value.response_type.FromString(encode_response(rpc, reply).SerializeToString())
    assert decode_response(rpc, proto, reply.sender) == reply


def test_no_reply_is_an_ignored_response() -> None:
    for rpc in Rpc:
        assert decode_response(rpc, encode_response(rpc, None), "b") is None


def test_single_entry_batches_also_fill_upstream_fields() -> None:
    message = AppendEntries(
        sender="a",
        term=2,
        prev_index=8,
        prev_term=2,
        entries=(LogEntry(9, 2, b"cmd"),),
        leader_commit=8,
    )
    proto = encode_request(message)
    assert isinstance(proto, pb.AppendEntriesRequest)
    assert (proto.leader_id, proto.seq, proto.command, proto.commit_seq) == ("a", 9, b"cmd", 8)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff",
        pb.AppendEntriesRequest(
            leader_id="a", term=2, prev_index=3, entries=[pb.NativeEntry(index=9, term=1)]
        ).SerializeToString(),
        pb.AppendEntriesRequest(term=2).SerializeToString(),  # no sender
        pb.AppendEntriesRequest(
            leader_id="a", term=2, entries=[pb.NativeEntry(index=1, term=1, kind=42)]
        ).SerializeToString(),
    ],
)
def test_malformed_requests_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_request(Rpc.APPEND_ENTRIES, data)


def _raw_call(address: str, rpc: Rpc, data: bytes) -> bytes:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(rpc.value.path)
        result: bytes = call(data, timeout=10)
        return result


def test_bad_rpcs_get_clear_statuses_and_the_node_keeps_working(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    for rpc in Rpc:
        with pytest.raises(grpc.RpcError) as caught:
            _raw_call(follower.address, rpc, b"\x0a\xff\xff\xff\xff")
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    stranger = Heartbeat(sender="mallory", term=99, commit=0, context=1)
    with pytest.raises(grpc.RpcError) as caught:
        _raw_call(follower.address, Rpc.HEARTBEAT, encode_request(stranger).SerializeToString())
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "mallory" in (caught.value.details() or "")
    assert leader.propose(b"still fine") == b"1"
    assert cluster.leader() is leader
