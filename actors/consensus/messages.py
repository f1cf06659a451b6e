"""Every message Raft nodes exchange, as frozen dataclasses (shared safely when duplicated).

Each message carries the sender's id and term. Vote requests carry the candidate's last
log position for the election restriction; replication carries the (prev_index,
prev_term) pair for the log matching check.
"""

from __future__ import annotations

from dataclasses import dataclass

from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.membership import Addresses

RequestId = int
"""A caller-chosen id that ties a proposal or read to its outcome effect."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Common header: who sent it and in which term."""

    sender: str
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries(Message):
    """Leader -> follower: append `entries` after (prev_index, prev_term); learn the commit."""

    prev_index: int
    prev_term: int
    entries: tuple[LogEntry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesResponse(Message):
    """Follower -> leader. On success `match_index` is the follower's verified last index.

    On rejection `rejected_prev_index` names the request's prev_index (to drop stale
    rejections) and (hint_index, hint_term) tell the leader where the logs may agree.
    """

    success: bool
    match_index: int = 0
    rejected_prev_index: int = 0
    hint_index: int = 0
    hint_term: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    """Leader -> follower: 'I am still leader'; `context` numbers the round for reads."""

    commit: int
    context: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse(Message):
    """Follower -> leader: acknowledges the heartbeat round `context`."""

    context: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVote(Message):
    """Would-be candidate -> voter; `term` is the term it WOULD use. Changes no state."""

    last_log_index: int
    last_log_term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteResponse(Message):
    """Voter -> would-be candidate; a grant echoes the proposed term, a refusal our own.

    `removed_at` > 0 answers a stranger: the voter's committed configuration, set by the
    entry at that index, leaves the candidate out (it was removed and does not know it).
    """

    granted: bool
    removed_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote(Message):
    """Candidate -> voter: vote for me in `term`; my log ends at (last_log_index, last_log_term).

    `force` marks the election a leader transfer started: voters ignore their leader lease.
    """

    last_log_index: int
    last_log_term: int
    force: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteResponse(Message):
    """Voter -> candidate: the vote, sent only after the vote is durable; `removed_at` as
    in PreVoteResponse."""

    granted: bool
    removed_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(Message):
    """Leader -> follower behind the leader's log start: one chunk of a state snapshot.

    The snapshot covers the log through (last_index, last_term). Chunks arrive with a
    byte `offset`; `done` marks the last one.
    """

    last_index: int
    last_term: int
    voters: frozenset[str]
    learners: frozenset[str]
    offset: int
    data: bytes
    done: bool
    addresses: Addresses = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotResponse(Message):
    """Follower -> leader: the snapshot is installed (or already covered) through `match_index`.

    While a snapshot is still arriving `match_index` is 0: the follower answers the chunk
    at `chunk_offset` of the snapshot ending at `snapshot_index` and holds its first
    `next_offset` bytes (the leader sends from there; 0 after it lost them).
    """

    match_index: int
    snapshot_index: int = 0
    chunk_offset: int = 0
    next_offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest(Message):
    """Follower -> leader: please confirm leadership and tell me a safe read index."""

    context: RequestId


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResponse(Message):
    """Leader -> follower: reads may be served once applied through `read_index`."""

    context: RequestId
    success: bool
    read_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leader -> caught-up voter during a leadership transfer: campaign right now."""
