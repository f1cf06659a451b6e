"""The client-facing gRPC services of a key/value node: upstream `DRefRaft` and `DRefNative`.

`DRefRaft` is exactly upstream's service (spec 3.4): writes become StateCommands proposed
to the local node (no forwarding: a follower answers NotLeader), `GetElement` is a
linearizable read, `GetEndpoints` lists the configured peer ids and then our own id last.
Errors follow upstream's table: NotLeader -> FAILED_PRECONDITION ``not-leader:<id>`` (or
``not-leader:unknown``), quorum loss -> UNAVAILABLE ``quorum-lost``. We add the leader's
address as trailing metadata ``dref-leader-address`` so a client that knows one node can
follow the hint; upstream clients ignore it.

`DRefNative` (dref_native.proto) adds what upstream lacks: revisions, compare-and-set,
compare-and-delete, conditional expiry, a Watch stream of the changes to a set of names that
THIS node's state machine applies (spec 1.5), and the node's status as JSON.

Times (`expire_at`, `now`) are Unix epoch milliseconds; `now` is this server's wall clock.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar, cast, get_args

import grpc

from dref.backend import ChangeEvent, ChangeKind
from dref.errors import (
    BackendUnavailableError,
    ContextClosedError,
    DRefTimeoutError,
    NotLeaderError,
    QuorumLostError,
)
from dref.raft.config import ReadPolicyName
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.call_refused import CallRefused
from dref.wire.client_protocol import DEFAULT_MAX_VALUE_SIZE, LEADER_ADDRESS_KEY, now_ms
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import dref_native_pb2_grpc as native_grpc
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc
from dref.wire.proto import state_command_pb2 as sc

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "LEADER_ADDRESS_KEY",
    "MAX_PIPELINES",
    "CallRefused",
    "KeyValueServices",
    "NodeHandle",
    "ServedPipelineStats",
    "now_ms",
]


DEFAULT_CALL_TIMEOUT = 10.0
"""Seconds a proposal or read may take when the client sent no deadline."""

WATCH_BUFFER = 1024
"""Events a Watch stream holds for a slow reader before it sends RESYNC instead."""

MAX_WATCHES = 24
"""Open Watch streams per node. Each holds a gRPC server thread for its lifetime; the cap
keeps the rest of the node's pool (64 threads) free for consensus and client calls. A
client watches any number of names on one stream (`RaftBackend` keeps one per backend)."""

HANDOVER_TIMEOUT = 5.0
"""Seconds a replacing Watch waits for the stream it replaces to end."""

MAX_PIPELINES = 16
"""Open Pipeline streams per node. Each holds a gRPC server thread (as a Watch does) plus a
reader thread; a client process needs one per node however many callers it has."""

FRAME_BYTES = 4 * 1024 * 1024
"""A Pipeline frame of results stops growing past this size (clients accept 64 MiB)."""

_IDLE_CHECK = 0.5
"""Seconds a stream waits for work before re-checking whether it should end."""

_log = logging.getLogger("dref.service")
_R = TypeVar("_R")


class NodeHandle(Protocol):
    """What the services need from a `dref.raft.Node`."""

    @property
    def node_id(self) -> str: ...

    def propose(self, command: bytes, *, timeout: float) -> bytes: ...

    def propose_async(self, command: bytes) -> Future[bytes]: ...

    def read(
        self,
        request: bytes,
        *,
        policy: ReadPolicyName = "linearizable",
        timeout: float,
    ) -> bytes: ...

    def read_async(
        self, request: bytes, *, policy: ReadPolicyName = "linearizable"
    ) -> Future[bytes]: ...

    def status(self) -> Any: ...


@dataclasses.dataclass
class ServedPipelineStats:
    """Counters of the Pipeline streams of one node (for metrics and tests)."""

    open: int = 0
    frames_in: int = 0
    calls_in: int = 0
    frames_out: int = 0
    results_out: int = 0


class KeyValueServices:
    """Both services of one node; pass `register` to `dref.raft.Node(services=...)`."""

    def __init__(
        self,
        state_machine: KeyValueStateMachine,
        *,
        peer_ids: Sequence[str],
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_watches: int = MAX_WATCHES,
        max_pipelines: int = MAX_PIPELINES,
        pipeline: bool = True,
        leader_address_hint: bool = True,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.state_machine = state_machine
        self.leader_address_hint = leader_address_hint
        """Send ``dref-leader-address`` with not-leader errors (False: exactly as upstream)."""
        self._watch_slots = threading.BoundedSemaphore(max_watches)
        self._watch_lock = threading.Lock()
        self._watches: dict[int, _Subscription] = {}  # open streams by watch_id
        self.peer_ids = list(peer_ids)
        self.max_value_size = max_value_size
        self.clock = clock
        self._closed = threading.Event()
        self.pipeline_enabled = pipeline
        """Serve `DRefNative.Pipeline` (False: UNIMPLEMENTED, clients use unary calls)."""
        self._pipeline_slots = threading.BoundedSemaphore(max_pipelines) if max_pipelines else None
        self._pipelines: set[_PipelineStream] = set()
        self._stats_lock = threading.Lock()
        self._stats = ServedPipelineStats()

    def register(self, server: grpc.Server, node: NodeHandle) -> None:
        """Add DRefRaft and DRefNative, bound to `node`, to `server` (before it starts)."""
        up_grpc.add_DRefRaftServicer_to_server(_DRefRaft(self, node), server)
        native_grpc.add_DRefNativeServicer_to_server(_DRefNative(self, node), server)

    def close(self) -> None:
        """End every open Watch and Pipeline stream."""
        self._closed.set()
        with self._stats_lock:
            streams = list(self._pipelines)
        for stream in streams:
            stream.wake()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed.is_set()

    def pipeline_stats(self) -> ServedPipelineStats:
        """A copy of the Pipeline counters."""
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    def count(self, **increments: int) -> None:
        """Add to the Pipeline counters (`frames_in=1, calls_in=3`)."""
        with self._stats_lock:
            for field, amount in increments.items():
                setattr(self._stats, field, getattr(self._stats, field) + amount)

    # -- shared by both servicers ---------------------------------------------------------

    def propose(self, node: NodeHandle, command: sc.StateCommand, context: Any) -> Any:
        """Propose `command` to `node` within the call's deadline; the decoded result."""
        data = command.SerializeToString(deterministic=True)
        reply = _call(
            context, node, lambda t: node.propose(data, timeout=t), self.leader_address_hint
        )
        return native.CommandResult.FromString(reply)

    def get_query(self, name: str) -> bytes:
        """The encoded state-machine query reading `name` now (by this server's clock)."""
        return native.KeyValueQuery(
            get=native.GetQuery(name=name, now=self.clock())
        ).SerializeToString()

    def get(self, node: NodeHandle, name: str, policy: ReadPolicyName, context: Any) -> Any:
        """Read `name` through `node` with the read `policy`; a KeyValueQueryResult."""
        data = self.get_query(name)
        reply = _call(
            context,
            node,
            lambda t: node.read(data, policy=policy, timeout=t),
            self.leader_address_hint,
        )
        return native.KeyValueQueryResult.FromString(reply)

    def check_name(self, name: str) -> None:
        """CallRefused INVALID_ARGUMENT for an empty name."""
        if not name:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty")

    def check_value(self, name: str, value: bytes) -> None:
        """CallRefused INVALID_ARGUMENT for an empty name or a value over the size limit."""
        self.check_name(name)
        if len(value) > self.max_value_size:
            raise CallRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"value-too-large: value for {name} is {len(value)} bytes;"
                f" the limit is {self.max_value_size}",
            )

    def set_if_absent_upstream(
        self, node: NodeHandle, request: Any, context: Any
    ) -> tuple[bool, int]:
        """Upstream set-if-absent, but an expired, not yet reaped entry does not block it:
        first a delete-if-expired for it, then one more try (spec 7.13)."""
        command = sc.StateCommand(
            set_element_if_not_exist=sc.SetElementIfNotExistCommand(
                name=request.name, value=request.value
            )
        )
        if request.HasField("expireAt"):
            command.set_element_if_not_exist.expire_at = request.expireAt
        result = self.propose(node, command, context)
        now = self.clock()
        expired = result.HasField("current_expire_at") and result.current_expire_at <= now
        if not result.applied and expired:
            reap = sc.DeleteIfExpiredCommand(name=request.name, now=now)
            self.propose(node, sc.StateCommand(delete_if_expired=reap), context)
            result = self.propose(node, command, context)
        return result.applied, result.revision

    def watch(self, names: set[str], replaces: int, context: Any) -> Iterator[native.WatchEvent]:
        """READY, then every change of `names` this node applies; RESYNC when some may be lost.

        With `replaces` (a stream open here) the new stream takes over that stream's
        subscription once it has ended, so nothing is lost or repeated (READY says so).
        RESOURCE_EXHAUSTED ``too-many-watches`` when `max_watches` subscriptions are open.
        """
        sub = self._take_over(replaces) if replaces else None
        replaced = sub is not None
        if sub is None:
            if not self._watch_slots.acquire(blocking=False):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-watches")
            sub = _Subscription(self.state_machine, self._watch_slots.release)
        sub.watch(names)
        watch_id = random.getrandbits(63) + 1
        with self._watch_lock:
            self._watches[watch_id] = sub
        context.add_callback(sub.wake)
        try:
            yield native.WatchEvent(
                kind=native.WatchEvent.READY, watch_id=watch_id, replaced=replaced
            )
            while context.is_active() and not self._closed.is_set() and not sub.ending.is_set():
                item = sub.next_item()
                if item is not None:
                    yield item
        finally:
            with self._watch_lock:
                self._watches.pop(watch_id, None)
            sub.release()

    def pipeline(
        self, node: NodeHandle, requests: Iterator[native.PipelineFrame], context: Any
    ) -> Iterator[native.PipelineFrame]:
        """Start every call of the `requests` frames on `node` at once; yield the results as
        they complete, several to a frame. Ends once the client half-closed and every call
        answered, or when the RPC or these services end. UNIMPLEMENTED when turned off,
        RESOURCE_EXHAUSTED ``too-many-pipelines`` when `max_pipelines` streams are open."""
        if not self.pipeline_enabled:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Pipeline is turned off on this node")
        slots = self._pipeline_slots
        if slots is None or not slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-pipelines")
        assert slots is not None
        stream = _PipelineStream(self, node, context)
        with self._stats_lock:
            self._pipelines.add(stream)
            self._stats.open += 1
        try:
            context.add_callback(stream.wake)
            reader = threading.Thread(
                target=stream.read,
                args=(requests,),
                name=f"dref-pipeline-reader-{node.node_id}",
                daemon=True,
            )
            reader.start()
            yield from stream.frames()
        finally:
            with self._stats_lock:
                self._pipelines.discard(stream)
                self._stats.open -= 1
            slots.release()

    def _take_over(self, watch_id: int) -> _Subscription | None:
        """End the stream `watch_id` and take its subscription, if it is open here."""
        with self._watch_lock:
            sub = self._watches.pop(watch_id, None)
        if sub is None:
            return None
        return sub if sub.hand_over(HANDOVER_TIMEOUT) else None


class _Subscription:
    """The listeners and event queue of one watcher; a replacing stream takes it over."""

    def __init__(self, state_machine: KeyValueStateMachine, on_close: Callable[[], None]) -> None:
        self._sm = state_machine
        self._on_close = on_close
        self._events: queue.Queue[native.WatchEvent | None] = queue.Queue(WATCH_BUFFER)
        self._overflowed = threading.Event()
        self._cancels: dict[str, Callable[[], None]] = {}
        self._cancel_resync = state_machine.add_resync_listener(
            lambda: self._push(native.WatchEvent(kind=native.WatchEvent.RESYNC))
        )
        self._lock = threading.Lock()
        self._taken = False  # a replacing stream waits to take over
        self._released = threading.Event()  # the serving stream has ended
        self.ending = threading.Event()
        """Set when a replacing stream asks the serving one to end."""

    def watch(self, names: set[str]) -> None:
        """Listen to exactly `names` from now on."""
        for name in set(self._cancels) - names:
            self._cancels.pop(name)()
        for name in names - set(self._cancels):
            self._cancels[name] = self._sm.listeners.add(name, self._on_change)

    def next_item(self) -> native.WatchEvent | None:
        """The next event to send (RESYNC after an overflow); None after half a second idle
        or a wake-up, so the caller can re-check whether to go on."""
        if self._overflowed.is_set():
            _drain(self._events)
            self._overflowed.clear()
            return native.WatchEvent(kind=native.WatchEvent.RESYNC)
        try:
            return self._events.get(timeout=0.5)
        except queue.Empty:
            return None

    def wake(self) -> None:
        """Make a waiting `next_item` return now."""
        self._push(None)

    def hand_over(self, timeout: float) -> bool:
        """Ask the serving stream to end and wait for it; True if the caller now owns this
        subscription (False: it did not end in time and will close it)."""
        with self._lock:
            self._taken = True
        self.ending.set()
        self.wake()
        ended = self._released.wait(timeout)
        with self._lock:
            if not ended and not self._released.is_set():
                self._taken = False
                return False
            self._taken = False
            self._released.clear()
            self.ending.clear()
            return True

    def release(self) -> None:
        """The serving stream ended: close, unless a replacing stream takes over."""
        with self._lock:
            if not self._taken:
                for cancel in self._cancels.values():
                    cancel()
                self._cancels.clear()
                self._cancel_resync()
                self._on_close()
            self._released.set()

    def _on_change(self, event: ChangeEvent) -> None:
        kind = native.WatchEvent.SET if event.kind is ChangeKind.SET else native.WatchEvent.DELETE
        self._push(
            native.WatchEvent(
                kind=kind, value=event.value or b"", revision=event.revision, name=event.name
            )
        )

    def _push(self, item: native.WatchEvent | None) -> None:
        try:
            self._events.put_nowait(item)
        except queue.Full:
            if item is not None:
                self._overflowed.set()


class _PipelineStream:
    """One open Pipeline: a reader thread starts each call on the node as its frame arrives,
    completions land in the outbox, and `frames` (the handler's thread) sends them."""

    def __init__(self, services: KeyValueServices, node: NodeHandle, context: Any) -> None:
        self._s = services
        self._node = node
        self._context = context
        self._outbox: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()  # None: wake
        self._lock = threading.Lock()
        self._pending = 0  # calls started and not yet in the outbox
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
            idle = not self._reading and self._pending == 0
        return idle and self._outbox.empty()

    def _start(self, call: native.PipelineCall) -> None:
        """Validate and start one call; its outcome reaches the outbox when it completes."""
        kind = call.WhichOneof("request")
        try:
            build = _NATIVE_OPS.get(kind or "")
            if build is None:
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the call names no operation")
            op = build(self._s, getattr(call, cast(str, kind)))
            outcome = op.start(self._s, self._node)
        except Exception as exc:
            self._outbox.put(self._error(call.id, exc))
            return
        with self._lock:
            self._pending += 1
        call_id = call.id
        outcome.add_done_callback(lambda done: self._completed(call_id, op, done))

    def _completed(self, call_id: int, op: _Op, outcome: Future[bytes]) -> None:
        # runs on whichever engine thread completed the future: only queue it
        self._outbox.put((call_id, op, outcome))
        with self._lock:
            self._pending -= 1

    def _result(self, item: _Outcome) -> native.PipelineResult:
        if isinstance(item, native.PipelineResult):
            return item
        call_id, op, outcome = item
        try:
            return op.answer(call_id, outcome.result(timeout=0))
        except Exception as exc:
            return self._error(call_id, exc)

    def _error(self, call_id: int, exc: Exception) -> native.PipelineResult:
        code, details, leader_address = _status_of(exc, self._s.leader_address_hint)
        if code == grpc.StatusCode.INTERNAL:
            _log.error("node %s failed a pipelined call", self._node.node_id, exc_info=exc)
        error = native.CallError(code=code.name, details=details, leader_address=leader_address)
        return native.PipelineResult(id=call_id, error=error)


@dataclasses.dataclass(frozen=True, slots=True)
class _Write:
    """A validated write: the command to propose."""

    command: sc.StateCommand

    def run(self, s: KeyValueServices, node: NodeHandle, context: Any) -> Any:
        """Propose it within the unary call's deadline; the WriteResponse."""
        return _write_response(s.propose(node, self.command, context))

    def start(self, s: KeyValueServices, node: NodeHandle) -> Future[bytes]:
        return node.propose_async(self.command.SerializeToString(deterministic=True))

    def answer(self, call_id: int, reply: bytes) -> native.PipelineResult:
        result = native.CommandResult.FromString(reply)
        return native.PipelineResult(id=call_id, write=_write_response(result))


@dataclasses.dataclass(frozen=True, slots=True)
class _Read:
    """A validated read of one name with a read policy."""

    name: str
    policy: ReadPolicyName

    def run(self, s: KeyValueServices, node: NodeHandle, context: Any) -> Any:
        """Read within the unary call's deadline; the NativeGetResponse."""
        return _get_response(s.get(node, self.name, self.policy, context))

    def start(self, s: KeyValueServices, node: NodeHandle) -> Future[bytes]:
        return node.read_async(s.get_query(self.name), policy=self.policy)

    def answer(self, call_id: int, reply: bytes) -> native.PipelineResult:
        result = native.KeyValueQueryResult.FromString(reply)
        return native.PipelineResult(id=call_id, get=_get_response(result))


_Op = _Write | _Read
_Outcome = tuple[int, _Op, Future[bytes]] | native.PipelineResult
"""What a Pipeline's outbox holds: a completed call, or an answer made without the node."""


def _write_response(result: Any) -> Any:
    return native.WriteResponse(applied=result.applied, revision=result.revision)


def _get_response(result: Any) -> Any:
    return native.NativeGetResponse(
        found=result.found, value=result.value, revision=result.revision
    )


def _get_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_name(request.name)
    policy = request.read_policy or "linearizable"
    if policy not in get_args(ReadPolicyName):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"unknown read policy {policy!r}")
    return _Read(request.name, cast(ReadPolicyName, policy))


def _set_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_value(request.name, request.value)
    return _Write(sc.StateCommand(set_element=request))


def _set_if_absent_op(s: KeyValueServices, request: Any) -> _Op:
    """A compare-and-set expecting no live entry, by this server's clock (an expired entry
    does not block it)."""
    s.check_value(request.name, request.value)
    cas = sc.CompareAndSetCommand(name=request.name, value=request.value, now=s.clock())
    if request.HasField("expire_at"):
        cas.expire_at = request.expire_at
    return _Write(sc.StateCommand(compare_and_set=cas))


def _delete_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_name(request.name)
    return _Write(sc.StateCommand(delete_element=request))


def _compare_and_set_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_value(request.name, request.value)
    command = sc.StateCommand(compare_and_set=request)
    command.compare_and_set.now = s.clock()
    return _Write(command)


def _compare_and_delete_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_name(request.name)
    command = sc.StateCommand(compare_and_delete=request)
    command.compare_and_delete.now = s.clock()
    return _Write(command)


def _expire_if_op(s: KeyValueServices, request: Any) -> _Op:
    s.check_name(request.name)
    command = sc.StateCommand(expire_if=request)
    command.expire_if.now = s.clock()
    return _Write(command)


_NATIVE_OPS: dict[str, Callable[[KeyValueServices, Any], _Op]] = {
    "get": _get_op,
    "set": _set_op,
    "set_if_absent": _set_if_absent_op,
    "delete": _delete_op,
    "compare_and_set": _compare_and_set_op,
    "compare_and_delete": _compare_and_delete_op,
    "expire_if": _expire_if_op,
}
"""The builder of each DRefNative operation by its PipelineCall field name: it validates
the request (CallRefused) and returns the write or read to run, for unary and pipelined
calls alike."""

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _refusals_abort(method: _Method) -> _Method:
    """Turn a servicer method's CallRefused into the aborted call it stands for (the gRPC
    context is the method's last argument)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except CallRefused as refused:
            args[-1].abort(refused.code, refused.details)

    return cast(_Method, wrapper)


class _DRefRaft(up_grpc.DRefRaftServicer):
    """Upstream's client service (spec 3.4)."""

    def __init__(self, services: KeyValueServices, node: NodeHandle) -> None:
        self._s = services
        self._node = node

    @_refusals_abort
    def SetElement(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value)
        command = sc.StateCommand(
            set_element=sc.SetElementCommand(name=request.name, value=request.value)
        )
        if request.HasField("expireAt"):
            command.set_element.expire_at = request.expireAt
        self._s.propose(self._node, command, context)
        return up.SetElementResponse()

    @_refusals_abort
    def SetElementIfNotExist(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value)
        created, _ = self._s.set_if_absent_upstream(self._node, request, context)
        return up.SetElementIfNotExistResponse(created=created)

    @_refusals_abort
    def GetElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name)
        result = self._s.get(self._node, request.name, "linearizable", context)
        if not result.found:
            return up.GetElementResponse()  # value absent: missing or expired
        return up.GetElementResponse(value=result.value)

    @_refusals_abort
    def DeleteElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name)
        command = sc.StateCommand(delete_element=sc.DeleteElementCommand(name=request.name))
        self._s.propose(self._node, command, context)
        return up.DeleteElementResponse()

    @_refusals_abort
    def ExpireElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name)
        expire = sc.ExpireElementCommand(name=request.name, expire_at=request.expireAt)
        self._s.propose(self._node, sc.StateCommand(expire_element=expire), context)
        return up.ExpireElementResponse()

    def GetEndpoints(self, request: Any, context: Any) -> Any:
        return up.EndpointResponse(ids=[*self._s.peer_ids, self._node.node_id])

    def SendCommand(self, request: Any, context: Any) -> Any:
        return up.SendCommandResponse()  # upstream's legacy MicroRaft tunnel: a no-op


class _DRefNative(native_grpc.DRefNativeServicer):
    """dref-py's own client service (dref_native.proto)."""

    def __init__(self, services: KeyValueServices, node: NodeHandle) -> None:
        self._s = services
        self._node = node

    def Get(self, request: Any, context: Any) -> Any:
        return self._run("get", request, context)

    def Set(self, request: Any, context: Any) -> Any:
        return self._run("set", request, context)

    def SetIfAbsent(self, request: Any, context: Any) -> Any:
        return self._run("set_if_absent", request, context)

    def Delete(self, request: Any, context: Any) -> Any:
        return self._run("delete", request, context)

    def CompareAndSet(self, request: Any, context: Any) -> Any:
        return self._run("compare_and_set", request, context)

    def CompareAndDelete(self, request: Any, context: Any) -> Any:
        return self._run("compare_and_delete", request, context)

    def ExpireIf(self, request: Any, context: Any) -> Any:
        return self._run("expire_if", request, context)

    def Watch(self, request: Any, context: Any) -> Iterator[Any]:
        names = {*request.names, request.name} - {""}
        if not names:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give at least one name to watch")
        yield from self._s.watch(names, request.replaces, context)

    def Status(self, request: Any, context: Any) -> Any:
        status = _call(context, self._node, lambda _t: self._node.status())
        served = {**_jsonable(status), "pipelines": _jsonable(self._s.pipeline_stats())}
        return native.StatusResponse(json=json.dumps(served, sort_keys=True))

    def Pipeline(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        yield from self._s.pipeline(self._node, request_iterator, context)

    @_refusals_abort
    def _run(self, kind: str, request: Any, context: Any) -> Any:
        """Build the `kind` operation from `request` and run it within the call's deadline."""
        return _NATIVE_OPS[kind](self._s, request).run(self._s, self._node, context)


def _call(
    context: Any, node: NodeHandle, run: Callable[[float], _R], leader_address_hint: bool = True
) -> _R:
    """Run a node call within the RPC's deadline, turning engine errors into statuses."""
    remaining = context.time_remaining()
    timeout = DEFAULT_CALL_TIMEOUT if remaining is None else max(0.001, remaining)
    try:
        return run(min(timeout, DEFAULT_CALL_TIMEOUT * 6))
    except Exception as exc:
        code, details, leader_address = _status_of(exc, leader_address_hint)
        if code == grpc.StatusCode.INTERNAL:
            _log.exception("node %s failed a client call", node.node_id)
        if leader_address:
            context.set_trailing_metadata(((LEADER_ADDRESS_KEY, leader_address),))
        context.abort(code, details)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _status_of(exc: Exception, leader_address_hint: bool) -> tuple[grpc.StatusCode, str, str]:
    """The status code, details and leader address ('' for none) a client gets for a node
    call that raised `exc` (upstream's table, spec 3.4), unary or pipelined."""
    if isinstance(exc, CallRefused):
        return exc.code, exc.details, ""
    if isinstance(exc, NotLeaderError):
        address = exc.leader_address if exc.leader_address and leader_address_hint else ""
        return (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"not-leader:{exc.leader_id or 'unknown'}",
            address,
        )
    if isinstance(exc, QuorumLostError):
        return grpc.StatusCode.UNAVAILABLE, "quorum-lost", ""
    if isinstance(exc, DRefTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"timeout: {exc}", ""
    if isinstance(exc, (BackendUnavailableError, ContextClosedError)):  # the node stopped
        return grpc.StatusCode.UNAVAILABLE, str(exc), ""
    return grpc.StatusCode.INTERNAL, str(exc), ""  # a state-machine failure (spec 3.4)


def _drain(events: queue.Queue[Any]) -> None:
    while True:
        try:
            events.get_nowait()
        except queue.Empty:
            return


def _jsonable(value: Any) -> Any:
    """`value` (a dataclass, mapping, enum, ... as `Node.status()` returns) as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
