"""A node that did not run for a while (GC pause, SIGSTOP, a starved VM) must not blame its
peers for that time: no step-down and no election the moment it resumes, while leases,
which bound real time, stay where they were."""

from __future__ import annotations

from dref.actors.consensus.effects import Send
from dref.actors.consensus.messages import Heartbeat, HeartbeatResponse, PreVote, PreVoteResponse
from dref.actors.consensus.node_state import Role

TIMEOUT = 100  # the harness's election timeout, ms


def test_a_stopped_leader_keeps_leading_when_it_resumes(h):
    stalled, control = h.core("a"), h.core("a")
    for leader in (stalled, control):
        h.elect(leader, now_ms=1000)
        h.ack(leader, "b", 1)
    control.tick(1000 + 5 * TIMEOUT)
    assert control.state.role is Role.FOLLOWER  # nobody heard for five timeouts

    stalled.tick(1000 + 5 * TIMEOUT, stalled_ms=5 * TIMEOUT - 10)
    assert stalled.state.role is Role.LEADER  # it ran 10 ms of those five timeouts

    stalled.tick(1000 + 6 * TIMEOUT + 10)  # silent for a timeout of running time
    assert stalled.state.role is Role.FOLLOWER and stalled.state.term == 1


def test_a_stall_does_not_lengthen_the_leader_lease(h):
    leader = h.core("a")
    h.elect(leader, now_ms=1000)
    [beat] = h.messages(leader.tick(1000 + 10), Heartbeat, to="b")
    h.ack(leader, "b", 1)
    leader.receive(HeartbeatResponse(sender="b", term=1, context=beat.context))
    expiry = leader.role.lease_expiry_ms()
    assert expiry is not None
    leader.tick(1000 + 3 * TIMEOUT, stalled_ms=3 * TIMEOUT - 20)
    assert leader.state.role is Role.LEADER
    assert leader.role.lease_expiry_ms() == expiry
    assert expiry < leader.now_ms  # the lease ran out during the stall; reads must ask


def test_a_stopped_follower_neither_campaigns_nor_grants_votes_when_it_resumes(h):
    ask = PreVote(sender="c", term=2, last_log_index=9, last_log_term=1)
    stalled, control, voter = h.core("a"), h.core("a"), h.core("a")
    for follower in (stalled, control, voter):
        follower.tick(50)
        follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    control_effects = control.tick(50 + 5 * TIMEOUT)
    assert control.state.role is Role.PRE_CANDIDATE and h.messages(control_effects, PreVote)
    voter.tick(50 + TIMEOUT + 1)
    [grant] = h.messages(voter.receive(ask), PreVoteResponse, to="c")
    assert grant.granted  # the leader was silent for a timeout of running time

    effects = stalled.tick(50 + 5 * TIMEOUT, stalled_ms=5 * TIMEOUT - 10)
    assert stalled.state.role is Role.FOLLOWER and not h.of(effects, Send)
    assert stalled.receive(ask) == []  # it still counts the leader as recently heard

    stalled.tick(50 + 7 * TIMEOUT + 10)  # two timeouts of running time: past any deadline
    assert stalled.state.role is Role.PRE_CANDIDATE
