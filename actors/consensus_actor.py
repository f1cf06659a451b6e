"""The consensus actor: owns the RaftCore and carries its events in and effects out.

Effects run in the order the core returns them. Storage effects of one turn go to the
storage writer as one numbered batch; a `Send` that must wait for durability is held
until the writer reports that batch (and every earlier one) durable. A Send is either a
request for a peer (handed to that peer's replicator) or the answer to a peer's request,
which fills the reply slot the gRPC servicer is blocked on.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import pykka

from dref.actors.batch_inbox import BatchInbox
from dref.actors.consensus.effects import (
    AppendToLog,
    Apply,
    Effect,
    NotLeader,
    PersistHardState,
    ProposalAccepted,
    ReadReady,
    Refused,
    Reject,
    RestoreSnapshot,
    Send,
    TakeSnapshot,
    TransferCompleted,
    TruncateLog,
)
from dref.actors.consensus.leader import LeaderRole
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore
from dref.actors.local_reads import LocalReads
from dref.actors.membership import (
    LeaderTransferError,
    MembershipError,
    MembershipRequest,
    MembersQuery,
    MembersView,
    PeerSet,
    TransferRequest,
)
from dref.actors.node_messages import (
    Applied,
    ApplierBatch,
    ApplyEntries,
    AwaitEntry,
    CallersWaiting,
    Deliver,
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
    TakeSnapshotNow,
    Tick,
)
from dref.actors.replicator import peer_client
from dref.actors.safe_tell import safe_tell
from dref.actors.simple_inbox import SimpleInboxActor
from dref.actors.snapshot_sender import SendChunk
from dref.actors.ticker import monotonic_ms
from dref.errors import NotLeaderError, QuorumLostError
from dref.wire.consensus_codec import rpc_of

logger = logging.getLogger("dref.raft")

_STORAGE_EFFECTS = (PersistHardState, AppendToLog, TruncateLog, RestoreSnapshot)
_CAMPAIGNING = (Role.PRE_CANDIDATE, Role.CANDIDATE)
_RESPONSES = (
    AppendEntriesResponse,
    HeartbeatResponse,
    PreVoteResponse,
    RequestVoteResponse,
    InstallSnapshotResponse,
    ReadIndexResponse,
)


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
    proposals: int
    entries_committed: int


class _Route:
    """Where a released Send goes: a reply slot, or a peer's replicator."""

    __slots__ = ("slot", "peer")

    def __init__(self, slot: Future[Message | None] | None, peer: str | None) -> None:
        self.slot, self.peer = slot, peer


class ConsensusActor(SimpleInboxActor):
    """See the module doc. Only this actor calls the core."""

    def __init__(
        self,
        core: RaftCore,
        *,
        storage: pykka.ActorRef[Any],
        applier: pykka.ActorRef[Any],
        replicators: dict[str, pykka.ActorRef[Any]],
        addresses: dict[str, str],
        proposals: BatchInbox[Proposal],
        reads: BatchInbox[ReadRequest],
        local: LocalReads,
        peers: PeerSet | None = None,
        snapshot_sender: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__()
        self._core = core
        self._local = local
        self._storage = storage
        self._applier = applier
        self._replicators = replicators
        self._addresses = addresses
        self._proposals = proposals
        self._reads = reads
        self._issued_seq = 0
        self._durable_seq = 0
        self._held: deque[tuple[int, _Route, Message]] = deque()
        self._read_slots: dict[tuple[str, int], Future[Message | None]] = {}
        self._requests: dict[int, Proposal | ReadRequest | TransferRequest | MembershipRequest] = {}
        self.peers = peers
        self._snapshot_sender = snapshot_sender
        """Sends InstallSnapshot chunks off this thread (None: they go like any request)."""
        """Keeps replicators in step with membership (None: a fixed set of peers)."""
        self._request_ids = itertools.count(1)
        self._elections_started = 0
        self._proposal_count = 0
        self._initial_commit = core.state.commit_index
        self._thread_name = f"dref-consensus-{core.node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_stop(self) -> None:
        closed = QuorumLostError("node closed")
        for request in self._requests.values():
            _fail(request.outcome, closed)
        for slot in self._read_slots.values():
            _settle(slot, None)
        for _, route, _ in self._held:
            if route.slot is not None:
                _settle(route.slot, None)

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
        role = self._core.role
        if isinstance(role, LeaderRole):
            self._local.publish(role.lease_expiry_ms(), self._core.state.commit_index)
        if role_after in _CAMPAIGNING and role_before not in _CAMPAIGNING:
            self._elections_started += 1
        if role_before is Role.LEADER and role_after is not Role.LEADER:
            safe_tell(self._applier, LeadershipLost())  # after this event's Apply effects
        return result

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
        core = self._core
        if isinstance(message, Tick):
            if message.stalled_ms * 2 >= core.config.election_timeout_ms:
                logger.info("resumed after %d ms without running", message.stalled_ms)
            self._run(core.tick(message.now_ms, message.stalled_ms))
        elif isinstance(message, Inbound):
            self._on_inbound(message)
        elif isinstance(message, PeerReply):
            self._run(core.receive(message.message))
        elif isinstance(message, CallersWaiting):
            self._on_callers()
        elif isinstance(message, Durable):
            self._on_durable(message)
        elif isinstance(message, Applied):
            self._run(core.applied(message.index))
        elif isinstance(message, SnapshotSaved):
            self._run(core.snapshot_taken(message.index, message.term, message.data))
        elif isinstance(message, StatusQuery):
            return self._status()
        elif isinstance(message, TransferRequest | MembershipRequest):
            self._on_admin(message)
        elif isinstance(message, MembersQuery):
            return self._members()
        if self.peers is not None:
            self.peers.sync(core.membership, self.actor_ref)
        return None

    def _on_admin(self, request: TransferRequest | MembershipRequest) -> None:
        request_id = next(self._request_ids)
        self._requests[request_id] = request
        if isinstance(request, TransferRequest):
            self._run(self._core.transfer_leadership(request_id, request.target))
        else:
            self._run(self._core.change_membership(request_id, request.change))

    def _members(self) -> MembersView:
        core = self._core
        committed = core.config_index <= core.state.commit_index
        return MembersView(core.membership, committed, _match_indexes(core))

    def _on_inbound(self, inbound: Inbound) -> None:
        request = inbound.message
        if isinstance(request, ReadIndexRequest):
            self._read_slots[(request.sender, request.context)] = inbound.reply
            self._run(self._core.receive(request))
            if self._core.state.role is not Role.LEADER:
                _settle(self._read_slots.pop((request.sender, request.context), None), None)
            return
        claimed = self._run(self._core.receive(request), inbound)
        if not claimed:
            _settle(inbound.reply, None)

    def _on_callers(self) -> None:
        core = self._core
        effects: list[Effect] = []
        batch: list[tuple[bytes, int]] = []
        for proposal in self._proposals.drain():
            request_id = next(self._request_ids)
            self._requests[request_id] = proposal
            batch.append((proposal.command, request_id))
        if batch:
            self._proposal_count += len(batch)
            effects.extend(core.propose_many(batch))
        for read in self._reads.drain():
            request_id = next(self._request_ids)
            self._requests[request_id] = read
            effects.extend(core.read(request_id, read.policy, monotonic_ms()))
        self._run(effects)

    def _on_durable(self, durable: Durable) -> None:
        self._durable_seq = max(self._durable_seq, durable.seq)
        held = self._held
        while held and held[0][0] <= self._durable_seq:
            _, route, message = held.popleft()
            self._deliver(route, message)
        if durable.log_index is not None:
            self._run(self._core.persisted(durable.log_index, durable.log_term))

    # ----------------------------------------------------------------- effects out

    def _run(self, effects: list[Effect], inbound: Inbound | None = None) -> bool:
        """Execute effects in order; True when one of them answered `inbound`."""
        storage: list[Any] = []
        replies: list[tuple[Future[Message | None], Message]] = []  # released by the writer
        outgoing: dict[str, list[Message]] = {}
        waiters: list[AwaitEntry | ServeRead] = []  # to the applier together, in order
        needed = self._issued_seq
        claimed = False
        applier = self._applier
        for effect in effects:
            if isinstance(effect, _STORAGE_EFFECTS):
                storage.append(effect)
                needed = self._issued_seq + 1
                if isinstance(effect, RestoreSnapshot):
                    _tell_waiters(applier, waiters)
                    safe_tell(applier, RestoreState(effect.data, effect.index, effect.term))
            elif isinstance(effect, Send):
                route = self._route(effect, inbound, claimed)
                if route is None:
                    continue
                if inbound is not None and route.slot is inbound.reply:
                    claimed = True
                if effect.after_persist and needed > self._durable_seq:
                    if route.slot is not None and needed > self._issued_seq and not self._held:
                        replies.append((route.slot, effect.message))  # waits for this batch
                    else:
                        self._held.append((needed, route, effect.message))
                elif (
                    route.peer is not None
                    and self._snapshot_sender is not None
                    and isinstance(effect.message, InstallSnapshot)
                ):
                    safe_tell(self._snapshot_sender, SendChunk(route.peer, effect.message))
                elif route.peer is not None:
                    outgoing.setdefault(route.peer, []).append(effect.message)
                else:
                    self._deliver(route, effect.message)
            elif isinstance(effect, Apply):
                _tell_waiters(applier, waiters)
                safe_tell(applier, ApplyEntries(effect.entries))
            elif isinstance(effect, ProposalAccepted):
                proposal = self._requests.pop(effect.request_id)
                assert isinstance(proposal, Proposal | MembershipRequest)
                waiters.append(AwaitEntry(effect.index, effect.term, proposal.outcome))
            elif isinstance(effect, ReadReady):
                read = self._requests.pop(effect.request_id)
                assert isinstance(read, ReadRequest)
                if not self._answer_applied(read, effect.read_index):
                    waiters.append(ServeRead(effect.read_index, read.query, read.outcome))
            elif isinstance(effect, Reject):
                self._reject(effect)
            elif isinstance(effect, TakeSnapshot):
                _tell_waiters(applier, waiters)
                safe_tell(applier, TakeSnapshotNow(effect.applied_index))
            elif isinstance(effect, TransferCompleted):
                transfer = self._requests.pop(effect.request_id)
                if not transfer.outcome.done():
                    transfer.outcome.set_result(effect.leader_id)  # type: ignore[arg-type]
        _tell_waiters(applier, waiters)
        for peer, messages in outgoing.items():
            replicator = self._replicators[peer]
            client = peer_client(replicator)
            for message in _coalesce(messages):
                if client is None:
                    safe_tell(replicator, Deliver(message))
                    continue
                try:
                    client.send(message, self._on_peer_reply)
                except ValueError:  # the channel closed (peer removed, node closing): dropped
                    logger.debug("not sent to %s: its channel is closed", peer)
        if storage:
            self._issued_seq += 1
            batch = StorageBatch(self._issued_seq, tuple(storage), tuple(replies))
            safe_tell(self._storage, batch)
        return claimed

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

    def _route(self, send: Send, inbound: Inbound | None, claimed: bool) -> _Route | None:
        """Decide where a Send goes; None drops it (an answer nobody waits for)."""
        message = send.message
        if rpc_of(message) is not None:
            return _Route(None, send.to) if send.to in self._replicators else None
        if isinstance(message, ReadIndexResponse):
            slot = self._read_slots.pop((send.to, message.context), None)
            return _Route(slot, None) if slot is not None else None
        if (
            inbound is not None
            and not claimed
            and send.to == inbound.message.sender
            and isinstance(message, _RESPONSES)
        ):
            rpc = rpc_of(inbound.message)
            if rpc is not None and isinstance(message, rpc.value.replies):
                return _Route(inbound.reply, None)
        logger.debug("dropping %s to %s: no request waits for it", type(message).__name__, send.to)
        return None

    def _on_peer_reply(self, message: Message) -> None:
        """A peer's answer, on a gRPC thread: back into this actor's mailbox."""
        safe_tell(self.actor_ref, PeerReply(message))

    def _deliver(self, route: _Route, message: Message) -> None:
        if route.slot is not None:
            _settle(route.slot, message)
        elif route.peer is not None:
            safe_tell(self._replicators.get(route.peer), Deliver(message))

    def _reject(self, effect: Reject) -> None:
        request = self._requests.pop(effect.request_id)
        reason = effect.reason
        if isinstance(reason, NotLeader):
            leader = reason.leader_id
            error: Exception = NotLeaderError(leader, self._addresses.get(leader or ""))
        elif isinstance(reason, Refused):
            if isinstance(request, TransferRequest):
                error = LeaderTransferError(reason.why)
            else:
                error = MembershipError(reason.why, retryable=reason.retryable)
        else:
            error = QuorumLostError()
        _fail(request.outcome, error)

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
            proposals=self._proposal_count,
            entries_committed=state.commit_index - self._initial_commit,
        )


def _match_indexes(core: RaftCore) -> dict[str, int]:
    """Each follower's match index, as the leader tracks it (empty on a non-leader)."""
    role = core.role
    if not isinstance(role, LeaderRole):
        return {}
    return {peer: progress.match_index for peer, progress in role.progress.items()}


def _tell_waiters(applier: pykka.ActorRef[Any], waiters: list[AwaitEntry | ServeRead]) -> None:
    """Hand the applier the waiters gathered so far as one message (and clear the list)."""
    if len(waiters) == 1:
        safe_tell(applier, waiters[0])
    elif waiters:
        safe_tell(applier, ApplierBatch(tuple(waiters)))
    waiters.clear()


def _coalesce(messages: list[Message]) -> list[Message]:
    """Join AppendEntries that continue one another into one RPC, keeping order.

    The core sends one message per proposal while flow control allows; a turn that
    drained many proposals would otherwise cost one RPC (and one follower turn) each.
    The joined message is exactly the sequence the follower would have applied, and its
    answer acknowledges every part (the core's in-flight accounting pops them all).
    """
    out: list[Message] = []
    for message in messages:
        last = out[-1] if out else None
        if (
            isinstance(message, AppendEntries)
            and isinstance(last, AppendEntries)
            and message.term == last.term
            and message.prev_index == last.prev_index + len(last.entries)
            and message.prev_term == (last.entries[-1].term if last.entries else last.prev_term)
        ):
            out[-1] = replace(
                last,
                entries=last.entries + message.entries,
                leader_commit=max(last.leader_commit, message.leader_commit),
            )
        else:
            out.append(message)
    return out


def _settle(slot: Future[Message | None] | None, message: Message | None) -> None:
    if slot is not None and not slot.done():
        slot.set_result(message)


def _fail(outcome: Future[Any], error: Exception) -> None:
    if not outcome.done():
        outcome.set_exception(error)
