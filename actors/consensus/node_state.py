"""The scalar state of one node: term, vote, role, leader, commit point, membership."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.Enum):
    """The four roles; PRE_CANDIDATE runs PreVote and has not changed its term yet."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class NodeState:
    """Term and vote are persisted (hard state); the rest is rebuilt after a restart."""

    node_id: str
    voters: frozenset[str]
    learners: frozenset[str] = field(default_factory=frozenset)
    term: int = 0
    voted_for: str | None = None
    role: Role = Role.FOLLOWER
    leader_id: str | None = None
    commit_index: int = 0
    applied_index: int = 0

    @property
    def quorum(self) -> int:
        """Votes or acks needed among the voters: a strict majority."""
        return len(self.voters) // 2 + 1

    @property
    def peers(self) -> list[str]:
        """Every other member (voters and learners), in a stable order."""
        return sorted((self.voters | self.learners) - {self.node_id})

    @property
    def is_voter(self) -> bool:
        """Only voters campaign and count in quorums."""
        return self.node_id in self.voters
