"""The native-mode `PeerTransport` over gRPC: one `PeerClient` (one PeerStream) per peer.

It owns the per-peer clients that replicator actors used to hold: `send` queues a request
on the peer's stream without blocking (several in flight: pipelining) and the answer comes
back through `on_answer` on a gRPC thread; `set_peers` opens clients for new peers and
closes those of removed ones or of peers whose address changed. Clients are replaced as a
whole map, so senders on other threads (the snapshot sender) never see a half-updated one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from dref.actors.consensus.messages import Message
from dref.actors.transport import OnMessage, OnReachability, log_reachability
from dref.wire.consensus_service import PeerClient

logger = logging.getLogger("dref.raft")


class GrpcPeerTransport:
    """See the module doc."""

    def __init__(
        self,
        node_id: str,
        on_answer: OnMessage,
        *,
        timeout: float,
        on_reachability: OnReachability | None = None,
    ) -> None:
        self._node_id = node_id
        self._on_answer = on_answer
        self._timeout = timeout
        self._on_reachability = on_reachability or log_reachability(node_id)
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, PeerClient]] = {}
        self._closed = False

    def send(self, peer: str, message: Message) -> None:
        known = self._clients.get(peer)
        if known is None:
            logger.debug("%s: not sent to %s: not a peer", self._node_id, peer)
            return
        try:
            known[1].send(message, self._on_answer)
        except ValueError:  # the channel closed (peer removed, node closing): dropped
            logger.debug("%s: not sent to %s: its channel is closed", self._node_id, peer)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        closing: list[PeerClient] = []
        with self._lock:
            if self._closed:
                return
            clients = dict(self._clients)
            for peer, (address, client) in list(clients.items()):
                if addresses.get(peer) != address:
                    closing.append(client)
                    del clients[peer]
            for peer, address in addresses.items():
                if peer not in clients:
                    client = PeerClient(peer, address, timeout=self._timeout)
                    client.watch_reachability(self._on_reachability)
                    clients[peer] = (address, client)
            self._clients = clients
        for client in closing:
            client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, {}
        for _, client in clients.values():
            client.close()
