"""The leader: commit rule (Figure 8), durability of its own vote, CheckQuorum, batching,
pipelining, snapshots for lagging followers, ReadIndex rounds and leases."""

from __future__ import annotations

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import (
    Apply,
    NotLeader,
    ProposalAccepted,
    QuorumLost,
    ReadReady,
    Refused,
    Reject,
    TakeSnapshot,
)
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import ChangeAction, MembershipChange
from dref.actors.consensus.messages import (
    AppendEntries,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
)
from dref.actors.consensus.node_state import Role

FIVE = ("a", "b", "c", "d", "e")


def test_figure_8_old_term_entry_commits_only_with_a_current_term_entry(h):
    old = (LogEntry(1, 1), LogEntry(2, 2))  # entry 2 from term 2 was never committed
    leader = h.core("a", voters=FIVE, durable=DurableState(term=3, entries=old))
    h.elect(leader)
    assert leader.state.term == 4 and leader.log.entry(3).kind is EntryKind.NOOP
    h.ack(leader, "b", 2)
    h.ack(leader, "c", 2)  # a majority holds entry 2, but it is from an older term
    assert leader.state.commit_index == 0
    h.ack(leader, "b", 3)
    effects = h.ack(leader, "c", 3)
    assert leader.state.commit_index == 3
    [applied] = h.of(effects, Apply)
    assert [e.index for e in applied.entries] == [1, 2, 3]


def test_leader_counts_itself_only_after_its_fsync(h):
    leader = h.core("a")
    h.elect(leader)
    effects = leader.propose(b"x", request_id=7)
    assert ProposalAccepted(7, 2, 1) in effects
    h.ack(leader, "b", 2)
    assert leader.state.commit_index == 1  # b holds 2, but a has not fsynced it yet
    leader.persisted(2, 1)
    assert leader.state.commit_index == 2


def test_proposal_on_follower_names_the_leader(h):
    follower = h.core("a")
    follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    assert follower.propose(b"x", 1) == [Reject(1, NotLeader("b"))]


def test_check_quorum_steps_down_a_leader_cut_off_from_the_majority(h):
    leader = h.core("a", voters=FIVE)
    h.elect(leader, now_ms=1000)
    h.ack(leader, "b", 1)
    leader.tick(1090)
    assert leader.state.role is Role.LEADER
    leader.tick(1101)  # only b answered within the election timeout: no quorum of 5
    assert leader.state.role is Role.FOLLOWER and leader.state.term == 1


def test_batching_and_pipelining_respect_limits(h):
    leader = h.core("a", max_entries_per_message=2, max_inflight=2)
    h.elect(leader)
    h.ack(leader, "b", 1)  # b matches: replicate state
    effects = []
    for n in range(7):
        effects += leader.propose(b"%d" % n, n)
    batches = [[e.index for e in m.entries] for m in h.messages(effects, AppendEntries, "b")]
    assert batches == [[2], [3, 4]]  # window of 2 filled; index 3 waited for a full message
    effects = h.ack(leader, "b", 4)  # frees the window
    batches = [[e.index for e in m.entries] for m in h.messages(effects, AppendEntries, "b")]
    assert batches == [[5, 6], [7, 8]]


def test_partial_batch_waits_for_the_answer_in_flight(h):
    leader = h.core("a", max_entries_per_message=64, max_inflight=8)
    h.elect(leader)
    h.ack(leader, "b", 1)
    effects = leader.propose(b"first", 1)
    assert [len(m.entries) for m in h.messages(effects, AppendEntries, "b")] == [1]
    held = []
    for n in range(5):
        held += leader.propose(b"%d" % n, 10 + n)
    assert h.messages(held, AppendEntries, "b") == []  # one in flight: the rest gathers
    effects = h.ack(leader, "b", 2)
    batches = [[e.index for e in m.entries] for m in h.messages(effects, AppendEntries, "b")]
    assert batches == [[3, 4, 5, 6, 7]]  # the answer releases them as one message


def test_proposals_of_one_turn_go_out_as_one_append_per_peer(h):
    leader = h.core("a", max_entries_per_message=3)
    h.elect(leader)
    h.ack(leader, "b", 1)
    effects = leader.propose_many([(b"%d" % n, 10 + n) for n in range(4)])
    accepted = h.of(effects, ProposalAccepted)
    assert [(a.request_id, a.index) for a in accepted] == [(10, 2), (11, 3), (12, 4), (13, 5)]
    batches = [[e.index for e in m.entries] for m in h.messages(effects, AppendEntries, "b")]
    assert batches == [[2, 3, 4]]  # one full message, not one per proposal; 5 waits for it
    assert [e.command for e in leader.log.entries_between(2, 5)] == [b"0", b"1", b"2", b"3"]


def test_proposals_of_one_turn_on_a_follower_are_each_refused(h):
    follower = h.core("a")
    follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    assert follower.propose_many([(b"x", 1), (b"y", 2)]) == [
        Reject(1, NotLeader("b")),
        Reject(2, NotLeader("b")),
    ]


def test_lagging_follower_gets_a_snapshot(h):
    leader = h.core("a", snapshot_every=2)
    h.elect(leader)
    effects = leader.propose(b"x", 1) + leader.persisted(2, 1)
    effects += h.ack(leader, "c", 2)
    effects += leader.applied(2)
    assert TakeSnapshot(2) in effects
    leader.snapshot_taken(2, 1, b"image")
    assert leader.log.snapshot_index == 2
    alive = HeartbeatResponse(sender="b", term=1, context=0)  # b answers; its probe is resent
    [snapshot] = h.messages(leader.receive(alive), InstallSnapshot, to="b")
    assert (snapshot.last_index, snapshot.data, snapshot.done) == (2, b"image", True)


def test_snapshot_goes_in_chunks_and_resumes_from_the_acknowledged_offset(h):
    leader = h.core("a", snapshot_every=2, snapshot_chunk_bytes=2, check_quorum=False)
    h.elect(leader)
    leader.propose(b"x", 1)
    leader.persisted(2, 1)
    h.ack(leader, "c", 2)
    leader.applied(2)
    leader.snapshot_taken(2, 1, b"image")
    alive = HeartbeatResponse(sender="b", term=1, context=0)
    [first] = h.messages(leader.receive(alive), InstallSnapshot, to="b")
    assert (first.offset, first.data, first.done) == (0, b"im", False)

    def ack(chunk_offset: int, next_offset: int) -> list[InstallSnapshot]:
        response = InstallSnapshotResponse(
            sender="b",
            term=1,
            match_index=0,
            snapshot_index=2,
            chunk_offset=chunk_offset,
            next_offset=next_offset,
        )
        return h.messages(leader.receive(response), InstallSnapshot, to="b")

    [second] = ack(0, 2)
    assert (second.offset, second.data, second.done) == (2, b"ag", False)
    assert ack(0, 2) == []  # a duplicate answer to an older chunk changes nothing
    # The second chunk is lost; once the follower has been silent on it for an election
    # timeout, its next heartbeat answer makes the leader resend from offset 2, not 0.
    leader.tick(leader.now_ms + leader.config.election_timeout_ms + 1)
    [again] = h.messages(leader.receive(alive), InstallSnapshot, to="b")
    assert (again.offset, again.data) == (2, b"ag")
    [last] = ack(2, 4)
    assert (last.offset, last.data, last.done) == (4, b"e", True)


def read_ready_ids(effects):
    return [e.request_id for e in effects if isinstance(e, ReadReady)]


def established_leader(h, **overrides):
    leader = h.core("a", **overrides)
    h.elect(leader, now_ms=1000)
    h.ack(leader, "b", 1)
    assert leader.state.commit_index == 1
    return leader


def test_read_index_waits_for_a_quorum_round_and_batches_reads(h):
    leader = established_leader(h)
    effects = leader.read(1, ReadPolicy.READ_INDEX, 1001)
    [beat] = h.messages(effects, Heartbeat, to="b")
    assert not read_ready_ids(effects)
    later = leader.read(2, ReadPolicy.READ_INDEX, 1002)
    later += leader.read(3, ReadPolicy.READ_INDEX, 1002)
    assert not h.messages(later, Heartbeat)  # they wait for the next round
    effects = leader.receive(HeartbeatResponse(sender="b", term=1, context=beat.context))
    assert read_ready_ids(effects) == [1]
    [next_beat] = h.messages(effects, Heartbeat, to="c")
    effects = leader.receive(HeartbeatResponse(sender="c", term=1, context=next_beat.context))
    assert read_ready_ids(effects) == [2, 3]
    assert all(e.read_index == 1 for e in effects if isinstance(e, ReadReady))


def test_read_waits_until_the_leader_commits_in_its_term(h):
    leader = h.core("a")
    h.elect(leader)
    effects = leader.read(1, ReadPolicy.READ_INDEX, 1000)
    assert not h.messages(effects, Heartbeat) and not read_ready_ids(effects)
    effects = h.ack(leader, "b", 1)  # the no-op commits; the read round starts
    [beat] = h.messages(effects, Heartbeat, to="b")
    effects = leader.receive(HeartbeatResponse(sender="b", term=1, context=beat.context))
    assert read_ready_ids(effects) == [1]


def test_lease_read_is_immediate_while_the_lease_holds_and_refused_after(h):
    leader = established_leader(h)
    [beat] = h.messages(leader.tick(1010), Heartbeat, to="b")
    leader.receive(HeartbeatResponse(sender="b", term=1, context=beat.context))
    assert read_ready_ids(leader.read(1, ReadPolicy.LEASE, 1099)) == [1]  # 1010 + 100 - 10
    effects = leader.read(2, ReadPolicy.LEASE, 1100)
    assert not read_ready_ids(effects)  # the lease lapsed: a quorum round is needed
    assert h.messages(effects, Heartbeat)


def test_pending_reads_fail_when_the_leader_loses_its_quorum(h):
    leader = established_leader(h)
    leader.read(1, ReadPolicy.READ_INDEX, 1001)
    effects = leader.tick(1200)
    assert Reject(1, QuorumLost()) in effects
    assert leader.state.role is Role.FOLLOWER


def test_follower_read_is_forwarded_to_the_leader(h):
    follower = h.core("a")
    follower.receive(Heartbeat(sender="b", term=1, commit=0, context=1))
    [request] = h.messages(follower.read(9, ReadPolicy.READ_INDEX, 10), ReadIndexRequest, "b")
    assert request.context == 9
    effects = follower.receive(
        ReadIndexResponse(sender="b", term=1, context=9, success=True, read_index=4)
    )
    assert effects == [ReadReady(9, 4)]


def test_a_learner_is_promoted_only_once_it_holds_the_configuration_in_force(h):
    leader = h.core("a", voters=("a", "b"))
    h.elect(leader)
    h.ack(leader, "b", 1)
    assert leader.state.commit_index == 1
    effects = leader.change_membership(1, MembershipChange(ChangeAction.ADD_LEARNER, "d", "d:1"))
    [accepted] = h.of(effects, ProposalAccepted)
    leader.persisted(accepted.index, accepted.term)
    h.ack(leader, "b", accepted.index)
    assert leader.state.commit_index == accepted.index  # well within the allowed lag
    promote = MembershipChange(ChangeAction.PROMOTE, "d")
    [refused] = h.of(leader.change_membership(2, promote), Reject)
    assert isinstance(refused.reason, Refused) and "catching up" in refused.reason.why
    h.ack(leader, "d", accepted.index)  # d now knows the voters it would elect with
    assert h.of(leader.change_membership(3, promote), ProposalAccepted)


def test_passing_obstacles_are_retryable_refusals_and_bad_changes_are_not(h):
    leader = h.core("a", voters=("a", "b"))
    h.elect(leader)  # elected, but its no-op has not committed yet
    learner = MembershipChange(ChangeAction.ADD_LEARNER, "d", "d:1")
    [early] = h.of(leader.change_membership(1, learner), Reject)
    assert early.reason == Refused("the leader has not committed an entry of its term yet", True)
    h.ack(leader, "b", 1)
    [accepted] = h.of(leader.change_membership(2, learner), ProposalAccepted)
    other = MembershipChange(ChangeAction.ADD_LEARNER, "e", "e:1")
    [busy] = h.of(leader.change_membership(3, other), Reject)
    assert busy.reason.retryable and "not committed yet" in busy.reason.why
    unknown = MembershipChange(ChangeAction.REMOVE, "z")
    [invalid] = h.of(leader.change_membership(4, unknown), Reject)
    assert isinstance(invalid.reason, Refused) and not invalid.reason.retryable
