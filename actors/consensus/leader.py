"""The leader role: replicate with batching and pipelining, commit by quorum of current-term
entries, serve linearizable reads, and step down when a quorum stops answering."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.effects import (
    NotLeader,
    ProposalAccepted,
    QuorumLost,
    ReadReady,
    Reject,
)
from dref.actors.consensus.log_entry import EntryKind, LogEntry
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
)
from dref.actors.consensus.progress import Progress, ReplicationState
from dref.actors.consensus.read_only import PendingRead, ReadTracker

if TYPE_CHECKING:
    from dref.actors.consensus.raft import RaftCore


class LeaderRole:
    """Owns one `Progress` per follower and the read machinery for the current term."""

    def __init__(self, core: RaftCore) -> None:
        self.core = core
        now = core.now_ms
        next_index = core.log.last_index + 1
        self.progress = {
            peer: Progress(next_index=next_index, last_heard_ms=now) for peer in core.state.peers
        }
        self.reads = ReadTracker()
        self.beat = 0
        self.beat_sent_ms: dict[int, int] = {}
        self.next_heartbeat_ms = now + core.config.heartbeat_interval_ms

    def start(self) -> None:
        """Append this term's no-op (it lets earlier entries commit) and replicate it."""
        core = self.core
        noop = LogEntry(core.log.last_index + 1, core.state.term, b"", EntryKind.NOOP)
        core.append_local([noop])
        for peer in self.progress:
            self._send_more(peer)

    # ------------------------------------------------------------------ events

    def tick(self) -> None:
        """Step down without a recent quorum; send heartbeats when due."""
        core = self.core
        if core.config.check_quorum and not self._quorum_heard_recently():
            core.become_follower(core.state.term, None, QuorumLost())
            return
        if core.now_ms >= self.next_heartbeat_ms:
            self._broadcast_heartbeat()

    def step(self, message: Message) -> None:
        """Handle a follower's answer or a forwarded read."""
        progress = self.progress.get(message.sender)
        if progress is None:
            return
        progress.last_heard_ms = self.core.now_ms
        if isinstance(message, AppendEntriesResponse):
            self._on_append_response(message, progress)
        elif isinstance(message, HeartbeatResponse):
            self._on_heartbeat_response(message, progress)
        elif isinstance(message, InstallSnapshotResponse):
            if not progress.acknowledged(message.match_index):
                progress.become_probe()
            self.maybe_commit()
            self._send_more(message.sender)
        elif isinstance(message, ReadIndexRequest):
            self._read(PendingRead(message.context, message.sender), ReadPolicy.READ_INDEX)

    def propose(self, command: bytes, request_id: RequestId) -> None:
        """Append a client command and start replicating it."""
        core = self.core
        entry = LogEntry(core.log.last_index + 1, core.state.term, command, EntryKind.NORMAL)
        core.append_local([entry])
        core.emit(ProposalAccepted(request_id, entry.index, entry.term))
        for peer in self.progress:
            self._send_more(peer)

    def read(self, request_id: RequestId, policy: ReadPolicy) -> None:
        """Serve a local read by lease or by a ReadIndex round."""
        self._read(PendingRead(request_id, None), policy)

    def close(self, reason: NotLeader | QuorumLost) -> None:
        """Leadership ended: fail every read still held."""
        for read in self.reads.drain():
            self._answer_read(read, None, reason)

    # -------------------------------------------------------------- commitment

    def maybe_commit(self) -> None:
        """Commit the highest index a quorum holds durably, if it is from this term."""
        core = self.core
        state = core.state
        matches = [core.log.durable_index] + [
            self.progress[voter].match_index for voter in state.voters if voter != state.node_id
        ]
        matches.sort(reverse=True)
        candidate = matches[state.quorum - 1]
        if candidate > state.commit_index and core.log.term_at(candidate) == state.term:
            core.commit_to(candidate)
            self._start_read_round()

    def committed_in_term(self) -> bool:
        """Reads are safe only after an entry of this term (the no-op) has committed."""
        core = self.core
        return core.log.term_at(core.state.commit_index) == core.state.term

    # ------------------------------------------------------------- replication

    def _send_more(self, peer: str) -> None:
        """Send as much as flow control allows to `peer`."""
        progress = self.progress[peer]
        last_index = self.core.log.last_index
        max_inflight = self.core.config.max_inflight
        while progress.can_send(max_inflight):
            if progress.state is ReplicationState.REPLICATE and progress.next_index > last_index:
                return
            self._send_append(peer, progress)

    def _send_append(self, peer: str, progress: Progress) -> None:
        core = self.core
        log = core.log
        prev_index = progress.next_index - 1
        prev_term = log.term_at(prev_index)
        if prev_term is None:
            self._send_snapshot(peer, progress)
            return
        entries: list[LogEntry] = []
        if progress.next_index <= log.last_index:
            config = core.config
            entries = log.batch_from(
                progress.next_index, config.max_entries_per_message, config.max_bytes_per_message
            )
        core.send(
            peer,
            AppendEntries(
                sender=core.node_id,
                term=core.state.term,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=tuple(entries),
                leader_commit=core.state.commit_index,
            ),
            after_persist=False,
        )
        progress.sent(prev_index + len(entries), core.now_ms)

    def _send_snapshot(self, peer: str, progress: Progress) -> None:
        core = self.core
        snapshot = core.snapshot
        if snapshot is None:
            raise RuntimeError("log compacted without a snapshot")
        core.send(
            peer,
            InstallSnapshot(
                sender=core.node_id,
                term=core.state.term,
                last_index=snapshot.index,
                last_term=snapshot.term,
                voters=snapshot.voters,
                learners=snapshot.learners,
                offset=0,
                data=snapshot.data,
                done=True,
            ),
            after_persist=False,
        )
        progress.become_snapshot(core.now_ms)

    def _on_append_response(self, response: AppendEntriesResponse, progress: Progress) -> None:
        if response.success:
            if progress.acknowledged(response.match_index):
                self.maybe_commit()
        else:
            if not progress.rejected(response.rejected_prev_index, self._retry_index(response)):
                return
        self._send_more(response.sender)

    def _retry_index(self, response: AppendEntriesResponse) -> int:
        """Next index to try after a rejection, skipping a whole conflicting term at once."""
        if response.hint_term == 0:
            return response.hint_index
        ours = self.core.log.last_index_of_term(response.hint_term, response.rejected_prev_index)
        return ours + 1 if ours is not None else response.hint_index

    def _on_heartbeat_response(self, response: HeartbeatResponse, progress: Progress) -> None:
        core = self.core
        if response.sender in core.state.voters:
            if response.context > progress.acked_beat:
                progress.acked_beat = response.context
                sent = self.beat_sent_ms.get(response.context)
                if sent is not None:
                    progress.acked_beat_sent_ms = sent
            self._confirm_reads()
        self._resume_stalled(response.sender, progress)

    def _resume_stalled(self, peer: str, progress: Progress) -> None:
        """The follower is alive but behind: resend what may have been lost."""
        core = self.core
        if progress.match_index >= core.log.last_index:
            return
        now = core.now_ms
        if progress.state is ReplicationState.PROBE:
            progress.probe_sent = False
        elif progress.state is ReplicationState.REPLICATE:
            oldest = progress.oldest_inflight_ms()
            if oldest is not None and now - oldest > 2 * core.config.heartbeat_interval_ms:
                progress.become_probe()
        elif now - progress.snapshot_sent_ms > core.config.election_timeout_ms:
            progress.become_probe()
        self._send_more(peer)

    # --------------------------------------------------------------- liveness

    def _broadcast_heartbeat(self) -> int:
        """Send a numbered heartbeat to every follower; returns its number."""
        core = self.core
        now = core.now_ms
        self.beat += 1
        self.beat_sent_ms[self.beat] = now
        horizon = now - core.config.election_timeout_ms
        for beat, sent in list(self.beat_sent_ms.items()):
            if sent >= horizon:
                break
            del self.beat_sent_ms[beat]
        self.next_heartbeat_ms = now + core.config.heartbeat_interval_ms
        commit = core.state.commit_index
        for peer, progress in self.progress.items():
            core.send(
                peer,
                Heartbeat(
                    sender=core.node_id,
                    term=core.state.term,
                    commit=min(progress.match_index, commit),
                    context=self.beat,
                ),
                after_persist=False,
            )
        return self.beat

    def _voter_progress(self) -> list[Progress]:
        state = self.core.state
        return [self.progress[v] for v in state.voters if v != state.node_id]

    def _quorum_heard_recently(self) -> bool:
        core = self.core
        now = core.now_ms
        heard = sorted([now] + [p.last_heard_ms for p in self._voter_progress()], reverse=True)
        return heard[core.state.quorum - 1] > now - core.config.election_timeout_ms

    def _lease_valid(self) -> bool:
        """True while a quorum acked a heartbeat sent less than `lease_ms` ago."""
        core = self.core
        now = core.now_ms
        sent = [now] + [
            p.acked_beat_sent_ms for p in self._voter_progress() if p.acked_beat_sent_ms is not None
        ]
        quorum = core.state.quorum
        if len(sent) < quorum:
            return False
        sent.sort(reverse=True)
        return now < sent[quorum - 1] + core.config.lease_ms

    # ------------------------------------------------------------------ reads

    def _read(self, read: PendingRead, policy: ReadPolicy) -> None:
        core = self.core
        if (
            policy is ReadPolicy.LEASE
            and core.config.check_quorum
            and self.committed_in_term()
            and self._lease_valid()
        ):
            self._answer_read(read, core.state.commit_index, None)
            return
        self.reads.add(read)
        self._start_read_round()

    def _start_read_round(self) -> None:
        if self.reads.can_start() and self.committed_in_term():
            self.reads.start_round(self._broadcast_heartbeat(), self.core.state.commit_index)
            self._confirm_reads()

    def _confirm_reads(self) -> None:
        """Release the in-flight round once a quorum acked its heartbeat; start the next."""
        beats = sorted([self.beat] + [p.acked_beat for p in self._voter_progress()], reverse=True)
        round_ = self.reads.take_confirmed(beats[self.core.state.quorum - 1])
        if round_ is None:
            return
        for read in round_.reads:
            self._answer_read(read, round_.read_index, None)
        self._start_read_round()

    def _answer_read(
        self, read: PendingRead, read_index: int | None, failure: NotLeader | QuorumLost | None
    ) -> None:
        core = self.core
        if read.origin is None:
            if read_index is not None:
                core.emit(ReadReady(read.request_id, read_index))
            else:
                core.emit(Reject(read.request_id, failure or QuorumLost()))
            return
        core.send(
            read.origin,
            ReadIndexResponse(
                sender=core.node_id,
                term=core.state.term,
                context=read.request_id,
                success=read_index is not None,
                read_index=read_index or 0,
            ),
            after_persist=False,
        )
