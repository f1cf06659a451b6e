"""The Ready step: what one turn of the core asks the node to do, sorted by who does it.

`RaftCore` returns a flat list of effects. `ReadyStep` wraps the core and turns each
turn's effects into one `Ready`: a storage batch (and the answers that may leave only once
that batch is durable), messages per peer, answers for the reply slots of requests that
came in, work for the state machine in order, and the outcome of callers' requests. It
owns the bookkeeping that used to live in the consensus actor: caller request ids,
durability sequencing of held sends, and reply-slot routing. It has no threads, no clock
and no I/O, so the node runtime (`ConsensusActor`) and the deterministic simulator drive
the same object, and the seeded runs cover reply routing and durability ordering.

Two kinds of host:
- with reply slots (`reply_slots=True`, the node runtime): a peer's request arrives with
  an opaque slot that its answer must fill (a gRPC reply future); answers nobody waits
  for are dropped;
- without (`reply_slots=False`, the simulator and message transports): every answer is a
  message to its peer, like any request.

Durability rule (never broken): a `Send` marked `after_persist` leaves only once every
storage batch issued before it, and the one of its own turn, is durable. A `Ready`'s
`answers_on_persist` are answers that wait for exactly its own batch: the storage writer
releases them right after its fsync (one hop less than coming back here). Everything
else that must wait is held here and released by `durable()`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar, cast

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.durable_state import SnapshotImage
from dref.actors.consensus.effects import (
    AppendToLog,
    Apply,
    Effect,
    NotLeader,
    PersistHardState,
    ProposalAccepted,
    QuorumLost,
    ReadReady,
    Refused,
    Reject,
    RestoreSnapshot,
    Send,
    StorageEffect,
    TakeSnapshot,
    TransferCompleted,
    TruncateLog,
)
from dref.actors.consensus.membership import MembershipChange
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    HeartbeatResponse,
    InstallSnapshotResponse,
    Message,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore
from dref.actors.node_messages import ApplyEntries, RestoreState, TakeSnapshotNow
from dref.wire.consensus_codec import rpc_of

Slot = TypeVar("Slot")
"""Where the answer to one inbound request goes (the runtime's reply future)."""
Caller = TypeVar("Caller")
"""A caller's pending request (a proposal, read, transfer or membership change)."""

_STORAGE_EFFECTS = (PersistHardState, AppendToLog, TruncateLog, RestoreSnapshot)
_RESPONSES = (
    AppendEntriesResponse,
    HeartbeatResponse,
    PreVoteResponse,
    RequestVoteResponse,
    InstallSnapshotResponse,
    ReadIndexResponse,
)


# ------------------------------------------------------------ state machine work


@dataclass(frozen=True, slots=True)
class Committed(Generic[Caller]):
    """`caller`'s proposal sits at `index`: it succeeded iff the entry applied there has
    `term` (another leader may have overwritten it)."""

    index: int
    term: int
    caller: Caller


@dataclass(frozen=True, slots=True)
class ReadAt(Generic[Caller]):
    """`caller`'s read is confirmed: answer it once applied through `read_index`."""

    read_index: int
    caller: Caller


StateMachineWork = (
    ApplyEntries | RestoreState | TakeSnapshotNow | Committed[Caller] | ReadAt[Caller]
)


# --------------------------------------------------------------- callers' results


@dataclass(frozen=True, slots=True)
class Transferred:
    """A leadership transfer is over: `leader_id` now leads a newer term."""

    leader_id: str


Outcome = NotLeader | QuorumLost | Refused | Transferred
"""What a caller learns without waiting for the state machine."""


# ------------------------------------------------------------------------ Ready


@dataclass(slots=True)
class Ready(Generic[Slot, Caller]):
    """One turn's work for the node, in the order the host should carry it out:
    state machine work, outcomes, messages, answers, then the storage batch (which may
    be written concurrently with the rest: nothing here that waits for it is included)."""

    state_machine: list[StateMachineWork[Caller]] = field(default_factory=list)
    outcomes: list[tuple[Caller, Outcome]] = field(default_factory=list)
    messages: dict[str, list[Message]] = field(default_factory=dict)
    """Messages for peers now: requests, and answers when the host has no reply slots.
    AppendEntries that continue one another are already joined into one."""
    answers: list[tuple[Slot, Message | None]] = field(default_factory=list)
    """Reply slots to fill now (None: the request gets no answer)."""
    persist: tuple[StorageEffect, ...] = ()
    """Storage effects to write, in order, as one batch numbered `batch`."""
    batch: int = 0
    answers_on_persist: list[tuple[Slot, Message]] = field(default_factory=list)
    """Answers to release right after batch `batch` is durable, not before."""

    def is_empty(self) -> bool:
        return not (
            self.state_machine
            or self.outcomes
            or self.messages
            or self.answers
            or self.persist
        )


class _ToPeer:
    """A held send for a peer (as opposed to a reply slot)."""

    __slots__ = ("peer",)

    def __init__(self, peer: str) -> None:
        self.peer = peer


class ReadyStep(Generic[Slot, Caller]):
    """See the module doc. Only the host's one thread calls it."""

    def __init__(self, core: RaftCore, *, reply_slots: bool) -> None:
        self.core = core
        self._reply_slots = reply_slots
        self._callers: dict[int, Caller] = {}
        self._next_request = 0
        self._issued = 0
        """The number of the last storage batch handed out."""
        self._durable = 0
        """Every batch through this number is durable."""
        self._held: deque[tuple[int, Slot | _ToPeer, Message]] = deque()
        self._read_slots: dict[tuple[str, int], Slot] = {}
        """Followers' ReadIndex requests the leader answers later, by (sender, context)."""

    # ------------------------------------------------------------------ events in

    def tick(self, now_ms: int, stalled_ms: int = 0) -> Ready[Slot, Caller]:
        return self._ready(self.core.tick(now_ms, stalled_ms))

    def receive(self, message: Message, slot: Slot | None = None) -> Ready[Slot, Caller]:
        """A peer's message; `slot` receives the answer when the host has reply slots."""
        if slot is None:
            return self._ready(self.core.receive(message))
        if isinstance(message, ReadIndexRequest):
            key = (message.sender, message.context)
            self._read_slots[key] = slot
            ready = self._ready(self.core.receive(message))
            if self.core.state.role is not Role.LEADER and key in self._read_slots:
                ready.answers.append((self._read_slots.pop(key), None))
            return ready
        ready = self._ready(self.core.receive(message), message, slot)
        return ready

    def callers(
        self,
        proposals: Sequence[tuple[bytes, Caller]],
        reads: Sequence[tuple[Caller, ReadPolicy]],
        now_ms: int,
    ) -> Ready[Slot, Caller]:
        """Callers' commands (proposed together, one turn) and reads."""
        effects: list[Effect] = []
        if proposals:
            batch = [(command, self._register(caller)) for command, caller in proposals]
            effects.extend(self.core.propose_many(batch))
        for caller, policy in reads:
            effects.extend(self.core.read(self._register(caller), policy, now_ms))
        return self._ready(effects)

    def transfer(self, caller: Caller, target: str | None) -> Ready[Slot, Caller]:
        return self._ready(self.core.transfer_leadership(self._register(caller), target))

    def change_membership(self, caller: Caller, change: MembershipChange) -> Ready[Slot, Caller]:
        return self._ready(self.core.change_membership(self._register(caller), change))

    def durable(self, batch: int, log_index: int | None, log_term: int) -> Ready[Slot, Caller]:
        """Every storage batch through `batch` is durable; the log's last appended entry,
        if that flush appended one, is (log_index, log_term)."""
        self._durable = max(self._durable, batch)
        ready: Ready[Slot, Caller] = Ready()
        held = self._held
        while held and held[0][0] <= self._durable:
            _, destination, message = held.popleft()
            if isinstance(destination, _ToPeer):
                ready.messages.setdefault(destination.peer, []).append(message)
            else:
                ready.answers.append((destination, message))
        for peer, messages in ready.messages.items():
            ready.messages[peer] = coalesce(messages)
        if log_index is not None:
            self._merge(ready, self._ready(self.core.persisted(log_index, log_term)))
        return ready

    def applied(self, index: int) -> Ready[Slot, Caller]:
        return self._ready(self.core.applied(index))

    def snapshot_taken(self, index: int, term: int, data: SnapshotImage) -> Ready[Slot, Caller]:
        return self._ready(self.core.snapshot_taken(index, term, data))

    def abandon(self) -> tuple[list[Caller], list[Slot]]:
        """Forget every pending caller and reply slot (the node stops): the host fails them."""
        callers = list(self._callers.values())
        slots = [*self._read_slots.values()]
        slots += [d for _, d, _ in self._held if not isinstance(d, _ToPeer)]
        self._callers.clear()
        self._read_slots.clear()
        self._held.clear()
        return callers, slots

    # ----------------------------------------------------------------- effects out

    def _register(self, caller: Caller) -> int:
        self._next_request += 1
        self._callers[self._next_request] = caller
        return self._next_request

    def _ready(
        self, effects: list[Effect], inbound: Message | None = None, slot: Slot | None = None
    ) -> Ready[Slot, Caller]:
        """Sort one turn's effects; an answer to `inbound` goes to `slot` (once)."""
        ready: Ready[Slot, Caller] = Ready()
        persist: list[StorageEffect] = []
        needed = self._issued  # the batch a durable send must wait for
        claimed = slot is None
        for effect in effects:
            if isinstance(effect, _STORAGE_EFFECTS):
                persist.append(effect)
                needed = self._issued + 1
                if isinstance(effect, RestoreSnapshot):
                    ready.state_machine.append(RestoreState(effect.data, effect.index, effect.term))
            elif isinstance(effect, Send):
                destination = self._destination(effect, inbound, slot, claimed)
                if destination is None:
                    continue
                if destination is slot:
                    claimed = True
                self._place(ready, effect, cast("Slot | _ToPeer", destination), needed)
            elif isinstance(effect, Apply):
                ready.state_machine.append(ApplyEntries(effect.entries))
            elif isinstance(effect, ProposalAccepted):
                caller = self._callers.pop(effect.request_id)
                ready.state_machine.append(Committed(effect.index, effect.term, caller))
            elif isinstance(effect, ReadReady):
                caller = self._callers.pop(effect.request_id)
                ready.state_machine.append(ReadAt(effect.read_index, caller))
            elif isinstance(effect, Reject):
                ready.outcomes.append((self._callers.pop(effect.request_id), effect.reason))
            elif isinstance(effect, TakeSnapshot):
                ready.state_machine.append(TakeSnapshotNow(effect.applied_index))
            elif isinstance(effect, TransferCompleted):
                caller = self._callers.pop(effect.request_id)
                ready.outcomes.append((caller, Transferred(effect.leader_id)))
        if not claimed:
            ready.answers.append((slot, None))  # type: ignore[arg-type]  # slot is set here
        if persist:
            self._issued += 1
            ready.persist, ready.batch = tuple(persist), self._issued
        for peer, messages in ready.messages.items():
            ready.messages[peer] = coalesce(messages)
        return ready

    def _place(
        self, ready: Ready[Slot, Caller], send: Send, destination: Slot | _ToPeer, needed: int
    ) -> None:
        """Send now, with this turn's batch, or hold until an earlier batch is durable."""
        message = send.message
        if send.after_persist and needed > self._durable:
            if not isinstance(destination, _ToPeer) and needed > self._issued and not self._held:
                ready.answers_on_persist.append((destination, message))
            else:
                self._held.append((needed, destination, message))
        elif isinstance(destination, _ToPeer):
            ready.messages.setdefault(destination.peer, []).append(message)
        else:
            ready.answers.append((destination, message))

    def _destination(
        self, send: Send, inbound: Message | None, slot: Slot | None, claimed: bool
    ) -> Slot | _ToPeer | None:
        """Where a Send goes; None drops it (an answer nobody waits for)."""
        message = send.message
        if not self._reply_slots or rpc_of(message) is not None:
            return _ToPeer(send.to)
        if isinstance(message, ReadIndexResponse):
            return self._read_slots.pop((send.to, message.context), None)
        if (
            inbound is not None
            and not claimed
            and send.to == inbound.sender
            and isinstance(message, _RESPONSES)
        ):
            rpc = rpc_of(inbound)
            if rpc is not None and isinstance(message, rpc.value.replies):
                return slot
        return None

    @staticmethod
    def _merge(into: Ready[Slot, Caller], more: Ready[Slot, Caller]) -> None:
        into.state_machine += more.state_machine
        into.outcomes += more.outcomes
        for peer, messages in more.messages.items():
            into.messages[peer] = coalesce([*into.messages.get(peer, ()), *messages])
        into.answers += more.answers
        into.persist, into.batch = more.persist, more.batch
        into.answers_on_persist += more.answers_on_persist


def coalesce(messages: list[Message]) -> list[Message]:
    """Join AppendEntries that continue one another into one message, keeping order.

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
