"""The seam between a node and the network its peers are on.

A `PeerTransport` carries the consensus actor's requests to peers and hands their answers
back through the `OnMessage` callback it was built with; requests from peers reach the
node through its `Inbox`, which returns a future for the answer. `send` never blocks: a
message for a peer that is unknown, unreachable or slow is dropped, and the core's flow
control sends again. `PeerSet` keeps a node's transports connected to exactly the other
members of the configuration in force. Implementations: `GrpcPeerTransport` (the
`PeerStream` gRPC service, `actors/grpc_transport.py`) and `InMemoryNetwork` below, which
links nodes of one process without sockets for fast tests. The deterministic simulator
has its own seeded network.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Protocol

from dref.actors.consensus.membership import Membership
from dref.actors.consensus.messages import Message

logger = logging.getLogger("dref.raft")

OnMessage = Callable[[Message], None]
"""Receives a peer's answer to one of our requests."""
OnReachability = Callable[[str, bool], None]
"""Told when a peer becomes unreachable (False) or reachable again (True)."""
Inbox = Callable[[Message], "Future[Message | None]"]
"""Hands a peer's request to the node; the future gets the node's answer (None: none)."""


class PeerTransport(Protocol):
    """Sends consensus requests to peers; see the module doc."""

    def send(self, peer: str, message: Message) -> None:
        """Queue `message` (a request) for `peer` without blocking; may drop it."""
        ...

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        """The peers to reach and their addresses; others are disconnected."""
        ...

    def close(self) -> None:
        """Drop every connection; later sends are dropped."""
        ...


def log_reachability(node_id: str) -> OnReachability:
    """The default reachability report: one log line per change."""

    def report(peer: str, reachable: bool) -> None:
        if reachable:
            logger.info("%s: peer %s is reachable", node_id, peer)
        else:
            logger.warning("%s: peer %s is unreachable", node_id, peer)

    return report


class Reachability:
    """Which peers are unreachable now; passes on only changes (several transports, or
    repeated failures, report the same state again)."""

    def __init__(self, report: OnReachability) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._unreachable: set[str] = set()

    @property
    def unreachable(self) -> list[str]:
        with self._lock:
            return sorted(self._unreachable)

    def __call__(self, peer: str, reachable: bool) -> None:
        with self._lock:
            if reachable == (peer not in self._unreachable):
                return
            if reachable:
                self._unreachable.discard(peer)
            else:
                self._unreachable.add(peer)
        self._report(peer, reachable)


class RoundTrips:
    """Each peer's smoothed heartbeat round-trip time, for `status` and metrics.

    Heartbeats are the probe: their answers do not wait for the follower's disk, so this
    is the link plus the peer's turn, not replication latency. Each sample moves the
    estimate 1/8 of the way, as TCP's SRTT. Written on link threads (one peer's answers
    come on its link's thread), read at status time: single dict stores, no lock.
    """

    def __init__(self) -> None:
        self._rtt: dict[str, tuple[float, float]] = {}
        """Peer -> (smoothed seconds, monotonic time of its last answer)."""

    def timed(self, peer: str, on_answer: OnMessage) -> OnMessage:
        """`on_answer`, also recording the time from now until it is called."""
        sent = time.monotonic()

        def answered(message: Message) -> None:
            now = time.monotonic()
            sample = now - sent
            previous = self._rtt.get(peer)
            smoothed = sample if previous is None else previous[0] + (sample - previous[0]) / 8
            self._rtt[peer] = (smoothed, now)
            on_answer(message)

        return answered

    def recent(self, within: float) -> dict[str, float]:
        """Smoothed RTT in seconds of each peer that answered in the last `within` s."""
        horizon = time.monotonic() - within
        return {peer: rtt for peer, (rtt, at) in list(self._rtt.items()) if at >= horizon}


class InMemoryNetwork:
    """Nodes of one process linked by function calls, with links that can be cut."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: dict[str, Inbox] = {}
        self._cut: set[tuple[str, str]] = set()

    def attach(self, node_id: str, inbox: Inbox) -> None:
        """Requests addressed to `node_id` go to `inbox` from now on."""
        with self._lock:
            self._inboxes[node_id] = inbox

    def detach(self, node_id: str) -> None:
        with self._lock:
            self._inboxes.pop(node_id, None)

    def cut(self, a: str, b: str) -> None:
        """Drop messages between `a` and `b`, both ways, until `heal`."""
        with self._lock:
            self._cut |= {(a, b), (b, a)}

    def heal(self) -> None:
        with self._lock:
            self._cut.clear()

    def transport(
        self, node_id: str, on_answer: OnMessage, on_reachability: OnReachability | None = None
    ) -> InMemoryTransport:
        return InMemoryTransport(self, node_id, on_answer, on_reachability)

    def route(self, sender: str, peer: str) -> Inbox | None:
        """The inbox a message from `sender` to `peer` reaches, or None (cut or absent)."""
        with self._lock:
            if (sender, peer) in self._cut:
                return None
            return self._inboxes.get(peer)


class InMemoryTransport:
    """One node's `PeerTransport` on an `InMemoryNetwork`."""

    def __init__(
        self,
        network: InMemoryNetwork,
        node_id: str,
        on_answer: OnMessage,
        on_reachability: OnReachability | None = None,
    ) -> None:
        self._network = network
        self._node_id = node_id
        self._on_answer = on_answer
        self._report = Reachability(on_reachability or log_reachability(node_id))
        self._peers: frozenset[str] = frozenset()
        self._closed = False

    def send(self, peer: str, message: Message) -> None:
        if self._closed or peer not in self._peers:
            return
        inbox = self._network.route(self._node_id, peer)
        self._report(peer, inbox is not None)
        if inbox is None:
            return
        inbox(message).add_done_callback(self._answered)

    def _answered(self, reply: Future[Message | None]) -> None:
        if reply.exception() is not None:
            return  # the peer closed
        answer = reply.result()
        if answer is not None and not self._closed:
            self._on_answer(answer)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        self._peers = frozenset(addresses)

    def close(self) -> None:
        self._closed = True


class PeerSet:
    """Keeps `transports` connected to the members of the configuration in force, and
    `addresses` (shared with the consensus actor) up to date.

    A peer is dialed where this node was configured to reach it (`configured`), whatever
    the configuration entries or an installed snapshot say: those carry the addresses
    other nodes use, which behind a NAT, a sidecar or a per-link proxy are wrong here. Only
    a member this node has no address of its own for is dialed at the entry's address.
    """

    def __init__(
        self,
        node_id: str,
        addresses: dict[str, str],
        transports: Sequence[PeerTransport],
        configured: Mapping[str, str] | None = None,
    ) -> None:
        self._node_id = node_id
        self._addresses = addresses
        self._configured = dict(configured or {})
        self._transports = transports
        self._membership: Membership | None = None
        self._peers: dict[str, str] = {}
        self.is_member = True
        """False while this node is outside its configuration (joining, or removed)."""

    def sync(self, membership: Membership) -> None:
        """Connect to new members and disconnect from removed ones."""
        if membership is self._membership:
            return
        self._membership = membership
        self.is_member = self._node_id in membership.members
        self._addresses.update(membership.address_map())
        self._addresses.update(self._configured)  # our own view of a peer wins
        peers: dict[str, str] = {}
        for peer in sorted(membership.members - {self._node_id}):
            address = self._addresses.get(peer)
            if address is None:
                logger.warning("%s: member %s has no known address", self._node_id, peer)
            else:
                peers[peer] = address
        if peers == self._peers:
            return
        for peer in sorted(set(self._peers) - set(peers)):
            logger.info("%s: stopped replicating to removed member %s", self._node_id, peer)
        for peer in sorted(set(peers) - set(self._peers)):
            logger.info("%s: replicating to member %s at %s", self._node_id, peer, peers[peer])
        self._peers = peers
        for transport in self._transports:
            transport.set_peers(peers)

    @property
    def voters(self) -> frozenset[str]:
        """The voters of the configuration in force (empty before the first sync)."""
        membership = self._membership
        return frozenset() if membership is None else membership.voters

    def knows(self, node_id: str) -> bool:
        """Whether `node_id` is a member or a peer we know (never a stranger)."""
        membership = self._membership
        return node_id in self._addresses or (
            membership is not None and node_id in membership.members
        )

    def accepts(self, sender: str) -> bool:
        """Whether the transport should hand a request from `sender` to consensus: members
        (also one whose address we have not learned yet, such as a leader whose snapshot
        did not record its own address), peers we know, or anyone while we are outside the
        configuration (a leader may be adding us)."""
        return self.knows(sender) or not self.is_member
