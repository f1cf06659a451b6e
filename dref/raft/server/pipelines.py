"""`DRefNative.Pipeline` streams: many callers' key/value calls, several to a frame, started
on the node as their frame arrives and answered as they complete."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

import grpc

from dref.raft.server.access import call_role
from dref.raft.server.operations import (
    NATIVE_OPERATIONS,
    NodeHandle,
    Operation,
    PipelineOutcome,
    in_session,
    status_of,
)
from dref.wire.call_refused import CallRefused
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.tls import Identity, grpc_identity

MAX_PIPELINES = 16
"""Open Pipeline streams per node. Each holds a gRPC server thread (as a Watch does) plus a
reader thread; a client process needs one per node however many callers it has."""

MAX_CALLS_IN_FLIGHT = 4096
"""Calls one Pipeline stream or socket connection may have started and not yet answered;
more are answered RESOURCE_EXHAUSTED ``too-many-calls`` (a client's calls in flight are
its waiting threads, far fewer), so one connection cannot queue unbounded work."""

FRAME_BYTES = 4 * 1024 * 1024
"""A Pipeline frame of results stops growing past this size (clients accept 64 MiB)."""

_IDLE_CHECK = 0.5
"""Seconds a stream waits for work before re-checking whether it should end."""


if TYPE_CHECKING:
    from dref.raft.server.services import KeyValueServices

_log = logging.getLogger("dref.service")


@dataclasses.dataclass
class ServedPipelineStats:
    """Counters of the Pipeline streams of one node (for metrics and tests)."""

    open: int = 0
    frames_in: int = 0
    calls_in: int = 0
    frames_out: int = 0
    results_out: int = 0


class PipelineStream:
    """One open Pipeline: a reader thread starts each call on the node as its frame arrives,
    completions land in the outbox, and `frames` (the handler's thread) sends them."""

    def __init__(self, services: KeyValueServices, node: NodeHandle, context: Any) -> None:
        self._s = services
        self._node = node
        self._context = context
        self._identity = grpc_identity(context)
        self._outbox: queue.SimpleQueue[PipelineOutcome | None] = queue.SimpleQueue()  # None: wake
        self._lock = threading.Lock()
        self._calls = CallSlots()  # released as each call's outcome reaches the outbox
        self._reading = True  # the client has not half-closed

    def wake(self) -> None:
        """Make `frames` re-check whether the stream should end."""
        self._outbox.put(None)

    def read(self, requests: Iterator[native.PipelineFrame]) -> None:
        """The reader thread: start every call of every frame until the client half-closes
        or the RPC ends."""
        try:
            for frame in requests:
                self._s.count(frames_in=1, calls_in=len(frame.calls))
                for call in frame.calls:
                    self._start(call)
        except grpc.RpcError:
            pass  # the RPC was cancelled or failed; `frames` sees the context end
        except Exception:
            _log.exception("pipeline reader of node %s failed", self._node.node_id)
        finally:
            with self._lock:
                self._reading = False
            self.wake()

    def frames(self) -> Iterator[native.PipelineFrame]:
        """Frames of results: wait for the first completion, then take every one queued."""
        while not self._finished():
            try:
                item = self._outbox.get(timeout=_IDLE_CHECK)
            except queue.Empty:
                continue
            results: list[native.PipelineResult] = []
            size = 0
            while True:
                if item is not None:
                    result = self._result(item)
                    results.append(result)
                    size += result.ByteSize()
                if size >= FRAME_BYTES:
                    break
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
            if results:
                self._s.count(frames_out=1, results_out=len(results))
                yield native.PipelineFrame(results=results)

    def _finished(self) -> bool:
        if self._s.closed or not self._context.is_active():
            return True
        with self._lock:
            idle = not self._reading and self._calls.in_flight == 0
        return idle and self._outbox.empty()

    def _start(self, call: native.PipelineCall) -> None:
        """Validate and start one call; its outcome reaches the outbox when it completes."""
        try:
            op, outcome = self._calls.start(self._s, self._node, call, self._identity)
        except Exception as exc:
            self._outbox.put(error_result(self._s, self._node, call.id, exc))
            return
        call_id = call.id
        outcome.add_done_callback(lambda done: self._completed(call_id, op, done))

    def _completed(self, call_id: int, op: Operation, outcome: Future[bytes]) -> None:
        # runs on whichever engine thread completed the future: only queue it
        self._outbox.put((call_id, op, outcome))
        self._calls.release()

    def _result(self, item: PipelineOutcome) -> native.PipelineResult:
        if isinstance(item, native.PipelineResult):
            return item
        call_id, op, outcome = item
        return call_result(self._s, self._node, call_id, op, outcome)


def start_call(
    s: KeyValueServices, node: NodeHandle, call: native.PipelineCall, identity: Identity | None
) -> tuple[Operation, Future[bytes]]:
    """Validate one pipelined call of the caller `identity` (its TLS certificate, None
    without TLS) and start it on the node (raises what refuses it)."""
    kind = call.WhichOneof("request")
    build = NATIVE_OPERATIONS.get(kind or "")
    if build is None:
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the call names no operation")
    if node.access is not None:
        node.access.check(identity, call_role(cast(str, kind)))
    op = build(s, getattr(call, cast(str, kind)))
    if call.HasField("session"):
        in_session(s, op, call.session)
    return op, op.start(s, node)


class CallSlots:
    """The calls of one Pipeline stream or socket connection started and not yet answered,
    at most `MAX_CALLS_IN_FLIGHT`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0

    def start(
        self,
        s: KeyValueServices,
        node: NodeHandle,
        call: native.PipelineCall,
        identity: Identity | None,
    ) -> tuple[Operation, Future[bytes]]:
        """`start_call` in a free slot (CallRefused RESOURCE_EXHAUSTED when none is);
        `release` it once the call is answered."""
        with self._lock:
            if self.in_flight >= MAX_CALLS_IN_FLIGHT:
                raise CallRefused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too-many-calls: {MAX_CALLS_IN_FLIGHT} calls of this connection are in"
                    " flight",
                )
            self.in_flight += 1
        try:
            return start_call(s, node, call, identity)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """One call was answered."""
        with self._lock:
            self.in_flight -= 1


def call_result(
    s: KeyValueServices, node: NodeHandle, call_id: int, op: Operation, outcome: Future[bytes]
) -> native.PipelineResult:
    """The result of a completed call, success or error."""
    try:
        return op.answer(call_id, outcome.result(timeout=0))
    except Exception as exc:
        return error_result(s, node, call_id, exc)


def error_result(
    s: KeyValueServices, node: NodeHandle, call_id: int, exc: Exception
) -> native.PipelineResult:
    """A call's failure as the status its unary call would have had."""
    code, details, leader_address = status_of(exc, s.leader_address_hint)
    if code == grpc.StatusCode.INTERNAL:
        _log.error("node %s failed a pipelined call", node.node_id, exc_info=exc)
    error = native.CallError(code=code.name, details=details, leader_address=leader_address)
    return native.PipelineResult(id=call_id, error=error)
