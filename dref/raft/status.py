"""`NodeStatus`: a point-in-time view of one node, for operators, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeMetrics:
    """Counters since start, recent group-commit fsync latency, snapshot traffic."""

    elections_started: int
    leader_changes: int
    """Times the leader this node knows changed (to another node or to none)."""
    proposals: int
    entries_committed: int
    apply_lag: int
    fsync_p50_ms: float
    fsync_p99_ms: float
    group_commits: int
    snapshot_sends: dict[str, int]
    """Per peer (sent while leading): snapshot transfers started; a restart counts again."""
    snapshot_bytes_sent: dict[str, int]
    """Per peer: snapshot chunk bytes handed to the transport, resent chunks included."""
    snapshot_installs: int
    """Snapshots received from a leader and installed."""
    snapshot_bytes_installed: int
    snapshots_taken: int
    """Snapshots of the state machine taken here (each compacts the log)."""
    snapshot_bytes: int
    """Size of this node's latest snapshot, taken or installed (0: none)."""


@dataclass(frozen=True)
class NodeStatus:
    """Role, term, leader and log positions of one node; `match_indexes` only on a leader."""

    node_id: str
    address: str
    role: str
    term: int
    leader_id: str | None
    leader_address: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    metrics: NodeMetrics
    match_indexes: dict[str, int] = field(default_factory=dict)
    voters: list[str] = field(default_factory=list)
    """The voters of the configuration in force."""
    unreachable: list[str] = field(default_factory=list)
    """Peers this node cannot reach now (its links to them fail)."""
    round_trips: dict[str, float] = field(default_factory=dict)
    """Smoothed heartbeat round-trip time in seconds to each peer that answered one
    within an election timeout (so only on a leader, over the native peer links)."""
    removed: bool = False
    """A member told this node that a committed configuration removed it: it does not
    campaign until a leader adds it back."""
    removed_by: str | None = None
    removed_at: int = 0
    """The index of the configuration entry that removed it."""
    blank_start: str | None = None
    """None, or "waiting" / "refused": the node started with no Raft state and does not
    vote until its peers show it never voted before (see README, On-disk files)."""
