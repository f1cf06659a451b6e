"""Prometheus metrics of a key/value node, served over HTTP (`dref node --metrics-listen`).

Gauges and counters are read from the node at scrape time (`Node.status()`, the client
services' counters), so nothing is added to the write path except two histograms: the
latency of each proposal (from `Node.propose_async` to its result) and of each group-commit
fsync. Each node has its own `CollectorRegistry`, so several nodes can share a process.
Needs `prometheus_client` (`pip install 'dref-py[metrics]'`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dref.contracts.lock_stats import LockStats
from dref.errors import ConfigError
from dref.raft.config import split_address

if TYPE_CHECKING:
    from dref.raft.client import Client
    from dref.raft.kv_node import KeyValueNode

__all__ = ["MetricsServer", "client_metrics"]

ROLES = ("leader", "follower", "candidate", "pre_candidate")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Histogram buckets in seconds: a write on a LAN takes 1-10 ms, an fsync 0.1-10 ms."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "metrics need prometheus_client: pip install 'dref-py[metrics]'"
        ) from None
    return prometheus_client


class MetricsServer:
    """Serves a node's metrics at http://`listen`/metrics until `close`; made before the
    node (whose fsyncs and proposals it times), then given it with `attach`."""

    def __init__(self, listen: str) -> None:
        prometheus = _prometheus()
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self._gauge, self._counter = GaugeMetricFamily, CounterMetricFamily
        host, port = split_address(listen, "metrics_listen")
        self._node: KeyValueNode | None = None
        self.registry = prometheus.CollectorRegistry()
        self.proposal_seconds = prometheus.Histogram(
            "dref_raft_proposal_seconds",
            "Time from proposing a command on this node to its result (commit and apply).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fsync_seconds = prometheus.Histogram(
            "dref_raft_fsync_seconds",
            "Duration of one group-commit fsync of the command log.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        try:
            self._server, self._thread = prometheus.start_http_server(
                port, addr=host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror}") from None
        self.address = f"{host}:{self._server.server_port}"
        """The "host:port" metrics are served on (the real port when `listen` used 0)."""

    def attach(self, node: KeyValueNode) -> None:
        """Export `node` from now on (before, scrapes give only the histograms)."""
        self._node = node

    def observe_fsync(self, seconds: float) -> None:
        self.fsync_seconds.observe(seconds)

    def observe_proposal(self, started: float) -> Any:
        """A done-callback for a proposal's future that records its latency."""

        def done(_: Future[bytes]) -> None:
            self.proposal_seconds.observe(time.monotonic() - started)

        return done

    def collect(self) -> Iterator[Any]:
        """The node's gauges and counters now (called by the registry at each scrape)."""
        gauge, counter = self._gauge, self._counter
        node = self._node
        if node is None:
            return
        try:
            status = node.status()
        except Exception:  # noqa: BLE001 - a closing node: export nothing rather than fail
            return
        role = gauge("dref_raft_role", "1 for the role this node has now.", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if status.role == name else 0.0)
        yield role
        for name, value, text in (
            ("dref_raft_term", status.term, "The node's current term."),
            ("dref_raft_commit_index", status.commit_index, "Highest committed log index."),
            ("dref_raft_applied_index", status.applied_index, "Highest applied log index."),
            ("dref_raft_last_index", status.last_index, "Last index in the node's log."),
            ("dref_raft_snapshot_index", status.snapshot_index, "Index of the last snapshot."),
            ("dref_raft_apply_lag", status.metrics.apply_lag, "Committed but not applied."),
            ("dref_raft_voter", int(status.node_id in status.voters), "1 while a voter."),
            ("dref_raft_snapshot_bytes", status.metrics.snapshot_bytes, "Latest snapshot size."),
        ):
            yield gauge(name, text, value=float(value))
        metrics = status.metrics
        for name, value, text in (
            ("dref_raft_elections", metrics.elections_started, "Elections this node started."),
            ("dref_raft_leader_changes", metrics.leader_changes, "Times the leader changed."),
            ("dref_raft_proposals", metrics.proposals, "Commands proposed on this node."),
            ("dref_raft_entries_committed", metrics.entries_committed, "Entries committed."),
            ("dref_raft_group_commits", metrics.group_commits, "Command-log fsyncs."),
            ("dref_raft_snapshots_taken", metrics.snapshots_taken, "Local snapshots taken."),
            ("dref_raft_snapshot_installs", metrics.snapshot_installs, "Snapshots installed."),
            (
                "dref_raft_snapshot_installed_bytes",
                metrics.snapshot_bytes_installed,
                "Bytes of the snapshots installed from a leader.",
            ),
        ):
            yield counter(name, text, value=float(value))
        for name, per_peer, text in (
            (
                "dref_raft_snapshot_sends",
                metrics.snapshot_sends,
                "Snapshot transfers this node started to each peer as leader.",
            ),
            (
                "dref_raft_snapshot_sent_bytes",
                metrics.snapshot_bytes_sent,
                "Snapshot bytes sent to each peer, resent chunks included.",
            ),
        ):
            sent = counter(name, text, labels=["peer"])
            for peer, count in sorted(per_peer.items()):
                sent.add_metric([peer], float(count))
            yield sent
        lag = gauge(
            "dref_raft_peer_lag_entries",
            "On the leader: entries each peer is behind the leader's log.",
            labels=["peer"],
        )
        for peer, match in sorted(status.match_indexes.items()):
            lag.add_metric([peer], float(max(0, status.last_index - match)))
        yield lag
        reachable = gauge(
            "dref_raft_peer_reachable", "1 if this node's link to the peer works.", labels=["peer"]
        )
        for peer in status.voters:
            if peer != status.node_id:
                reachable.add_metric([peer], 0.0 if peer in status.unreachable else 1.0)
        yield reachable
        rtt = gauge(
            "dref_raft_peer_rtt_seconds",
            "On the leader: smoothed heartbeat round-trip time to each peer.",
            labels=["peer"],
        )
        for peer, seconds in sorted(status.round_trips.items()):
            rtt.add_metric([peer], seconds)
        yield rtt
        served = node.services.pipeline_stats()
        yield gauge(
            "dref_client_connections",
            "Open client connections (socket sessions and gRPC pipeline streams).",
            value=float(served.open),
        )
        yield counter("dref_client_calls", "Client calls received.", value=float(served.calls_in))
        yield gauge(
            "dref_watch_subscribers",
            "Open watch streams (each may watch many names).",
            value=float(node.services.open_watches()),
        )

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def client_metrics(
    client: Client, registry: Any = None, *, locks: Callable[[], LockStats] | None = None
) -> Any:
    """Export `client`'s calls to Prometheus in `registry` (default: prometheus_client's
    global one, which `start_http_server` serves): `dref_client_call_seconds` (histogram),
    and the counters `dref_client_requests_total`, `dref_client_failures_total`,
    `dref_client_retries_total` and `dref_client_unknown_outcomes_total`. With `locks`
    (a context's `lock_stats`), also `dref_client_lock_grants_total`, `_timeouts_total`,
    `_releases_total` and `_losses_total`. Returns the registry."""
    prometheus = _prometheus()
    from prometheus_client.core import CounterMetricFamily

    registry = prometheus.REGISTRY if registry is None else registry
    histogram = prometheus.Histogram(
        "dref_client_call_seconds",
        "Duration of one client call, retries included.",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    client.observe_call = histogram.observe

    class _ClientCounters:
        def collect(self) -> Iterator[Any]:
            stats = client.stats()
            for name, value, text in (
                ("dref_client_requests", stats.calls, "Client calls that ended."),
                ("dref_client_failures", stats.failures, "Client calls that raised."),
                ("dref_client_retries", stats.retries, "Attempts after a failed one."),
                (
                    "dref_client_unknown_outcomes",
                    stats.unknown_outcomes,
                    "Writes that may or may not have been applied.",
                ),
            ):
                yield CounterMetricFamily(name, text, value=float(value))
            if locks is None:
                return
            held = locks()
            for name, value, text in (
                ("dref_client_lock_grants", held.grants, "Lock acquisitions granted."),
                ("dref_client_lock_timeouts", held.timeouts, "Lock acquisitions given up."),
                ("dref_client_lock_releases", held.releases, "Locks released by their holder."),
                ("dref_client_lock_losses", held.losses, "Held locks lost (expired, taken)."),
            ):
                yield CounterMetricFamily(name, text, value=float(value))

    registry.register(_ClientCounters())
    return registry
