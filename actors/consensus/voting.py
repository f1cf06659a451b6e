"""How any node answers PreVote and RequestVote: the election restriction and one vote per term."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dref.actors.consensus.messages import (
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)

if TYPE_CHECKING:
    from dref.actors.consensus.raft import RaftCore


def handle_vote_request(core: RaftCore, request: PreVote | RequestVote) -> None:
    """Grant a candidate whose log is at least as up to date as ours.

    As the Raft thesis asks, this does not consult our own configuration (a newly promoted
    voter may not know it yet); the candidate counts only the voters of its configuration.
    The core has already ignored requests during a leader lease and adopted a newer term
    of a real vote request. A real vote is recorded (and persisted before the reply goes
    out); a PreVote changes nothing here.
    """
    state = core.state
    up_to_date = core.log.is_up_to_date(request.last_log_index, request.last_log_term)
    if isinstance(request, PreVote):
        granted = request.term > state.term and up_to_date
        reply_term = request.term if granted else state.term
        core.send(
            request.sender,
            PreVoteResponse(sender=state.node_id, term=reply_term, granted=granted),
        )
        return
    free_to_vote = state.voted_for == request.sender or (
        state.voted_for is None and state.leader_id is None
    )
    granted = free_to_vote and up_to_date
    if granted:
        state.voted_for = request.sender
        core.reset_election_timer()
    core.send(
        request.sender,
        RequestVoteResponse(sender=state.node_id, term=state.term, granted=granted),
    )
