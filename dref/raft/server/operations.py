"""Key/value operations of a node's client services: each request validated into a write
(a StateCommand to propose) or a read (a query with a read policy), run within the call's
deadline, with engine errors turned into upstream's statuses (spec 3.4)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, get_args

import grpc

from dref.contracts.changes import HISTORY_PAGE
from dref.contracts.read_policy import ReadPolicyName
from dref.errors import (
    BackendUnavailableError,
    ContextClosedError,
    DRefTimeoutError,
    NotLeaderError,
    QuorumLostError,
)
from dref.wire.call_refused import CallRefused
from dref.wire.client_protocol import LEADER_ADDRESS_KEY
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import state_command_pb2 as sc

MAX_PAGE = 1024
"""Most changes a node sends in one History answer, whatever the client asked for."""

DEFAULT_CALL_TIMEOUT = 10.0
"""Seconds a proposal or read may take when the client sent no deadline."""


if TYPE_CHECKING:
    from dref.raft.server.access import Access
    from dref.raft.server.services import KeyValueServices
    from dref.wire.node_socket import NodeSocketServer

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

    @property
    def socket_server(self) -> NodeSocketServer | None: ...

    @property
    def access(self) -> Access | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
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
class Read:
    """A validated read of one name with a read policy."""

    name: str
    policy: ReadPolicyName

    def run(self, s: KeyValueServices, node: NodeHandle, context: Any) -> Any:
        """Read within the unary call's deadline; the NativeGetResponse."""
        return _get_response(s.query(node, s.get_query(self.name), self.policy, context))

    def start(self, s: KeyValueServices, node: NodeHandle) -> Future[bytes]:
        return node.read_async(s.get_query(self.name), policy=self.policy)

    def answer(self, call_id: int, reply: bytes) -> native.PipelineResult:
        result = native.KeyValueQueryResult.FromString(reply)
        return native.PipelineResult(id=call_id, get=_get_response(result))


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRead:
    """A validated read of one name's kept changes after a revision (always linearizable:
    a resuming reader must not miss a change the cluster already acknowledged)."""

    name: str
    after: int
    limit: int

    def run(self, s: KeyValueServices, node: NodeHandle, context: Any) -> Any:
        """Read within the unary call's deadline; the NativeHistoryResponse."""
        return _history_response(s.query(node, self._query(), "linearizable", context))

    def start(self, s: KeyValueServices, node: NodeHandle) -> Future[bytes]:
        return node.read_async(self._query(), policy="linearizable")

    def answer(self, call_id: int, reply: bytes) -> native.PipelineResult:
        result = native.KeyValueQueryResult.FromString(reply)
        return native.PipelineResult(id=call_id, history=_history_response(result))

    def _query(self) -> bytes:
        question = native.HistoryQuery(name=self.name, after=self.after, limit=self.limit)
        return native.KeyValueQuery(history=question).SerializeToString()


Operation = Write | Read | HistoryRead
PipelineOutcome = tuple[int, Operation, Future[bytes]] | native.PipelineResult
"""What a Pipeline's outbox holds: a completed call, or an answer made without the node."""


def _write_response(result: Any) -> Any:
    return native.WriteResponse(
        applied=result.applied,
        revision=result.revision,
        number=result.number,
        refused=result.refused,
        session_id=result.session_id,
        session_expired=result.session_expired,
    )


def _get_response(result: Any) -> Any:
    return native.NativeGetResponse(
        found=result.found, value=result.value, revision=result.revision
    )


def _history_response(result: Any) -> Any:
    response = native.NativeHistoryResponse(events=result.history)
    if result.HasField("oldest_available"):
        response.oldest_available = result.oldest_available
    return response


def _get_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    policy = request.read_policy or "linearizable"
    if policy not in get_args(ReadPolicyName):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"unknown read policy {policy!r}")
    return Read(request.name, cast(ReadPolicyName, policy))


def _history_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    return HistoryRead(request.name, request.after, min(request.limit or HISTORY_PAGE, MAX_PAGE))


def _set_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_value(request.name, request.value)
    return Write(sc.StateCommand(set_element=request))


def _set_if_absent_op(s: KeyValueServices, request: Any) -> Operation:
    """A compare-and-set expecting no live entry, by this server's clock (an expired entry
    does not block it)."""
    s.check_value(request.name, request.value)
    cas = sc.CompareAndSetCommand(name=request.name, value=request.value, now=s.clock())
    if request.HasField("expire_at"):
        cas.expire_at = request.expire_at
    return Write(sc.StateCommand(compare_and_set=cas))


def _delete_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    return Write(sc.StateCommand(delete_element=request))


def _compare_and_set_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_value(request.name, request.value)
    command = sc.StateCommand(compare_and_set=request)
    command.compare_and_set.now = s.clock()
    return Write(command)


def _compare_and_delete_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    command = sc.StateCommand(compare_and_delete=request)
    command.compare_and_delete.now = s.clock()
    return Write(command)


def _expire_if_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    command = sc.StateCommand(expire_if=request)
    command.expire_if.now = s.clock()
    return Write(command)


def _increment_op(s: KeyValueServices, request: Any) -> Operation:
    s.check_name(request.name)
    command = sc.StateCommand(increment=request)
    command.increment.now = s.clock()
    return Write(command)


def _open_session_op(s: KeyValueServices, request: Any) -> Operation:
    return Write(sc.StateCommand(open_session=sc.OpenSessionCommand(now=s.clock())))


def in_session(s: KeyValueServices, op: Operation, session: sc.ClientSession) -> None:
    """Make the freshly built `op`, if a write, one of the client `session` (stamped with
    this server's clock), so that the state machine applies it once however often it is
    resent. Changes its command in place: no copy of the value on the write path."""
    if isinstance(op, Write):
        op.command.session.CopyFrom(session)
        op.command.session.now = s.clock()


NATIVE_OPERATIONS: dict[str, Callable[[KeyValueServices, Any], Operation]] = {
    "get": _get_op,
    "history": _history_op,
    "set": _set_op,
    "set_if_absent": _set_if_absent_op,
    "delete": _delete_op,
    "compare_and_set": _compare_and_set_op,
    "compare_and_delete": _compare_and_delete_op,
    "expire_if": _expire_if_op,
    "increment": _increment_op,
    "open_session": _open_session_op,
}
"""The builder of each DRefNative operation by its PipelineCall field name: it validates
the request (CallRefused) and returns the write or read to run, for unary and pipelined
calls alike."""

_Method = TypeVar("_Method", bound=Callable[..., Any])


def refusals_abort(method: _Method) -> _Method:
    """Turn a servicer method's CallRefused into the aborted call it stands for (the gRPC
    context is the method's last argument)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except CallRefused as refused:
            args[-1].abort(refused.code, refused.details)

    return cast(_Method, wrapper)


def call_node(
    context: Any, node: NodeHandle, run: Callable[[float], _R], leader_address_hint: bool = True
) -> _R:
    """Run a node call within the RPC's deadline, turning engine errors into statuses."""
    remaining = context.time_remaining()
    timeout = DEFAULT_CALL_TIMEOUT if remaining is None else max(0.001, remaining)
    try:
        return run(min(timeout, DEFAULT_CALL_TIMEOUT * 6))
    except Exception as exc:
        code, details, leader_address = status_of(exc, leader_address_hint)
        if code == grpc.StatusCode.INTERNAL:
            _log.exception("node %s failed a client call", node.node_id)
        if leader_address:
            context.set_trailing_metadata(((LEADER_ADDRESS_KEY, leader_address),))
        context.abort(code, details)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def status_of(exc: Exception, leader_address_hint: bool) -> tuple[grpc.StatusCode, str, str]:
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
