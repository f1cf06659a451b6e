"""The applier: runs committed entries through the user's state machine, in log order.

It resolves each proposal when the entry at its index applies (success iff that entry
has the proposal's term), answers reads once applied through their read index, restores
a leader's snapshot, and takes snapshots on request (handing them to the storage writer).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pykka

from dref.actors.consensus.durable_state import SnapshotImage
from dref.actors.consensus.log_entry import EntryKind, LogEntry
from dref.actors.local_reads import LocalReads
from dref.actors.node_messages import (
    Applied,
    ApplierBatch,
    ApplierStats,
    ApplyEntries,
    AwaitEntry,
    CommitReached,
    Connect,
    LeadershipLost,
    RestoreState,
    SaveSnapshot,
    ServeRead,
    TakeSnapshotNow,
)
from dref.actors.safe_tell import safe_tell
from dref.actors.simple_inbox import SimpleInboxActor
from dref.contracts.state_machine import StateMachine
from dref.errors import NotLeaderError, QuorumLostError
from dref.storage.snapshot_image import SnapshotSink, restore_state

logger = logging.getLogger("dref.raft")


class ApplierActor(SimpleInboxActor):
    """Owns the state machine; see the module doc."""

    def __init__(
        self,
        state_machine: StateMachine,
        *,
        applied_index: int,
        applied_term: int,
        node_id: str,
        local: LocalReads,
        spool: Callable[[int, int], SnapshotSink] | None = None,
    ) -> None:
        """`spool(index, term)`: a file for a snapshot (see `_take_snapshot`)."""
        super().__init__()
        self._spool = spool
        self._sm = state_machine
        self._local = local
        self._applied_index = applied_index
        self._applied_term = applied_term
        self._proposals: dict[int, AwaitEntry] = {}
        self._reads: list[tuple[int, int, ServeRead]] = []
        self._read_order = itertools.count()
        self._batch = getattr(state_machine, "apply_batch", None)
        self._consensus: pykka.ActorRef[Any] | None = None
        self._storage: pykka.ActorRef[Any] | None = None
        self._thread_name = f"dref-applier-{node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ApplierBatch):
            for item in message.messages:
                self.on_receive(item)
        elif isinstance(message, ApplyEntries):
            self._apply(message.entries)
        elif isinstance(message, AwaitEntry):
            self._proposals[message.index] = message
        elif isinstance(message, ServeRead):
            heapq.heappush(self._reads, (message.read_index, next(self._read_order), message))
            self._serve_reads()
        elif isinstance(message, RestoreState):
            self._restore(message)
        elif isinstance(message, LeadershipLost):
            self._fail_proposals("leadership lost before the entry committed; outcome unknown")
        elif isinstance(message, TakeSnapshotNow):
            data = self._take_snapshot()
            safe_tell(self._storage, SaveSnapshot(self._applied_index, self._applied_term, data))
        elif isinstance(message, ApplierStats):
            return self._applied_index
        elif isinstance(message, Connect):
            self._consensus, self._storage = message.consensus, message.storage
        return None

    def on_failure(self, *args: Any) -> None:
        logger.critical("applier of %s failed; its callers get an error", self._thread_name)
        self.on_stop()

    def on_stop(self) -> None:
        self._fail_proposals("node closed; outcome unknown")
        for _, _, read in self._reads:
            _fail(read.outcome, QuorumLostError("node closed"))

    def _fail_proposals(self, why: str) -> None:
        """Fail every proposal still waiting: it may or may not commit later."""
        proposals, self._proposals = self._proposals, {}
        for waiter in proposals.values():
            _fail(waiter.outcome, QuorumLostError(why))

    def _apply(self, entries: tuple[LogEntry, ...]) -> None:
        fresh = [e for e in entries if e.index > self._applied_index]
        if not fresh:
            return
        commands = [e for e in fresh if e.kind is EntryKind.NORMAL]
        with self._local.lock:
            results = self._run(commands)
            self._local.applied_index = fresh[-1].index
        for entry in fresh:
            waiter = self._proposals.pop(entry.index, None)
            if waiter is None:
                continue
            if entry.term == waiter.term:
                result = results.get(entry.index)
                if isinstance(result, BaseException):
                    _fail(waiter.outcome, result)
                else:
                    _resolve(waiter.outcome, result or b"")
            else:
                _fail(waiter.outcome, NotLeaderError(None))
        last = fresh[-1]
        self._applied_index, self._applied_term = last.index, last.term
        self._serve_reads()
        safe_tell(self._consensus, Applied(last.index))
        safe_tell(self._storage, CommitReached(last.index))

    def _run(self, commands: list[LogEntry]) -> dict[int, bytes | BaseException]:
        """Apply commands; a failing command fails only its own proposal (state unchanged
        by it is the state machine's responsibility, as in any deterministic apply)."""
        if self._batch is not None and len(commands) > 1:
            outputs = self._batch([e.command for e in commands])
            return {e.index: out for e, out in zip(commands, outputs, strict=True)}
        results: dict[int, bytes | BaseException] = {}
        for entry in commands:
            try:
                results[entry.index] = self._sm.apply(entry.command)
            except Exception as exc:  # noqa: BLE001 - reported to the proposer, node goes on
                logger.exception("state machine failed applying entry %d", entry.index)
                results[entry.index] = exc
        return results

    def _take_snapshot(self) -> SnapshotImage:
        """The state through the applied index: streamed into a spooled file when the
        machine implements `snapshot_to` and the node gave a spool, else its bytes."""
        stream = getattr(self._sm, "snapshot_to", None)
        if stream is None or self._spool is None:
            with self._local.lock:
                return self._sm.snapshot()
        sink = self._spool(self._applied_index, self._applied_term)
        with self._local.lock, sink.writer() as out:
            stream(out)
        return sink.finish()  # the storage writer syncs it

    def _restore(self, message: RestoreState) -> None:
        with self._local.lock:
            restore_state(self._sm, message.data)
            self._local.applied_index = message.index
        self._applied_index, self._applied_term = message.index, message.term
        for index in [i for i in self._proposals if i <= message.index]:
            waiter = self._proposals.pop(index)
            _fail(waiter.outcome, QuorumLostError("replaced by a leader snapshot; outcome unknown"))
        self._serve_reads()
        safe_tell(self._consensus, Applied(message.index))

    def _serve_reads(self) -> None:
        while self._reads and self._reads[0][0] <= self._applied_index:
            _, _, read = heapq.heappop(self._reads)
            if read.outcome.done():
                continue
            try:
                with self._local.lock:
                    answer = self._sm.query(read.query)
                _resolve(read.outcome, answer)
            except Exception as exc:  # noqa: BLE001 - the reader gets the failure
                _fail(read.outcome, exc)


def _resolve(outcome: Future[bytes], value: bytes) -> None:
    if not outcome.done():
        outcome.set_result(value)


def _fail(outcome: Future[bytes], error: BaseException) -> None:
    if not outcome.done():
        outcome.set_exception(error)
