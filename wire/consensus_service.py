"""gRPC for native-mode consensus: the servicer peers call, and the client we call them with.

The servicer takes raw request bytes, so malformed bytes become INVALID_ARGUMENT (never a
crash), checks the sender is a configured member (else FAILED_PRECONDITION), hands the
decoded message to the node and blocks, with a deadline, for the core's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import grpc

from dref.actors.consensus.messages import Message
from dref.errors import CodecError
from dref.wire.consensus_codec import (
    Rpc,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    rpc_of,
)

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
    """Serves DRefConsensus and DRefNativeConsensus for one node."""

    def __init__(
        self,
        node_id: str,
        members: frozenset[str] | Callable[[str], bool],
        submit: Submit,
        timeout: float,
    ):
        self._node_id = node_id
        self._accepts = members.__contains__ if isinstance(members, frozenset) else members
        self._submit = submit
        self._timeout = timeout

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The generic handlers to add to a grpc.Server (one per service)."""
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
        return [
            grpc.method_handlers_generic_handler(service, methods)
            for service, methods in by_service.items()
        ]

    def _handler(self, rpc: Rpc) -> Callable[[bytes, grpc.ServicerContext], object]:
        def handle(request: bytes, context: grpc.ServicerContext) -> object:
            try:
                message = decode_request(rpc, request)
            except CodecError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if message.sender == self._node_id or not self._accepts(message.sender):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"unknown peer id {message.sender!r}: not a member known to node "
                    f"{self._node_id!r}",
                )
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


class PeerClient:
    """One channel to a peer; `send` starts a non-blocking call (many may be in flight)."""

    def __init__(self, peer_id: str, address: str, *, timeout: float) -> None:
        self.peer_id = peer_id
        self._timeout = timeout
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._calls = {
            rpc: self._channel.unary_unary(
                rpc.value.path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=rpc.value.response_type.FromString,
            )
            for rpc in Rpc
        }

    def send(self, message: Message, on_reply: Callable[[Message], None]) -> None:
        """Send a request; `on_reply` gets the peer's answer (lost calls are just dropped)."""
        rpc = rpc_of(message)
        if rpc is None:
            raise TypeError(f"{type(message).__name__} is not a request")
        call = self._calls[rpc].future(encode_request(message), timeout=self._timeout)
        call.add_done_callback(lambda done: self._completed(rpc, done, on_reply))

    def _completed(self, rpc: Rpc, call: grpc.Future, on_reply: Callable[[Message], None]) -> None:
        try:
            response = call.result()
            reply = decode_response(rpc, response, self.peer_id)
        except grpc.RpcError as exc:
            logger.debug("%s to %s failed: %s", rpc.value.method, self.peer_id, exc)
            return
        except Exception:  # noqa: BLE001 - a bad answer is dropped, the core retries
            logger.warning("bad %s answer from %s", rpc.value.method, self.peer_id, exc_info=True)
            return
        if reply is not None:
            on_reply(reply)

    def close(self) -> None:
        """Close the channel; calls in flight fail."""
        self._channel.close()
