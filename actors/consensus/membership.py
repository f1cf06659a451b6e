"""Cluster membership: who votes, who only learns, and where each member listens.

A configuration travels in the log as a CONFIG entry (`Membership.encode`) and takes
effect on a node as soon as the entry is appended there (Raft thesis 4.1, one voter
changed at a time). `MembershipChange` is what an operator asks the leader for.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Addresses = tuple[tuple[str, str], ...]
"""Sorted (node id, "host:port") pairs: hashable, so snapshots and entries stay frozen."""


@dataclass(frozen=True, slots=True)
class Membership:
    """One configuration: disjoint voter and learner sets plus every member's address."""

    voters: frozenset[str]
    learners: frozenset[str] = frozenset()
    addresses: Addresses = ()

    @classmethod
    def of(
        cls,
        voters: Iterable[str],
        learners: Iterable[str] = (),
        addresses: Mapping[str, str] | Addresses = (),
    ) -> Membership:
        """Build one from any iterables; addresses of non-members are dropped."""
        voter_set, learner_set = frozenset(voters), frozenset(learners)
        members = voter_set | learner_set
        pairs = dict(addresses.items() if isinstance(addresses, Mapping) else addresses)
        return cls(
            voter_set,
            learner_set - voter_set,
            tuple(sorted((k, v) for k, v in pairs.items() if k in members)),
        )

    @property
    def members(self) -> frozenset[str]:
        """Voters and learners."""
        return self.voters | self.learners

    def address_map(self) -> dict[str, str]:
        """Member id -> "host:port" for the members whose address is known."""
        return dict(self.addresses)

    def encode(self) -> bytes:
        """The CONFIG entry payload."""
        return json.dumps(
            {
                "voters": sorted(self.voters),
                "learners": sorted(self.learners),
                "addresses": self.address_map(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Membership:
        """Parse a CONFIG entry payload; ValueError when it is not one."""
        try:
            raw = json.loads(payload)
            voters, learners, addresses = raw["voters"], raw["learners"], raw["addresses"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"malformed configuration entry: {exc}") from None
        if not (
            isinstance(voters, list)
            and isinstance(learners, list)
            and isinstance(addresses, dict)
            and all(isinstance(x, str) and x for x in [*voters, *learners])
            and all(isinstance(v, str) for v in addresses.values())
        ):
            raise ValueError("malformed configuration entry: wrong field types")
        if not voters or set(voters) & set(learners):
            raise ValueError("configuration needs voters, disjoint from learners")
        return cls.of(voters, learners, addresses)


class ChangeAction(enum.Enum):
    """The single-server changes: add a learner, promote a learner, remove any member."""

    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One change asked of the leader; `address` is needed to add a learner."""

    action: ChangeAction
    node_id: str
    address: str = ""

    def applied_to(self, current: Membership) -> Membership:
        """The configuration after this change; ValueError when it makes no sense."""
        node = self.node_id
        addresses = current.address_map()
        if self.action is ChangeAction.ADD_LEARNER:
            if node in current.members:
                raise ValueError(f"{node} is already a member")
            addresses[node] = self.address
            return Membership.of(current.voters, current.learners | {node}, addresses)
        if self.action is ChangeAction.PROMOTE:
            if node not in current.learners:
                raise ValueError(f"{node} is not a learner")
            return Membership.of(current.voters | {node}, current.learners - {node}, addresses)
        if node not in current.members:
            raise ValueError(f"{node} is not a member")
        if current.voters == {node}:
            raise ValueError(f"{node} is the last voter")
        return Membership.of(current.voters - {node}, current.learners - {node}, addresses)
