"""`RaftCore`: one node's consensus state machine. Events in, ordered effects out.

The core owns the term/vote, the in-memory log and the current role object, and routes
each event to that role. It never blocks, reads a clock or touches a disk: time comes in
through `tick(now_ms)` and every side effect goes out as an `Effect` (see `effects`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from dref.actors.consensus.blank_start import (
    BlankRefused,
    BlankStart,
    JoinAdmitted,
    JoinCheck,
    JoinRefused,
    StartCheckOutcome,
)
from dref.actors.consensus.candidate import CandidateRole
from dref.actors.consensus.config import RaftConfig, ReadPolicy
from dref.actors.consensus.durable_state import (
    BufferedSnapshot,
    DurableState,
    IncomingSnapshot,
    Snapshot,
    SnapshotImage,
)
from dref.actors.consensus.effects import (
    AppendToLog,
    Apply,
    Effect,
    NotLeader,
    PersistHardState,
    QuorumLost,
    Refused,
    Reject,
    RestoreSnapshot,
    Send,
    TakeSnapshot,
    TransferCompleted,
    TruncateLog,
)
from dref.actors.consensus.follower import FollowerRole
from dref.actors.consensus.leader import LeaderRole
from dref.actors.consensus.log import InMemoryLog
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import Membership, MembershipChange
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    PreVote,
    PreVoteResponse,
    RequestId,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from dref.actors.consensus.node_state import NodeState, Role
from dref.actors.consensus.removal import RemovalNotice
from dref.actors.consensus.role import RoleLogic
from dref.actors.consensus.transfer import PendingTransfer
from dref.actors.consensus.voting import handle_vote_request

LEADER_MESSAGES = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow)
"""Messages only a leader sends; accepted even from a leader outside our configuration
(a node joining the cluster knows no members yet)."""


class RaftCore:
    """One Raft node. Call an event method; execute the returned effects in order."""

    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        *,
        config: RaftConfig,
        rng: random.Random,
        now_ms: int = 0,
        learners: Sequence[str] = (),
        durable: DurableState | None = None,
        addresses: Mapping[str, str] | None = None,
        blank_start: bool = False,
        join_check: bool = False,
        blank_start_may_join: bool = False,
        receive_snapshot: Callable[[int, int], IncomingSnapshot] = BufferedSnapshot,
    ) -> None:
        """`blank_start`: this founding voter starts with no Raft state, maybe after a wipe;
        it votes only once `BlankStart` clears it. `join_check`: it started empty to join;
        it votes only once `JoinCheck` admits it (see both). `blank_start_may_join`: when
        `BlankStart` refuses, wait for `JoinCheck` instead (service discovery adds a new
        node, started with its peers, as a learner). `receive_snapshot(index, term)`: where a
        leader's snapshot is collected (a node writes it to a file)."""
        durable = durable or DurableState()
        snapshot = durable.snapshot
        self.config = config
        self.rng = rng
        self.receive_snapshot = receive_snapshot
        self.now_ms = now_ms
        self.base_membership = (
            snapshot.membership if snapshot else Membership.of(voters, learners, addresses or {})
        )
        """The configuration at the log's base (the snapshot, or the one we started with)."""
        self.config_entries: list[tuple[int, Membership]] = []
        """(index, configuration) of every CONFIG entry in the log, oldest first."""
        self.state = NodeState(
            node_id=node_id, voters=frozenset(), term=durable.term, voted_for=durable.voted_for
        )
        self.transfer: PendingTransfer | None = None
        base_index = snapshot.index if snapshot else 0
        self.log = InMemoryLog(base_index, snapshot.term if snapshot else 0, durable.entries)
        self._track_config_entries(durable.entries)
        self.snapshot: Snapshot | None = snapshot
        self.state.commit_index = self.state.applied_index = base_index
        self.apply_emitted_index = base_index
        self.snapshot_requested = False
        self.leader_contact_ms = now_ms  # a restarted node honours any lease it may have acked
        self.election_deadline_ms = now_ms
        self._effects: list[Effect] = []
        self._emitted_hard_state = (durable.term, durable.voted_for)
        self.role: RoleLogic = FollowerRole(self)
        self.removal: RemovalNotice | None = None
        """The latest notice that a committed configuration leaves us out (see `removed`)."""
        guard = BlankStart(node_id, voters) if blank_start else None
        self.blank_start = None if guard is None or guard.cleared else guard
        """While set, this node grants no vote, ignores leaders and keeps term 0."""
        self.join_check = JoinCheck() if join_check else None
        """While set and not admitted, this node grants no vote and does not campaign."""
        self._blank_start_may_join = blank_start_may_join
        self._blank_refused: BlankRefused | None = None
        """`BlankStart`'s refusal, kept once it handed over to `JoinCheck`."""
        self._refresh_membership()
        self.reset_election_timer()
        if self.blank_start is not None:
            self.election_deadline_ms = now_ms  # probe the peers' terms on the first tick

    # ----------------------------------------------------------------- events in

    def tick(self, now_ms: int, stalled_ms: int = 0) -> list[Effect]:
        """Time is now `now_ms` (never goes backwards): fire election and heartbeat timers.

        `stalled_ms` > 0: this node did not run for that long just before (a GC pause,
        SIGSTOP, a starved VM). Its peers could not reach it meanwhile, so that time does
        not count against them: a follower's election deadline and leader contact, and a
        leader's record of when each voter was last heard, move on by it (at most to now).
        Leases are not moved: they bound real time, and this only delays elections.
        """
        self.now_ms = max(self.now_ms, now_ms)
        if stalled_ms > 0:
            self.election_deadline_ms += stalled_ms
            self.leader_contact_ms = min(self.now_ms, self.leader_contact_ms + stalled_ms)
            if isinstance(self.role, LeaderRole):
                self.role.forgive_silence(stalled_ms)
        self.role.tick()
        return self._ready()

    def receive(self, message: Message) -> list[Effect]:
        """A message from a peer arrived."""
        self._dispatch(message)
        return self._ready()

    def propose(self, command: bytes, request_id: RequestId) -> list[Effect]:
        """Replicate `command`; answered by ProposalAccepted or Reject."""
        self.role.propose(command, request_id)
        return self._ready()

    def propose_many(self, proposals: Sequence[tuple[bytes, RequestId]]) -> list[Effect]:
        """`propose` each (command, request_id) in order, as one turn: a leader appends them
        together and sends each peer one AppendEntries for all of them."""
        role = self.role
        if isinstance(role, LeaderRole):
            role.propose_many(proposals)
        else:
            for command, request_id in proposals:
                role.propose(command, request_id)
        return self._ready()

    def read(self, request_id: RequestId, policy: ReadPolicy, now_ms: int) -> list[Effect]:
        """Ask for a linearizable read point; answered by ReadReady or Reject.

        `now_ms` is the caller's clock right now: a lease must be judged against the true
        time, not the last tick (the process may have been paused since).
        """
        self.now_ms = max(self.now_ms, now_ms)
        self.role.read(request_id, policy)
        return self._ready()

    def transfer_leadership(self, request_id: RequestId, target: str | None) -> list[Effect]:
        """Hand leadership to `target` (None: the most up-to-date voter); answered by
        TransferCompleted, or a Reject when this node is not the leader or it fails."""
        if isinstance(self.role, LeaderRole):
            self.role.transfer(request_id, target)
        else:
            self.emit(Reject(request_id, NotLeader(self.state.leader_id)))
        return self._ready()

    def change_membership(self, request_id: RequestId, change: MembershipChange) -> list[Effect]:
        """Append a one-server configuration change; answered like a proposal (the change is
        done when an Apply carries the accepted entry) or by a Reject."""
        if isinstance(self.role, LeaderRole):
            self.role.change_membership(request_id, change)
        else:
            self.emit(Reject(request_id, NotLeader(self.state.leader_id)))
        return self._ready()

    def persisted(self, up_to_index: int, term: int) -> list[Effect]:
        """The storage writer fsynced the log through (up_to_index, term)."""
        if self.log.mark_durable(up_to_index, term) and isinstance(self.role, LeaderRole):
            self.role.maybe_commit()
        return self._ready()

    def applied(self, index: int) -> list[Effect]:
        """The state machine has applied through `index`; may ask for a snapshot."""
        state = self.state
        state.applied_index = max(state.applied_index, min(index, self.apply_emitted_index))
        every = self.config.snapshot_every
        behind = state.applied_index - self.log.snapshot_index
        if every and not self.snapshot_requested and behind >= every:
            self.snapshot_requested = True
            self._effects.append(TakeSnapshot(state.applied_index))
        return self._ready()

    def snapshot_taken(self, index: int, term: int, data: SnapshotImage) -> list[Effect]:
        """The caller durably saved a snapshot through (index, term); compact the log."""
        self.snapshot_requested = False
        if index <= self.log.snapshot_index:
            return self._ready()
        if index > self.apply_emitted_index or self.log.term_at(index) != term:
            raise ValueError(f"snapshot at ({index}, {term}) does not match the applied log")
        membership = self.membership_at(index)
        self.log.compact_through(index)
        self.log.durable_index = max(self.log.durable_index, index)
        self.base_membership = membership
        self.config_entries = [(i, m) for i, m in self.config_entries if i > index]
        self.snapshot = Snapshot(
            index, term, data, membership.voters, membership.learners, membership.addresses
        )
        return self._ready()

    # ------------------------------------------------------------------ membership

    @property
    def membership(self) -> Membership:
        """The configuration in force: the newest in the log, appended or not yet committed."""
        return self.config_entries[-1][1] if self.config_entries else self.base_membership

    @property
    def config_index(self) -> int:
        """Index of the entry that set the configuration in force (the log base if none)."""
        return self.config_entries[-1][0] if self.config_entries else self.log.snapshot_index

    def membership_at(self, index: int) -> Membership:
        """The configuration in force once the log is applied through `index`."""
        found = self.base_membership
        for entry_index, membership in self.config_entries:
            if entry_index > index:
                break
            found = membership
        return found

    @property
    def removed(self) -> RemovalNotice | None:
        """The removal notice while it still holds: the configuration it names is newer
        than ours, or is ours and leaves us out. None once our log reaches a newer one."""
        notice = self.removal
        if notice is None:
            return None
        if notice.config_index > self.config_index:
            return notice
        if notice.config_index == self.config_index and self.node_id not in self.membership.members:
            return notice
        return None

    @property
    def start_check(self) -> StartCheckOutcome | None:
        """What the checks of an empty start decided so far (None: nothing, or no check)."""
        check = self.join_check
        if check is not None and check.refused_at:
            return JoinRefused(check.refused_at)
        if check is not None and check.admitted:
            return JoinAdmitted()
        guard = self.blank_start
        if guard is not None and guard.refused_by is not None:
            return BlankRefused(*guard.refused_by)
        return self._blank_refused

    @property
    def awaiting_admission(self) -> bool:
        """Started empty to join and not yet seen as a learner: no votes, no campaign."""
        check = self.join_check
        return check is not None and not check.admitted

    def may_campaign(self) -> bool:
        """Voters campaign; so does a node whose not-yet-committed config removed it (it may
        hold the only copy of that entry; the voters of that config elect it, it steps
        down once the entry commits, and nodes that know of the removal ignore it).
        A node told that a committed configuration removed it does not."""
        state = self.state
        if self.removed is not None or self.awaiting_admission:
            return False
        if state.is_voter:
            return True
        return (
            state.node_id not in self.membership.members
            and self.config_index > state.commit_index
            and bool(self.membership.voters)
        )

    def _track_config_entries(self, entries: Sequence[LogEntry]) -> bool:
        """Record the CONFIG entries among `entries`; returns whether there were any."""
        configs = [
            (e.index, Membership.decode(e.command)) for e in entries if e.kind is EntryKind.CONFIG
        ]
        self.config_entries.extend(configs)
        return bool(configs)

    def _refresh_membership(self) -> None:
        membership = self.membership
        self.state.voters, self.state.learners = membership.voters, membership.learners
        if isinstance(self.role, LeaderRole):
            self.role.membership_changed()

    # --------------------------------------------------- helpers used by the roles

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.state.node_id

    def send(self, to: str, message: Message, *, after_persist: bool = True) -> None:
        """Queue a message; by default it waits until all storage effects so far are durable."""
        self._effects.append(Send(to, message, after_persist))

    def emit(self, effect: Effect) -> None:
        """Queue any other effect."""
        self._effects.append(effect)

    def append_local(self, entries: Sequence[LogEntry]) -> None:
        """Append to the in-memory log and ask the storage writer to do the same."""
        self.log.append(entries)
        self._effects.append(AppendToLog(tuple(entries)))
        if self._track_config_entries(entries):
            self._refresh_membership()

    def truncate_local(self, from_index: int) -> None:
        """Drop uncommitted entries from `from_index` in memory and on disk."""
        if from_index <= self.state.commit_index:
            raise RuntimeError(f"refusing to truncate committed entry {from_index}")
        self.log.truncate_from(from_index)
        self._effects.append(TruncateLog(from_index))
        kept = [(i, m) for i, m in self.config_entries if i < from_index]
        if len(kept) != len(self.config_entries):
            self.config_entries = kept
            self._refresh_membership()

    def restore_snapshot(self, snapshot: Snapshot) -> None:
        """Replace log and state machine with a snapshot received from the leader."""
        self.log.reset_to_snapshot(snapshot.index, snapshot.term)
        self.base_membership = snapshot.membership
        self.config_entries = []
        self._refresh_membership()
        state = self.state
        state.commit_index = state.applied_index = snapshot.index
        self.apply_emitted_index = snapshot.index
        self.snapshot = snapshot
        self.snapshot_requested = False
        self._effects.append(
            RestoreSnapshot(
                snapshot.data,
                snapshot.index,
                snapshot.term,
                snapshot.voters,
                snapshot.learners,
                snapshot.addresses,
            )
        )

    def commit_to(self, index: int) -> None:
        """Move the commit index forward (never back); Apply follows in the same batch."""
        if index > self.state.commit_index:
            self.state.commit_index = index

    def reset_election_timer(self) -> None:
        """Draw a fresh randomized election deadline in [T, 2T)."""
        timeout = self.config.election_timeout_ms
        self.election_deadline_ms = self.now_ms + self.rng.randrange(timeout, 2 * timeout)

    def in_lease(self) -> bool:
        """Whether this node must ignore vote requests: it is, or recently heard from, a leader."""
        if not self.config.check_quorum:
            return False
        if self.state.role is Role.LEADER:
            return True
        return self.now_ms - self.leader_contact_ms < self.config.election_timeout_ms

    def become_follower(
        self, term: int, leader_id: str | None, reason: NotLeader | QuorumLost | None = None
    ) -> None:
        """Follow `leader_id` (None when unknown) in `term`, adopting the term if newer.

        The election timer keeps running (as in the Raft paper: only leader contact and a
        granted vote reset it), so a stale candidate's vote requests cannot keep everyone's
        timers in lockstep. A deposed leader starts a fresh timeout.
        """
        state = self.state
        if term > state.term:
            state.term, state.voted_for = term, None
        self.role.close(reason or NotLeader(leader_id))
        if state.role is Role.LEADER:
            self.reset_election_timer()
        state.role, state.leader_id = Role.FOLLOWER, leader_id
        self.role = FollowerRole(self)

    def campaign(self, *, pre_vote: bool, force: bool = False) -> None:
        """Start an election: PreVote first when configured, else a real vote at term + 1.

        `force` (a leader transfer's TimeoutNow) asks voters to ignore their leader lease.
        Under the blank-start guard it is always a PreVote: a probe of the peers' terms.
        A node that may not campaign (told it was removed, or waiting to be admitted)
        follows instead, whichever role asked.
        """
        state = self.state
        if not self.may_campaign():
            if state.role is not Role.FOLLOWER:
                self.become_follower(state.term, None)
            return
        self.role.close(NotLeader(None))
        if self.blank_start is not None or (pre_vote and self.config.pre_vote):
            state.role = Role.PRE_CANDIDATE
        else:
            state.role = Role.CANDIDATE
            state.term += 1
            state.voted_for = state.node_id
        state.leader_id = None
        self.role = candidate = CandidateRole(
            self, pre_vote=state.role is Role.PRE_CANDIDATE, force=force
        )
        self.reset_election_timer()
        candidate.start()

    def become_leader(self) -> None:
        """Won the election: take over replication and append this term's no-op."""
        state = self.state
        self.role.close(NotLeader(state.node_id))
        state.role, state.leader_id = Role.LEADER, state.node_id
        if self.transfer is not None:
            why = f"{state.node_id} was elected again; leadership did not move"
            self.emit(Reject(self.transfer.request_id, Refused(why)))
            self.transfer = None
        self.role = leader = LeaderRole(self)
        leader.start()

    # ----------------------------------------------------------------- internals

    def _dispatch(self, message: Message) -> None:
        state = self.state
        if self.blank_start is not None and not self._blank_start_clears(message):
            return
        known = message.sender in state.voters or message.sender in state.learners
        if not known and not self._hears_stranger(message):
            self._tell_removed(message)  # e.g. a removed node that does not know it
            return
        if isinstance(message, PreVoteResponse | RequestVoteResponse) and message.removed_at:
            self._heed_removal(message)
            return
        if isinstance(message, PreVote | RequestVote) and self.awaiting_admission:
            self._refuse_vote(message)
            return
        if message.term > state.term:
            forced = isinstance(message, RequestVote) and message.force
            if isinstance(message, PreVote | RequestVote) and self.in_lease() and not forced:
                if isinstance(message, PreVote) and state.term == 0:
                    self._answer_stale(message)  # a blank node may be probing (BlankStart)
                return
            if isinstance(message, PreVote) or (
                isinstance(message, PreVoteResponse) and message.granted
            ):
                pass  # a PreVote's term is hypothetical: it changes nothing
            else:
                leader = message.sender if isinstance(message, LEADER_MESSAGES) else None
                self.become_follower(message.term, leader)
        elif message.term < state.term:
            self._answer_stale(message)
            return
        if isinstance(message, PreVote | RequestVote):
            handle_vote_request(self, message)
            return
        if isinstance(message, LEADER_MESSAGES):
            if state.role is Role.LEADER:
                raise RuntimeError(f"two leaders in term {state.term}: {message.sender}")
            if state.role is not Role.FOLLOWER:
                self.become_follower(state.term, message.sender)
            state.leader_id = message.sender
            self.leader_contact_ms = self.now_ms
            self.reset_election_timer()
        self.role.step(message)
        if self.awaiting_admission and isinstance(message, AppendEntries | Heartbeat):
            self._judge_join(message)

    def _judge_join(self, message: AppendEntries | Heartbeat) -> None:
        """Once our log covers the commit index the leader states, judge our membership,
        if a configuration entry or snapshot set it."""
        claimed = message.leader_commit if isinstance(message, AppendEntries) else message.commit
        check = self.join_check
        if check is not None and self.state.commit_index >= claimed and self.config_index > 0:
            membership = self.membership  # from the log: our own start-up view proves nothing
            check.judge(self.node_id, membership.learners, membership.voters, self.config_index)

    def _hears_stranger(self, message: Message) -> bool:
        """Whether a message from a sender outside our configuration is handled.

        Leader messages are (a leader may be adding us). Vote requests are only while our
        configuration is not committed: it may then be a stale entry that a new leader will
        overwrite, leaving out voters of the current configuration, and ignoring their
        candidates could leave no electable node. Under a committed configuration a
        stranger is a removed node that does not know it; its vote requests would only
        bump terms and depose leaders, so they are ignored."""
        if isinstance(message, LEADER_MESSAGES):
            return True
        return isinstance(message, PreVote | RequestVote) and (
            self.config_index > self.state.commit_index
        )

    def _tell_removed(self, message: Message) -> None:
        """Answer a stranger's vote request under our committed configuration: it leaves
        the stranger out, so it was removed (or never added) and should stop campaigning.
        The answer changes nothing here."""
        if isinstance(message, PreVote | RequestVote) and self.config_index > 0:
            self._refuse_vote(message, removed_at=self.config_index)

    def _heed_removal(self, message: PreVoteResponse | RequestVoteResponse) -> None:
        """A member says its committed configuration leaves us out: stop campaigning while
        that configuration is newer than ours (an older notice is stale: ignore it, and so
        is one no newer than what we were told already)."""
        previous = self.removal
        if previous is not None and previous.config_index >= message.removed_at:
            return
        self.removal = RemovalNotice(message.sender, message.removed_at)
        if self.removed is None:
            self.removal = previous
            return
        if self.state.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self.become_follower(message.term, None)

    def _blank_start_clears(self, message: Message) -> bool:
        """While the blank-start guard holds: note the sender's term, and answer a vote
        request with a refusal at our term 0 (nothing else is handled, nothing written).
        True once the guard clears: then `message` is handled as usual."""
        guard = self.blank_start
        assert guard is not None
        guard.observe(message)
        if guard.cleared:
            self.blank_start = None
            return True
        if guard.refused_by is not None and self._blank_start_may_join:
            self._blank_refused = BlankRefused(*guard.refused_by)
            self.blank_start, self.join_check = None, JoinCheck()
        if isinstance(message, PreVote | RequestVote):
            self._refuse_vote(message)
        return False

    def _refuse_vote(self, message: PreVote | RequestVote, removed_at: int = 0) -> None:
        """Refuse a (pre-)vote at our term, changing nothing here."""
        state = self.state
        response_type = PreVoteResponse if isinstance(message, PreVote) else RequestVoteResponse
        refusal = response_type(
            sender=state.node_id, term=state.term, granted=False, removed_at=removed_at
        )
        self.send(message.sender, refusal, after_persist=False)

    def _answer_stale(self, message: Message) -> None:
        """Tell a stale leader or (pre-)candidate about our newer term so it steps down."""
        state = self.state
        if isinstance(message, LEADER_MESSAGES):
            self.send(
                message.sender,
                AppendEntriesResponse(sender=state.node_id, term=state.term, success=False),
            )
        elif isinstance(message, PreVote):
            self.send(
                message.sender,
                PreVoteResponse(sender=state.node_id, term=state.term, granted=False),
            )
        elif isinstance(message, RequestVote):  # the candidate learns our term and retries
            self.send(
                message.sender,
                RequestVoteResponse(sender=state.node_id, term=state.term, granted=False),
            )

    def _check_transfer(self) -> None:
        """Finish a pending leadership transfer once a new leader is known or time runs out."""
        transfer = self.transfer
        if transfer is None:
            return
        leader = self.state.leader_id
        if leader is not None and leader != self.node_id:
            self.emit(TransferCompleted(transfer.request_id, leader))
            self.transfer = None
        elif self.now_ms >= transfer.deadline_ms:
            why = f"leadership did not move to {transfer.target} in time"
            self.emit(Reject(transfer.request_id, Refused(why)))
            self.transfer = None

    def _step_down_if_removed(self) -> None:
        """A leader removed from the voters leads until that change commits, then steps down."""
        state = self.state
        if (
            state.role is Role.LEADER
            and not state.is_voter
            and state.commit_index >= self.config_index
        ):
            self.become_follower(state.term, None)

    def _ready(self) -> list[Effect]:
        self._step_down_if_removed()
        self._check_transfer()
        state = self.state
        effects = self._effects
        self._effects = []
        hard_state = (state.term, state.voted_for)
        if hard_state != self._emitted_hard_state:
            self._emitted_hard_state = hard_state
            effects.insert(0, PersistHardState(state.term, state.voted_for))
        if state.commit_index > self.apply_emitted_index:
            entries = self.log.entries_between(self.apply_emitted_index + 1, state.commit_index)
            self.apply_emitted_index = state.commit_index
            effects.append(Apply(tuple(entries)))
        return effects
