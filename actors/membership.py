"""Runtime side of leadership transfer and membership changes.

The admin requests the consensus actor takes from `Node`, the typed errors they fail
with, and `PeerSet`, which keeps the node's transports connected to exactly the other
members of the configuration in force (and their known addresses).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from dref.actors.consensus.membership import Membership, MembershipChange
from dref.actors.transport import PeerTransport
from dref.errors import LeaderTransferError as LeaderTransferError  # re-exported
from dref.errors import MembershipError as MembershipError  # re-exported

logger = logging.getLogger("dref.raft")

@dataclass(frozen=True)
class TransferRequest:
    """Hand leadership to `target` (None: the most up-to-date voter); `outcome` gets the
    new leader's id."""

    target: str | None
    outcome: Future[str]


@dataclass(frozen=True)
class MembershipRequest:
    """Append one membership change; `outcome` resolves once it is committed and applied."""

    change: MembershipChange
    outcome: Future[bytes]


@dataclass(frozen=True)
class MembersQuery:
    """Asked (pykka `ask`) for a `MembersView`."""


@dataclass(frozen=True)
class MembersView:
    """The configuration in force on this node, and how far each peer matches (on a leader)."""

    membership: Membership
    committed: bool
    match_indexes: dict[str, int]


class PeerSet:
    """Keeps `transports` connected to the members of the configuration in force, and
    `addresses` (shared with the consensus actor) up to date."""

    def __init__(
        self, node_id: str, addresses: dict[str, str], transports: Sequence[PeerTransport]
    ) -> None:
        self._node_id = node_id
        self._addresses = addresses
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

    def accepts(self, sender: str) -> bool:
        """Whether the transport should hand a request from `sender` to consensus: members
        (also one whose address we have not learned yet, such as a leader whose snapshot
        did not record its own address), peers we know, or anyone while we are outside the
        configuration (a leader may be adding us)."""
        membership = self._membership
        return (
            sender in self._addresses
            or not self.is_member
            or (membership is not None and sender in membership.members)
        )
