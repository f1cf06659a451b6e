"""Interop mode's consensus engine: upstream DRef's protocol (spec section 4), step by step.

The decisions are `UpstreamState`'s; this class carries them out: upstream's three files
(`voter-state`, `state-snapshot`, `command-log`) and nothing else, the key/value state
machine, and `DRefConsensus` calls to peers. One lock guards state and files, so peer RPCs
are handled one at a time, as upstream's mutexes do. Writes are serialized (one in flight),
which removes upstream's concurrent-submit reordering (spec 7.3) without changing a byte on
the wire: each write is one AppendEntries carrying the previous commit index, then one
Heartbeat carrying its own.

Where upstream's order would lose data on a crash, this one differs only in time, never in
what ends on disk: an installed snapshot is saved before the log is truncated (upstream
truncates first and saves in the background), and snapshots are saved in line.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from dref.actors.consensus.upstream_rules import UpstreamState, quorum_of
from dref.errors import NotLeaderError, QuorumLostError, StorageError
from dref.raft.config import UPSTREAM_SNAPSHOT_EVERY
from dref.raft.interop.peers import UpstreamPeers
from dref.storage.command_log import CommandLog, LogRecord
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.storage.state_snapshot import StateSnapshotFile
from dref.storage.voter_state import VoterState, VoterStateFile
from dref.wire.proto import dref_consensus_pb2 as pb
from dref.wire.proto.state_command_pb2 import DeleteIfExpiredCommand, StateCommand

__all__ = ["InteropEngine", "InteropTimings"]

_log = logging.getLogger("dref.interop")


class InteropTimings:
    """Upstream's timing settings in seconds (spec 1.7; Scala's defaults)."""

    def __init__(
        self,
        *,
        election_timeout: float = 0.4,
        heartbeat_interval: float = 0.08,
        rpc_timeout: float = 0.5,
        reaper_interval: float = 0.2,
    ) -> None:
        self.election_timeout = election_timeout
        self.heartbeat_interval = heartbeat_interval
        self.rpc_timeout = rpc_timeout
        self.reaper_interval = reaper_interval


class InteropEngine:
    """One node of an upstream DRef Raft cluster; thread-safe. Call `start()` to run the
    driver loop and the TTL reaper, `close()` to stop them."""

    def __init__(
        self,
        node_id: str,
        peers: dict[str, str],
        data_dir: Path,
        *,
        timings: InteropTimings,
        snapshot_every: int = UPSTREAM_SNAPSHOT_EVERY,
    ) -> None:
        self.node_id = node_id
        self.state = UpstreamState(node_id)
        self.state_machine = KeyValueStateMachine(history_revisions=0)
        """Upstream's key/value store (its revisions and sessions never leave this node)."""
        self.timings = timings
        self._snapshot_every = snapshot_every
        self._clock = time.monotonic
        self._lock = threading.RLock()
        self._submit_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._voter_file = VoterStateFile(data_dir)
        self._snapshot_file = StateSnapshotFile(data_dir)
        self._command_log = CommandLog(data_dir, validate_commands=False)
        self._pending: dict[int, bytes] = {}
        """Stored but unapplied entries by seq (a follower's, or an orphan)."""
        self._snapshots_in_flight: set[str] = set()
        """Peers an InstallSnapshot is on its way to (one at a time each)."""
        self._applied_since_snapshot = 0
        self._log_changes = 0
        """Counts changes to the log by others, so a write rolls back only its own entry."""
        peer_addresses = {peer: address for peer, address in peers.items() if peer != node_id}
        self.endpoint_ids = tuple(peer_addresses)
        """The peer ids at start, which GetEndpoints lists (before this node's own)."""
        self.peers = UpstreamPeers(peer_addresses, timings.rpc_timeout)
        self._recover()

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return self.peers.ids

    @property
    def quorum(self) -> int:
        """Acks, votes or grants needed, counting the peer map as it is now (spec 4.1)."""
        return quorum_of(len(self.peer_ids))

    def replace_peers(self, addresses: dict[str, str]) -> None:
        """Upstream's PeerMapSync (spec 4.9): the peers are now `addresses`, and the quorum
        follows at once, without consensus (spec 7.7)."""
        wanted = {peer: address for peer, address in addresses.items() if peer != self.node_id}
        with self._lock:
            if wanted == self.peers.addresses:
                return
            self.peers.replace(wanted)
            _log.info("peers now %s (quorum %d)", sorted(wanted), self.quorum)

    # -- startup (spec 4.2) -------------------------------------------------------------

    def _recover(self) -> None:
        snapshot = self._snapshot_file.load()
        base = 0
        if snapshot is not None:
            self.state_machine.restore(snapshot.SerializeToString())
            base = snapshot.last_seq
        loaded = self._command_log.open()
        max_log = max(loaded.records, default=0)
        commit = max(base, min(loaded.commit_seq, max_log))
        for seq in range(base + 1, commit + 1):
            command = loaded.records.get(seq)
            if command is None:
                raise StorageError(
                    str(self._command_log.path),
                    0,
                    f"record {seq} is missing; the log must hold every committed seq from"
                    f" {base + 1} (after the snapshot) to {commit}",
                )
            self.state_machine.apply(command)
        self._pending = {seq: cmd for seq, cmd in loaded.records.items() if seq > commit}
        voter = self._voter_file.load()
        state = self.state
        state.term, state.voted_for = voter.term, voter.voted_for
        if not self.peer_ids and voter.term == 0 and voter.voted_for is None:
            state.start_alone()
        self._persist_if_changed((voter.term, voter.voted_for))
        state.last_seq = max(base, max_log)
        state.commit_seq = state.last_applied = commit
        state.last_heartbeat = self._clock()
        _log.info(
            "recovered: term %d, last_seq %d, commit %d, %d pending, role %s",
            state.term,
            state.last_seq,
            commit,
            len(self._pending),
            state.role.value,
        )

    def _persist_if_changed(self, before: tuple[int, str | None]) -> None:
        """Write `voter-state` (fsync) if term or vote changed since `before`."""
        if self.state.voter_key() != before:
            self._voter_file.save(VoterState(self.state.term, self.state.voted_for))

    # -- answering peers (spec 4.4, 4.6, 4.7) -------------------------------------------

    def on_append_entries(self, request: pb.AppendEntriesRequest) -> tuple[bool, int]:
        with self._lock:
            if not self._follow(request.leader_id, request.term):
                return False, self.state.term
            if not self.state.accepts_seq(request.seq):
                return False, self.state.term
            self._command_log.append(LogRecord(request.seq, request.command))
            self.state.last_seq = request.seq
            self._log_changes += 1
            self._pending[request.seq] = request.command
            self._apply_committed(request.commit_seq)
            return True, self.state.term

    def on_heartbeat(self, request: pb.HeartbeatRequest) -> tuple[bool, int]:
        with self._lock:
            if not self._follow(request.leader_id, request.term):
                return False, self.state.term
            self._apply_committed(request.commit_seq)
            return True, self.state.term

    def on_install_snapshot(self, request: pb.InstallSnapshotRequest) -> tuple[bool, int]:
        with self._lock:
            if not self._follow(request.leader_id, request.term):
                return False, self.state.term
            seq = request.last_seq
            image = pb.ClusterSnapshot(entries=request.snapshot.entries, last_seq=seq)
            self.state.last_seq = seq
            self._pending.clear()
            self.state_machine.restore(image.SerializeToString())
            self.state.commit_seq = self.state.last_applied = seq
            self._applied_since_snapshot = 0
            self._snapshot_file.save(image)
            self._command_log.truncate_through(seq)
            self._log_changes += 1
            _log.info("installed a snapshot at seq %d from %s", seq, request.leader_id)
            return True, self.state.term

    def on_pre_vote(self, request: pb.PreVoteRequest) -> tuple[bool, int]:
        with self._lock:
            granted = self.state.answer_pre_vote(
                request.term, request.last_seq, self._clock(), self.timings.election_timeout
            )
            return granted, self.state.term

    def on_vote(self, request: pb.VoteRequest) -> tuple[bool, int]:
        with self._lock:
            before = self.state.voter_key()
            granted = self.state.answer_vote(
                request.candidate_id, request.term, request.last_seq, self._clock()
            )
            self._persist_if_changed(before)
            return granted, self.state.term

    def on_read_index(self, request: pb.ReadIndexRequest) -> tuple[bool, int]:
        with self._lock:
            return self.state.answer_read_index(request.leader_id, request.term), self.state.term

    def _follow(self, leader: str, term: int) -> bool:
        before = self.state.voter_key()
        accepted = self.state.follow(leader, term, self._clock())
        self._persist_if_changed(before)
        return accepted

    def _apply_committed(self, leader_commit: int) -> None:
        target = self.state.commit_target(leader_commit)
        if target is None:
            return
        applied = 0
        for seq in range(self.state.last_applied + 1, target + 1):
            command = self._pending.pop(seq, None)
            if command is None:
                break
            self.state_machine.apply(command)
            self.state.last_applied = seq
            applied += 1
        if applied:
            self.state.commit_seq = self.state.last_applied
            self._command_log.set_commit_seq(self.state.commit_seq)
            self._count_applied(applied)

    def _count_applied(self, count: int) -> None:
        """Save a snapshot and truncate the log after every `snapshot_every` applies."""
        self._applied_since_snapshot += count
        if 0 < self._snapshot_every <= self._applied_since_snapshot:
            self._applied_since_snapshot = 0
            self.save_snapshot()

    def save_snapshot(self) -> None:
        """Persist the state machine at `last_applied` and drop the log through it (4.8)."""
        with self._lock:
            image = self.state_machine.cluster_snapshot()
            image.last_seq = self.state.last_applied
            self._snapshot_file.save(image)
            self._command_log.truncate_through(image.last_seq)
            self._log_changes += 1

    def _observe(self, term: int) -> bool:
        """Step down (persisted) if a reply carries a newer term; True if it did."""
        before = self.state.voter_key()
        if not self.state.observe_term(term, self._clock()):
            return False
        self._persist_if_changed(before)
        _log.info("stepped down: a peer is at term %d", term)
        return True

    def _on_reply(self, reply: Any) -> None:
        with self._lock:
            self._observe(reply.term)

    # -- the leader (spec 4.5, 4.6) -----------------------------------------------------

    def submit(self, command: bytes) -> bytes:
        """Replicate one encoded StateCommand and apply it; returns the encoded
        CommandResult. NotLeaderError on a follower; QuorumLostError when fewer than a
        quorum stored it (rolled back here; followers may keep it, spec 7.2)."""
        with self._submit_lock:
            with self._lock:
                if not self.state.is_leader:
                    raise NotLeaderError(self.state.leader_id)
                seq = self.state.last_seq + 1
                self._command_log.append(LogRecord(seq, command))
                self.state.last_seq = seq
                term, commit_before = self.state.term, self.state.commit_seq
                changes = self._log_changes
            request = pb.AppendEntriesRequest(
                leader_id=self.node_id,
                term=term,
                command=command,
                seq=seq,
                commit_seq=commit_before,
            )
            replies = self.peers.call_all("AppendEntries", request)
            acks, lagging = 1, []
            with self._lock:
                for peer, reply in replies.items():
                    if self._observe(reply.term):
                        continue
                    if reply.success:
                        acks += 1
                    elif reply.term <= term:
                        lagging.append(peer)
            for peer in lagging:
                self._send_snapshot(peer)
            with self._lock:
                own_entry = changes == self._log_changes
                if acks < self.quorum:
                    if own_entry:
                        self._command_log.truncate_from(seq)
                        self.state.last_seq = seq - 1
                    raise QuorumLostError()
                if not self.state.is_leader or self.state.term != term:
                    if own_entry:
                        self._pending[seq] = command
                    raise NotLeaderError(self.state.leader_id)
                result = self.state_machine.apply(command)
                self.state.commit_seq = self.state.last_applied = seq
                self._command_log.set_commit_seq(seq)
                self._count_applied(1)
            commit = pb.HeartbeatRequest(leader_id=self.node_id, term=term, commit_seq=seq)
            for reply in self.peers.call_all("Heartbeat", commit).values():
                self._on_reply(reply)
            return result

    def read_index(self) -> None:
        """Confirm leadership with a quorum before a read (spec 4.6); NotLeaderError if not."""
        with self._lock:
            if not self.state.is_leader:
                raise NotLeaderError(self.state.leader_id)
            term = self.state.term
        replies = self.peers.call_all(
            "ReadIndex", pb.ReadIndexRequest(leader_id=self.node_id, term=term)
        )
        with self._lock:
            if any(self._observe(reply.term) for reply in replies.values()):
                raise NotLeaderError(None)
            grants = 1 + sum(1 for reply in replies.values() if reply.granted)
            if grants < self.quorum or self.state.last_applied < self.state.commit_seq:
                raise NotLeaderError(self.node_id)

    def read(self, name: str) -> bytes | None:
        """Upstream's GetElement: a ReadIndex round, then the local value, hidden once it
        expired by this node's wall clock."""
        self.read_index()
        stored = self.state_machine.entry(name)
        if stored is None or not stored.live_at(int(time.time() * 1000)):
            return None
        return stored.value

    def _send_snapshot(self, peer: str) -> None:
        """InstallSnapshot of the whole state at last_applied to `peer`, not waited for.

        One at a time per peer: a refusal while one is on its way sends none. When it was
        installed and the leader has applied more since (the write that found the peer
        behind applies after this snapshot is taken), the next one follows, so the peer
        ends at the leader's seq instead of one write behind at every write (upstream's
        engine stays one behind, installing a snapshot per write, until an election).
        """
        with self._lock:
            if peer in self._snapshots_in_flight:
                return
            self._snapshots_in_flight.add(peer)
            request = self._snapshot_request()

        def installed(reply: Any) -> None:
            with self._lock:
                self._snapshots_in_flight.discard(peer)
                if self._observe(reply.term) or not reply.success:
                    return
                behind = (
                    self.state.is_leader
                    and self.state.term == request.term
                    and self.state.last_applied > request.last_seq
                )
            if behind:
                self._send_snapshot(peer)

        def failed() -> None:
            with self._lock:
                self._snapshots_in_flight.discard(peer)

        self.peers.call_one(peer, "InstallSnapshot", request, installed, on_failure=failed)

    def _snapshot_request(self) -> pb.InstallSnapshotRequest:
        with self._lock:
            return pb.InstallSnapshotRequest(
                leader_id=self.node_id,
                term=self.state.term,
                snapshot=self.state_machine.cluster_snapshot(),
                last_seq=self.state.last_applied,
            )

    # -- the driver loop and elections (spec 4.3, 4.4) -----------------------------------

    def start(self) -> None:
        for name, target in (("driver", self._drive), ("reaper", self._reap)):
            thread = threading.Thread(
                target=target, name=f"dref-interop-{name}-{self.node_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _drive(self) -> None:
        while not self._stop.wait(self.timings.heartbeat_interval):
            try:
                self._tick()
            except Exception:  # one failed round must not end the loop
                _log.exception("driver tick failed")

    def _tick(self) -> None:
        with self._lock:
            if self.state.is_leader:
                beat = pb.HeartbeatRequest(
                    leader_id=self.node_id, term=self.state.term, commit_seq=self.state.commit_seq
                )
            else:
                beat = None
                jitter = random.uniform(0, self.timings.election_timeout / 2)
                due = self.state.election_due(self._clock(), self.timings.election_timeout, jitter)
        if beat is not None:
            self.peers.call_each("Heartbeat", beat, self._on_reply)
        elif due:
            self._campaign()

    def _campaign(self) -> None:
        """PreVote at term + 1; if a quorum would vote, a real election (spec 4.4)."""
        with self._lock:
            pre_vote = pb.PreVoteRequest(
                candidate_id=self.node_id, term=self.state.term + 1, last_seq=self.state.last_seq
            )
        replies = self.peers.call_all("RequestPreVote", pre_vote)
        with self._lock:
            if any(self._observe(reply.term) for reply in replies.values()):
                return
            grants = 1 + sum(1 for reply in replies.values() if reply.granted)
            if grants < self.quorum:
                self.state.back_off(self._clock())
                return
            before = self.state.voter_key()
            term = self.state.start_election(self._clock())
            self._persist_if_changed(before)
            vote = pb.VoteRequest(
                candidate_id=self.node_id, term=term, last_seq=self.state.last_seq
            )
        replies = self.peers.call_all("RequestVote", vote)
        with self._lock:
            if any(self._observe(reply.term) for reply in replies.values()):
                return
            votes = 1 + sum(1 for reply in replies.values() if reply.granted)
            if votes < self.quorum or not self.state.win(term):
                return
            self._discard_uncommitted_tail()
            _log.info("leader of term %d with %d of %d votes", term, votes, len(self.peer_ids) + 1)
        for peer in self.peer_ids:
            self._send_snapshot(peer)

    def _discard_uncommitted_tail(self) -> None:
        """A new leader drops what it stored beyond last_applied (Scala's newest engine)."""
        state = self.state
        if state.last_seq > state.last_applied:
            self._command_log.truncate_from(state.last_applied + 1)
            self._pending.clear()
            state.last_seq = state.last_applied
            self._log_changes += 1

    def _reap(self) -> None:
        """Leader only: every 200 ms one DeleteIfExpired write per expired name (4.5)."""
        while not self._stop.wait(self.timings.reaper_interval):
            if not self.state.is_leader:
                continue
            now = int(time.time() * 1000)
            for name in self.state_machine.due_names(now):
                command = StateCommand(delete_if_expired=DeleteIfExpiredCommand(name=name, now=now))
                try:
                    self.submit(command.SerializeToString())
                except (NotLeaderError, QuorumLostError):
                    break
                except Exception:
                    _log.exception("reaping %r failed", name)
                    break

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.peers.close()
        with self._lock:
            self._command_log.close()
