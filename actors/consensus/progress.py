"""The leader's view of one follower: how far it matches, what to send next, what is in flight."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from dref.actors.consensus.durable_state import Snapshot


class ReplicationState(enum.Enum):
    """PROBE sends one message and waits; REPLICATE pipelines; SNAPSHOT waits for an install."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    """Match/next indexes plus flow control and liveness bookkeeping for one follower."""

    next_index: int
    match_index: int = 0
    state: ReplicationState = ReplicationState.PROBE
    probe_sent: bool = False
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    """(last index sent, send time) of unacknowledged AppendEntries, oldest first."""
    snapshot_sent_ms: int = 0
    snapshot: Snapshot | None = None
    """The snapshot being sent (SNAPSHOT state); kept even if the leader compacts again
    meanwhile, so a long transfer is not restarted by every new snapshot."""
    snapshot_offset: int = 0
    """Bytes of that snapshot the follower acknowledged: the next chunk starts here."""
    last_heard_ms: int = 0
    acked_beat: int = 0
    acked_beat_sent_ms: int | None = None

    def become_probe(self) -> None:
        """Fall back to one message at a time, resuming right after the known match."""
        self.state = ReplicationState.PROBE
        self.snapshot = None
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        """The follower matches: stream entries optimistically."""
        self.state = ReplicationState.REPLICATE
        self.snapshot = None
        self.next_index = self.match_index + 1
        self.inflight.clear()

    def become_snapshot(self, snapshot: Snapshot) -> None:
        """The follower needs `snapshot`; stop appending until it is installed and send it
        from its first byte."""
        self.state = ReplicationState.SNAPSHOT
        self.snapshot = snapshot
        self.snapshot_offset = 0
        self.inflight.clear()

    def can_send(self, max_inflight: int) -> bool:
        """Whether flow control lets another AppendEntries go to this follower."""
        if self.state is ReplicationState.PROBE:
            return not self.probe_sent
        if self.state is ReplicationState.REPLICATE:
            return len(self.inflight) < max_inflight
        return False

    def sent(self, last_index: int, now_ms: int) -> None:
        """Record an AppendEntries ending at `last_index`."""
        if self.state is ReplicationState.REPLICATE:
            self.next_index = last_index + 1
            self.inflight.append((last_index, now_ms))
        else:
            self.probe_sent = True

    def acknowledged(self, match_index: int) -> bool:
        """Apply a success; returns whether the match advanced."""
        if match_index <= self.match_index:
            return False
        self.match_index = match_index
        self.next_index = max(self.next_index, match_index + 1)
        while self.inflight and self.inflight[0][0] <= match_index:
            self.inflight.popleft()
        if self.state is not ReplicationState.REPLICATE:
            self.become_replicate()
        return True

    def rejected(self, rejected_prev_index: int, retry_next: int) -> bool:
        """Apply a rejection; returns False when it is stale and must be ignored."""
        if self.state is ReplicationState.REPLICATE:
            if rejected_prev_index <= self.match_index:
                return False
        elif rejected_prev_index != self.next_index - 1:
            return False
        self.become_probe()
        self.next_index = max(self.match_index + 1, min(retry_next, rejected_prev_index))
        return True

    def oldest_inflight_ms(self) -> int | None:
        """Send time of the oldest unacknowledged message, if any."""
        return self.inflight[0][1] if self.inflight else None
