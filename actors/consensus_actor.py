"""The consensus actor: a thin loop around the Ready step, on its own thread.

Each event (a tick, a peer's message, callers waiting, a durability or apply report) is
handed to `ReadyStep`, which runs the core and sorts what it asks for into a `Ready`
(see `actors/ready.py`). This actor carries a Ready out: state machine work to the
applier (one message per turn), callers' outcomes into their futures, messages to peers
through the `PeerTransport`, answers into the reply slots peers' gRPC calls wait on, and
the storage batch to the storage writer, which releases the answers that wait for it.
It also keeps the operator's view: leadership log lines, the leader lease, status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka

from dref.actors.admin_requests import (
    LeaderTransferError,
    MembershipError,
    MembershipRequest,
    MembersQuery,
    MembersView,
    TransferRequest,
)
from dref.actors.batch_inbox import BatchInbox
from dref.actors.consensus.blank_start import BlankRefused, JoinRefused, StartCheckOutcome
from dref.actors.consensus.effects import NotLeader, Refused
from dref.actors.consensus.leader import LeaderRole
from dref.actors.consensus.messages import InstallSnapshot, Message
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore
from dref.actors.consensus.removal import RemovalNotice
from dref.actors.local_reads import LocalReads
from dref.actors.node_messages import (
    Applied,
    ApplierBatch,
    AwaitEntry,
    CallersWaiting,
    Durable,
    Inbound,
    LeadershipLost,
    PeerReply,
    Proposal,
    ReadRequest,
    RestoreState,
    ServeRead,
    SnapshotSaved,
    StatusQuery,
    StorageBatch,
    Tick,
)
from dref.actors.ready import Committed, Outcome, ReadAt, Ready, ReadyStep, Transferred
from dref.actors.safe_tell import safe_tell
from dref.actors.simple_inbox import SimpleInboxActor
from dref.actors.snapshot_sender import SendChunk
from dref.actors.ticker import monotonic_ms
from dref.actors.transport import PeerSet, PeerTransport
from dref.errors import NotLeaderError, QuorumLostError

logger = logging.getLogger("dref.raft")

_CAMPAIGNING = (Role.PRE_CANDIDATE, Role.CANDIDATE)

Caller = Proposal | ReadRequest | TransferRequest | MembershipRequest
Slot = Future[Message | None]


@dataclass(frozen=True)
class ConsensusStatus:
    """The consensus actor's view, answered to a StatusQuery."""

    role: str
    term: int
    leader_id: str | None
    commit_index: int
    last_index: int
    snapshot_index: int
    match_indexes: dict[str, int]
    elections_started: int
    leader_changes: int
    proposals: int
    entries_committed: int
    snapshot_sends: dict[str, int]
    snapshot_bytes_sent: dict[str, int]
    snapshot_installs: int
    snapshot_bytes_installed: int
    snapshots_taken: int
    snapshot_bytes: int
    removed_by: str | None = None
    """The member that told this node a committed configuration removed it (None: not
    removed, or added back since)."""
    removed_at: int = 0
    """The index of that configuration's entry."""
    blank_start: str | None = None
    """None, or why this node does not vote yet after starting with no Raft state:
    "waiting" for its peers' terms, or "refused" (the cluster ran before)."""


class ConsensusActor(SimpleInboxActor):
    """See the module doc. Only this actor calls the Ready step (and so the core)."""

    def __init__(
        self,
        core: RaftCore,
        *,
        storage: pykka.ActorRef[Any],
        applier: pykka.ActorRef[Any],
        transport: PeerTransport,
        leader_address: Callable[[str], str | None],
        proposals: BatchInbox[Proposal],
        reads: BatchInbox[ReadRequest],
        local: LocalReads,
        peers: PeerSet | None = None,
        snapshot_sender: pykka.ActorRef[Any] | None = None,
        on_start_check: Callable[[StartCheckOutcome], None] | None = None,
    ) -> None:
        """`on_start_check(outcome)` is told each thing the checks of an empty start decide
        (see `blank_start`), once: a refusal, or a joining node's admission."""
        super().__init__()
        self._core = core
        self._step: ReadyStep[Slot, Caller] = ReadyStep(core, reply_slots=True)
        self._local = local
        self._storage = storage
        self._applier = applier
        self._transport = transport
        self._leader_address = leader_address
        """Where clients reach a node, by its id (for not-leader hints)."""
        self._proposals = proposals
        self._reads = reads
        self.peers = peers
        """Keeps the transport's peers in step with membership (None: a fixed set)."""
        self._snapshot_sender = snapshot_sender
        """Sends InstallSnapshot chunks off this thread (None: they go like any request)."""
        self._elections_started = 0
        self._leader_changes = 0
        self._proposal_count = 0
        self._snapshot_sends: dict[str, int] = {}
        """Per peer: snapshot transfers started (a restart from offset 0 counts again)."""
        self._snapshot_bytes_sent: dict[str, int] = {}
        self._snapshot_installs = 0
        self._snapshot_bytes_installed = 0
        self._snapshots_taken = 0
        self._initial_commit = core.state.commit_index
        self._on_start_check = on_start_check
        self._start_check_told: StartCheckOutcome | None = None
        self._removal_logged = core.removed
        self._thread_name = f"dref-consensus-{core.node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name
        if self.peers is not None:
            self.peers.sync(self._core.membership)

    def on_stop(self) -> None:
        callers, slots = self._step.abandon()
        closed = QuorumLostError("node closed")
        for caller in callers:
            _fail(caller.outcome, closed)
        for slot in slots:
            _settle(slot, None)

    def on_failure(self, *args: Any) -> None:
        logger.critical("consensus actor of %s failed; the node stops", self._core.node_id)
        self.on_stop()

    # ------------------------------------------------------------------- events in

    def on_receive(self, message: Any) -> Any:
        role_before, leader_before = self._core.state.role, self._core.state.leader_id
        self._local.withdraw()
        result = self._handle(message)
        role_after = self._core.state.role
        if role_after is not role_before or self._core.state.leader_id != leader_before:
            self._log_leadership(role_before)
            if self._core.state.leader_id != leader_before:
                self._leader_changes += 1
        role = self._core.role
        if isinstance(role, LeaderRole):
            self._local.publish(role.lease_expiry_ms(), self._core.state.commit_index)
        if role_after in _CAMPAIGNING and role_before not in _CAMPAIGNING:
            self._elections_started += 1
        if role_before is Role.LEADER and role_after is not Role.LEADER:
            safe_tell(self._applier, LeadershipLost())  # after this event's Apply effects
        self._report_standing()
        return result

    def _report_standing(self) -> None:
        """Log once when this node learns it was removed, and when it is back; tell the
        node once what the checks of an empty start decided."""
        core = self._core
        removed = core.removed
        if _index(removed) != _index(self._removal_logged):
            if removed is not None:
                logger.warning(
                    "%s was removed from the cluster: %s says its committed configuration"
                    " (entry %d) leaves %s out; %s stops campaigning until a leader adds it back",
                    core.node_id,
                    removed.told_by,
                    removed.config_index,
                    core.node_id,
                    core.node_id,
                )
            else:
                logger.info(
                    "%s is in the configuration again (entry %d)", core.node_id, core.config_index
                )
            self._removal_logged = removed
        outcome = core.start_check
        if outcome is None or outcome == self._start_check_told:
            return
        self._start_check_told = outcome
        if self._on_start_check is not None:
            self._on_start_check(outcome)

    def _log_leadership(self, role_before: Role) -> None:
        """An operator's record of who leads: elections won, leaders followed, step-downs."""
        state = self._core.state
        if state.role is Role.LEADER:
            logger.info("became leader in term %d", state.term)
        elif role_before is Role.LEADER:
            logger.info(
                "stepped down in term %d; leader now %s", state.term, state.leader_id or "unknown"
            )
        elif state.leader_id is not None:
            logger.info("following %s in term %d", state.leader_id, state.term)

    def _handle(self, message: Any) -> Any:
        step = self._step
        if isinstance(message, Tick):
            if message.stalled_ms * 2 >= self._core.config.election_timeout_ms:
                logger.info("resumed after %d ms without running", message.stalled_ms)
            self._carry(step.tick(message.now_ms, message.stalled_ms))
        elif isinstance(message, Inbound):
            self._carry(step.receive(message.message, message.reply))
        elif isinstance(message, PeerReply):
            self._carry(step.receive(message.message))
        elif isinstance(message, CallersWaiting):
            self._on_callers()
        elif isinstance(message, Durable):
            self._carry(step.durable(message.seq, message.log_index, message.log_term))
        elif isinstance(message, Applied):
            self._carry(step.applied(message.index))
        elif isinstance(message, SnapshotSaved):
            self._snapshots_taken += 1
            self._carry(step.snapshot_taken(message.index, message.term, message.data))
        elif isinstance(message, StatusQuery):
            return self._status()
        elif isinstance(message, TransferRequest):
            self._carry(step.transfer(message, message.target))
        elif isinstance(message, MembershipRequest):
            self._carry(step.change_membership(message, message.change))
        elif isinstance(message, MembersQuery):
            return self._members()
        if self.peers is not None:
            self.peers.sync(self._core.membership)
        return None

    def _members(self) -> MembersView:
        core = self._core
        committed = core.config_index <= core.state.commit_index
        return MembersView(core.membership, committed, _match_indexes(core))

    def _on_callers(self) -> None:
        proposals = [(proposal.command, proposal) for proposal in self._proposals.drain()]
        self._proposal_count += len(proposals)
        reads = [(read, read.policy) for read in self._reads.drain()]
        self._carry(self._step.callers(proposals, reads, monotonic_ms()))

    # ----------------------------------------------------------------- Ready out

    def _carry(self, ready: Ready[Slot, Caller]) -> None:
        """Do what one turn asks, in the order `Ready` documents."""
        if ready.state_machine:
            self._to_applier(ready)
        for caller, outcome in ready.outcomes:
            self._settle_caller(caller, outcome)
        for peer, messages in ready.messages.items():
            for message in messages:
                if not isinstance(message, InstallSnapshot):
                    self._transport.send(peer, message)
                    continue
                self._count_chunk(peer, message)
                if self._snapshot_sender is not None:
                    safe_tell(self._snapshot_sender, SendChunk(peer, message))
                else:
                    self._transport.send(peer, message)
        for slot, answer in ready.answers:
            _settle(slot, answer)
        if ready.persist:
            batch = StorageBatch(ready.batch, ready.persist, tuple(ready.answers_on_persist))
            safe_tell(self._storage, batch)

    def _count_chunk(self, peer: str, chunk: InstallSnapshot) -> None:
        """Count a snapshot chunk handed to the transport (for status and metrics)."""
        if chunk.offset == 0:
            self._snapshot_sends[peer] = self._snapshot_sends.get(peer, 0) + 1
        self._snapshot_bytes_sent[peer] = self._snapshot_bytes_sent.get(peer, 0) + len(chunk.data)

    def _to_applier(self, ready: Ready[Slot, Caller]) -> None:
        """One message to the applier per turn (one wake-up), its work kept in order."""
        work: list[Any] = []
        for item in ready.state_machine:
            if isinstance(item, Committed):
                proposal = item.caller
                assert isinstance(proposal, Proposal | MembershipRequest)
                work.append(AwaitEntry(item.index, item.term, proposal.outcome))
            elif isinstance(item, ReadAt):
                read = item.caller
                assert isinstance(read, ReadRequest)
                if not self._answer_applied(read, item.read_index):
                    work.append(ServeRead(item.read_index, read.query, read.outcome))
            else:
                if isinstance(item, RestoreState):  # a leader's snapshot, installed
                    self._snapshot_installs += 1
                    self._snapshot_bytes_installed += len(item.data)
                work.append(item)
        if len(work) == 1:
            safe_tell(self._applier, work[0])
        elif work:
            safe_tell(self._applier, ApplierBatch(tuple(work)))

    def _answer_applied(self, read: ReadRequest, read_index: int) -> bool:
        """Answer a confirmed read here when the state machine is applied through its read
        index; False when the applier must answer it later."""
        try:
            answer = self._local.query_applied(read.query, read_index)
        except Exception as exc:  # noqa: BLE001 - the reader gets the state machine's failure
            _fail(read.outcome, exc)
            return True
        if answer is None:
            return False
        if not read.outcome.done():
            read.outcome.set_result(answer)
        return True

    def _settle_caller(self, caller: Caller, outcome: Outcome) -> None:
        if isinstance(outcome, Transferred):
            if not caller.outcome.done():
                caller.outcome.set_result(outcome.leader_id)  # type: ignore[arg-type]
            return
        if isinstance(outcome, NotLeader):
            leader = outcome.leader_id
            hint = None if leader is None else self._leader_address(leader)
            error: Exception = NotLeaderError(leader, hint)
        elif isinstance(outcome, Refused):
            if isinstance(caller, TransferRequest):
                error = LeaderTransferError(outcome.why)
            else:
                error = MembershipError(outcome.why, retryable=outcome.retryable)
        else:
            error = QuorumLostError()
        _fail(caller.outcome, error)

    def _status(self) -> ConsensusStatus:
        core = self._core
        state = core.state
        return ConsensusStatus(
            role=state.role.value,
            term=state.term,
            leader_id=state.leader_id,
            commit_index=state.commit_index,
            last_index=core.log.last_index,
            snapshot_index=core.log.snapshot_index,
            match_indexes=_match_indexes(core),
            elections_started=self._elections_started,
            leader_changes=self._leader_changes,
            proposals=self._proposal_count,
            entries_committed=state.commit_index - self._initial_commit,
            snapshot_sends=dict(self._snapshot_sends),
            snapshot_bytes_sent=dict(self._snapshot_bytes_sent),
            snapshot_installs=self._snapshot_installs,
            snapshot_bytes_installed=self._snapshot_bytes_installed,
            snapshots_taken=self._snapshots_taken,
            snapshot_bytes=0 if core.snapshot is None else len(core.snapshot.data),
            removed_by=None if core.removed is None else core.removed.told_by,
            removed_at=0 if core.removed is None else core.removed.config_index,
            blank_start=_blank_start_state(core),
        )


def _index(notice: RemovalNotice | None) -> int:
    """The configuration index a removal notice names (-1: none)."""
    return -1 if notice is None else notice.config_index


def _blank_start_state(core: RaftCore) -> str | None:
    """None, "waiting" or "refused" (see ConsensusStatus.blank_start)."""
    if core.blank_start is None and not core.awaiting_admission:
        return None
    outcome = core.start_check
    if isinstance(outcome, JoinRefused):
        return "refused"
    if isinstance(outcome, BlankRefused) and core.join_check is None:
        return "refused"
    return "waiting"


def _match_indexes(core: RaftCore) -> dict[str, int]:
    """Each follower's match index, as the leader tracks it (empty on a non-leader)."""
    role = core.role
    if not isinstance(role, LeaderRole):
        return {}
    return {peer: progress.match_index for peer, progress in role.progress.items()}


def _settle(slot: Future[Message | None] | None, message: Message | None) -> None:
    if slot is not None and not slot.done():
        slot.set_result(message)


def _fail(outcome: Future[Any], error: Exception) -> None:
    if not outcome.done():
        outcome.set_exception(error)
