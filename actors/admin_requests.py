"""The admin requests the consensus actor takes from `Node` (leadership transfer,
membership changes, the members query) and the typed errors they fail with."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from dref.actors.consensus.membership import Membership, MembershipChange
from dref.errors import LeaderTransferError as LeaderTransferError  # re-exported
from dref.errors import MembershipError as MembershipError  # re-exported


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
