"""The candidate role: PreVote (no term change) and then the real election at term + 1."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.effects import NotLeader, QuorumLost, Reject
from dref.actors.consensus.messages import (
    Message,
    PreVote,
    PreVoteResponse,
    RequestId,
    RequestVote,
    RequestVoteResponse,
)

if TYPE_CHECKING:
    from dref.actors.consensus.raft import RaftCore


class CandidateRole:
    """Collects votes (or pre-votes) from the voters; wins on a quorum of grants."""

    def __init__(self, core: RaftCore, *, pre_vote: bool, force: bool = False) -> None:
        self.core = core
        self.pre_vote = pre_vote
        self.force = force
        self.votes: dict[str, bool] = {core.node_id: True}

    def start(self) -> None:
        """Ask every other voter, then check at once (a single voter wins alone)."""
        core = self.core
        state = core.state
        for voter in sorted(state.voters - {state.node_id}):
            if self.pre_vote:
                core.send(
                    voter,
                    PreVote(
                        sender=state.node_id,
                        term=state.term + 1,
                        last_log_index=core.log.last_index,
                        last_log_term=core.log.last_term,
                    ),
                    after_persist=False,
                )
            else:
                core.send(
                    voter,
                    RequestVote(
                        sender=state.node_id,
                        term=state.term,
                        last_log_index=core.log.last_index,
                        last_log_term=core.log.last_term,
                        force=self.force,
                    ),
                )
        self._count()

    def tick(self) -> None:
        """No outcome within the election timeout: start over with a fresh PreVote."""
        if self.core.now_ms >= self.core.election_deadline_ms:
            self.core.campaign(pre_vote=True)

    def step(self, message: Message) -> None:
        """Record a vote of this round; anything else is not for a candidate."""
        if self.pre_vote and isinstance(message, PreVoteResponse):
            if message.granted and message.term != self.core.state.term + 1:
                return  # a grant for some other round
            self.votes[message.sender] = message.granted
            self._count()
        elif not self.pre_vote and isinstance(message, RequestVoteResponse):
            self.votes[message.sender] = message.granted
            self._count()

    def propose(self, command: bytes, request_id: RequestId) -> None:
        """No leader to take writes while an election runs."""
        self.core.emit(Reject(request_id, NotLeader(None)))

    def read(self, request_id: RequestId, policy: ReadPolicy) -> None:
        """No leader to confirm reads while an election runs."""
        self.core.emit(Reject(request_id, NotLeader(None)))

    def close(self, reason: NotLeader | QuorumLost) -> None:
        """A candidate holds no client requests."""

    def _count(self) -> None:
        core = self.core
        state = core.state
        granted = sum(1 for voter, yes in self.votes.items() if yes and voter in state.voters)
        refused = sum(1 for voter, yes in self.votes.items() if not yes and voter in state.voters)
        if granted >= state.quorum:
            if self.pre_vote:
                core.campaign(pre_vote=False)
            else:
                core.become_leader()
        elif refused >= state.quorum:
            core.become_follower(state.term, None)
