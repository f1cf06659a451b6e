"""gRPC for native-mode consensus: the servicer peers call, and the client we call them with.

The servicer takes raw request bytes, so malformed bytes become INVALID_ARGUMENT (never a
crash), checks the sender is a configured member (else FAILED_PRECONDITION), hands the
decoded message to the node and answers with the core's reply. Peers talk over one
long-lived PeerStream each (see peer_stream); the unary RPCs remain for snapshots and for
peers without PeerStream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial

import grpc

from dref.actors.consensus.messages import Message
from dref.errors import CodecError
from dref.wire.call_refused import CLUSTER_ID_METADATA, CallRefused, RefusalLog, other_cluster
from dref.wire.consensus_codec import (
    NATIVE_SERVICE,
    Rpc,
    decode_request,
    encode_request,
    encode_response,
    rpc_of,
)
from dref.wire.node_socket import SOCKET_PORT_METHOD
from dref.wire.peer_stream import (
    PEER_STREAM_METHOD,
    PEER_STREAM_PATH,
    OnReply,
    PeerStream,
    Pending,
    deliver_answer,
    serve_peer_stream,
)
from dref.wire.reconnect import RECONNECT_OPTIONS
from dref.wire.tls import Identity, TlsMaterial, grpc_identity, open_channel

logger = logging.getLogger("dref.raft")

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""Snapshots travel in one InstallSnapshot; allow them to be large."""

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

Submit = Callable[[Message], "Future[Message | None]"]
"""Hands a peer's request to the node; the future gets the core's answer (None: none)."""


class ConsensusServicer:
    """Serves DRefConsensus and DRefNativeConsensus (with PeerStream) for one node."""

    def __init__(
        self,
        node_id: str,
        members: frozenset[str] | Callable[[str], bool],
        submit: Submit,
        timeout: float,
        cluster_id: Callable[[], str] = lambda: "",
    ):
        """`cluster_id` returns this node's cluster id ("" before it has one): a peer that
        states another in its call metadata is refused, and logged once."""
        self._node_id = node_id
        self._accepts = members.__contains__ if isinstance(members, frozenset) else members
        self._submit = submit
        self._timeout = timeout
        self._cluster_id = cluster_id
        self._log_refusal = RefusalLog(node_id, logger)

    def handlers(
        self, *, peer_stream: bool = True, socket_port: int | None = None
    ) -> list[grpc.GenericRpcHandler]:
        """The generic handlers to add to a grpc.Server (one per service).

        `peer_stream=False` leaves PeerStream out, as an older or upstream peer would;
        `socket_port` is the node's peer socket port, told to peers that ask for it.
        """
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for rpc in Rpc:
            spec = rpc.value
            by_service.setdefault(spec.service, {})[spec.method] = (
                grpc.unary_unary_rpc_method_handler(
                    self._handler(rpc),
                    request_deserializer=None,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            )
        if peer_stream:
            by_service.setdefault(NATIVE_SERVICE, {})[PEER_STREAM_METHOD] = (
                grpc.stream_stream_rpc_method_handler(self._peer_stream)
            )
        if socket_port is not None:
            answer = str(socket_port).encode()
            by_service.setdefault(NATIVE_SERVICE, {})[SOCKET_PORT_METHOD] = (
                grpc.unary_unary_rpc_method_handler(lambda request, context: answer)
            )
        return [
            grpc.method_handlers_generic_handler(service, methods)
            for service, methods in by_service.items()
        ]

    def admit(
        self, rpc: Rpc, request: bytes, identity: Identity | None = None, cluster: str = ""
    ) -> Message:
        """Decode a peer's request and check its sender is another member of this cluster
        (`cluster`: the id the caller stated) and, with TLS, one the caller's certificate
        names; raise CallRefused."""
        try:
            message = decode_request(rpc, request)
        except CodecError as exc:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        reason = other_cluster(message.sender, cluster, self._cluster_id())
        if reason is not None:
            self._log_refusal(f"refused a call from {message.sender!r}: {reason}")
            raise CallRefused(grpc.StatusCode.FAILED_PRECONDITION, reason)
        if identity is not None and message.sender not in identity.names:
            raise CallRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the certificate of {identity.name!r} does not name node {message.sender!r}",
            )
        if message.sender == self._node_id or not self._accepts(message.sender):
            raise CallRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"unknown peer id {message.sender!r}: not a member known to node {self._node_id!r}",
            )
        return message

    def _peer_stream(
        self, frames: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        admit = partial(self.admit, identity=grpc_identity(context), cluster=_stated(context))
        return serve_peer_stream(frames, context, admit, self._submit)

    def _handler(self, rpc: Rpc) -> Callable[[bytes, grpc.ServicerContext], object]:
        def handle(request: bytes, context: grpc.ServicerContext) -> object:
            try:
                message = self.admit(rpc, request, grpc_identity(context), _stated(context))
            except CallRefused as exc:
                context.abort(exc.code, exc.details)
            remaining = context.time_remaining()
            wait = self._timeout if remaining is None else min(self._timeout, remaining)
            try:
                reply = self._submit(message).result(timeout=max(wait, 0.0))
            except FutureTimeout:
                context.abort(grpc.StatusCode.UNAVAILABLE, "consensus did not answer in time")
            except Exception as exc:  # noqa: BLE001 - the node is closing or failed
                context.abort(grpc.StatusCode.UNAVAILABLE, f"node unavailable: {exc}")
            return encode_response(rpc, reply)

        return handle


def _stated(context: grpc.ServicerContext) -> str:
    """The cluster id a calling peer stated in its metadata ("" if none)."""
    for key, value in context.invocation_metadata():
        if key == CLUSTER_ID_METADATA:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


class PeerClient:
    """One channel to a peer; `send` queues a request without blocking (many in flight).

    Requests travel on one PeerStream, reopened on the next send after it broke or its
    oldest request went unanswered for `timeout`; InstallSnapshot, and everything once the
    peer turned out to lack PeerStream, go as unary calls with a `timeout` deadline.
    """

    def __init__(
        self,
        peer_id: str,
        address: str,
        *,
        timeout: float,
        tls: TlsMaterial | None = None,
        cluster_id: Callable[[], str] = lambda: "",
    ) -> None:
        """Every call states `cluster_id()` (when not empty), for the peer to check."""
        self.peer_id = peer_id
        self._timeout = timeout
        self._cluster_id = cluster_id
        self._channel = open_channel(
            address, tls, [*CHANNEL_OPTIONS, *RECONNECT_OPTIONS], expected_name=peer_id
        )
        self._calls = {
            rpc: self._channel.unary_unary(
                rpc.value.path,
                request_serializer=None,
                response_deserializer=rpc.value.response_type.FromString,
            )
            for rpc in Rpc
        }
        self._open_call = self._channel.stream_stream(
            PEER_STREAM_PATH, request_serializer=None, response_deserializer=None
        )
        self._cond = threading.Condition(threading.Lock())
        self._stream: PeerStream | None = None
        self._unary_only = False
        self._closed = False

    def watch_reachability(self, report: Callable[[str, bool], None]) -> None:
        """Call `report(peer, False)` when the channel fails to connect, and
        `report(peer, True)` when it connects again after that (once per change)."""
        unreachable = False

        def changed(state: grpc.ChannelConnectivity) -> None:
            nonlocal unreachable
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE and not unreachable:
                unreachable = True
                report(self.peer_id, False)
            elif state is grpc.ChannelConnectivity.READY and unreachable:
                unreachable = False
                report(self.peer_id, True)

        self._channel.subscribe(changed, try_to_connect=False)

    @property
    def streaming(self) -> bool:
        """False once the peer turned out to lack PeerStream (every call is unary then)."""
        return not self._unary_only

    def send(self, message: Message, on_reply: OnReply) -> None:
        """Send a request; `on_reply` gets the peer's answer (lost calls are just dropped).

        Raises ValueError once the client is closed.
        """
        rpc = rpc_of(message)
        if rpc is None:
            raise TypeError(f"{type(message).__name__} is not a request")
        payload = encode_request(message).SerializeToString()
        if self._unary_only or rpc is Rpc.INSTALL_SNAPSHOT:
            self._send_unary(rpc, payload, on_reply)
            return
        now = time.monotonic()
        stale: PeerStream | None = None
        with self._cond:
            if self._closed:
                raise ValueError("the channel to the peer is closed")
            stream = self._stream
            if stream is not None and not stream.dead and stream.stale_locked(now, self._timeout):
                logger.debug("peer stream to %s stuck: reopening it", self.peer_id)
                stream.cancel_locked()
                stale = stream
            if stream is None or stream.dead:
                metadata = self._metadata()
                stream = self._stream = PeerStream(
                    lambda frames: self._open_call(frames, metadata=metadata),
                    self.peer_id,
                    self._cond,
                    self._fall_back,
                )
            stream.put_locked(rpc, payload, on_reply, now)
        if stale is not None:
            stale.finish_cancel()

    def _send_unary(self, rpc: Rpc, payload: bytes, on_reply: OnReply) -> None:
        if self._closed:
            raise ValueError("the channel to the peer is closed")
        call = self._calls[rpc].future(payload, timeout=self._timeout, metadata=self._metadata())
        call.add_done_callback(lambda done: self._completed(rpc, done, on_reply))

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        cluster_id = self._cluster_id()
        return ((CLUSTER_ID_METADATA, cluster_id),) if cluster_id else ()

    def _fall_back(self, lost: list[Pending]) -> None:
        """The peer lacks PeerStream: go unary for good, resending what the stream held."""
        if not self._unary_only:
            logger.info("%s has no PeerStream: using unary calls", self.peer_id)
        self._unary_only = True
        for rpc, payload, on_reply, _ in lost:
            try:
                self._send_unary(rpc, payload, on_reply)
            except ValueError:  # closed meanwhile
                return

    def _completed(self, rpc: Rpc, call: grpc.Future, on_reply: OnReply) -> None:
        try:
            response = call.result()
        except grpc.RpcError as exc:
            logger.debug("%s to %s failed: %s", rpc.value.method, self.peer_id, exc)
            return
        deliver_answer(rpc, response, on_reply, self.peer_id)

    def close(self) -> None:
        """Cancel the stream and close the channel; calls in flight are dropped."""
        with self._cond:
            self._closed = True
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.cancel_locked()
        if stream is not None:
            stream.finish_cancel()
        self._channel.close()
