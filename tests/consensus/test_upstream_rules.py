"""Upstream's consensus rules (spec section 4) as pure decisions, one rule per test."""

from __future__ import annotations

from dref.actors.consensus.upstream_rules import UpstreamRole, UpstreamState, quorum_of


def test_quorum_counts_itself_against_the_peer_map() -> None:
    assert [quorum_of(peers) for peers in range(5)] == [1, 2, 2, 3, 3]


def test_pre_vote_changes_nothing_and_respects_a_live_leader() -> None:
    state = UpstreamState("a", term=3, last_seq=5)
    assert not state.answer_pre_vote(3, 9, now=10.0, election_timeout=1.0)  # not a newer term
    assert not state.answer_pre_vote(4, 4, now=10.0, election_timeout=1.0)  # behind
    assert state.answer_pre_vote(4, 5, now=10.0, election_timeout=1.0)
    state.follow("b", 3, now=10.0)
    assert not state.answer_pre_vote(4, 9, now=10.5, election_timeout=1.0)  # sticky
    assert state.answer_pre_vote(4, 9, now=11.0, election_timeout=1.0)  # timed out
    assert state.voter_key() == (3, None)


def test_votes_compare_seq_only_and_once_per_term() -> None:
    state = UpstreamState("a", term=2, voted_for="a", role=UpstreamRole.LEADER, last_seq=7)
    assert not state.answer_vote("b", 3, 6, now=1.0)  # behind, but the term is adopted
    assert (state.term, state.voted_for, state.role) == (3, None, UpstreamRole.FOLLOWER)
    assert state.answer_vote("b", 3, 7, now=1.0)
    assert not state.answer_vote("c", 3, 99, now=1.0)
    assert state.answer_vote("b", 3, 7, now=1.0)  # the same candidate again
    assert not state.answer_vote("c", 2, 99, now=1.0)


def test_following_and_stepping_down() -> None:
    state = UpstreamState("a", term=5, last_seq=3)
    assert not state.follow("b", 4, now=1.0)
    assert state.follow("b", 6, now=1.0) and state.voter_key() == (6, None)
    assert state.leader_id == "b" and state.accepts_seq(4) and not state.accepts_seq(5)
    assert state.answer_read_index("b", 6) and not state.answer_read_index("c", 6)
    assert not state.answer_read_index("b", 7)
    assert state.observe_term(8, now=2.0)
    assert (state.term, state.leader_id, state.last_heartbeat) == (8, None, 2.0)
    assert not state.observe_term(8, now=3.0)


def test_commit_target_never_passes_what_is_stored() -> None:
    state = UpstreamState("a", last_seq=4, commit_seq=2)
    assert state.commit_target(9) == 4
    assert state.commit_target(2) is None


def test_an_election_won_only_by_the_candidate_of_that_term() -> None:
    state = UpstreamState("a", term=1, last_heartbeat=0.0)
    assert not state.election_due(now=0.5, election_timeout=0.4, jitter=0.2)
    assert state.election_due(now=0.7, election_timeout=0.4, jitter=0.2)
    term = state.start_election(now=0.6)
    assert (term, state.voted_for, state.role) == (2, "a", UpstreamRole.CANDIDATE)
    assert not state.win(1)
    assert state.win(2) and state.leader_id == "a" and state.is_leader
