"""What the core asks its caller to do, returned as an ordered list from every event.

The caller executes effects in order. Storage effects (`PersistHardState`,
`AppendToLog`, `TruncateLog`, `RestoreSnapshot`) go to one storage writer that fsyncs
them in order. A `Send` with `after_persist=True` may leave only once every storage
effect returned so far (by this and earlier events) is durable; the others may leave at
once. After an fsync covering log entries, the caller reports `RaftCore.persisted`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dref.actors.consensus.durable_state import SnapshotImage
from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.membership import Addresses
from dref.actors.consensus.messages import Message, RequestId


@dataclass(frozen=True, slots=True)
class PersistHardState:
    """Durably store the current term and vote (before any reply that depends on them)."""

    term: int
    voted_for: str | None


@dataclass(frozen=True, slots=True)
class AppendToLog:
    """Durably append these entries; they continue the stored log exactly."""

    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class TruncateLog:
    """Durably drop the stored entry at `from_index` and all later ones (never committed)."""

    from_index: int


@dataclass(frozen=True, slots=True)
class RestoreSnapshot:
    """Durably save the snapshot, drop the whole stored log, and reset the state machine."""

    data: SnapshotImage
    index: int
    term: int
    voters: frozenset[str]
    learners: frozenset[str]
    addresses: Addresses = ()


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `message` to node `to`; see the module doc for `after_persist`."""

    to: str
    message: Message
    after_persist: bool


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply these committed entries to the state machine, in order."""

    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class ProposalAccepted:
    """The proposal got (index, term); it succeeded iff an Apply later carries that pair."""

    request_id: RequestId
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class ReadReady:
    """Serve read `request_id` once the state machine has applied through `read_index`."""

    request_id: RequestId
    read_index: int


@dataclass(frozen=True, slots=True)
class NotLeader:
    """This node cannot serve the request; `leader_id` is the leader it knows, if any."""

    leader_id: str | None


@dataclass(frozen=True, slots=True)
class QuorumLost:
    """The leader could not confirm its leadership with a quorum in time."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The leader declined an admin request (transfer, membership change); `why` says why.
    `retryable`: the obstacle is passing (a change or transfer in flight, this term's no-op
    not yet committed, a learner catching up), so the same request may succeed soon."""

    why: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """Request `request_id` definitely did not and will not take effect."""

    request_id: RequestId
    reason: NotLeader | QuorumLost | Refused


@dataclass(frozen=True, slots=True)
class TransferCompleted:
    """The leadership transfer `request_id` is over: `leader_id` now leads a newer term."""

    request_id: RequestId
    leader_id: str


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Snapshot the state machine (at least through `applied_index`), then call snapshot_taken."""

    applied_index: int


StorageEffect = PersistHardState | AppendToLog | TruncateLog | RestoreSnapshot
Effect = (
    StorageEffect
    | Send
    | Apply
    | ProposalAccepted
    | ReadReady
    | Reject
    | TakeSnapshot
    | TransferCompleted
)
