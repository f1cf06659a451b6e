"""Upstream's `DRefConsensus` calls to the other nodes, in parallel, each with a deadline.

Plaintext HTTP/2 as upstream dials it (no TLS, no metadata). Every call is bounded by the
RPC timeout (Rust's connectionTimeout; Scala's version has none, so a black-holed peer could
block it: spec 7.19), so a dead peer costs a caller at most one timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from dref.wire.consensus_service import CHANNEL_OPTIONS
from dref.wire.proto.dref_consensus_pb2_grpc import DRefConsensusStub
from dref.wire.reconnect import RECONNECT_OPTIONS

__all__ = ["UpstreamPeers"]

_log = logging.getLogger("dref.interop")
_OPTIONS = [*CHANNEL_OPTIONS, *RECONNECT_OPTIONS]


class UpstreamPeers:
    """One channel and stub per peer id; `call_all` fans a request out and gathers replies.
    `replace` swaps the peer map (upstream's PeerMapSync); calls in flight finish."""

    def __init__(self, addresses: Mapping[str, str], rpc_timeout: float) -> None:
        self._timeout = rpc_timeout
        self._lock = threading.Lock()
        self._addresses: dict[str, str] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, DRefConsensusStub] = {}
        self.replace(addresses)

    @property
    def ids(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._stubs)

    @property
    def addresses(self) -> dict[str, str]:
        with self._lock:
            return dict(self._addresses)

    def replace(self, addresses: Mapping[str, str]) -> None:
        """Make `addresses` (id -> "host:port") the peers: new ones get a channel, gone or
        moved ones lose theirs."""
        with self._lock:
            for peer, address in list(self._addresses.items()):
                if addresses.get(peer) != address:
                    self._channels.pop(peer).close()
                    del self._stubs[peer], self._addresses[peer]
            for peer, address in addresses.items():
                if peer not in self._addresses:
                    channel = grpc.insecure_channel(address, options=_OPTIONS)
                    self._channels[peer], self._addresses[peer] = channel, address
                    self._stubs[peer] = DRefConsensusStub(channel)

    def call_all(self, method: str, request: Any) -> dict[str, Any]:
        """Send `request` to every peer at once with `method` (a DRefConsensus RPC name) and
        wait for all; returns the replies by peer id, failed or late calls left out."""
        with self._lock:
            stubs = dict(self._stubs)
        pending = {
            peer: getattr(stub, method).future(request, timeout=self._timeout)
            for peer, stub in stubs.items()
        }
        replies: dict[str, Any] = {}
        for peer, future in pending.items():
            try:
                replies[peer] = future.result()
            except grpc.RpcError as exc:
                _log.debug("%s to %s failed: %s", method, peer, exc.code())
        return replies

    def call_one(
        self,
        peer: str,
        method: str,
        request: Any,
        on_reply: Callable[[Any], None],
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Send `request` to `peer` without waiting; `on_reply(response)` runs on a gRPC
        thread when it answers, `on_failure()` if it fails (else failures are dropped, as
        upstream's fire-and-forget calls are)."""
        with self._lock:
            stub = self._stubs.get(peer)
        if stub is None:  # no longer a peer
            if on_failure is not None:
                on_failure()
            return
        future = getattr(stub, method).future(request, timeout=self._timeout)

        def done(call: grpc.Future) -> None:
            try:
                reply = call.result()
            except grpc.RpcError as exc:
                _log.debug("%s to %s failed: %s", method, peer, exc.code())
                if on_failure is not None:
                    on_failure()
                return
            on_reply(reply)

        future.add_done_callback(done)

    def call_each(self, method: str, request: Any, on_reply: Callable[[Any], None]) -> None:
        """`call_one` to every peer."""
        for peer in self.ids:
            self.call_one(peer, method, request, on_reply)

    def close(self) -> None:
        self.replace({})
