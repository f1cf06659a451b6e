"""The native-mode `PeerTransport`: one link per peer, over sockets or gRPC.

`send` hands a request to the peer's link without blocking (several in flight:
pipelining) and the answer comes back through `on_answer` on the link's reader thread;
`set_peers` opens links to new peers and closes those of removed ones or of peers whose
address changed. Links are replaced as a whole map, so senders on other threads (the
snapshot sender) never see a half-updated one. `socket_links` builds the native socket
links (`wire/node_socket.py`, falling back to gRPC for a peer without a peer socket);
`grpc_links` the gRPC PeerStream ones (`wire/consensus_service.py`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from functools import partial

from dref.actors.consensus.messages import Heartbeat, Message
from dref.actors.transport import OnMessage, OnReachability, RoundTrips, log_reachability
from dref.wire.consensus_service import PeerClient
from dref.wire.node_socket import PeerLink, PeerSocketClient, grpc_port_discovery
from dref.wire.tls import TlsMaterial

logger = logging.getLogger("dref.raft")

OpenLink = Callable[[str, str], PeerLink]
"""Opens a link to (peer id, its "host:port" as membership records it)."""


def grpc_links(
    timeout: float, tls: TlsMaterial | None = None, cluster_id: Callable[[], str] = lambda: ""
) -> OpenLink:
    """Links over one gRPC PeerStream each (mutual TLS with `tls`), stating `cluster_id()`."""
    return lambda peer, address: PeerClient(
        peer, address, timeout=timeout, tls=tls, cluster_id=cluster_id
    )


def socket_links(
    node_id: str,
    *,
    timeout: float,
    keepalive: float,
    cluster_id: Callable[[], str],
    sockets: Mapping[str, str],
    tls: TlsMaterial | None = None,
    advertise: str = "",
) -> OpenLink:
    """Links over the native socket protocol. A peer's socket is where `sockets` says, or
    else at the port its gRPC address answers; a peer without one is reached over gRPC.
    With `tls`, every link is mutual TLS and the peer's certificate must name its id. Each
    handshake tells the peer `advertise`, where clients reach this node."""

    def open_link(peer: str, address: str) -> PeerLink:
        configured = sockets.get(peer)
        if configured is None:
            host = address.rpartition(":")[0]
            discover = grpc_port_discovery(address, timeout, tls, expected_name=peer)
        else:
            host, _, port = configured.rpartition(":")
            discover = partial(int, port)
        return PeerSocketClient(
            node_id,
            peer,
            host,
            discover,
            timeout=timeout,
            keepalive=keepalive,
            cluster_id=cluster_id,
            fallback=lambda: PeerClient(
                peer, address, timeout=timeout, tls=tls, cluster_id=cluster_id
            ),
            tls=tls,
            advertise=advertise,
        )

    return open_link


class PeerLinks:
    """See the module doc."""

    def __init__(
        self,
        node_id: str,
        on_answer: OnMessage,
        open_link: OpenLink,
        *,
        on_reachability: OnReachability | None = None,
        round_trips: RoundTrips | None = None,
    ) -> None:
        """`round_trips`, if given, times each heartbeat's answer."""
        self._node_id = node_id
        self._on_answer = on_answer
        self._open_link = open_link
        self._on_reachability = on_reachability or log_reachability(node_id)
        self._round_trips = round_trips
        self._lock = threading.Lock()
        self._links: dict[str, tuple[str, PeerLink]] = {}
        self._closed = False

    def send(self, peer: str, message: Message) -> None:
        known = self._links.get(peer)
        if known is None:
            logger.debug("%s: not sent to %s: not a peer", self._node_id, peer)
            return
        on_answer = self._on_answer
        if self._round_trips is not None and isinstance(message, Heartbeat):
            on_answer = self._round_trips.timed(peer, on_answer)
        try:
            known[1].send(message, on_answer)
        except ValueError:  # the link closed (peer removed, node closing): dropped
            logger.debug("%s: not sent to %s: its link is closed", self._node_id, peer)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        closing: list[PeerLink] = []
        with self._lock:
            if self._closed:
                return
            links = dict(self._links)
            for peer, (address, link) in list(links.items()):
                if addresses.get(peer) != address:
                    closing.append(link)
                    del links[peer]
            for peer, address in addresses.items():
                if peer not in links:
                    link = self._open_link(peer, address)
                    link.watch_reachability(self._on_reachability)
                    links[peer] = (address, link)
            self._links = links
        for link in closing:
            link.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, {}
        for _, link in links.values():
            link.close()
