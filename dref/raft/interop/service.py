"""The two gRPC services of an interop node, on one plaintext port as upstream serves them:
`DRefConsensus` (peers, spec 3.3) and `DRefRaft` (clients, spec 3.4), with upstream's
status codes and messages (`not-leader:<id|unknown>`, `quorum-lost`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from dref.errors import DRefError, NotLeaderError, QuorumLostError
from dref.raft.interop.engine import InteropEngine
from dref.wire.proto import dref_consensus_pb2 as cpb
from dref.wire.proto import dref_pb2 as rpb
from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_consensus_pb2_grpc import (
    DRefConsensusServicer,
    add_DRefConsensusServicer_to_server,
)
from dref.wire.proto.dref_native_pb2 import CommandResult
from dref.wire.proto.dref_pb2_grpc import DRefRaftServicer, add_DRefRaftServicer_to_server

__all__ = ["add_interop_services"]

_T = TypeVar("_T")


def add_interop_services(engine: InteropEngine, server: grpc.Server) -> None:
    """Serve `engine` to peers and clients on `server`."""
    add_DRefConsensusServicer_to_server(_ConsensusService(engine), server)
    add_DRefRaftServicer_to_server(_ClientService(engine), server)


class _ConsensusService(DRefConsensusServicer):
    def __init__(self, engine: InteropEngine) -> None:
        self._engine = engine

    def AppendEntries(self, request: Any, context: Any) -> cpb.AppendEntriesResponse:
        success, term = self._engine.on_append_entries(request)
        return cpb.AppendEntriesResponse(success=success, term=term)

    def Heartbeat(self, request: Any, context: Any) -> cpb.HeartbeatResponse:
        acknowledged, term = self._engine.on_heartbeat(request)
        return cpb.HeartbeatResponse(acknowledged=acknowledged, term=term)

    def ReadIndex(self, request: Any, context: Any) -> cpb.ReadIndexResponse:
        granted, term = self._engine.on_read_index(request)
        return cpb.ReadIndexResponse(granted=granted, term=term)

    def RequestVote(self, request: Any, context: Any) -> cpb.VoteResponse:
        granted, term = self._engine.on_vote(request)
        return cpb.VoteResponse(granted=granted, term=term)

    def RequestPreVote(self, request: Any, context: Any) -> cpb.PreVoteResponse:
        granted, term = self._engine.on_pre_vote(request)
        return cpb.PreVoteResponse(granted=granted, term=term)

    def InstallSnapshot(self, request: Any, context: Any) -> cpb.InstallSnapshotResponse:
        success, term = self._engine.on_install_snapshot(request)
        return cpb.InstallSnapshotResponse(success=success, term=term)


def _expiry(request: Any) -> dict[str, int]:
    return {"expire_at": request.expireAt} if request.HasField("expireAt") else {}


class _ClientService(DRefRaftServicer):
    """Writes become StateCommands submitted here (no forwarding: a follower answers
    not-leader); reads run a ReadIndex round, then read the state machine."""

    def __init__(self, engine: InteropEngine) -> None:
        self._engine = engine

    def SetElement(self, request: Any, context: Any) -> rpb.SetElementResponse:
        command = sc.SetElementCommand(name=request.name, value=request.value, **_expiry(request))
        self._submit(sc.StateCommand(set_element=command), context)
        return rpb.SetElementResponse()

    def SetElementIfNotExist(self, request: Any, context: Any) -> rpb.SetElementIfNotExistResponse:
        command = sc.SetElementIfNotExistCommand(
            name=request.name, value=request.value, **_expiry(request)
        )
        result = self._submit(sc.StateCommand(set_element_if_not_exist=command), context)
        return rpb.SetElementIfNotExistResponse(created=result.applied)

    def DeleteElement(self, request: Any, context: Any) -> rpb.DeleteElementResponse:
        command = sc.DeleteElementCommand(name=request.name)
        self._submit(sc.StateCommand(delete_element=command), context)
        return rpb.DeleteElementResponse()

    def ExpireElement(self, request: Any, context: Any) -> rpb.ExpireElementResponse:
        command = sc.ExpireElementCommand(name=request.name, expire_at=request.expireAt)
        self._submit(sc.StateCommand(expire_element=command), context)
        return rpb.ExpireElementResponse()

    def GetElement(self, request: Any, context: Any) -> rpb.GetElementResponse:
        value = _answer(context, lambda: self._engine.read(request.name))
        return rpb.GetElementResponse() if value is None else rpb.GetElementResponse(value=value)

    def GetEndpoints(self, request: Any, context: Any) -> rpb.EndpointResponse:
        return rpb.EndpointResponse(ids=[*self._engine.endpoint_ids, self._engine.node_id])

    def SendCommand(self, request: Any, context: Any) -> rpb.SendCommandResponse:
        return rpb.SendCommandResponse()  # upstream's legacy tunnel: a no-op

    def _submit(self, command: sc.StateCommand, context: Any) -> CommandResult:
        encoded = command.SerializeToString()
        return CommandResult.FromString(_answer(context, lambda: self._engine.submit(encoded)))


def _answer(context: grpc.ServicerContext, call: Callable[[], _T]) -> _T:
    """Run `call`, turning engine errors into upstream's statuses (spec 3.4)."""
    try:
        return call()
    except NotLeaderError as exc:
        _abort(
            context, grpc.StatusCode.FAILED_PRECONDITION, f"not-leader:{exc.leader_id or 'unknown'}"
        )
    except QuorumLostError:
        _abort(context, grpc.StatusCode.UNAVAILABLE, "quorum-lost")
    except DRefError as exc:
        _abort(context, grpc.StatusCode.INTERNAL, str(exc))


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises
