"""`KeyValueNode`: a Raft node serving DRef's key/value store — what `dref node` runs.

It assembles a `dref.raft.Node` with a `KeyValueStateMachine`, the client services
(`DRefRaft`, `DRefNative`) on the node's own port, and the TTL reaper: on the leader only,
the daemon thread ``dref-ttl-reaper-<id>`` sleeps until the earliest expiry (woken early
when an earlier one is scheduled) and then proposes ONE batched delete-if-expired for every
due name. Each name is deleted only if its expiry has not been re-armed meanwhile.
"""

from __future__ import annotations

import logging
import threading
import uuid
from types import TracebackType

from dref.contracts.changes import DEFAULT_HISTORY_REVISIONS
from dref.errors import ContextClosedError, DRefError, NotLeaderError
from dref.raft.config import NodeConfig
from dref.raft.metrics import MetricsServer
from dref.raft.node import Node
from dref.raft.server.pipelines import MAX_PIPELINES
from dref.raft.server.services import MAX_WATCHES, KeyValueServices
from dref.raft.status import NodeStatus
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.client_protocol import CLUSTER_ID_NAME, DEFAULT_MAX_VALUE_SIZE, now_ms
from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_native_pb2 import CommandResult

__all__ = ["KeyValueNode", "NodeLogFilter", "TtlReaper"]

_log = logging.getLogger("dref.raft.kv")

REAP_BATCH = 1000
"""Most names one delete-if-expired entry carries (the rest follow at once)."""

FOLLOWER_POLL = 0.5
"""Seconds between leadership checks while this node is not the leader."""

LEADER_IDLE = 5.0
"""Longest sleep of a leader's reaper with nothing due (it also re-checks leadership)."""

_FOREVER = 2**63


class KeyValueNode:
    """A running key/value node: Raft node + state machine + client services + TTL reaper."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_watches: int = MAX_WATCHES,
        max_pipelines: int = MAX_PIPELINES,
        pipeline: bool = True,
        leader_address_hint: bool = True,
        history_revisions: int = DEFAULT_HISTORY_REVISIONS,
    ):
        self.config = config
        self.state_machine = KeyValueStateMachine(history_revisions=history_revisions)
        self.services = KeyValueServices(
            self.state_machine,
            peer_ids=list(config.peers),
            max_value_size=max_value_size,
            max_watches=max_watches,
            max_pipelines=max_pipelines,
            pipeline=pipeline,
            leader_address_hint=leader_address_hint,
        )
        self.metrics: MetricsServer | None = None
        if config.metrics_listen is not None:
            self.metrics = MetricsServer(config.metrics_listen)
        metrics = self.metrics
        try:
            self.node = Node(
                config,
                self.state_machine,
                services=[self.services.register],
                observe_fsync=None if metrics is None else metrics.observe_fsync,
                observe_proposal=None if metrics is None else metrics.observe_proposal,
            )
        except BaseException:
            if metrics is not None:
                metrics.close()
            raise
        if metrics is not None:
            metrics.attach(self)
        self.reaper = TtlReaper(self.node, self.state_machine, timeout=config.rpc_timeout * 5)
        self.reaper.start()

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.node.node_id

    @property
    def address(self) -> str:
        """The "host:port" the node (consensus and client services) listens on."""
        return self.node.address

    @property
    def term(self) -> int:
        """The node's current term (cheap; for log records)."""
        return self.node.term

    def status(self) -> NodeStatus:
        """The node's status (role, term, indexes, metrics)."""
        return self.node.status()

    def close(self) -> None:
        """Stop the reaper, end watch streams, stop the node. Idempotent."""
        self.reaper.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.services.close()
        self.node.close()
        self.reaper.join(timeout=10)

    def __enter__(self) -> KeyValueNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TtlReaper(threading.Thread):
    """Deletes expired entries on the leader with batched delete-if-expired proposals."""

    def __init__(self, node: Node, state_machine: KeyValueStateMachine, *, timeout: float):
        super().__init__(name=f"dref-ttl-reaper-{node.node_id}", daemon=True)
        self._node = node
        self._sm = state_machine
        self._timeout = timeout
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._wake_at_ms = 0  # when the current sleep ends (Unix ms)
        self.reaped = 0
        """Names deleted by this reaper's proposals (for tests and metrics)."""
        self._cancel = state_machine.add_expiry_listener(self._scheduled)

    def stop(self) -> None:
        """Ask the thread to end (join it to wait)."""
        self._stopped.set()
        self._wake.set()
        self._cancel()

    def _scheduled(self, expire_at: int) -> None:
        if expire_at < self._wake_at_ms:
            self._wake.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            self._wake_at_ms = _FOREVER  # any expiry scheduled from now on wakes the sleep
            self._wake.clear()
            try:
                self._sleep(self._round())
            except ContextClosedError:
                return
            except DRefError as exc:  # a slow or restarting node: look again shortly
                _log.warning("TTL reaper: %s", exc)
                self._sleep(FOLLOWER_POLL)

    def _round(self) -> float:
        """One look (and maybe one batch); the seconds to sleep afterwards."""
        status = self._node.status()
        self._keep_cluster_id(status.role == "leader")
        if status.role != "leader":
            return FOLLOWER_POLL
        now = now_ms()
        due = self._sm.due_names(now, REAP_BATCH)
        if due:
            command = sc.StateCommand(
                delete_if_expired_batch=sc.DeleteIfExpiredBatchCommand(names=due, now=now)
            )
            try:
                reply = self._node.propose(command.SerializeToString(), timeout=self._timeout)
            except NotLeaderError:
                return 0.0
            self.reaped += CommandResult.FromString(reply).deleted
            return 0.0  # more may be due already
        upcoming = self._sm.next_expiry()
        if upcoming is None:
            return LEADER_IDLE
        return min(LEADER_IDLE, max(0.001, (upcoming - now) / 1000))

    def _keep_cluster_id(self, leading: bool) -> None:
        """Adopt the cluster id the log carries; a leader of a cluster without one (a new
        cluster, or one from before cluster ids) creates it, once, through the log."""
        stored = self._sm.entry(CLUSTER_ID_NAME)
        if stored is None and leading:
            create = sc.SetElementIfNotExistCommand(
                name=CLUSTER_ID_NAME, value=uuid.uuid4().hex.encode()
            )
            command = sc.StateCommand(set_element_if_not_exist=create)
            try:
                self._node.propose(command.SerializeToString(), timeout=self._timeout)
            except NotLeaderError:
                return
            stored = self._sm.entry(CLUSTER_ID_NAME)  # applied here once propose returned
        if stored is not None:
            self._node.adopt_cluster_id(stored.value.decode(errors="replace"))

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._wake_at_ms = now_ms() + round(seconds * 1000)
        self._wake.wait(seconds)


class NodeLogFilter(logging.Filter):
    """Adds `node_id` and the node's current `term` to every log record."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id
        self.node: KeyValueNode | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = self.node_id
        record.term = self.node.term if self.node is not None else 0
        return True
