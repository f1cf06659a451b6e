"""Elections: the election restriction, one durable vote per term, PreVote and stickiness."""

from __future__ import annotations

from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import PersistHardState, Send
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import Membership
from dref.actors.consensus.messages import (
    Heartbeat,
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role

LOG = tuple(LogEntry(i, t) for i, t in ((1, 1), (2, 1), (3, 2)))


def vote(candidate: str, term: int, last_index: int, last_term: int) -> RequestVote:
    return RequestVote(
        sender=candidate, term=term, last_log_index=last_index, last_log_term=last_term
    )


def test_voter_refuses_candidate_with_older_last_term(h):
    voter = h.core("a", durable=DurableState(term=2, entries=LOG))
    voter.tick(500)  # outside any lease
    effects = voter.receive(vote("b", 3, last_index=5, last_term=1))  # longer but older
    [reply] = h.messages(effects, RequestVoteResponse)
    assert not reply.granted
    assert voter.state.voted_for is None


def test_voter_refuses_candidate_with_shorter_log_of_same_term(h):
    voter = h.core("a", durable=DurableState(term=2, entries=LOG))
    voter.tick(500)
    effects = voter.receive(vote("b", 3, last_index=2, last_term=2))
    [reply] = h.messages(effects, RequestVoteResponse)
    assert not reply.granted


def test_vote_is_persisted_before_the_reply_leaves(h):
    voter = h.core("a", durable=DurableState(term=2, entries=LOG))
    voter.tick(500)
    effects = voter.receive(vote("b", 3, last_index=3, last_term=2))
    assert effects[0] == PersistHardState(3, "b")
    [send] = h.of(effects, Send)
    assert send.message.granted and send.after_persist


def test_one_vote_per_term(h):
    voter = h.core("a")
    voter.tick(500)
    voter.receive(vote("b", 1, 0, 0))
    [second] = h.messages(voter.receive(vote("c", 1, 0, 0)), RequestVoteResponse)
    [again] = h.messages(voter.receive(vote("b", 1, 0, 0)), RequestVoteResponse)
    assert not second.granted
    assert again.granted  # a duplicate request from the same candidate is answered the same


def test_restarted_voter_remembers_its_vote(h):
    voter = h.core("a", durable=DurableState(term=1, voted_for="b"))
    voter.tick(500)
    [reply] = h.messages(voter.receive(vote("c", 1, 0, 0)), RequestVoteResponse)
    assert not reply.granted


def test_single_voter_elects_itself_and_commits_its_noop_after_fsync(h):
    core = h.core("a", voters=("a",))
    effects = core.tick(500)
    assert core.state.role is Role.LEADER and core.state.term == 1
    assert core.state.commit_index == 0  # its own vote for the no-op needs the fsync
    core.persisted(1, 1)
    assert core.state.commit_index == 1
    assert PersistHardState(1, "a") in effects


def test_prevote_does_not_change_term(h):
    core = h.core("a")
    effects = core.tick(500)
    assert core.state.role is Role.PRE_CANDIDATE and core.state.term == 0
    assert len(h.messages(effects, PreVote)) == 2
    assert not h.of(effects, PersistHardState)


def test_prevote_refused_by_quorum_returns_to_follower_in_same_term(h):
    core = h.core("a")
    core.tick(500)
    core.receive(PreVoteResponse(sender="b", term=0, granted=False))
    core.receive(PreVoteResponse(sender="c", term=0, granted=False))
    assert core.state.role is Role.FOLLOWER and core.state.term == 0


def test_follower_hearing_a_leader_ignores_prevote_and_vote(h):
    follower = h.core("a")
    follower.tick(50)
    follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    effects = follower.receive(PreVote(sender="c", term=2, last_log_index=9, last_log_term=1))
    effects += follower.receive(vote("c", 2, 9, 1))
    assert not h.of(effects, Send)
    assert follower.state.term == 1 and follower.state.leader_id == "b"


def test_prevote_granted_once_the_leader_is_silent_for_a_timeout(h):
    follower = h.core("a")
    follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    follower.tick(150)
    [reply] = h.messages(
        follower.receive(PreVote(sender="c", term=2, last_log_index=0, last_log_term=0)),
        PreVoteResponse,
    )
    assert reply.granted and reply.term == 2
    assert follower.state.term == 1  # granting a PreVote changes nothing


def test_candidate_steps_down_on_higher_term(h):
    core = h.core("a", pre_vote=False)
    core.tick(500)
    assert core.state.role is Role.CANDIDATE
    core.receive(RequestVoteResponse(sender="b", term=5, granted=False))
    assert core.state.role is Role.FOLLOWER and core.state.term == 5


def test_learner_never_campaigns(h):
    learner = h.core("l", voters=("a", "b", "c"), learners=("l",))
    assert not learner.tick(10_000)
    assert learner.state.role is Role.FOLLOWER


def test_voter_with_an_uncommitted_configuration_still_votes_for_a_stranger(h):
    # "a" appended a configuration {a, c} that never committed; the cluster's current one
    # may have a voter "z" that "a" does not know. Ignoring z could leave nobody electable.
    stale = Membership.of(("a", "c")).encode()
    log = (*LOG, LogEntry(4, 2, stale, EntryKind.CONFIG))
    voter = h.core("a", durable=DurableState(term=2, entries=log))
    voter.tick(500)  # outside any lease
    pre = PreVote(sender="z", term=3, last_log_index=4, last_log_term=2)
    [pre_reply] = h.messages(voter.receive(pre), PreVoteResponse)
    assert pre_reply.granted
    [reply] = h.messages(
        voter.receive(vote("z", 3, last_index=4, last_term=2)), RequestVoteResponse
    )
    assert reply.granted and voter.state.voted_for == "z"


def test_voter_with_a_committed_configuration_ignores_a_strangers_vote_request(h):
    voter = h.core("a", durable=DurableState(term=2, entries=LOG), pre_vote=False)
    voter.tick(500)  # no lease either: only the configuration protects it
    term = voter.state.term
    assert voter.receive(vote("z", term + 2, last_index=3, last_term=2)) == []
    assert voter.state.term == term  # a removed node's term bump cannot disrupt anyone


def test_stale_vote_request_is_answered_with_the_newer_term(h):
    voter = h.core("a", durable=DurableState(term=5, entries=LOG))
    [reply] = h.messages(
        voter.receive(vote("b", 3, last_index=3, last_term=2)), RequestVoteResponse
    )
    assert reply.term == 5 and not reply.granted  # so the candidate catches up and retries
