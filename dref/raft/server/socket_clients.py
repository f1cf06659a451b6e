"""Key/value calls from clients on the node's socket (`wire/node_socket.py`).

A client sends the same `PipelineFrame`s of calls as on the gRPC Pipeline stream; each
call starts as its frame is read, and its result is written back from the thread that
completes it (no hand-off while the socket has room), joined with whatever else is
being sent at that moment. At most `MAX_CALLS_IN_FLIGHT` calls of a connection run at
once; more are answered RESOURCE_EXHAUSTED and the connection stays open.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from dref.raft.server.operations import NodeHandle, Operation
from dref.raft.server.pipelines import CallSlots, call_result, error_result
from dref.wire.frames import FrameError, FrameKind, encode_frame
from dref.wire.node_socket import FrameSender, OpenClientSession
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.tls import Identity

if TYPE_CHECKING:
    from dref.raft.server.services import KeyValueServices


def client_sessions(services: KeyValueServices, node: NodeHandle) -> OpenClientSession:
    """What the node's socket calls for each client connection."""
    return lambda sender, identity: _Session(services, node, sender, identity)


class _Session:
    """One client connection: calls started as read, results sent as they complete."""

    def __init__(
        self,
        services: KeyValueServices,
        node: NodeHandle,
        sender: FrameSender,
        identity: Identity | None,
    ) -> None:
        self._s = services
        self._node = node
        self._sender = sender
        self._identity = identity
        self._calls = CallSlots()
        services.count(open=1)  # shown with the gRPC pipelines in `dref status`

    def serve(self, payload: bytes) -> None:
        try:
            frame = native.PipelineFrame.FromString(payload)
        except (DecodeError, ValueError) as exc:
            raise FrameError(f"malformed PipelineFrame: {exc}") from None
        s, node = self._s, self._node
        s.count(frames_in=1, calls_in=len(frame.calls))
        for call in frame.calls:
            try:
                op, outcome = self._calls.start(s, node, call, self._identity)
            except Exception as exc:  # noqa: BLE001 - refused: answered as an error
                self._send(error_result(s, node, call.id, exc))
                continue
            outcome.add_done_callback(partial(self._answered, call.id, op))

    def close(self) -> None:
        self._s.count(open=-1)

    def _answered(self, call_id: int, op: Operation, outcome: Future[bytes]) -> None:
        self._calls.release()
        self._send(call_result(self._s, self._node, call_id, op, outcome))

    def _send(self, result: native.PipelineResult) -> None:
        self._s.count(frames_out=1, results_out=1)
        frame = native.PipelineFrame(results=[result])
        self._sender.send(encode_frame(FrameKind.ANSWERS, frame.SerializeToString()))
