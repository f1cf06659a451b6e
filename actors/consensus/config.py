"""Tunables of one Raft node, validated once so the roles can trust them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ReadPolicy(enum.Enum):
    """How a read is made linearizable.

    READ_INDEX confirms leadership with a quorum heartbeat round first. LEASE skips the
    round while the leader lease holds (it relies on clocks drifting at most
    `RaftConfig.max_clock_drift_ms` per election timeout) and falls back to READ_INDEX.
    """

    READ_INDEX = "read_index"
    LEASE = "lease"


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timing, batching and snapshot settings; times are in milliseconds of the caller's clock.

    The election timeout is drawn from [election_timeout_ms, 2 * election_timeout_ms).
    A leader lease lasts election_timeout_ms - max_clock_drift_ms after a quorum ack.
    """

    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    max_clock_drift_ms: int = 100
    max_entries_per_message: int = 64
    max_bytes_per_message: int = 1 << 20
    max_inflight: int = 8
    snapshot_every: int = 10_000
    snapshot_chunk_bytes: int = 1 << 20
    """A snapshot travels in InstallSnapshot chunks of at most this many bytes."""
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms <= 0:
            raise ValueError("heartbeat_interval_ms must be positive")
        if self.election_timeout_ms <= self.heartbeat_interval_ms:
            raise ValueError("election_timeout_ms must exceed heartbeat_interval_ms")
        if not 0 <= self.max_clock_drift_ms < self.election_timeout_ms:
            raise ValueError("max_clock_drift_ms must lie in [0, election_timeout_ms)")
        if self.max_entries_per_message < 1 or self.max_bytes_per_message < 1:
            raise ValueError("message batch limits must be positive")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0 (0 disables snapshots)")
        if self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_chunk_bytes must be positive")

    @property
    def lease_ms(self) -> int:
        """How long a quorum ack keeps the leader lease valid."""
        return self.election_timeout_ms - self.max_clock_drift_ms
