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
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from dref.contracts.read_policy import ReadPolicyName
from dref.raft.server.operations import NATIVE_OPERATIONS, NodeHandle, call_node, refusals_abort
from dref.raft.server.pipelines import MAX_PIPELINES, PipelineStream, ServedPipelineStats
from dref.raft.server.socket_clients import client_sessions
from dref.raft.server.watches import HANDOVER_TIMEOUT, WatchSubscription
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.call_refused import CallRefused
from dref.wire.client_protocol import DEFAULT_MAX_VALUE_SIZE, RESERVED_PREFIX, now_ms
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import dref_native_pb2_grpc as native_grpc
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc
from dref.wire.proto import state_command_pb2 as sc

MAX_WATCHES = 24
"""Open Watch streams per node. Each holds a gRPC server thread for its lifetime; the cap
keeps the rest of the node's pool (64 threads) free for consensus and client calls. A
client watches any number of names on one stream (`RaftBackend` keeps one per backend)."""


_log = logging.getLogger("dref.service")


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
        self._watches: dict[int, WatchSubscription] = {}  # open streams by watch_id
        self.peer_ids = list(peer_ids)
        self.max_value_size = max_value_size
        self.clock = clock
        self._closed = threading.Event()
        self.pipeline_enabled = pipeline
        """Serve `DRefNative.Pipeline` (False: UNIMPLEMENTED, clients use unary calls)."""
        self._pipeline_slots = threading.BoundedSemaphore(max_pipelines) if max_pipelines else None
        self._pipelines: set[PipelineStream] = set()
        self._stats_lock = threading.Lock()
        self._stats = ServedPipelineStats()

    def register(self, server: grpc.Server, node: NodeHandle) -> None:
        """Add DRefRaft and DRefNative, bound to `node`, to `server` (before it starts), and
        serve the same calls to clients on the node's socket if it has one."""
        up_grpc.add_DRefRaftServicer_to_server(_DRefRaft(self, node), server)
        native_grpc.add_DRefNativeServicer_to_server(_DRefNative(self, node), server)
        if node.socket_server is not None:
            node.socket_server.serve_clients(client_sessions(self, node))

    def close(self) -> None:
        """End every open Watch and Pipeline stream."""
        self._closed.set()
        with self._stats_lock:
            streams = list(self._pipelines)
        for stream in streams:
            stream.wake()

    def open_watches(self) -> int:
        """How many Watch streams are open now."""
        with self._watch_lock:
            return len(self._watches)

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
        reply = call_node(
            context, node, lambda t: node.propose(data, timeout=t), self.leader_address_hint
        )
        return native.CommandResult.FromString(reply)

    def get_query(self, name: str) -> bytes:
        """The encoded state-machine query reading `name` now (by this server's clock)."""
        return native.KeyValueQuery(
            get=native.GetQuery(name=name, now=self.clock())
        ).SerializeToString()

    def query(self, node: NodeHandle, data: bytes, policy: ReadPolicyName, context: Any) -> Any:
        """Ask `node` the encoded KeyValueQuery `data` with the read `policy` within the
        call's deadline; the KeyValueQueryResult."""
        reply = call_node(
            context,
            node,
            lambda t: node.read(data, policy=policy, timeout=t),
            self.leader_address_hint,
        )
        return native.KeyValueQueryResult.FromString(reply)

    def check_name(self, name: str) -> None:
        """CallRefused INVALID_ARGUMENT for an empty name or one the nodes keep for
        themselves (`RESERVED_PREFIX`)."""
        if not name:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty")
        if name.startswith(RESERVED_PREFIX):
            raise CallRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"names starting with {RESERVED_PREFIX!r} are kept for the nodes' own use",
            )

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
            sub = WatchSubscription(self.state_machine, self._watch_slots.release)
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
        stream = PipelineStream(self, node, context)
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

    def _take_over(self, watch_id: int) -> WatchSubscription | None:
        """End the stream `watch_id` and take its subscription, if it is open here."""
        with self._watch_lock:
            sub = self._watches.pop(watch_id, None)
        if sub is None:
            return None
        return sub if sub.hand_over(HANDOVER_TIMEOUT) else None


class _DRefRaft(up_grpc.DRefRaftServicer):
    """Upstream's client service (spec 3.4)."""

    def __init__(self, services: KeyValueServices, node: NodeHandle) -> None:
        self._s = services
        self._node = node

    @refusals_abort
    def SetElement(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value)
        command = sc.StateCommand(
            set_element=sc.SetElementCommand(name=request.name, value=request.value)
        )
        if request.HasField("expireAt"):
            command.set_element.expire_at = request.expireAt
        self._s.propose(self._node, command, context)
        return up.SetElementResponse()

    @refusals_abort
    def SetElementIfNotExist(self, request: Any, context: Any) -> Any:
        self._s.check_value(request.name, request.value)
        created, _ = self._s.set_if_absent_upstream(self._node, request, context)
        return up.SetElementIfNotExistResponse(created=created)

    @refusals_abort
    def GetElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name)
        query = self._s.get_query(request.name)
        result = self._s.query(self._node, query, "linearizable", context)
        if not result.found:
            return up.GetElementResponse()  # value absent: missing or expired
        return up.GetElementResponse(value=result.value)

    @refusals_abort
    def DeleteElement(self, request: Any, context: Any) -> Any:
        self._s.check_name(request.name)
        command = sc.StateCommand(delete_element=sc.DeleteElementCommand(name=request.name))
        self._s.propose(self._node, command, context)
        return up.DeleteElementResponse()

    @refusals_abort
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

    def Increment(self, request: Any, context: Any) -> Any:
        return self._run("increment", request, context)

    def History(self, request: Any, context: Any) -> Any:
        return self._run("history", request, context)

    def Watch(self, request: Any, context: Any) -> Iterator[Any]:
        names = {*request.names, request.name} - {""}
        if not names:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give at least one name to watch")
        yield from self._s.watch(names, request.replaces, context)

    def Status(self, request: Any, context: Any) -> Any:
        status = call_node(context, self._node, lambda _t: self._node.status())
        served = {**_jsonable(status), "pipelines": _jsonable(self._s.pipeline_stats())}
        return native.StatusResponse(json=json.dumps(served, sort_keys=True))

    def Pipeline(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        yield from self._s.pipeline(self._node, request_iterator, context)

    @refusals_abort
    def _run(self, kind: str, request: Any, context: Any) -> Any:
        """Build the `kind` operation from `request` and run it within the call's deadline."""
        return NATIVE_OPERATIONS[kind](self._s, request).run(self._s, self._node, context)


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
