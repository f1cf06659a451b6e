"""A blocking client of a dref key/value Raft cluster (any node serving DRefRaft + DRefNative).

Calls go to the node believed to be the leader. A follower answers not-leader; the client
then follows the ``dref-leader-address`` hint, or else maps the ``not-leader:<id>`` id to
an address by asking every known node `GetEndpoints` (the last id is the responder's own,
spec 4.9), or else tries the next address. Not-leader answers and unreachable nodes are
retried with a growing pause, but never past the call's timeout (upstream retries
without bound, spec 7.9); then the call raises `NotLeaderError`,
`BackendUnavailableError` (`QuorumLostError` for quorum loss) or `DRefTimeoutError`.

Reads are retried on any failure. A write is retried only when the failure proves it
never ran: a not-leader answer, or a connection that could not be opened. A write that
timed out, or failed with quorum loss or a connection lost mid-call, may or may not have
been applied (the leader may still commit it), so it raises at once - `QuorumLostError`,
`BackendUnavailableError` or `DRefTimeoutError`, each saying so - rather than being sent
again: a repeated write can land after newer writes of other clients and undo them.

TTLs become ``expire_at = this machine's clock + ttl`` (Unix ms), as upstream clients do.
The client is thread-safe and reuses one gRPC channel per node address. Key/value calls
of all its threads share one connection to the node's socket (dref.raft.socket_pipeline),
or, for a node without one, one `DRefNative.Pipeline` stream (dref.raft.pipeline); a node
that refuses pipelines gets unary calls instead.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from dref.contracts.changes import HISTORY_PAGE, ChangeEvent, ChangeKind, Entry
from dref.errors import (
    BackendUnavailableError,
    CodecError,
    CompactedError,
    ConfigError,
    ContextClosedError,
    DRefError,
    DRefTimeoutError,
    NoQuorumError,
    NotFoundError,
    NotLeaderError,
    PermissionDeniedError,
    QuorumLostError,
    ValueTooLargeError,
)
from dref.raft.pipeline import Pipeline, PipelineRefused, PipelineStats
from dref.raft.socket_pipeline import CONNECT_TIMEOUT, SocketPipeline
from dref.raft.write_session import SessionTag, WriteSession
from dref.wire.client_protocol import LEADER_ADDRESS_KEY, now_ms
from dref.wire.node_socket import grpc_port_discovery
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import dref_native_pb2_grpc as native_grpc
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc
from dref.wire.proto import state_command_pb2 as sc
from dref.wire.reconnect import RECONNECT_OPTIONS
from dref.wire.tls import TLS, TlsMaterial, diagnose_tls, open_channel

__all__ = ["Client", "ClientStats", "Resync", "Watch", "WatchItem"]

EXPLAIN_BUDGET = 1.0
"""Seconds a call that found no leader may spend asking the nodes why (see `_explain`)."""
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Largest gRPC message the client sends or accepts."""

_R = TypeVar("_R")
_LIMIT = re.compile(r"the limit is (\d+)")


@dataclass(frozen=True, slots=True)
class Resync:
    """A Watch item saying changes may have been missed (snapshot install, slow reader,
    reconnect): re-read the name."""


WatchItem = ChangeEvent | Resync


CLIENT_TRANSPORTS = ("socket", "grpc")
"""How key/value calls travel: the node's socket protocol, or the gRPC Pipeline stream."""


class _Node:
    """One address with its channel, stubs and pipeline."""

    def __init__(
        self,
        address: str,
        transport: str = "socket",
        unix_path: str | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self.address = address
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            *RECONNECT_OPTIONS,
        ]
        self.channel = open_channel(address, tls, options)
        self.raft = up_grpc.DRefRaftStub(self.channel)
        self.native = native_grpc.DRefNativeStub(self.channel)
        grpc_pipeline = Pipeline(self.native.Pipeline, address)
        self.pipeline: Pipeline | SocketPipeline = grpc_pipeline
        if transport == "socket":
            discover = grpc_port_discovery(address, CONNECT_TIMEOUT, tls)
            self.pipeline = SocketPipeline(
                address, discover, grpc_pipeline, unix_path=unix_path, tls=tls
            )

    def close(self) -> None:
        """Cancel the pipeline (its waiting calls fail with CANCELLED), then the channel."""
        self.pipeline.close()
        self.channel.close()


@dataclass
class ClientStats:
    """What a client's calls did: `calls` ended (`failures` of them raising), `retries`
    attempts after a failure, `unknown_outcomes` writes that may or may not have applied."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    unknown_outcomes: int = 0


RetryPolicy = Callable[[DRefError, bool], bool]
"""Asked with (the failure, whether the call writes) before a call is tried again."""


class Client:
    """Blocking, thread-safe calls to a cluster known by some of its node addresses."""

    def __init__(
        self,
        addresses: list[str],
        *,
        timeout: float = 10.0,
        address_map: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        transport: str = "socket",
        unix_sockets: Mapping[str, str] | None = None,
        tls: TLS | None = None,
    ) -> None:
        """`address_map` translates any address the client would dial (a configured one or
        a leader hint) into the one to use, for nodes reached through proxies or NAT.
        `retry(error, write)` is asked before a failed call is tried again within its
        timeout (`write`: resending it could apply it twice, a write without a session);
        False raises `error` at once (None: retry whatever may succeed later).
        `transport` carries key/value calls on the node's socket ("socket", gRPC for a node
        without one) or on the gRPC Pipeline stream ("grpc"); `unix_sockets` maps a node
        address to the Unix socket path that node serves on this machine. `tls` makes every
        connection mutual TLS (each node's certificate must name the host dialed)."""
        if not addresses:
            raise ValueError("give at least one node address (host:port)")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if transport not in CLIENT_TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(CLIENT_TRANSPORTS)}")
        self._transport = transport
        self._unix_sockets = dict(unix_sockets or {})
        if tls is not None and not isinstance(tls, TLS):
            raise ConfigError(f"tls must be dref.TLS(cert=..., key=..., ca=...), got {tls!r}")
        self._tls = None if tls is None else TlsMaterial(tls)
        self._stats_lock = threading.Lock()
        self._stats = ClientStats()
        self.observe_call: Callable[[float], None] | None = None
        """Told each call's duration in seconds (metrics histograms set it)."""
        self.timeout = timeout
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._order: list[str] = []
        self._leader: str | None = None
        self._next = 0
        self._aliases: dict[str, str] = {}  # node id -> address
        self._address_map = dict(address_map or {})
        self._retry = retry
        self._closed = False
        self._session = WriteSession()
        self._sessions_on = True
        self._given = {self._address_map.get(a, a) for a in addresses}
        """The addresses this client was configured with (after `address_map`)."""
        for address in addresses:
            self._node(address)

    # -- key/value calls ----------------------------------------------------------------

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally; returns the new revision."""
        request = sc.SetElementCommand(name=name, value=value, expire_at=_expire_at(ttl))
        reply = self._write(
            lambda: native.PipelineCall(set=request),
            lambda n, t: n.native.Set(request, timeout=t),
            timeout,
            name, value,
        )
        return int(reply.revision)

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """Create `name` only if it is absent or expired; the revision, or None if present."""
        request = sc.SetElementIfNotExistCommand(name=name, value=value, expire_at=_expire_at(ttl))
        reply = self._write(
            lambda: native.PipelineCall(set_if_absent=request),
            lambda n, t: n.native.SetIfAbsent(request, timeout=t),
            timeout,
            name, value,
        )
        return int(reply.revision) if reply.applied else None

    def get(
        self, name: str, *, policy: str = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        """The live value and revision of `name`, or None. `policy`: linearizable (default),
        lease, or stale (a follower's possibly old state)."""
        request = native.NativeGetRequest(name=name, read_policy=policy)
        run = _piped(
            lambda: native.PipelineCall(get=request),
            lambda n, t: n.native.Get(request, timeout=t),
        )
        reply = self._call(run, timeout, name)
        return Entry(reply.value, reply.revision) if reply.found else None

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        """The changes of `name` after revision `after` the leader keeps, oldest first (a
        page of at most `limit`); CompactedError when they are no longer all kept."""
        request = native.NativeHistoryRequest(name=name, after=after, limit=limit)
        run = _piped(
            lambda: native.PipelineCall(history=request),
            lambda n, t: n.native.History(request, timeout=t),
        )
        reply = self._call(run, timeout, name)
        if reply.HasField("oldest_available"):
            raise CompactedError(name, after, reply.oldest_available)
        return [_change(name, event) for event in reply.events]

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """Delete `name` (also when absent); returns the revision of the delete."""
        request = sc.DeleteElementCommand(name=name)
        reply = self._write(
            lambda: native.PipelineCall(delete=request),
            lambda n, t: n.native.Delete(request, timeout=t),
            timeout,
            name,
        )
        return int(reply.revision)

    def expire(self, name: str, ttl: float, *, timeout: float | None = None) -> None:
        """Re-arm the expiry of `name` to now + ttl, if it exists (upstream ExpireElement)."""
        request = up.ExpireElementRequest(name=name, expireAt=_expire_at(ttl) or 0)
        self._call(lambda n, t: n.raft.ExpireElement(request, timeout=t), timeout, name, write=True)

    def expire_if(
        self,
        name: str,
        ttl: float,
        expected: Entry | None = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Re-arm the expiry of a live `name` (with `expected`: only while it is that entry);
        True if it re-armed."""
        request = sc.ExpireIfCommand(name=name, expire_at=_expire_at(ttl) or 0)
        if expected is not None:
            request.expected_revision = expected.revision
            request.expected_value = expected.value
        reply = self._write(
            lambda: native.PipelineCall(expire_if=request),
            lambda n, t: n.native.ExpireIf(request, timeout=t),
            timeout,
            name,
        )
        return bool(reply.applied)

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Write only if the live entry is `expected` (None: only if absent); the new
        revision, or None."""
        request = sc.CompareAndSetCommand(name=name, value=value, expire_at=_expire_at(ttl))
        if expected is not None:
            request.expected_revision = expected.revision
            request.expected_value = expected.value
        reply = self._write(
            lambda: native.PipelineCall(compare_and_set=request),
            lambda n, t: n.native.CompareAndSet(request, timeout=t),
            timeout,
            name, value,
        )
        return int(reply.revision) if reply.applied else None

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Add `delta` to the integer under `name` (encoded as `fmt`) in the state machine;
        (new value, revision). NotFoundError if absent, CodecError if not an integer."""
        request = sc.IncrementCommand(name=name, delta=delta)
        if fmt == "json":
            request.format = sc.IncrementCommand.JSON
        reply = self._write(
            lambda: native.PipelineCall(increment=request),
            lambda n, t: n.native.Increment(request, timeout=t),
            timeout,
            name,
        )
        if reply.applied:
            return int(reply.number), int(reply.revision)
        if reply.refused:
            raise CodecError(reply.refused)
        raise NotFoundError(name)

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        """Delete only if the live entry is `expected`; True if it deleted."""
        request = sc.CompareAndDeleteCommand(
            name=name, expected_revision=expected.revision, expected_value=expected.value
        )
        reply = self._write(
            lambda: native.PipelineCall(compare_and_delete=request),
            lambda n, t: n.native.CompareAndDelete(request, timeout=t),
            timeout,
            name,
        )
        return bool(reply.applied)

    def watch(self, *names: str, replaces: int = 0, timeout: float | None = None) -> Watch:
        """Subscribe to the changes of `names` that one node (the leader, if known) applies.

        Returns once the subscription is live; iterate the `Watch` for its items. A node
        at its cap of open Watches (RESOURCE_EXHAUSTED) is skipped for another. With
        `replaces` (the `watch_id` of an open Watch) the node ends that Watch and passes
        on what it did not send; `Watch.replaced` says whether that worked (on another
        node it cannot: then re-read the names).
        """
        if not names:
            raise ValueError("give at least one name to watch")

        request = native.WatchRequest(names=sorted(set(names)), replaces=replaces)
        if len(set(names)) == 1:
            request.name = names[0]  # all an older node reads

        def open_stream(node: _Node, limit: float) -> Watch:
            deadline = time.monotonic() + limit
            try:
                return Watch(node.address, frozenset(names), node.native.Watch(request), limit)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                full = error  # every node applies every change: watch another one
            with self._lock:
                others = [a for a in self._order if a != node.address]
            for address in others:
                other = self._node(address)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    stream = other.native.Watch(request)
                    return Watch(address, frozenset(names), stream, remaining)
                except grpc.RpcError:
                    continue
            raise full

        return self._call(open_stream, timeout, names[0])

    # -- cluster calls ------------------------------------------------------------------

    def status(self, address: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        """The status of the node at `address` (default: the leader) as a dict."""
        reply = self._call_one(
            address, lambda n, t: n.native.Status(native.StatusRequest(), timeout=t), timeout
        )
        status: dict[str, Any] = json.loads(reply.json)
        return status

    def endpoints(self, address: str | None = None, *, timeout: float | None = None) -> list[str]:
        """The member ids the node at `address` knows; its own id is last (spec 3.4)."""
        reply = self._call_one(
            address, lambda n, t: n.raft.GetEndpoints(up.GetEndpointsRequest(), timeout=t), timeout
        )
        return list(reply.ids)

    def stats(self) -> ClientStats:
        """A copy of this client's call counters (calls, failures, retries, writes whose
        outcome is unknown)."""
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    def pipeline_stats(self) -> dict[str, PipelineStats]:
        """The pipeline counters of every node address this client has used (debugging)."""
        with self._lock:
            nodes = list(self._nodes.values())
        return {node.address: node.pipeline.snapshot() for node in nodes}

    @property
    def leader_address(self) -> str | None:
        """The address the client currently sends calls to first, when it knows a leader."""
        return self._leader

    def close(self) -> None:
        """Close every pipeline and channel (waiting calls raise ContextClosedError, open
        watches end). Idempotent."""
        with self._lock:
            self._closed = True
            nodes = list(self._nodes.values())
        for node in nodes:
            node.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routing ------------------------------------------------------------------------

    def _node(self, address: str) -> _Node:
        address = self._address_map.get(address, address)
        with self._lock:
            if self._closed:
                raise ContextClosedError("the Raft client is closed")
            node = self._nodes.get(address)
            if node is None:
                unix_path = self._unix_sockets.get(address)
                node = _Node(address, self._transport, unix_path, self._tls)
                self._nodes[address] = node
                self._order.append(address)
            return node

    def _target(self) -> _Node:
        with self._lock:
            address = self._leader
            if address is None:
                address = self._order[self._next % len(self._order)]
        return self._node(address)

    def _skip(self, address: str) -> None:
        """`address` is not the leader (or is down): try the next one next time."""
        with self._lock:
            if self._leader == address:
                self._leader = None
            if self._order[self._next % len(self._order)] == address:
                self._next += 1

    def _follow(self, address: str, error: grpc.RpcError, deadline: float) -> bool:
        """Learn the leader from a not-leader answer; True if we now know where to go.

        A hint naming an address this client was not given is used only when none of the
        nodes it was given is that leader: the client stays on the addresses configured
        for it (a node's hint may be where nodes reach each other, not where clients do).
        """
        hint = _trailing(error, LEADER_ADDRESS_KEY)
        if hint is not None:
            hint = self._address_map.get(hint, hint)
        leader_id = _leader_id(error.details() or "")
        if leader_id and (hint is None or hint not in self._given):
            hint = self._aliases.get(leader_id) or self._discover(leader_id, deadline) or hint
        if hint is None or hint == address:
            self._skip(address)
            return False
        self._node(hint)
        with self._lock:
            self._leader = hint
        return True

    def _discover(self, leader_id: str, deadline: float) -> str | None:
        """Ask every known node for its id (GetEndpoints, last id) to find `leader_id`."""
        with self._lock:
            addresses = list(self._order)
        for address in addresses:
            limit = min(1.0, deadline - time.monotonic())
            if limit <= 0:
                break
            try:
                reply = self._node(address).raft.GetEndpoints(
                    up.GetEndpointsRequest(), timeout=limit
                )
            except grpc.RpcError:
                continue
            if reply.ids:
                self._aliases[reply.ids[-1]] = address
        return self._aliases.get(leader_id)

    def _write(
        self,
        make_call: Callable[[], native.PipelineCall],
        unary: Callable[[_Node, float], Any],
        timeout: float | None,
        name: str,
        value: bytes = b"",
    ) -> Any:
        """A write carried in this client's session where the node takes pipelines, so it
        is resent through leader changes, lost connections and slow answers until
        `timeout`, and applied once (see `dref.storage.client_sessions`); the reply."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        for _ in range(3):  # a session that expired while this client was idle: reopen
            tag = self._session_tag(deadline)
            try:
                reply = self._call(
                    _piped(make_call, unary, tag),
                    max(deadline - time.monotonic(), 0.001),
                    name,
                    value,
                    write=True,
                    tag=tag,
                )
            finally:
                if tag is not None:
                    self._session.done(tag)
            if tag is None or not reply.session_expired:
                return reply
            self._session.expire(tag.session_id)
            if tag.sent > 1:
                self._count(unknown_outcomes=1)
                raise QuorumLostError(
                    "the write's session expired while it was resent: it may or may not"
                    " have been applied"
                )
        raise DRefError("the nodes forgot every session this client opened for the write")

    def _session_tag(self, deadline: float) -> SessionTag | None:
        """The next write's place in this client's session, opening one if needed; None
        where sessions are not available (a node that lacks them, or takes no pipelines)."""
        tag = self._session.begin()
        if tag is not None or not self._sessions_on:
            return tag
        with self._session.opening:
            if not self._session.session_id and self._sessions_on:
                self._open_session(deadline)
        return self._session.begin()

    def _open_session(self, deadline: float) -> None:
        def unary(node: _Node, remaining: float) -> Any:
            raise _NoPipeline

        run = _piped(lambda: native.PipelineCall(open_session=sc.OpenSessionCommand()), unary)
        try:
            reply = self._call(run, max(deadline - time.monotonic(), 0.001), "")  # resendable
        except _NoPipeline:
            reply = None
        if reply is None or not reply.session_id:
            self._sessions_on = False  # the node cannot keep sessions: writes go without
            return
        self._session.start(int(reply.session_id))

    def _call(
        self,
        run: Callable[[_Node, float], _R],
        timeout: float | None,
        name: str,
        value: bytes = b"",
        *,
        write: bool = False,
        tag: SessionTag | None = None,
    ) -> _R:
        """`_attempts`, counted in `stats` and timed for `observe_call`."""
        started = time.monotonic()
        try:
            result = self._attempts(run, timeout, name, value, write=write, tag=tag)
        except DRefError:
            self._count(calls=1, failures=1)
            raise
        finally:
            observe = self.observe_call
            if observe is not None:
                observe(time.monotonic() - started)
        self._count(calls=1)
        return result

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for field, amount in increments.items():
                setattr(self._stats, field, getattr(self._stats, field) + amount)

    def _attempts(
        self,
        run: Callable[[_Node, float], _R],
        timeout: float | None,
        name: str,
        value: bytes = b"",
        *,
        write: bool = False,
        tag: SessionTag | None = None,
    ) -> _R:
        """Run `run(node, remaining)` on the leader, following hints and retrying within
        the deadline (see the module doc). A write with a session `tag` is retried like a
        read while every attempt carried the session: the nodes apply it once."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        failure: DRefError = DRefTimeoutError(f"no answer within {limit:g} s")
        maybe_applied = False  # an attempt of a session write may have reached a leader
        for attempt in range(1_000_000):  # bounded by the deadline long before this
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            node = self._target()
            try:
                return run(node, remaining)
            except grpc.RpcError as error:
                exposed = write and (tag is None or tag.unprotected)
                maybe_applied = maybe_applied or (write and _may_have_applied(error))
                try:
                    failure, again_now = self._classify(
                        node, error, deadline, name, value, exposed
                    )
                except DRefError as final:
                    raise self._unknown(final, maybe_applied) from None
                if self._retry is not None and not self._retry(failure, exposed):
                    raise self._unknown(failure, maybe_applied) from None
            self._count(retries=1)
            pause = 0.0 if again_now and attempt == 0 else _backoff(attempt)
            pause = min(pause, deadline - time.monotonic())
            if pause > 0:
                time.sleep(pause)  # backoff between retries, bounded by the call's deadline
        if maybe_applied:
            raise self._unknown(failure, maybe_applied)
        raise self._explain(failure, limit)

    def _unknown(self, failure: DRefError, maybe_applied: bool) -> DRefError:
        """`failure` of a session write, restated as an unknown outcome where an earlier
        attempt may have been applied (it then applies at most once)."""
        if not maybe_applied or "may or may not" in str(failure):
            return failure
        self._count(unknown_outcomes=1)
        cause = f"{failure} (an earlier attempt may or may not have been applied, once)"
        if isinstance(failure, DRefTimeoutError):
            return DRefTimeoutError(cause)
        return QuorumLostError(cause)

    def _explain(self, failure: DRefError, waited: float) -> DRefError:
        """What to raise when a call found no leader in time: `NoQuorumError` when the
        nodes that answer (asked briefly, `EXPLAIN_BUDGET` s in all) reach fewer than a
        quorum of the voters, else `failure` (an election under way, or another cause)."""
        leaderless = isinstance(failure, NotLeaderError) and not failure.leader_id
        if not leaderless and type(failure) not in (BackendUnavailableError, QuorumLostError):
            return failure
        with self._lock:
            addresses = list(self._order)
        deadline = time.monotonic() + EXPLAIN_BUDGET
        voters: set[str] = set()
        reachable: set[str] = set()
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status = self.status(address, timeout=min(0.3, remaining))
            except DRefError:
                continue
            known = set(status.get("voters") or ())
            voters |= known
            reachable |= {status["node_id"]} | (known - set(status.get("unreachable") or ()))
        if not voters:
            return failure
        answering = sorted(reachable & voters)
        if 2 * len(answering) > len(voters):
            return failure
        return NoQuorumError(answering, sorted(voters), waited)

    def _classify(
        self,
        node: _Node,
        error: grpc.RpcError,
        deadline: float,
        name: str,
        value: bytes,
        write: bool,
    ) -> tuple[DRefError, bool]:
        """The error to raise if time runs out, and whether to retry without pausing;
        raises at once what retrying cannot fix."""
        code = error.code()
        details = error.details() or ""
        if code == grpc.StatusCode.FAILED_PRECONDITION and _leader_id(details) is not None:
            followed = self._follow(node.address, error, deadline)
            hint = _trailing(error, LEADER_ADDRESS_KEY)
            return NotLeaderError(_leader_id(details) or None, hint), followed
        if code == grpc.StatusCode.UNAVAILABLE and details == "quorum-lost":
            if write:
                self._count(unknown_outcomes=1)
                raise QuorumLostError(
                    "quorum lost: the write may or may not have been applied"
                ) from None
            return QuorumLostError(), False
        if code == grpc.StatusCode.UNAVAILABLE:
            self._skip(node.address)
            if write and not _never_sent(details):
                self._count(unknown_outcomes=1)
                raise BackendUnavailableError(
                    f"{node.address} went away during the call (the write may or may not"
                    f" have been applied): {details}"
                ) from None
            return BackendUnavailableError(f"{node.address} unavailable: {details}"), True
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            if time.monotonic() >= deadline or write:
                if write:
                    self._count(unknown_outcomes=1)
                raise DRefTimeoutError(
                    f"{node.address} did not answer in time (a write may or may not have"
                    f" been applied): {details}"
                ) from None
            return DRefTimeoutError(details), False
        if code == grpc.StatusCode.PERMISSION_DENIED:
            raise PermissionDeniedError(f"{node.address}: {details}") from None
        if code == grpc.StatusCode.CANCELLED and self._closed:
            raise ContextClosedError("the Raft client is closed") from None
        if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("value-too-large"):
            match = _LIMIT.search(details)
            raise ValueTooLargeError(name, len(value), int(match.group(1)) if match else 0)
        raise DRefError(f"{node.address} refused the call: {code.name}: {details}")

    def _call_one(
        self, address: str | None, run: Callable[[_Node, float], _R], timeout: float | None
    ) -> _R:
        if address is None:
            return self._call(run, timeout, "")
        limit = self.timeout if timeout is None else timeout
        try:
            return run(self._node(address), limit)
        except grpc.RpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                details = error.details()
                if code is grpc.StatusCode.UNAVAILABLE:
                    details = diagnose_tls(address, self._tls) or details
                raise BackendUnavailableError(f"{address}: {details}") from None
            raise DRefError(f"{address}: {code.name}: {error.details()}") from None


class Watch:
    """A live subscription to some names on one node: iterate for `ChangeEvent`s and
    `Resync`s; iteration ends when the node replaces it with a newer Watch (see
    `Client.watch`) or the Watch is cancelled, and raises BackendUnavailableError when the
    node or connection goes away."""

    def __init__(self, address: str, names: frozenset[str], stream: Any, timeout: float) -> None:
        self.address = address
        self.names = names
        self._stream = stream
        self._ready = threading.Event()
        first: list[Any] = []

        def wait_ready() -> None:
            try:
                first.append(next(stream))
            except Exception as exc:  # reported below, in the caller's thread
                first.append(exc)
            self._ready.set()

        threading.Thread(target=wait_ready, name="dref-watch-open", daemon=True).start()
        if not self._ready.wait(timeout):
            stream.cancel()
            raise DRefTimeoutError(f"watch on {address} not ready within {timeout:g} s")
        if isinstance(first[0], grpc.RpcError):
            raise first[0]
        if isinstance(first[0], Exception):
            raise BackendUnavailableError(f"watch on {address} failed: {first[0]}")
        self.watch_id: int = first[0].watch_id
        """The node's id of this Watch (for `Client.watch(replaces=...)`)."""
        self.replaced: bool = first[0].replaced
        """Whether this Watch took over the one it was asked to replace, losing nothing."""

    def __iter__(self) -> Iterator[WatchItem]:
        (only,) = self.names if len(self.names) == 1 else ("",)
        try:
            for event in self._stream:
                if event.kind == native.WatchEvent.RESYNC:
                    yield Resync()
                elif event.kind in (native.WatchEvent.SET, native.WatchEvent.DELETE):
                    yield _change(event.name or only, event)  # older nodes send no name
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            message = f"watch on {self.address} ended: {error.details()}"
            raise BackendUnavailableError(message) from None

    def cancel(self) -> None:
        """End the subscription (iteration stops). Idempotent."""
        self._stream.cancel()


class _NoPipeline(Exception):
    """The node takes no pipelined calls (so no session can be opened on it)."""


def _piped(
    make_call: Callable[[], native.PipelineCall],
    unary: Callable[[_Node, float], Any],
    tag: SessionTag | None = None,
) -> Callable[[_Node, float], Any]:
    """A `Client._call` runner sending `make_call()` on the node's pipeline (the reply is
    the answer's NativeGetResponse or WriteResponse), with the session `tag` if given, or
    `unary` (which carries no session) where the node refuses pipelines."""

    def run(node: _Node, remaining: float) -> Any:
        deadline = time.monotonic() + remaining
        if node.pipeline.usable:
            call = make_call()
            if tag is not None:
                call.session.CopyFrom(tag.message())
                tag.sent += 1
            try:
                return node.pipeline.call(call, remaining)
            except PipelineRefused:
                if tag is not None:
                    tag.sent -= 1  # nothing was sent
                # go unary on this node for a while
        if tag is not None:
            tag.unprotected = True
            tag.sent += 1
        return unary(node, max(0.001, deadline - time.monotonic()))

    return run


def _change(name: str, event: Any) -> ChangeEvent:
    """A SET or DELETE WatchEvent of `name` as a ChangeEvent."""
    if event.kind == native.WatchEvent.SET:
        return ChangeEvent(name, ChangeKind.SET, event.value, event.revision)
    return ChangeEvent(name, ChangeKind.DELETE, None, event.revision)


def _expire_at(ttl: float | None) -> int | None:
    return None if ttl is None else now_ms() + max(0, round(ttl * 1000))


def _leader_id(details: str) -> str | None:
    """The leader id in a ``not-leader:<id>`` message ('' when unknown), None if not one."""
    for prefix in ("not-leader:", "no-leader:"):
        if details.startswith(prefix):
            hint = details[len(prefix) :].strip()
            return "" if hint in ("", "unknown") or prefix == "no-leader:" else hint
    return None


def _trailing(error: grpc.RpcError, key: str) -> str | None:
    metadata = getattr(error, "trailing_metadata", lambda: None)() or ()
    for item_key, item_value in metadata:
        if item_key == key:
            return str(item_value)
    return None


_NEVER_SENT = ("failed to connect", "connection refused", "dns resolution failed", "no route")
"""gRPC failure details that mean the connection never opened, so no request was sent."""


def _may_have_applied(error: grpc.RpcError) -> bool:
    """Whether a failed write attempt may have been proposed (it was sent, and no node
    refused it before proposing)."""
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        details = error.details() or ""
        return details == "quorum-lost" or not _never_sent(details)
    return code == grpc.StatusCode.DEADLINE_EXCEEDED


def _never_sent(details: str) -> bool:
    """Whether an UNAVAILABLE failure proves the request never reached a server."""
    lowered = details.lower()
    return any(marker in lowered for marker in _NEVER_SENT)


def _backoff(attempt: int) -> float:
    """25 ms doubling to at most 500 ms, with jitter so clients do not retry in lockstep."""
    return min(0.5, 0.025 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1.0)
