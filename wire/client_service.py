"""The client-facing gRPC services of a key/value node: upstream `DRefRaft` and `DRefNative`.

`DRefRaft` is exactly upstream's service (spec 3.4): writes become StateCommands proposed
to the local node (no forwarding: a follower answers NotLeader), `GetElement` is a
linearizable read, `GetEndpoints` lists the configured peer ids and then our own id last.
Errors follow upstream's table: NotLeader -> FAILED_PRECONDITION ``not-leader:<id>`` (or
``not-leader:unknown``), quorum loss -> UNAVAILABLE ``quorum-lost``. We add the leader's
address as trailing metadata ``dref-leader-address`` so a client that knows one node can
follow the hint; upstream clients ignore it.

`DRefNative` (dref_native.proto) adds what upstream lacks: revisions, compare-and-set,
compare-and-delete, conditional expiry, a per-name Watch stream of the changes THIS node's
state machine applies (spec 1.5), and the node's status as JSON.

Times (`expire_at`, `now`) are Unix epoch milliseconds; `now` is this server's wall clock.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Protocol, TypeVar, cast, get_args

import grpc

from dref.backend import ChangeEvent, ChangeKind
from dref.errors import (
    BackendUnavailableError,
    DRefTimeoutError,
    NotLeaderError,
    QuorumLostError,
)
from dref.raft.config import ReadPolicyName
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import dref_native_pb2_grpc as native_grpc
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc
from dref.wire.proto import state_command_pb2 as sc

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "LEADER_ADDRESS_KEY",
    "KeyValueServices",
    "NodeHandle",
    "now_ms",
]

LEADER_ADDRESS_KEY = "dref-leader-address"
"""Trailing-metadata key carrying the leader's ``host:port`` on a not-leader error."""

DEFAULT_MAX_VALUE_SIZE = 1024 * 1024
"""Default largest value a node accepts: 1 MiB (every value is a replicated log entry)."""

DEFAULT_CALL_TIMEOUT = 10.0
"""Seconds a proposal or read may take when the client sent no deadline."""

WATCH_BUFFER = 1024
"""Events a Watch stream holds for a slow reader before it sends RESYNC instead."""

MAX_WATCHES = 24
"""Open Watch streams per node. Each holds a gRPC server thread for its lifetime; the cap
keeps the rest of the node's pool (64 threads) free for consensus and client calls."""

_log = logging.getLogger("dref.service")
_R = TypeVar("_R")


class NodeHandle(Protocol):
    """What the services need from a `dref.raft.Node`."""

    @property
    def node_id(self) -> str: ...

    def propose(self, command: bytes, *, timeout: float) -> bytes: ...

    def read(
        self,
        request: bytes,
        *,
        policy: ReadPolicyName = "linearizable",
        timeout: float,
    ) -> bytes: ...

    def status(self) -> Any: ...


def now_ms() -> int:
    """This machine's wall clock in Unix epoch milliseconds (upstream's time unit)."""
    return time.time_ns() // 1_000_000


class KeyValueServices:
    """Both services of one node; pass `register` to `dref.raft.Node(services=...)`."""

    def __init__(
        self,
        state_machine: KeyValueStateMachine,
        *,
        peer_ids: Sequence[str],
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_watches: int = MAX_WATCHES,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.state_machine = state_machine
        self._watch_slots = threading.BoundedSemaphore(max_watches)
        self.peer_ids = list(peer_ids)
        self.max_value_size = max_value_size
        self.clock = clock
        self._closed = threading.Event()

    def register(self, server: grpc.Server, node: NodeHandle) -> None:
        """Add DRefRaft and DRefNative, bound to `node`, to `server` (before it starts)."""
        up_grpc.add_DRefRaftServicer_to_server(_DRefRaft(self, node), server)
        native_grpc.add_DRefNativeServicer_to_server(_DRefNative(self, node), server)

    def close(self) -> None:
        """End every open Watch stream."""
        self._closed.set()

    # -- shared by both servicers ---------------------------------------------------------

    def propose(self, node: NodeHandle, command: sc.StateCommand, context: Any) -> Any:
        """Propose `command` to `node` within the call's deadline; the decoded result."""
        data = command.SerializeToString(deterministic=True)
        reply = _call(context, node, lambda t: node.propose(data, timeout=t))
        return native.CommandResult.FromString(reply)

    def get(self, node: NodeHandle, name: str, policy: ReadPolicyName, context: Any) -> Any:
        """Read `name` through `node` with the read `policy`; a KeyValueQueryResult."""
        query = native.KeyValueQuery(get=native.GetQuery(name=name, now=self.clock()))
        data = query.SerializeToString()
        reply = _call(context, node, lambda t: node.read(data, policy=policy, timeout=t))
        return native.KeyValueQueryResult.FromString(reply)

    def check_name(self, name: str, context: Any) -> None:
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty")

    def check_value(self, name: str, value: bytes, context: Any) -> None:
        self.check_name(name, context)
        if len(value) > self.max_value_size:
            context.abort(
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

    def watch(self, name: str, context: Any) -> Iterator[native.WatchEvent]:
        """READY, then every change of `name` this node applies; RESYNC when some may be lost.

        RESOURCE_EXHAUSTED ``too-many-watches`` when `max_watches` streams are open.
        """
        if not self._watch_slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-watches")
        try:
            yield from self._stream(name, context)
        finally:
            self._watch_slots.release()

    def _stream(self, name: str, context: Any) -> Iterator[native.WatchEvent]:
        events: queue.Queue[native.WatchEvent | None] = queue.Queue(WATCH_BUFFER)
        overflowed = threading.Event()

        def push(item: native.WatchEvent | None) -> None:
            try:
                events.put_nowait(item)
            except queue.Full:
                overflowed.set()

        def on_change(event: ChangeEvent) -> None:
            set_ = event.kind is ChangeKind.SET
            kind = native.WatchEvent.SET if set_ else native.WatchEvent.DELETE
            push(native.WatchEvent(kind=kind, value=event.value or b"", revision=event.revision))

        cancel_change = self.state_machine.listeners.add(name, on_change)
        cancel_resync = self.state_machine.add_resync_listener(
            lambda: push(native.WatchEvent(kind=native.WatchEvent.RESYNC))
        )
        context.add_callback(lambda: push(None))
        try:
            yield native.WatchEvent(kind=native.WatchEvent.READY)
            while context.is_active() and not self._closed.is_set():
                if overflowed.is_set():
                    _drain(events)
                    overflowed.clear()
                    yield native.WatchEvent(kind=native.WatchEvent.RESYNC)
                    continue
                try:
                    item = events.get(timeout=0.5)  # re-check closing twice a second
                except queue.Empty:
                    continue
                if item is None:
                    return
                yield item
        finally:
            cancel_change()
            cancel_resync()


class _DRefRaft(up_grpc.DRefRaftServicer):
    """Upstream's client service (spec 3.4)."""

    def __init__(self, services: KeyValueServices, node: NodeHandle) -> None:
        self._s = services
        self._node = node

    def SetElement(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value, context)
        command = sc.StateCommand(
            set_element=sc.SetElementCommand(name=request.name, value=request.value)
        )
        if request.HasField("expireAt"):
            command.set_element.expire_at = request.expireAt
        self._s.propose(self._node, command, context)
        return up.SetElementResponse()

    def SetElementIfNotExist(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value, context)
        created, _ = self._s.set_if_absent_upstream(self._node, request, context)
        return up.SetElementIfNotExistResponse(created=created)

    def GetElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
        result = self._s.get(self._node, request.name, "linearizable", context)
        if not result.found:
            return up.GetElementResponse()  # value absent: missing or expired
        return up.GetElementResponse(value=result.value)

    def DeleteElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
        command = sc.StateCommand(delete_element=sc.DeleteElementCommand(name=request.name))
        self._s.propose(self._node, command, context)
        return up.DeleteElementResponse()

    def ExpireElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
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
        self._s.check_name(request.name, context)
        policy = request.read_policy or "linearizable"
        if policy not in get_args(ReadPolicyName):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown read policy {policy!r}")
        result = self._s.get(self._node, request.name, cast(ReadPolicyName, policy), context)
        return native.NativeGetResponse(
            found=result.found, value=result.value, revision=result.revision
        )

    def Set(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value, context)
        return self._write(sc.StateCommand(set_element=request), context)

    def SetIfAbsent(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value, context)
        cas = sc.CompareAndSetCommand(name=request.name, value=request.value, now=self._s.clock())
        if request.HasField("expire_at"):
            cas.expire_at = request.expire_at
        return self._write(sc.StateCommand(compare_and_set=cas), context)

    def Delete(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
        return self._write(sc.StateCommand(delete_element=request), context)

    def CompareAndSet(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value, context)
        request.now = self._s.clock()
        return self._write(sc.StateCommand(compare_and_set=request), context)

    def CompareAndDelete(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
        request.now = self._s.clock()
        return self._write(sc.StateCommand(compare_and_delete=request), context)

    def ExpireIf(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name, context)
        request.now = self._s.clock()
        return self._write(sc.StateCommand(expire_if=request), context)

    def Watch(self, request: Any, context: Any) -> Iterator[Any]:
        self._s.check_name(request.name, context)
        yield from self._s.watch(request.name, context)

    def Status(self, request: Any, context: Any) -> Any:
        status = _call(context, self._node, lambda _t: self._node.status())
        return native.StatusResponse(json=json.dumps(_jsonable(status), sort_keys=True))

    def _write(self, command: sc.StateCommand, context: Any) -> Any:
        result = self._s.propose(self._node, command, context)
        return native.WriteResponse(applied=result.applied, revision=result.revision)


def _call(context: Any, node: NodeHandle, run: Callable[[float], _R]) -> _R:
    """Run a node call within the RPC's deadline, turning engine errors into statuses."""
    remaining = context.time_remaining()
    timeout = DEFAULT_CALL_TIMEOUT if remaining is None else max(0.001, remaining)
    try:
        return run(min(timeout, DEFAULT_CALL_TIMEOUT * 6))
    except NotLeaderError as exc:
        _abort_not_leader(context, exc)
    except QuorumLostError:
        context.abort(grpc.StatusCode.UNAVAILABLE, "quorum-lost")
    except DRefTimeoutError as exc:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"timeout: {exc}")
    except BackendUnavailableError as exc:
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except Exception as exc:  # a state-machine failure (spec 3.4: INTERNAL + message)
        _log.exception("node %s failed a client call", node.node_id)
        context.abort(grpc.StatusCode.INTERNAL, str(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _abort_not_leader(context: Any, exc: NotLeaderError) -> NoReturn:
    if exc.leader_address:
        context.set_trailing_metadata(((LEADER_ADDRESS_KEY, exc.leader_address),))
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"not-leader:{exc.leader_id or 'unknown'}")
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


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
