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
import json
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, Protocol, TypeVar, cast, get_args

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
from dref.wire.client_protocol import DEFAULT_MAX_VALUE_SIZE, LEADER_ADDRESS_KEY, now_ms
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


class KeyValueServices:
    """Both services of one node; pass `register` to `dref.raft.Node(services=...)`."""

    def __init__(
        self,
        state_machine: KeyValueStateMachine,
        *,
        peer_ids: Sequence[str],
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_watches: int = MAX_WATCHES,
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
        reply = _call(
            context, node, lambda t: node.propose(data, timeout=t), self.leader_address_hint
        )
        return native.CommandResult.FromString(reply)

    def get(self, node: NodeHandle, name: str, policy: ReadPolicyName, context: Any) -> Any:
        """Read `name` through `node` with the read `policy`; a KeyValueQueryResult."""
        query = native.KeyValueQuery(get=native.GetQuery(name=name, now=self.clock()))
        data = query.SerializeToString()
        reply = _call(
            context,
            node,
            lambda t: node.read(data, policy=policy, timeout=t),
            self.leader_address_hint,
        )
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
        names = {*request.names, request.name} - {""}
        if not names:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give at least one name to watch")
        yield from self._s.watch(names, request.replaces, context)

    def Status(self, request: Any, context: Any) -> Any:
        status = _call(context, self._node, lambda _t: self._node.status())
        return native.StatusResponse(json=json.dumps(_jsonable(status), sort_keys=True))

    def _write(self, command: sc.StateCommand, context: Any) -> Any:
        result = self._s.propose(self._node, command, context)
        return native.WriteResponse(applied=result.applied, revision=result.revision)


def _call(
    context: Any, node: NodeHandle, run: Callable[[float], _R], leader_address_hint: bool = True
) -> _R:
    """Run a node call within the RPC's deadline, turning engine errors into statuses."""
    remaining = context.time_remaining()
    timeout = DEFAULT_CALL_TIMEOUT if remaining is None else max(0.001, remaining)
    try:
        return run(min(timeout, DEFAULT_CALL_TIMEOUT * 6))
    except NotLeaderError as exc:
        _abort_not_leader(context, exc, leader_address_hint)
    except QuorumLostError:
        context.abort(grpc.StatusCode.UNAVAILABLE, "quorum-lost")
    except DRefTimeoutError as exc:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"timeout: {exc}")
    except (BackendUnavailableError, ContextClosedError) as exc:  # closed: the node stopped
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except Exception as exc:  # a state-machine failure (spec 3.4: INTERNAL + message)
        _log.exception("node %s failed a client call", node.node_id)
        context.abort(grpc.StatusCode.INTERNAL, str(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _abort_not_leader(context: Any, exc: NotLeaderError, leader_address_hint: bool) -> NoReturn:
    if exc.leader_address and leader_address_hint:
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
