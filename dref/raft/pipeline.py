"""Many callers' key/value calls multiplexed on one `DRefNative.Pipeline` stream per node.

A unary gRPC call costs each side hundreds of microseconds of CPU in Python; a stream that
carries the calls of every thread of a client, several to a frame, costs that once per
frame. Callers block on their own call only: `Pipeline.call` sends a `PipelineCall` and
waits (bounded) for the `PipelineResult` with its id, which a receiver thread hands over.

A failed call raises `CallFailed`, a `grpc.RpcError` shaped like the unary call's failure,
so the client's retry and leader-following logic treats both alike. When the stream
breaks, every call waiting on it fails with the stream's status (a write then "may or may
not have been applied", unless the connection never opened); the next call reopens it. A
node that refuses the stream (UNIMPLEMENTED: an older node or pipelines turned off;
RESOURCE_EXHAUSTED: no free slot) raises `PipelineRefused`: use unary calls there.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from dref.wire.client_protocol import LEADER_ADDRESS_KEY
from dref.wire.proto import dref_native_pb2 as native

__all__ = [
    "MAX_BATCH",
    "CallFailed",
    "Pipeline",
    "PipelineRefused",
    "PipelineStats",
    "Waiter",
    "resolve",
]

MAX_BATCH = 256
"""Calls a frame may carry besides the first (a frame also stops at FRAME_BYTES)."""

FRAME_BYTES = 4 * 1024 * 1024
"""A frame of calls stops growing past this size."""

REFUSED_RETRY = 30.0
"""Seconds a node that refused a pipeline is served by unary calls before trying again."""

_IDLE_CHECK = 1.0
"""Seconds the request generator waits for a call before re-checking that the stream lives."""

OpenStream = Callable[[Iterator[native.PipelineFrame]], Any]
"""`DRefNativeStub.Pipeline`: opens the stream; returns the call (iterate it for frames)."""


class CallFailed(grpc.RpcError):
    """A pipelined call's failure with the status its unary call would have had."""

    def __init__(self, code: grpc.StatusCode, details: str, leader_address: str = "") -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._metadata = ((LEADER_ADDRESS_KEY, leader_address),) if leader_address else ()

    def code(self) -> grpc.StatusCode:
        """The gRPC status code."""
        return self._code

    def details(self) -> str:
        """The status details (``not-leader:n2``, ``quorum-lost``, ...)."""
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """The leader address hint, under LEADER_ADDRESS_KEY, if the node sent one."""
        return self._metadata


class PipelineRefused(Exception):
    """The node does not serve a pipeline now; the call was not sent: use a unary call."""


@dataclasses.dataclass
class PipelineStats:
    """Counters of one node's pipeline (for metrics and tests)."""

    streams: int = 0
    frames_sent: int = 0
    calls_sent: int = 0
    frames_received: int = 0
    results_received: int = 0


class Waiter:
    """One caller waiting for its call's result: a lock held until the result is in, so
    waking the caller costs one release (no Event, no Future)."""

    __slots__ = ("_held", "error", "result")

    def __init__(self) -> None:
        self._held = threading.Lock()
        self._held.acquire()
        self.result: Any = None
        self.error: Exception | None = None

    def finish(self) -> None:
        """The result (or error) is in: wake the caller. Called exactly once."""
        self._held.release()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s; whether the result is in."""
        return self._held.acquire(timeout=max(0.0, timeout))

    def finished(self) -> bool:
        """Whether the result is in (without waiting)."""
        return self._held.acquire(blocking=False)


def resolve(waiter: Waiter, result: native.PipelineResult) -> None:
    """Hand `result` (an answer or a CallError) to its waiting caller."""
    outcome = result.WhichOneof("outcome")
    if outcome == "error":
        error = result.error
        code = grpc.StatusCode.__members__.get(error.code, grpc.StatusCode.UNKNOWN)
        waiter.error = CallFailed(code, error.details, error.leader_address)
    elif outcome is None:
        waiter.error = CallFailed(grpc.StatusCode.INTERNAL, "an empty pipeline result")
    else:
        waiter.result = getattr(result, outcome)
    waiter.finish()


class Pipeline:
    """The pipeline to one node: opened on first use, reopened after a break. Thread-safe."""

    def __init__(self, open_stream: OpenStream, address: str) -> None:
        self.address = address
        self._open_stream = open_stream
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._next_id = 1
        self._closed = False
        self._refused_until = 0.0
        self.stats = PipelineStats()
        """Counters, updated under the pipeline's lock; copy with `snapshot`."""

    @property
    def usable(self) -> bool:
        """False while the node is known to refuse pipelines (use unary calls)."""
        return not self._closed and time.monotonic() >= self._refused_until

    def snapshot(self) -> PipelineStats:
        """A copy of the counters."""
        with self._lock:
            return dataclasses.replace(self.stats)

    def call(self, call: native.PipelineCall, timeout: float) -> Any:
        """Send `call` (its id is set here) and wait at most `timeout` s for the answer: the
        NativeGetResponse or WriteResponse. Raises CallFailed as the unary call would fail
        (DEADLINE_EXCEEDED when no answer came in time), PipelineRefused if not sent."""
        if not self.usable:
            raise PipelineRefused(self.address)
        waiter = None
        for _ in range(2):  # a stream that broke just now is replaced once
            stream = self._current(call)
            waiter = stream.submit(call)
            if waiter is not None:
                break
        if waiter is None:
            self._raise(stream.failure())
        if not waiter.wait(timeout):
            stream.forget(call.id)
            if not waiter.finished():
                raise CallFailed(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no answer from {self.address} within {timeout:g} s",
                )
        if waiter.error is not None:
            self._raise(waiter.error)
        return waiter.result

    def _raise(self, error: Exception) -> NoReturn:
        if isinstance(error, PipelineRefused):
            with self._lock:
                self._refused_until = time.monotonic() + REFUSED_RETRY
        raise error

    def close(self) -> None:
        """Cancel the stream: waiting calls fail with CANCELLED. Idempotent."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def _current(self, call: native.PipelineCall) -> _Stream:
        """The live stream (opened if there is none); gives `call` its id."""
        with self._lock:
            if self._closed:
                raise CallFailed(grpc.StatusCode.CANCELLED, "the pipeline is closed")
            call.id = self._next_id
            self._next_id += 1
            if self._stream is None or self._stream.broken:
                self.stats.streams += 1
                self._stream = _Stream(self, self._open_stream, self.address)
            return self._stream

    def _count(self, **increments: int) -> None:
        with self._lock:
            for field, amount in increments.items():
                setattr(self.stats, field, getattr(self.stats, field) + amount)


class _Stream:
    """One Pipeline RPC: a request generator batching queued calls into frames and a
    receiver thread resolving waiting calls by id."""

    def __init__(self, owner: Pipeline, open_stream: OpenStream, address: str) -> None:
        self._owner = owner
        self._address = address
        self._outgoing: queue.SimpleQueue[native.PipelineCall | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: dict[int, Waiter] = {}
        self._failed: tuple[grpc.StatusCode, str] | None = None
        self._answered = False  # a frame arrived: the node accepted the stream
        self._refused = False  # the node refused the stream before reading any call
        self._cancelled = False
        try:
            self._call = open_stream(self._requests())
        except ValueError as exc:  # the channel is closed: the client is closing
            self._failed = (grpc.StatusCode.CANCELLED, f"pipeline to {address}: {exc}")
            return
        threading.Thread(target=self._receive, name=f"dref-pipeline-{address}", daemon=True).start()

    @property
    def broken(self) -> bool:
        """Whether the stream has ended (calls submitted now would fail)."""
        return self._failed is not None

    def failure(self) -> Exception:
        """The failure of a broken stream, as a call's error."""
        code, details = self._failed or (grpc.StatusCode.UNAVAILABLE, "pipeline broken")
        if self._refused:
            return PipelineRefused(f"{self._address}: {code.name}: {details}")
        return CallFailed(code, details)

    def submit(self, call: native.PipelineCall) -> Waiter | None:
        """Queue `call` for sending; its waiter, or None if the stream has broken."""
        waiter = Waiter()
        with self._lock:
            if self._failed is not None:
                return None
            self._pending[call.id] = waiter
        self._outgoing.put(call)
        return waiter

    def forget(self, call_id: int) -> None:
        """Drop a call whose caller stopped waiting (its late answer is ignored)."""
        with self._lock:
            self._pending.pop(call_id, None)

    def cancel(self) -> None:
        """End the RPC from this side; waiting calls fail with CANCELLED."""
        self._cancelled = True
        if self._failed is None:
            self._call.cancel()

    def _requests(self) -> Iterator[native.PipelineFrame]:
        """Frames to send: wait for one call, then take every queued one (up to a limit)."""
        while True:
            try:
                first = self._outgoing.get(timeout=_IDLE_CHECK)
            except queue.Empty:
                if self.broken:
                    return
                continue
            if first is None:
                return
            calls = [first]
            size = first.ByteSize()
            end = False
            while len(calls) <= MAX_BATCH and size < FRAME_BYTES:
                try:
                    item = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    end = True
                    break
                calls.append(item)
                size += item.ByteSize()
            self._owner._count(frames_sent=1, calls_sent=len(calls))
            yield native.PipelineFrame(calls=calls)
            if end:
                return

    def _receive(self) -> None:
        """The receiver thread: hand each result to its caller; fail them all at the end."""
        try:
            for frame in self._call:
                self._answered = True
                self._owner._count(frames_received=1, results_received=len(frame.results))
                for result in frame.results:
                    self._resolve(result)
            code, details = grpc.StatusCode.UNAVAILABLE, f"{self._address} ended the pipeline"
        except grpc.RpcError as error:
            code = error.code() or grpc.StatusCode.UNKNOWN
            details = error.details() or ""
        except Exception as exc:  # e.g. the channel was closed under the stream
            code, details = grpc.StatusCode.UNAVAILABLE, f"pipeline to {self._address}: {exc}"
        if code == grpc.StatusCode.CANCELLED and not self._cancelled:
            code = grpc.StatusCode.UNAVAILABLE  # the node cancelled it: it is going away
        self._break(code, details)

    def _resolve(self, result: native.PipelineResult) -> None:
        with self._lock:
            waiter = self._pending.pop(result.id, None)
        if waiter is not None:  # None: its caller gave up waiting
            resolve(waiter, result)

    def _break(self, code: grpc.StatusCode, details: str) -> None:
        refused = not self._answered and code in (
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        with self._lock:
            self._refused = refused  # refused before reading any frame: nothing was run
            self._failed = (code, details)
            waiters = list(self._pending.values())
            self._pending.clear()
        for waiter in waiters:
            waiter.error = self.failure()
            waiter.finish()
        self._outgoing.put(None)  # ends the request generator
