"""Runtime side of leadership transfer and membership changes.

The admin requests the consensus actor takes from `Node`, the typed errors they fail
with, and `PeerSet`, which keeps one replicator (and one known address) per member of
the configuration in force: started when a member appears, stopped when it leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka

from dref.actors.consensus.membership import Membership, MembershipChange
from dref.actors.node_messages import Connect
from dref.errors import LeaderTransferError as LeaderTransferError  # re-exported
from dref.errors import MembershipError as MembershipError  # re-exported

logger = logging.getLogger("dref.raft")

ReplicatorFactory = Callable[[str, str], "pykka.ActorRef[Any]"]
"""Starts the replicator for (peer id, "host:port")."""


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
    """Keeps `replicators` and `addresses` (shared with the consensus actor) in step with
    the configuration in force."""

    def __init__(
        self,
        node_id: str,
        replicators: dict[str, pykka.ActorRef[Any]],
        addresses: dict[str, str],
        start_replicator: ReplicatorFactory,
    ) -> None:
        self._node_id = node_id
        self._replicators = replicators
        self._addresses = addresses
        self._start_replicator = start_replicator
        self._membership: Membership | None = None
        self.is_member = True
        """False while this node is outside its configuration (joining, or removed)."""

    def sync(self, membership: Membership, consensus: pykka.ActorRef[Any]) -> None:
        """Start replicators for new members, stop those of removed ones."""
        if membership is self._membership:
            return
        self._membership = membership
        self.is_member = self._node_id in membership.members
        known = membership.address_map()
        self._addresses.update(known)
        wanted = membership.members - {self._node_id}
        for peer in sorted(set(self._replicators) - wanted):
            replicator = self._replicators.pop(peer)
            replicator.stop(block=False)
            logger.info("%s: stopped replicating to removed member %s", self._node_id, peer)
        for peer in sorted(wanted - set(self._replicators)):
            address = self._addresses.get(peer)
            if address is None:
                logger.warning("%s: member %s has no known address", self._node_id, peer)
                continue
            replicator = self._start_replicator(peer, address)
            replicator.tell(Connect(consensus=consensus))
            self._replicators[peer] = replicator
            logger.info("%s: replicating to new member %s at %s", self._node_id, peer, address)

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
