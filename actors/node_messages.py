"""The messages the node's actors send each other (frozen dataclasses, one per event).

Results travel back to blocked callers in `concurrent.futures.Future`s carried inside
the messages: a proposal's or read's outcome, or an RPC's reply slot.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.durable_state import SnapshotImage
from dref.actors.consensus.effects import StorageEffect
from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.messages import Message

# ----------------------------------------------------------- to the consensus actor


@dataclass(frozen=True)
class Tick:
    """The ticker's clock reading (time.monotonic in ms), and for how long before it the
    ticker could not run (0 normally; see `Ticker`)."""

    now_ms: int
    stalled_ms: int = 0


@dataclass(frozen=True)
class Inbound:
    """A peer's request; `reply` receives the core's answer (None: nothing to answer)."""

    message: Message
    reply: Future[Message | None]


@dataclass(frozen=True)
class PeerReply:
    """A peer's answer to one of our requests."""

    message: Message


@dataclass(frozen=True)
class Proposal:
    """A caller's command and the future that gets its result."""

    command: bytes
    outcome: Future[bytes]


@dataclass(frozen=True)
class ReadRequest:
    """A caller's query, how to make it linearizable, and the future for its answer."""

    query: bytes
    policy: ReadPolicy
    outcome: Future[bytes]


@dataclass(frozen=True)
class CallersWaiting:
    """Proposals or reads wait in the node's inboxes: drain them all in one turn."""


@dataclass(frozen=True)
class Durable:
    """The storage writer made everything through batch `seq` durable; the log's last
    appended entry, if this flush appended one, is (log_index, log_term)."""

    seq: int
    log_index: int | None = None
    log_term: int = 0


@dataclass(frozen=True)
class Applied:
    """The state machine applied through `index`."""

    index: int


@dataclass(frozen=True)
class SnapshotSaved:
    """The snapshot through (index, term) is durable and the log compacted behind it."""

    index: int
    term: int
    data: SnapshotImage


@dataclass(frozen=True)
class StatusQuery:
    """Asked (pykka `ask`) for a `ConsensusStatus`."""


@dataclass(frozen=True)
class Connect:
    """Wires an actor to the ones it reports to (sent once, before any other message)."""

    consensus: pykka.ActorRef[Any] | None = None
    storage: pykka.ActorRef[Any] | None = None


# ------------------------------------------------------------- to the storage writer


@dataclass(frozen=True)
class StorageBatch:
    """Storage effects of one consensus turn, in order, numbered `seq`.

    `replies` answer peers' requests and may leave only once this batch is durable: the
    storage writer fills their reply slots right after its fsync (one hop less than
    going back through the consensus actor)."""

    seq: int
    effects: tuple[StorageEffect, ...]
    replies: tuple[tuple[Future[Message | None], Message], ...] = ()


@dataclass(frozen=True)
class SaveSnapshot:
    """Durably save this state-machine image, then compact the log through `index`."""

    index: int
    term: int
    data: SnapshotImage


@dataclass(frozen=True)
class CommitReached:
    """The commit index to record (lazily) in command-log's header."""

    index: int


@dataclass(frozen=True)
class Flush:
    """The writer's note to itself: everything queued before this is one group commit."""


@dataclass(frozen=True)
class FsyncStats:
    """Asked for (p50_ms, p99_ms, flushes) of recent group commits."""


# ------------------------------------------------------------------ to the applier


@dataclass(frozen=True)
class ApplyEntries:
    """Committed entries, in order (some may already be applied)."""

    entries: tuple[LogEntry, ...]


@dataclass(frozen=True)
class RestoreState:
    """Replace the state machine with a leader's snapshot through (index, term)."""

    data: SnapshotImage
    index: int
    term: int


@dataclass(frozen=True)
class LeadershipLost:
    """This node stopped leading: entries it appended may or may not commit under the next
    leader, so callers still waiting learn that the outcome is unknown."""


@dataclass(frozen=True)
class AwaitEntry:
    """Resolve `outcome` when the entry at `index` applies: success iff it has `term`."""

    index: int
    term: int
    outcome: Future[bytes]


@dataclass(frozen=True)
class ServeRead:
    """Answer `query` once applied through `read_index`."""

    read_index: int
    query: bytes
    outcome: Future[bytes]


@dataclass(frozen=True)
class ApplierBatch:
    """The state machine work of one consensus turn, in order: one wake-up, not N."""

    messages: tuple[ApplyEntries | RestoreState | TakeSnapshotNow | AwaitEntry | ServeRead, ...]


@dataclass(frozen=True)
class TakeSnapshotNow:
    """Snapshot the state machine (it has applied at least through `min_index`)."""

    min_index: int


@dataclass(frozen=True)
class ApplierStats:
    """Asked for the applied index."""
