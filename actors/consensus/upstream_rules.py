"""Upstream DRef's consensus rules (spec section 4), for interop mode.

The upstream engine identifies entries only by a global `seq` (no entry terms, no log
matching), counts quorums against its peer map, and repairs divergence by snapshot install.
This module holds its decisions as plain code on one node's state, with the clock passed in,
so `dref.raft.interop` only carries messages, files and threads. Each method that may change
`(term, voted_for)` leaves the persisting to the caller, who compares `voter_key()` before
and after (upstream persists before it replies or sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["UpstreamRole", "UpstreamState", "quorum_of"]


class UpstreamRole(Enum):
    """The three roles of upstream's engine (no learners, no pre-candidate role)."""

    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


def quorum_of(peer_count: int) -> int:
    """Acks, votes or grants needed, self included: `(peers + 1) // 2 + 1` (spec 4.1)."""
    return (peer_count + 1) // 2 + 1


@dataclass
class UpstreamState:
    """One node's consensus state as upstream keeps it (spec 4.1); times in monotonic s."""

    node_id: str
    term: int = 0
    voted_for: str | None = None
    role: UpstreamRole = UpstreamRole.FOLLOWER
    leader_id: str | None = None
    last_seq: int = 0
    commit_seq: int = 0
    last_applied: int = 0
    last_heartbeat: float = 0.0

    @property
    def is_leader(self) -> bool:
        return self.role is UpstreamRole.LEADER

    def voter_key(self) -> tuple[int, str | None]:
        """What `voter-state` holds; persist whenever a call changes it."""
        return self.term, self.voted_for

    # -- answering peers ----------------------------------------------------------------

    def answer_pre_vote(
        self, term: int, last_seq: int, now: float, election_timeout: float
    ) -> bool:
        """Grant a PreVote (spec 4.4, voter side)? Changes nothing; reply with `self.term`."""
        if term <= self.term or self.is_leader:
            return False
        if self.leader_id is not None and now - self.last_heartbeat < election_timeout:
            return False  # leader stickiness, without jitter
        return last_seq >= self.last_seq

    def answer_vote(self, candidate: str, term: int, last_seq: int, now: float) -> bool:
        """Grant a vote (spec 4.4, voter side); may adopt `term`. Only seq is compared."""
        if term < self.term:
            return False
        if term > self.term:
            self.term = term
            self.voted_for = None
            self.role = UpstreamRole.FOLLOWER  # leader_id is kept, as upstream does
        if last_seq < self.last_seq or self.voted_for not in (None, candidate):
            return False
        self.voted_for = candidate
        self.last_heartbeat = now
        return True

    def follow(self, leader: str, term: int, now: float) -> bool:
        """The "follow or reject" step of AppendEntries, Heartbeat and InstallSnapshot
        (spec 4.7): False for a stale term, else follow `leader`, adopting a newer term."""
        if term < self.term:
            return False
        if term > self.term:
            self.term = term
            self.voted_for = None
        self.role = UpstreamRole.FOLLOWER
        self.leader_id = leader
        self.last_heartbeat = now
        return True

    def answer_read_index(self, leader: str, term: int) -> bool:
        """Confirm `leader` for a ReadIndex round (spec 4.6); read-only."""
        return term == self.term and self.leader_id == leader

    def accepts_seq(self, seq: int) -> bool:
        """AppendEntries is stored only as the very next seq."""
        return seq == self.last_seq + 1

    def commit_target(self, leader_commit: int) -> int | None:
        """The seq to apply up to for a leader's commit index, or None (spec 4.7)."""
        effective = min(leader_commit, self.last_seq)
        return effective if effective > self.commit_seq else None

    # -- what a response tells ----------------------------------------------------------

    def observe_term(self, term: int, now: float) -> bool:
        """The step-down rule (spec 4.10): True if `term` (from any response) was newer."""
        if term <= self.term:
            return False
        self.term = term
        self.role = UpstreamRole.FOLLOWER
        self.voted_for = None
        self.leader_id = None
        self.last_heartbeat = now
        return True

    # -- own elections ------------------------------------------------------------------

    def election_due(self, now: float, election_timeout: float, jitter: float) -> bool:
        """A follower or candidate starts an election after the timeout plus jitter."""
        return not self.is_leader and now - self.last_heartbeat >= election_timeout + jitter

    def back_off(self, now: float) -> None:
        """A failed PreVote waits a full timeout again; nothing is persisted."""
        self.last_heartbeat = now

    def start_election(self, now: float) -> int:
        """Become a candidate of the next term, voting for itself; returns that term."""
        self.role = UpstreamRole.CANDIDATE
        self.term += 1
        self.voted_for = self.node_id
        self.leader_id = None
        self.last_heartbeat = now
        return self.term

    def win(self, term: int) -> bool:
        """Become leader if still the candidate of `term`."""
        if self.role is not UpstreamRole.CANDIDATE or self.term != term:
            return False
        self.role = UpstreamRole.LEADER
        self.leader_id = self.node_id
        return True

    def start_alone(self) -> None:
        """A node with no peers and nothing persisted starts as leader of term 1 (4.2)."""
        self.role = UpstreamRole.LEADER
        self.term = 1
        self.voted_for = None
        self.leader_id = self.node_id
