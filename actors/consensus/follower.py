"""The follower role: accept the leader's entries after the log matching check, install
snapshots, forward reads to the leader, and start an election when the leader goes quiet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.durable_state import IncomingSnapshot, Snapshot, SnapshotImage
from dref.actors.consensus.effects import NotLeader, QuorumLost, ReadReady, Reject
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestId,
    TimeoutNow,
)

if TYPE_CHECKING:
    from dref.actors.consensus.raft import RaftCore


class FollowerRole:
    """Follows the leader of the current term (if one is known)."""

    def __init__(self, core: RaftCore) -> None:
        self.core = core
        self.forwarded_reads: dict[RequestId, int] = {}
        """Reads waiting for the leader's ReadIndexResponse, with their give-up time."""
        self._snapshot_key: tuple[int, int] | None = None
        self._incoming: IncomingSnapshot | None = None

    def tick(self) -> None:
        """Campaign once the election deadline passes; give up on unanswered reads."""
        core = self.core
        now = core.now_ms
        for request_id, deadline in list(self.forwarded_reads.items()):
            if now >= deadline:
                del self.forwarded_reads[request_id]
                core.emit(Reject(request_id, QuorumLost()))
        if now >= core.election_deadline_ms and core.may_campaign():
            core.campaign(pre_vote=True)

    def step(self, message: Message) -> None:
        """Handle a message of the current term."""
        if isinstance(message, AppendEntries):
            self._on_append(message)
        elif isinstance(message, Heartbeat):
            self._on_heartbeat(message)
        elif isinstance(message, InstallSnapshot):
            self._on_snapshot_chunk(message)
        elif isinstance(message, ReadIndexResponse):
            self._on_read_index(message)
        elif isinstance(message, TimeoutNow) and self.core.state.is_voter:
            self.core.campaign(pre_vote=False, force=True)  # the leader hands over to us

    def propose(self, command: bytes, request_id: RequestId) -> None:
        """Followers take no writes; name the leader so the caller can go there."""
        self.core.emit(Reject(request_id, NotLeader(self.core.state.leader_id)))

    def read(self, request_id: RequestId, policy: ReadPolicy) -> None:
        """Ask the leader for a read index (a lease cannot be held by a follower)."""
        core = self.core
        leader = core.state.leader_id
        if leader is None:
            core.emit(Reject(request_id, NotLeader(None)))
            return
        self.forwarded_reads[request_id] = core.now_ms + core.config.election_timeout_ms
        core.send(
            leader,
            ReadIndexRequest(sender=core.node_id, term=core.state.term, context=request_id),
            after_persist=False,
        )

    def close(self, reason: NotLeader | QuorumLost) -> None:
        """Leader changed: the forwarded reads will never be answered."""
        for request_id in self.forwarded_reads:
            self.core.emit(Reject(request_id, reason))
        self.forwarded_reads.clear()

    def _reply(self, to: str, message: Message) -> None:
        self.core.send(to, message)

    def _on_append(self, request: AppendEntries) -> None:
        core = self.core
        log = core.log
        state = core.state
        if request.prev_index < state.commit_index:
            self._reply(request.sender, self._success(state.commit_index))
            return
        if not log.matches(request.prev_index, request.prev_term):
            hint_index, hint_term = log.reject_hint(request.prev_index)
            self._reply(
                request.sender,
                AppendEntriesResponse(
                    sender=state.node_id,
                    term=state.term,
                    success=False,
                    rejected_prev_index=request.prev_index,
                    hint_index=hint_index,
                    hint_term=hint_term,
                ),
            )
            return
        entries = request.entries
        first_new = log.first_conflict(entries)
        if first_new < len(entries):
            if entries[first_new].index <= log.last_index:
                core.truncate_local(entries[first_new].index)
            core.append_local(entries[first_new:])
        last_new = request.prev_index + len(entries)
        core.commit_to(min(request.leader_commit, last_new))
        self._reply(request.sender, self._success(last_new))

    def _success(self, match_index: int) -> AppendEntriesResponse:
        state = self.core.state
        return AppendEntriesResponse(
            sender=state.node_id, term=state.term, success=True, match_index=match_index
        )

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        core = self.core
        core.commit_to(min(beat.commit, core.log.last_index))
        self._reply(
            beat.sender,
            HeartbeatResponse(sender=core.node_id, term=core.state.term, context=beat.context),
        )

    def _on_snapshot_chunk(self, chunk: InstallSnapshot) -> None:
        """Collect a snapshot chunk by chunk, acknowledging how many bytes we hold; a chunk
        out of sequence (lost, duplicated, or of another snapshot) just tells the leader
        where to resume."""
        key = (chunk.last_index, chunk.last_term)
        incoming = self._incoming
        if chunk.offset == 0:
            self._snapshot_key = key
            incoming = self._incoming = self.core.receive_snapshot(*key)
        elif key != self._snapshot_key or incoming is None or chunk.offset != incoming.size:
            held = incoming.size if key == self._snapshot_key and incoming is not None else 0
            self._ack_chunk(chunk, held)
            return
        incoming.append(chunk.data)
        if not chunk.done:
            self._ack_chunk(chunk, incoming.size)
            return
        self._snapshot_key, self._incoming = None, None
        self._install(chunk, incoming.finish())

    def _ack_chunk(self, chunk: InstallSnapshot, next_offset: int) -> None:
        state = self.core.state
        self._reply(
            chunk.sender,
            InstallSnapshotResponse(
                sender=state.node_id,
                term=state.term,
                match_index=0,
                snapshot_index=chunk.last_index,
                chunk_offset=chunk.offset,
                next_offset=next_offset,
            ),
        )

    def _install(self, chunk: InstallSnapshot, data: SnapshotImage) -> None:
        core = self.core
        state = core.state
        if chunk.last_index <= state.commit_index:
            match = state.commit_index
        elif core.log.matches(chunk.last_index, chunk.last_term):
            core.commit_to(chunk.last_index)  # we already hold that prefix
            match = chunk.last_index
        else:
            core.restore_snapshot(
                Snapshot(
                    chunk.last_index,
                    chunk.last_term,
                    data,
                    chunk.voters,
                    chunk.learners,
                    chunk.addresses,
                )
            )
            match = chunk.last_index
        self._reply(
            chunk.sender,
            InstallSnapshotResponse(sender=state.node_id, term=state.term, match_index=match),
        )

    def _on_read_index(self, response: ReadIndexResponse) -> None:
        core = self.core
        if self.forwarded_reads.pop(response.context, None) is None:
            return
        if response.success:
            core.emit(ReadReady(response.context, response.read_index))
        else:
            core.emit(Reject(response.context, NotLeader(core.state.leader_id)))
