"""The leader role: replicate with batching and pipelining, commit by quorum of current-term
entries, serve linearizable reads, step down when a quorum stops answering, hand leadership
over (TimeoutNow) and append one-server membership changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.effects import (
    NotLeader,
    ProposalAccepted,
    QuorumLost,
    ReadReady,
    Refused,
    Reject,
    TransferCompleted,
)
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.consensus.membership import ChangeAction, MembershipChange
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
from dref.actors.consensus.progress import Progress, ReplicationState
from dref.actors.consensus.read_only import PendingRead, ReadTracker
from dref.actors.consensus.transfer import PendingTransfer

if TYPE_CHECKING:
    from dref.actors.consensus.raft import RaftCore

_FOREVER = 2**62
"""The leader's own heartbeat ack: always the most recent one (it counts itself)."""


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
        self.lease_disabled = False
        """Set once a TimeoutNow left: its forced election ignores leases for good."""

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

    def forgive_silence(self, stalled_ms: int) -> None:
        """This leader did not run for `stalled_ms`: treat each voter as heard that much
        later (at most now), so check-quorum judges only time the leader was running."""
        now = self.core.now_ms
        for progress in self.progress.values():
            progress.last_heard_ms = min(now, progress.last_heard_ms + stalled_ms)

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
            if message.match_index == 0:
                self._on_snapshot_chunk_ack(message, progress)
                return
            if not progress.acknowledged(message.match_index):
                progress.become_probe()
            self.maybe_commit()
            self._send_more(message.sender)
            self._maybe_send_timeout_now()
        elif isinstance(message, ReadIndexRequest):
            self._read(PendingRead(message.context, message.sender), ReadPolicy.READ_INDEX)

    def propose(self, command: bytes, request_id: RequestId) -> None:
        """Append a client command and start replicating it (not while handing over)."""
        self.propose_many(((command, request_id),))

    def propose_many(self, proposals: Sequence[tuple[bytes, RequestId]]) -> None:
        """Append client commands together, then send each peer what flow control allows."""
        core = self.core
        if core.transfer is not None:
            for _, request_id in proposals:
                core.emit(Reject(request_id, NotLeader(None)))
            return
        term = core.state.term
        first = core.log.last_index + 1
        entries = [
            LogEntry(first + i, term, command, EntryKind.NORMAL)
            for i, (command, _) in enumerate(proposals)
        ]
        if not entries:
            return
        core.append_local(entries)
        for entry, (_, request_id) in zip(entries, proposals, strict=True):
            core.emit(ProposalAccepted(request_id, entry.index, term))
        for peer in self.progress:
            self._send_more(peer)

    def read(self, request_id: RequestId, policy: ReadPolicy) -> None:
        """Serve a local read by lease or by a ReadIndex round."""
        self._read(PendingRead(request_id, None), policy)

    def close(self, reason: NotLeader | QuorumLost) -> None:
        """Leadership ended: fail every read still held."""
        for read in self.reads.drain():
            self._answer_read(read, None, reason)

    # ------------------------------------------------------- transfer, membership

    def transfer(self, request_id: RequestId, target: str | None) -> None:
        """Start handing leadership to `target` (None: the most up-to-date other voter)."""
        core = self.core
        state = core.state
        if core.transfer is not None:
            core.emit(Reject(request_id, Refused("a leadership transfer is already running")))
            return
        if target is None:
            others = sorted(state.voters - {state.node_id})
            if not others:
                core.emit(Reject(request_id, Refused("there is no other voter to lead")))
                return
            target = max(others, key=lambda voter: self.progress[voter].match_index)
        elif target == state.node_id:
            core.emit(TransferCompleted(request_id, target))
            return
        elif target not in state.voters:
            core.emit(Reject(request_id, Refused(f"{target} is not a voter")))
            return
        deadline = core.now_ms + 2 * core.config.election_timeout_ms
        core.transfer = PendingTransfer(request_id, target, deadline)
        self._send_more(target)
        self._maybe_send_timeout_now()

    def _maybe_send_timeout_now(self) -> None:
        """Once the transfer target holds our whole log, tell it to campaign at once."""
        core = self.core
        transfer = core.transfer
        if transfer is None or transfer.target not in self.progress:
            return
        if self.progress[transfer.target].match_index < core.log.last_index:
            return
        self.lease_disabled = True
        core.send(
            transfer.target,
            TimeoutNow(sender=core.node_id, term=core.state.term),
            after_persist=False,
        )

    def change_membership(self, request_id: RequestId, change: MembershipChange) -> None:
        """Append a one-server configuration change, if it is safe to start one now."""
        core = self.core
        try:
            membership = change.applied_to(core.membership)
        except ValueError as exc:  # invalid against the configuration in force: final
            core.emit(Reject(request_id, Refused(str(exc))))
            return
        busy = self._membership_refusal(change)
        if busy is not None:
            core.emit(Reject(request_id, Refused(busy, retryable=True)))
            return
        entry = LogEntry(
            core.log.last_index + 1, core.state.term, membership.encode(), EntryKind.CONFIG
        )
        core.append_local([entry])  # in force from now on (this updates our progress map)
        core.emit(ProposalAccepted(request_id, entry.index, entry.term))
        for peer in self.progress:
            self._send_more(peer)

    def _membership_refusal(self, change: MembershipChange) -> str | None:
        """Why a change may not start yet (each reason passes with time), or None. One
        uncommitted change at a time, and only after this term's no-op committed (else an
        older leader's change may be lost).
        A learner is promoted only once it holds the configuration in force: a voter that
        knows no members ignores every candidate, and could block elections for good."""
        core = self.core
        state = core.state
        if core.transfer is not None:
            return "a leadership transfer is running"
        if not self.committed_in_term():
            return "the leader has not committed an entry of its term yet"
        if core.config_index > state.commit_index:
            return "the previous membership change is not committed yet"
        if change.action is ChangeAction.PROMOTE:
            progress = self.progress.get(change.node_id)
            lag_allowed = core.config.max_entries_per_message
            if progress is not None and (
                progress.match_index < core.config_index
                or state.commit_index - progress.match_index > lag_allowed
            ):
                return (
                    f"{change.node_id} is still catching up (has {progress.match_index}, "
                    f"commit is {state.commit_index}, configuration {core.config_index})"
                )
        return None

    def membership_changed(self) -> None:
        """The configuration changed: track progress of new members, forget removed ones."""
        core = self.core
        peers = set(core.state.peers)
        for peer in list(self.progress):
            if peer not in peers:
                del self.progress[peer]
        for peer in sorted(peers - self.progress.keys()):
            self.progress[peer] = Progress(
                next_index=core.log.last_index + 1, last_heard_ms=core.now_ms
            )

    # -------------------------------------------------------------- commitment

    def maybe_commit(self) -> None:
        """Commit the highest index a quorum holds durably, if it is from this term."""
        core = self.core
        state = core.state
        matches = self._own(core.log.durable_index) + [
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
        """Send as much as flow control allows to `peer`.

        While a message is in flight to a replicating follower, a partial batch waits for
        its answer (or until a full message's worth has queued): the answer comes in one
        round trip, and the next message then carries everything proposed meanwhile, so a
        busy leader sends few large messages instead of many small ones."""
        progress = self.progress[peer]
        last_index = self.core.log.last_index
        config = self.core.config
        while progress.can_send(config.max_inflight):
            if progress.state is ReplicationState.REPLICATE and (
                progress.next_index > last_index
                or progress.inflight
                and last_index - progress.next_index + 1 < config.max_entries_per_message
            ):
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
        """Start sending our snapshot to `peer`, one chunk in flight at a time."""
        snapshot = self.core.snapshot
        if snapshot is None:
            raise RuntimeError("log compacted without a snapshot")
        progress.become_snapshot(snapshot)
        self._send_snapshot_chunk(peer, progress)

    def _send_snapshot_chunk(self, peer: str, progress: Progress) -> None:
        """Send the chunk starting at the follower's acknowledged offset."""
        core = self.core
        snapshot = progress.snapshot
        assert snapshot is not None
        start = progress.snapshot_offset
        data = snapshot.data[start : start + core.config.snapshot_chunk_bytes]
        core.send(
            peer,
            InstallSnapshot(
                sender=core.node_id,
                term=core.state.term,
                last_index=snapshot.index,
                last_term=snapshot.term,
                voters=snapshot.voters,
                learners=snapshot.learners,
                addresses=snapshot.addresses,
                offset=start,
                data=data,
                done=start + len(data) >= len(snapshot.data),
            ),
            after_persist=False,
        )
        progress.snapshot_sent_ms = core.now_ms

    def _on_snapshot_chunk_ack(self, response: InstallSnapshotResponse, progress: Progress) -> None:
        """The follower holds `next_offset` bytes: send on from there. Answers to an older
        chunk or snapshot are dropped (the chunk in flight gets its own answer)."""
        snapshot = progress.snapshot
        if (
            snapshot is None
            or response.snapshot_index != snapshot.index
            or response.chunk_offset != progress.snapshot_offset
        ):
            return
        progress.snapshot_offset = min(response.next_offset, len(snapshot.data))
        self._send_snapshot_chunk(response.sender, progress)

    def _on_append_response(self, response: AppendEntriesResponse, progress: Progress) -> None:
        if response.success:
            if progress.acknowledged(response.match_index):
                self.maybe_commit()
                self._maybe_send_timeout_now()
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
        transfer = core.transfer
        if transfer is not None and transfer.target == response.sender:
            self._maybe_send_timeout_now()  # the first TimeoutNow may have been lost
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
            self._send_snapshot_chunk(peer, progress)  # resume where it was acknowledged
        self._send_more(peer)

    # --------------------------------------------------------------- liveness

    def _broadcast_heartbeat(self) -> int:
        """Send a numbered heartbeat to every follower; returns its number."""
        core = self.core
        now = core.now_ms
        self.beat += 1
        self.beat_sent_ms[self.beat] = now
        horizon = now - core.config.election_timeout_ms
        sent_ms = self.beat_sent_ms  # oldest first: drop from the front, never copy it
        while (oldest := next(iter(sent_ms))) != self.beat and sent_ms[oldest] < horizon:
            del sent_ms[oldest]
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

    def _own(self, value: int) -> list[int]:
        """This leader's own contribution to a quorum count: none once it is not a voter."""
        return [value] if self.core.state.is_voter else []

    def _voter_progress(self) -> list[Progress]:
        state = self.core.state
        return [self.progress[v] for v in state.voters if v != state.node_id]

    def _quorum_heard_recently(self) -> bool:
        core = self.core
        now = core.now_ms
        heard = sorted(
            self._own(now) + [p.last_heard_ms for p in self._voter_progress()], reverse=True
        )
        return heard[core.state.quorum - 1] > now - core.config.election_timeout_ms

    def lease_expiry_ms(self) -> int | None:
        """Until when (core clock, ms) a lease read needs no round: `lease_ms` after the
        heartbeat a quorum acked last was sent; None while no lease may be used."""
        core = self.core
        if self.lease_disabled or not core.config.check_quorum or not self.committed_in_term():
            return None
        sent = self._own(_FOREVER) + [
            p.acked_beat_sent_ms for p in self._voter_progress() if p.acked_beat_sent_ms is not None
        ]
        quorum = core.state.quorum
        if len(sent) < quorum:
            return None
        sent.sort(reverse=True)
        return sent[quorum - 1] + core.config.lease_ms

    # ------------------------------------------------------------------ reads

    def _read(self, read: PendingRead, policy: ReadPolicy) -> None:
        core = self.core
        if policy is ReadPolicy.LEASE:
            expiry = self.lease_expiry_ms()
            if expiry is not None and core.now_ms < expiry:
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
        beats = sorted(
            self._own(self.beat) + [p.acked_beat for p in self._voter_progress()], reverse=True
        )
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
