"""A node removed while cut off learns it from the first voter it asks for a vote, stops
campaigning without moving anyone's term, and works normally once a leader adds it back.

Scripted runs of the deterministic simulator (no clients, no random faults)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import Send
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import ChangeAction, Membership, MembershipChange
from dref.actors.consensus.messages import (
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role
from testkit.simulator import SimConfig, Simulation

ELECTION_MS = SimConfig().raft.election_timeout_ms


def settled(sim: Simulation, ms: int = 1000) -> str:
    """Run `ms` and return the leader's id."""
    sim.advance(ms)
    return sim.leader().node_id


def core(sim: Simulation, node_id: str):
    node = sim.nodes[node_id].core
    assert node is not None
    return node


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "no-pre-vote"])
def test_a_removed_node_learns_it_stops_campaigning_and_comes_back_when_added(
    pre_vote: bool, seed: int
) -> None:
    config = SimConfig(clients=0)
    sim = Simulation(seed, replace(config, raft=replace(config.raft, pre_vote=pre_vote)))
    sim.start()
    leader = settled(sim)
    victim = next(n for n in sim.ids if n != leader)
    others = [n for n in sim.ids if n != victim]

    sim.isolate(victim)
    sim.change(MembershipChange(ChangeAction.REMOVE, victim))
    sim.advance(300)
    removal_index = core(sim, leader).config_index
    assert all(victim not in core(sim, n).membership.members for n in others)
    assert all(core(sim, n).state.commit_index >= removal_index for n in others)
    assert victim in core(sim, victim).membership.voters  # it never got the entry
    sim.advance(5 * ELECTION_MS)  # cut off, it campaigns in vain
    assert core(sim, victim).state.role in (Role.PRE_CANDIDATE, Role.CANDIDATE)

    terms = {n: core(sim, n).state.term for n in others}
    sim.heal()
    roles = []
    for _ in range(40):  # 20 election timeouts, looked at every half
        sim.advance(ELECTION_MS // 2)
        roles.append(core(sim, victim).state.role)
    notice = core(sim, victim).removed
    assert notice is not None and notice.told_by in others
    assert notice.config_index == removal_index
    # It stopped within the first timeouts after the heal, and never campaigned again.
    assert set(roles[4:]) == {Role.FOLLOWER}, roles
    assert not core(sim, victim).may_campaign()
    assert {n: core(sim, n).state.term for n in others} == terms
    assert sim.leader().node_id == leader

    address = f"{victim}:1"
    sim.change(MembershipChange(ChangeAction.ADD_LEARNER, victim, address))
    sim.advance(500)
    sim.change(MembershipChange(ChangeAction.PROMOTE, victim))
    sim.advance(500)
    back = core(sim, victim)
    assert back.removed is None and back.state.is_voter
    assert back.state.commit_index == core(sim, leader).state.commit_index
    assert back.state.term == core(sim, leader).state.term
    sim.transfer(victim)  # it can lead again
    sim.advance(500)
    assert sim.leader().node_id == victim


def test_a_voter_answers_a_strangers_vote_request_with_the_removal_and_changes_nothing(h):
    config = Membership.of(("a", "b", "c")).encode()
    log = (LogEntry(1, 1, b"", EntryKind.NOOP), LogEntry(2, 1, config, EntryKind.CONFIG))
    voter = h.core("a", durable=DurableState(term=1, entries=log))
    voter.commit_to(2)
    voter.tick(500)
    for request in (
        PreVote(sender="z", term=9, last_log_index=9, last_log_term=9),
        RequestVote(sender="z", term=9, last_log_index=9, last_log_term=9),
    ):
        [send] = h.of(voter.receive(request), Send)
        answer = send.message
        assert isinstance(answer, PreVoteResponse | RequestVoteResponse)
        assert send.to == "z" and not answer.granted and answer.removed_at == 2 and answer.term == 1
    assert voter.state.term == 1 and voter.state.voted_for is None


def test_a_stale_removal_notice_is_ignored(h):
    candidate = h.core("a")
    candidate.tick(500)
    assert candidate.state.role is Role.PRE_CANDIDATE
    # Our configuration is the base one (index 0); a notice about index 0 tells us nothing new.
    candidate.receive(PreVoteResponse(sender="b", term=0, granted=False, removed_at=0))
    assert candidate.removed is None
    candidate.receive(PreVoteResponse(sender="b", term=0, granted=False, removed_at=3))
    assert candidate.removed is not None and candidate.state.role is Role.FOLLOWER
