"""A founding voter that starts with no Raft state (a first start, or a wiped data
directory) votes only once enough peers showed term 0; in a cluster that ran before it
refuses, having written nothing. A node started empty with --join votes only once it was
seen as a learner. Unit tests of both checks, and simulator runs."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from dref.actors.consensus.blank_start import BlankRefused, JoinAdmitted, JoinRefused
from dref.actors.consensus.config import RaftConfig
from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import PersistHardState
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import Membership
from dref.actors.consensus.messages import (
    AppendEntries,
    Heartbeat,
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore
from testkit.simulator import SimConfig, Simulation

CONFIG = RaftConfig(heartbeat_interval_ms=10, election_timeout_ms=100, max_clock_drift_ms=10)


def blank(node_id: str = "a", voters: tuple[str, ...] = ("a", "b", "c")) -> RaftCore:
    return RaftCore(node_id, voters, config=CONFIG, rng=random.Random(3), blank_start=True)


def pre_vote(sender: str, term: int = 1) -> PreVote:
    return PreVote(sender=sender, term=term, last_log_index=0, last_log_term=0)


def test_a_wiped_voter_cannot_vote_again_in_the_term_it_voted_in(h) -> None:
    # Before the wipe "a" voted for "b" in term 1, and b leads term 1 with that vote.
    # Without the guard, the empty "a" would give "c" a second vote in term 1.
    unguarded = RaftCore("a", ("a", "b", "c"), config=CONFIG, rng=random.Random(3))
    unguarded.tick(500)
    granted = h.messages(
        unguarded.receive(RequestVote(sender="c", term=1, last_log_index=0, last_log_term=0)),
        RequestVoteResponse,
    )
    assert granted and granted[0].granted  # the hazard is real

    guarded = blank()
    guarded.tick(500)
    request = RequestVote(sender="c", term=1, last_log_index=0, last_log_term=0)
    effects = guarded.receive(request)
    [answer] = h.messages(effects, RequestVoteResponse)
    assert not answer.granted and answer.term == 0
    assert not h.of(effects, PersistHardState)
    assert guarded.state.term == 0 and guarded.state.voted_for is None
    # c is in term 1: with three voters every peer must be seen at term 0, so it refuses.
    assert guarded.blank_start is not None and guarded.blank_start.refused_by == ("c", 1)
    assert guarded.receive(Heartbeat(sender="b", term=1, commit=3, context=1)) == []
    append = AppendEntries(
        sender="b", term=1, prev_index=0, prev_term=0, entries=(), leader_commit=0
    )
    assert guarded.receive(append) == []  # it stores nothing, so a restart is blank again
    assert guarded.state.term == 0 and guarded.log.last_index == 0


def test_the_guard_clears_once_every_peer_of_three_showed_term_zero(h) -> None:
    core = blank()
    core.tick(500)
    assert core.state.role is Role.PRE_CANDIDATE  # its PreVotes probe the peers
    [refusal] = h.messages(core.receive(pre_vote("b")), PreVoteResponse)
    assert not refusal.granted and core.blank_start is not None
    # c's refusal of our probe at term 0 is the second peer seen at term 0: cleared.
    core.receive(PreVoteResponse(sender="c", term=0, granted=False))
    assert core.blank_start is None
    [grant] = h.messages(core.receive(pre_vote("b")), PreVoteResponse)
    assert grant.granted


def test_five_voters_need_every_peer_at_term_zero_and_refuse_when_one_moved_on() -> None:
    core = blank("a", ("a", "b", "c", "d", "e"))
    core.receive(pre_vote("b"))
    core.receive(PreVoteResponse(sender="c", term=1, granted=True))  # c granted term 1: c at 0
    core.receive(pre_vote("d"))
    assert core.blank_start is not None and not core.blank_start.cleared
    assert core.blank_start.refused_by is None
    core.receive(PreVoteResponse(sender="e", term=4, granted=False))
    assert core.blank_start is not None and core.blank_start.refused_by == ("e", 4)


def test_five_voters_clear_once_every_peer_was_seen_at_term_zero() -> None:
    core = blank("a", ("a", "b", "c", "d", "e"))
    for peer in "bcde":
        core.receive(pre_vote(peer))
    assert core.blank_start is None or core.blank_start.cleared


def test_a_single_voter_is_never_guarded() -> None:
    assert blank("a", ("a",)).blank_start is None


@pytest.mark.parametrize("seed", range(6))
def test_a_new_cluster_of_blank_nodes_elects_a_leader_and_every_guard_clears(seed: int) -> None:
    sim = Simulation(seed, SimConfig(clients=0, nodes=3 if seed % 2 else 5, blank_start=True))
    sim.start()
    sim.advance(3000)
    assert sim.leader().core is not None
    assert all(n.core is not None and n.core.blank_start is None for n in sim.nodes.values())


@pytest.mark.parametrize("seed", range(5))
def test_a_wiped_follower_refuses_writes_nothing_and_loses_no_acknowledged_write(
    seed: int,
) -> None:
    config = SimConfig(clients=0, blank_start=True)
    sim = Simulation(seed, replace(config, raft=replace(config.raft, snapshot_every=0)))
    sim.start()
    sim.advance(1000)
    leader = sim.leader().node_id
    writes = [sim.write("k", value) for value in range(5)]
    sim.advance(300)
    assert all(sim.ops[w].outcome == "ok" for w in writes)
    acknowledged = sim.nodes[leader].kv["k"]  # the writes were applied in some order

    victim = next(n for n in sim.ids if n != leader)
    sim.wipe(victim)
    sim.advance(2000)
    wiped = sim.nodes[victim]
    assert wiped.core is not None and wiped.core.blank_start is not None
    assert wiped.core.blank_start.refused_by is not None
    assert wiped.core.state.term == 0 and wiped.core.state.voted_for is None
    assert wiped.disk.recover() == DurableState()  # nothing written: a restart refuses again

    # The leader dies: the survivor cannot be elected with the wiped node's vote, so the
    # entries only the leader and the survivor hold cannot be outvoted.
    sim._crash_node(sim.nodes[leader])  # restarts from its disk a little later
    sim.advance(3000)
    new_leader = sim.leader()
    assert new_leader.node_id != victim and new_leader.kv["k"] == acknowledged
    assert wiped.disk.recover() == DurableState()


def test_a_leaders_heartbeat_is_enough_to_refuse() -> None:
    core = blank()
    assert core.receive(Heartbeat(sender="b", term=2, commit=7, context=1)) == []
    assert core.blank_start is not None and core.blank_start.refused_by == ("b", 2)
    assert core.state.leader_id is None and core.state.term == 0


def joiner() -> RaftCore:
    return RaftCore("d", (), config=CONFIG, rng=random.Random(3), join_check=True)


def config_entry(index: int, voters: tuple[str, ...], learners: tuple[str, ...]) -> LogEntry:
    return LogEntry(index, 1, Membership.of(voters, learners).encode(), EntryKind.CONFIG)


def append(entries: tuple[LogEntry, ...], prev: int, commit: int) -> AppendEntries:
    return AppendEntries(
        sender="a",
        term=1,
        prev_index=prev,
        prev_term=1 if prev else 0,
        entries=entries,
        leader_commit=commit,
    )


def test_a_joining_node_seen_as_a_learner_is_admitted() -> None:
    core = joiner()
    noop = LogEntry(1, 1, b"", EntryKind.NOOP)
    core.receive(append((noop, config_entry(2, ("a", "b", "c"), ("d",))), 0, 2))
    assert core.start_check == JoinAdmitted() and not core.awaiting_admission


def test_a_joining_node_already_a_voter_refuses_and_never_votes(h) -> None:
    # Its history shows it added as a learner once, but that is old: the configuration in
    # force when its log covers the leader's commit lists it as a voter. It lost its state.
    core = joiner()
    noop = LogEntry(1, 1, b"", EntryKind.NOOP)
    history = (noop, config_entry(2, ("a", "b"), ("d",)))
    core.receive(append(history, 0, 3))
    assert core.start_check is None and core.awaiting_admission  # not caught up yet
    core.receive(append((config_entry(3, ("a", "b", "d"), ()),), 2, 3))
    assert core.start_check == JoinRefused(3)
    [answer] = h.messages(
        core.receive(RequestVote(sender="b", term=2, last_log_index=9, last_log_term=1)),
        RequestVoteResponse,
    )
    assert not answer.granted and core.state.voted_for is None and core.state.term == 1
    assert not core.may_campaign()


def test_with_discovery_a_refused_blank_start_waits_to_be_added_as_a_learner() -> None:
    core = RaftCore(
        "d",
        ("a", "b", "c", "d"),
        config=CONFIG,
        rng=random.Random(3),
        blank_start=True,
        blank_start_may_join=True,
    )
    core.receive(Heartbeat(sender="a", term=1, commit=2, context=1))
    core.receive(Heartbeat(sender="b", term=1, commit=2, context=1))
    assert core.start_check == BlankRefused("a", 1) and core.awaiting_admission
    noop = LogEntry(1, 1, b"", EntryKind.NOOP)
    # Caught up with only its own start-up view of the members: nothing is proven yet.
    core.receive(append((noop,), 0, 1))
    assert core.start_check == BlankRefused("a", 1) and core.awaiting_admission
    core.receive(append((config_entry(2, ("a", "b", "c"), ("d",)),), 1, 2))
    assert core.start_check == JoinAdmitted() and not core.awaiting_admission


def test_a_node_waiting_to_be_admitted_never_starts_an_election() -> None:
    core = RaftCore(
        "d",
        ("a", "b", "d"),
        config=CONFIG,
        rng=random.Random(3),
        blank_start=True,
        blank_start_may_join=True,
    )
    core.tick(1)
    assert core.state.role is Role.PRE_CANDIDATE  # probing
    core.receive(Heartbeat(sender="a", term=3, commit=2, context=1))
    assert core.awaiting_admission
    core.receive(PreVoteResponse(sender="b", term=1, granted=True))  # a late grant
    for now in range(100, 3000, 100):
        assert not any(isinstance(e, PersistHardState) for e in core.tick(now))
    assert core.state.role is Role.FOLLOWER and core.state.voted_for is None
