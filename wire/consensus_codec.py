"""The one mapping between the pure core's messages and the DRefConsensus protobufs.

Requests travel in upstream's messages with the native-mode fields numbered 100 and up;
a follower's ReadIndexRequest travels on the extra DRefNativeConsensus service. Each RPC's
response carries the core message the receiver answered with, or `ignore` when it had
none. A core may answer a stale Heartbeat or InstallSnapshot with an
AppendEntriesResponse (to announce its newer term); that round-trips as a not-acknowledged
response and decodes back to the same AppendEntriesResponse.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Proto

from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import Membership
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
    TimeoutNow,
)
from dref.errors import CodecError
from dref.wire.proto import dref_consensus_pb2 as pb

CONSENSUS_SERVICE = "io.github.tobia80.DRefConsensus"
NATIVE_SERVICE = "io.github.tobia80.DRefNativeConsensus"

_KIND_TO_PB = {
    EntryKind.NORMAL: pb.NATIVE_ENTRY_NORMAL,
    EntryKind.NOOP: pb.NATIVE_ENTRY_NOOP,
    EntryKind.CONFIG: pb.NATIVE_ENTRY_CONFIG,
}
_PB_TO_KIND = {value: kind for kind, value in _KIND_TO_PB.items()}


@dataclass(frozen=True)
class RpcSpec:
    """One unary RPC: where it lives, its protobuf types, and which core replies it carries."""

    service: str
    method: str
    request_type: type[Proto]
    response_type: type[Proto]
    replies: tuple[type[Message], ...]

    @property
    def path(self) -> str:
        """The gRPC method path, e.g. `/io.github.tobia80.DRefConsensus/AppendEntries`."""
        return f"/{self.service}/{self.method}"


class Rpc(enum.Enum):
    """Every RPC the native node sends to a peer."""

    APPEND_ENTRIES = RpcSpec(
        CONSENSUS_SERVICE,
        "AppendEntries",
        pb.AppendEntriesRequest,
        pb.AppendEntriesResponse,
        (AppendEntriesResponse,),
    )
    HEARTBEAT = RpcSpec(
        CONSENSUS_SERVICE,
        "Heartbeat",
        pb.HeartbeatRequest,
        pb.HeartbeatResponse,
        (HeartbeatResponse, AppendEntriesResponse),
    )
    PRE_VOTE = RpcSpec(
        CONSENSUS_SERVICE,
        "RequestPreVote",
        pb.PreVoteRequest,
        pb.PreVoteResponse,
        (PreVoteResponse,),
    )
    REQUEST_VOTE = RpcSpec(
        CONSENSUS_SERVICE, "RequestVote", pb.VoteRequest, pb.VoteResponse, (RequestVoteResponse,)
    )
    INSTALL_SNAPSHOT = RpcSpec(
        CONSENSUS_SERVICE,
        "InstallSnapshot",
        pb.InstallSnapshotRequest,
        pb.InstallSnapshotResponse,
        (InstallSnapshotResponse, AppendEntriesResponse),
    )
    FORWARD_READ_INDEX = RpcSpec(
        NATIVE_SERVICE,
        "ForwardReadIndex",
        pb.ForwardReadIndexRequest,
        pb.ForwardReadIndexResponse,
        (ReadIndexResponse,),
    )
    TIMEOUT_NOW = RpcSpec(
        NATIVE_SERVICE,
        "TimeoutNow",
        pb.TimeoutNowRequest,
        pb.TimeoutNowResponse,
        (AppendEntriesResponse,),
    )


_RPC_OF_REQUEST: dict[type[Message], Rpc] = {
    AppendEntries: Rpc.APPEND_ENTRIES,
    Heartbeat: Rpc.HEARTBEAT,
    PreVote: Rpc.PRE_VOTE,
    RequestVote: Rpc.REQUEST_VOTE,
    InstallSnapshot: Rpc.INSTALL_SNAPSHOT,
    ReadIndexRequest: Rpc.FORWARD_READ_INDEX,
    TimeoutNow: Rpc.TIMEOUT_NOW,
}


def rpc_of(message: Message) -> Rpc | None:
    """The RPC that carries `message`, or None when it is a response (answered in place)."""
    return _RPC_OF_REQUEST.get(type(message))


# ------------------------------------------------------------------------ requests


def encode_request(message: Message) -> Proto:
    """The protobuf request for a core request message."""
    if isinstance(message, AppendEntries):
        request = pb.AppendEntriesRequest(
            leader_id=message.sender,
            term=message.term,
            commit_seq=message.leader_commit,
            prev_index=message.prev_index,
            prev_term=message.prev_term,
            leader_commit=message.leader_commit,
            entries=[
                pb.NativeEntry(index=e.index, term=e.term, kind=_KIND_TO_PB[e.kind], data=e.command)
                for e in message.entries
            ],
        )
        if len(message.entries) == 1:
            request.seq = message.entries[0].index
            request.command = message.entries[0].command
        return request
    if isinstance(message, Heartbeat):
        return pb.HeartbeatRequest(
            leader_id=message.sender,
            term=message.term,
            commit_seq=message.commit,
            context=message.context,
        )
    if isinstance(message, PreVote):
        return pb.PreVoteRequest(
            candidate_id=message.sender,
            term=message.term,
            last_seq=message.last_log_index,
            last_log_term=message.last_log_term,
        )
    if isinstance(message, RequestVote):
        return pb.VoteRequest(
            candidate_id=message.sender,
            term=message.term,
            last_seq=message.last_log_index,
            last_log_term=message.last_log_term,
            force=message.force,
        )
    if isinstance(message, TimeoutNow):
        return pb.TimeoutNowRequest(leader_id=message.sender, term=message.term)
    if isinstance(message, InstallSnapshot):
        return pb.InstallSnapshotRequest(
            leader_id=message.sender,
            term=message.term,
            last_seq=message.last_index,
            last_term=message.last_term,
            voters=sorted(message.voters),
            learners=sorted(message.learners),
            offset=message.offset,
            data=message.data,
            done=message.done,
            addresses=dict(message.addresses),
        )
    if isinstance(message, ReadIndexRequest):
        return pb.ForwardReadIndexRequest(
            sender=message.sender, term=message.term, context=message.context
        )
    raise TypeError(f"{type(message).__name__} is not a request")


def decode_request(rpc: Rpc, data: bytes) -> Message:
    """Parse and validate request bytes of `rpc`; raise CodecError when they are malformed."""
    proto = _parse(rpc.value.request_type, data, rpc.value.method)
    try:
        message = _REQUEST_DECODERS[rpc](proto)
    except (ValueError, KeyError) as exc:
        raise CodecError(f"{rpc.value.method}: invalid request: {exc}") from None
    if not message.sender:
        raise CodecError(f"{rpc.value.method}: request names no sender")
    return message


def _decode_append(p: pb.AppendEntriesRequest) -> AppendEntries:
    entries = tuple(LogEntry(e.index, e.term, e.data, _PB_TO_KIND[e.kind]) for e in p.entries)
    for offset, entry in enumerate(entries):
        if entry.kind is EntryKind.CONFIG:
            Membership.decode(entry.command)  # ValueError: refused before the core sees it
        if entry.index != p.prev_index + 1 + offset:
            raise ValueError(f"entry {entry.index} does not follow {p.prev_index + offset}")
        if entry.term > p.term or entry.term < p.prev_term:
            raise ValueError(f"entry {entry.index} has impossible term {entry.term}")
    return AppendEntries(
        sender=p.leader_id,
        term=p.term,
        prev_index=p.prev_index,
        prev_term=p.prev_term,
        entries=entries,
        leader_commit=p.leader_commit,
    )


def _decode_heartbeat(p: pb.HeartbeatRequest) -> Heartbeat:
    return Heartbeat(sender=p.leader_id, term=p.term, commit=p.commit_seq, context=p.context)


def _decode_pre_vote(p: pb.PreVoteRequest) -> PreVote:
    return PreVote(
        sender=p.candidate_id,
        term=p.term,
        last_log_index=p.last_seq,
        last_log_term=p.last_log_term,
    )


def _decode_vote(p: pb.VoteRequest) -> RequestVote:
    return RequestVote(
        sender=p.candidate_id,
        term=p.term,
        last_log_index=p.last_seq,
        last_log_term=p.last_log_term,
        force=p.force,
    )


def _decode_timeout_now(p: pb.TimeoutNowRequest) -> TimeoutNow:
    return TimeoutNow(sender=p.leader_id, term=p.term)


def _decode_snapshot(p: pb.InstallSnapshotRequest) -> InstallSnapshot:
    if p.done and not p.voters:
        raise ValueError("a snapshot must name its voters")
    return InstallSnapshot(
        sender=p.leader_id,
        term=p.term,
        last_index=p.last_seq,
        last_term=p.last_term,
        voters=frozenset(p.voters),
        learners=frozenset(p.learners),
        offset=p.offset,
        data=p.data,
        done=p.done,
        addresses=tuple(sorted(p.addresses.items())),
    )


def _decode_read_index(p: pb.ForwardReadIndexRequest) -> ReadIndexRequest:
    return ReadIndexRequest(sender=p.sender, term=p.term, context=p.context)


_REQUEST_DECODERS: dict[Rpc, Callable[[Any], Message]] = {
    Rpc.APPEND_ENTRIES: _decode_append,
    Rpc.HEARTBEAT: _decode_heartbeat,
    Rpc.PRE_VOTE: _decode_pre_vote,
    Rpc.REQUEST_VOTE: _decode_vote,
    Rpc.INSTALL_SNAPSHOT: _decode_snapshot,
    Rpc.FORWARD_READ_INDEX: _decode_read_index,
    Rpc.TIMEOUT_NOW: _decode_timeout_now,
}


# ----------------------------------------------------------------------- responses


def encode_response(rpc: Rpc, reply: Message | None) -> Proto:
    """The protobuf response of `rpc` carrying the core's `reply` (None: `ignore`)."""
    response = rpc.value.response_type()
    if reply is None:
        response.ignore = True  # type: ignore[attr-defined]
        return response
    if not isinstance(reply, rpc.value.replies):
        raise TypeError(f"{rpc.value.method} cannot carry {type(reply).__name__}")
    response.term = reply.term  # type: ignore[attr-defined]
    if isinstance(reply, AppendEntriesResponse):
        if rpc is Rpc.TIMEOUT_NOW:
            return pb.TimeoutNowResponse(term=reply.term)
        if rpc is Rpc.APPEND_ENTRIES:
            return pb.AppendEntriesResponse(
                success=reply.success,
                term=reply.term,
                match_index=reply.match_index,
                rejected_prev_index=reply.rejected_prev_index,
                hint_index=reply.hint_index,
                hint_term=reply.hint_term,
            )
        return response  # a stale-term refusal: success/acknowledged stay false
    if isinstance(reply, HeartbeatResponse):
        return pb.HeartbeatResponse(acknowledged=True, term=reply.term, context=reply.context)
    if isinstance(reply, PreVoteResponse):
        return pb.PreVoteResponse(
            granted=reply.granted, term=reply.term, removed_at=reply.removed_at
        )
    if isinstance(reply, RequestVoteResponse):
        return pb.VoteResponse(granted=reply.granted, term=reply.term, removed_at=reply.removed_at)
    if isinstance(reply, InstallSnapshotResponse):
        return pb.InstallSnapshotResponse(
            success=True,
            term=reply.term,
            match_index=reply.match_index,
            snapshot_index=reply.snapshot_index,
            chunk_offset=reply.chunk_offset,
            next_offset=reply.next_offset,
        )
    assert isinstance(reply, ReadIndexResponse)
    return pb.ForwardReadIndexResponse(
        term=reply.term,
        context=reply.context,
        success=reply.success,
        read_index=reply.read_index,
    )


def decode_response(rpc: Rpc, proto: Proto, sender: str) -> Message | None:
    """The core message inside a response from `sender`, or None when it is to be dropped."""
    p: object = proto
    if getattr(p, "ignore", False):
        return None
    if isinstance(p, pb.AppendEntriesResponse):
        return AppendEntriesResponse(
            sender=sender,
            term=p.term,
            success=p.success,
            match_index=p.match_index,
            rejected_prev_index=p.rejected_prev_index,
            hint_index=p.hint_index,
            hint_term=p.hint_term,
        )
    if isinstance(p, pb.HeartbeatResponse):
        if not p.acknowledged:
            return AppendEntriesResponse(sender=sender, term=p.term, success=False)
        return HeartbeatResponse(sender=sender, term=p.term, context=p.context)
    if isinstance(p, pb.PreVoteResponse):
        return PreVoteResponse(
            sender=sender, term=p.term, granted=p.granted, removed_at=p.removed_at
        )
    if isinstance(p, pb.VoteResponse):
        return RequestVoteResponse(
            sender=sender, term=p.term, granted=p.granted, removed_at=p.removed_at
        )
    if isinstance(p, pb.InstallSnapshotResponse):
        if not p.success:
            return AppendEntriesResponse(sender=sender, term=p.term, success=False)
        return InstallSnapshotResponse(
            sender=sender,
            term=p.term,
            match_index=p.match_index,
            snapshot_index=p.snapshot_index,
            chunk_offset=p.chunk_offset,
            next_offset=p.next_offset,
        )
    if isinstance(p, pb.TimeoutNowResponse):
        return AppendEntriesResponse(sender=sender, term=p.term, success=False)
    if isinstance(p, pb.ForwardReadIndexResponse):
        return ReadIndexResponse(
            sender=sender,
            term=p.term,
            context=p.context,
            success=p.success,
            read_index=p.read_index,
        )
    raise TypeError(f"{rpc.value.method}: unexpected response {type(proto).__name__}")


def _parse(cls: type[Proto], data: bytes, what: str) -> Proto:
    message = cls()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise CodecError(f"{what}: malformed request bytes: {exc}") from None
    return message
