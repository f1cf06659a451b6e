"""A scripted upstream DRef peer, played from the spec (sections 3 and 4): a `DRefConsensus`
gRPC server that records every request it gets, in order, and answers as the test sets it
(`term`, `grant_votes`, ...), plus stubs to call the node under test as an upstream node
and an upstream client would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from dref.wire.proto import dref_consensus_pb2 as cpb
from dref.wire.proto.dref_consensus_pb2_grpc import (
    DRefConsensusServicer,
    DRefConsensusStub,
    add_DRefConsensusServicer_to_server,
)
from dref.wire.proto.dref_pb2_grpc import DRefRaftStub
from dref.wire.proto.state_command_pb2 import StateCommand


@dataclass(frozen=True)
class Received:
    """One request the peer got: RPC name, message, monotonic arrival time."""

    method: str
    request: Any
    at: float


class ScriptedPeer(DRefConsensusServicer):
    """An upstream peer whose answers the test decides; `received` lists every request."""

    def __init__(self, node_id: str, *, term: int = 0) -> None:
        self.node_id = node_id
        self.term = term
        self.grant_pre_votes = True
        self.grant_votes = True
        self.append_success = True
        self.grant_read_index = True
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._server = grpc.server(ThreadPoolExecutor(8, thread_name_prefix=f"peer-{node_id}"))
        add_DRefConsensusServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=None)

    # -- what it got ---------------------------------------------------------------------

    def requests(self, method: str) -> list[Any]:
        with self._changed:
            return [r.request for r in self.received if r.method == method]

    def methods(self) -> list[str]:
        with self._changed:
            return [r.method for r in self.received]

    def wait_for(
        self, method: str, match: Callable[[Any], bool] = lambda _: True, timeout: float = 10.0
    ) -> Any:
        """The first request of `method` that `match`es, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for got in self.received:
                    if got.method == method and match(got.request):
                        return got.request
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.node_id} got no matching {method} within {timeout:g} s;"
                        f" got {[r.method for r in self.received][-20:]}"
                    )
                self._changed.wait(left)

    def native_fields(self) -> list[str]:
        """Every field numbered 100 or up (native mode's) in anything received, including
        the StateCommands inside AppendEntries; upstream nodes must never get one."""
        found: list[str] = []
        with self._changed:
            received = list(self.received)
        for got in received:
            found += _native_fields(got.request, got.method)
            if got.method == "AppendEntries":
                command = StateCommand.FromString(got.request.command)
                found += _native_fields(command, "AppendEntries.command")
        return found

    def forget(self) -> None:
        with self._changed:
            self.received.clear()

    def _record(self, method: str, request: Any) -> None:
        with self._changed:
            self.received.append(Received(method, request, time.monotonic()))
            self._changed.notify_all()

    # -- DRefConsensus, as scripted ------------------------------------------------------

    def RequestPreVote(self, request: Any, context: Any) -> cpb.PreVoteResponse:
        self._record("RequestPreVote", request)
        return cpb.PreVoteResponse(granted=self.grant_pre_votes, term=self.term)

    def RequestVote(self, request: Any, context: Any) -> cpb.VoteResponse:
        self._record("RequestVote", request)
        if self.grant_votes:
            self.term = max(self.term, request.term)
        return cpb.VoteResponse(granted=self.grant_votes, term=self.term)

    def AppendEntries(self, request: Any, context: Any) -> cpb.AppendEntriesResponse:
        self._record("AppendEntries", request)
        return cpb.AppendEntriesResponse(success=self.append_success, term=self.term)

    def Heartbeat(self, request: Any, context: Any) -> cpb.HeartbeatResponse:
        self._record("Heartbeat", request)
        return cpb.HeartbeatResponse(acknowledged=True, term=self.term)

    def ReadIndex(self, request: Any, context: Any) -> cpb.ReadIndexResponse:
        self._record("ReadIndex", request)
        return cpb.ReadIndexResponse(granted=self.grant_read_index, term=self.term)

    def InstallSnapshot(self, request: Any, context: Any) -> cpb.InstallSnapshotResponse:
        self._record("InstallSnapshot", request)
        return cpb.InstallSnapshotResponse(success=True, term=self.term)


def _native_fields(message: Message, path: str) -> list[str]:
    found = []
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.number >= 100:
            found.append(where)
        if field.message_type is not None:
            for item in [value] if isinstance(value, Message) else value:
                found += _native_fields(item, where)
    return found


def consensus_stub(address: str) -> DRefConsensusStub:
    """Call `address` as an upstream node calls its peers."""
    return DRefConsensusStub(grpc.insecure_channel(address))


def client_stub(address: str) -> DRefRaftStub:
    """Call `address` as an upstream client (DRefRaft) does."""
    return DRefRaftStub(grpc.insecure_channel(address))
