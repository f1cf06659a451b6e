"""`dref node --metrics-listen`: Prometheus text over real HTTP from real node processes,
values that move with the writes, a clear error for a used port or a missing extra."""

from __future__ import annotations

import builtins
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families

import dref
from dref.errors import ConfigError, LockStolenError
from dref.raft.client import Client
from dref.raft.metrics import MetricsServer, client_metrics
from dref.raft.node_process import NodeProcess, free_ports, node_arguments
from dref.raft_backend import RaftBackend

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    """Every sample at http://address/metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def registry_samples(registry: Any) -> dict[str, float]:
    """Every sample `registry` exports now, by name (for registries without labels)."""
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    families = text_string_to_metric_families(text)
    return {sample.name: sample.value for family in families for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def addresses_of(ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Free 127.0.0.1 addresses for the nodes `ids`: (node addresses, metrics addresses)."""
    ports = free_ports(2 * len(ids))
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(ids, ports[: len(ids)], strict=True)}
    metrics = {n: f"127.0.0.1:{p}" for n, p in zip(ids, ports[len(ids) :], strict=True)}
    return addresses, metrics


def start_node(
    tmp_path: Path, node_id: str, addresses: dict[str, str], metrics: str, **options: Any
) -> NodeProcess:
    """`dref node` `node_id` of the cluster `addresses`, serving its metrics on `metrics`
    (`options`: `node_arguments`' timings); restarting it reuses its data directory."""
    peers = {p: a for p, a in addresses.items() if p != node_id}
    args = node_arguments(node_id, addresses[node_id], peers, tmp_path / node_id, **options)
    args += ["--metrics-listen", metrics]
    return NodeProcess(args, log=tmp_path / f"{node_id}.log")


def test_a_node_serves_metrics_that_move(tmp_path: Path) -> None:
    ids = ["n1", "n2", "n3"]
    addresses, metrics = addresses_of(ids)
    nodes: list[NodeProcess] = []
    try:
        for node_id in ids:
            nodes.append(start_node(tmp_path, node_id, addresses, metrics[node_id]))
        with Client(list(addresses.values()), timeout=20) as client:
            client.set("warm", b"up")
            leader_id = client.status()["node_id"]
            before = scrape(metrics[leader_id])
            for i in range(30):
                client.set(f"k{i}", b"v")
            wait_for(
                lambda: (
                    value(scrape(metrics[leader_id]), "dref_raft_commit_index")
                    >= value(before, "dref_raft_commit_index") + 30
                ),
                15,
                "the commit index to move",
            )
            followers = [n for n in ids if n != leader_id]

            def answering() -> bool:
                """The leader reaches every follower and has timed its heartbeats."""
                samples = scrape(metrics[leader_id])
                return all(
                    samples.get(("dref_raft_peer_reachable", (("peer", peer),))) == 1.0
                    and ("dref_raft_peer_rtt_seconds", (("peer", peer),)) in samples
                    for peer in followers
                )

            # a link dialled before its peer started backs off before it connects
            wait_for(answering, 30, "heartbeat round trips to every follower")
            after = scrape(metrics[leader_id])
        assert value(after, "dref_raft_role", role="leader") == 1.0
        assert value(after, "dref_raft_role", role="follower") == 0.0
        assert (
            value(after, "dref_raft_proposals_total")
            >= value(before, "dref_raft_proposals_total") + 30
        )
        assert value(after, "dref_raft_proposal_seconds_count") >= 30
        assert value(after, "dref_raft_fsync_seconds_count") >= 1
        assert value(after, "dref_raft_voter") == 1.0
        for peer in followers:
            assert value(after, "dref_raft_peer_lag_entries", peer=peer) >= 0
            assert value(after, "dref_raft_peer_reachable", peer=peer) == 1.0
            # seconds, not milliseconds: a heartbeat on 127.0.0.1 is back in far less than 5 s
            assert 0 < value(after, "dref_raft_peer_rtt_seconds", peer=peer) < 5.0
        assert value(after, "dref_client_calls_total") >= 30
        follower = metrics[followers[0]]
        assert value(scrape(follower), "dref_raft_role", role="follower") == 1.0
        wait_for(
            lambda: value(scrape(follower), "dref_raft_applied_index") >= 31,
            30,
            "a follower to apply the writes",
        )
    finally:
        for node in nodes:
            node.stop()


def test_snapshot_sends_installs_and_compactions_are_counted(tmp_path: Path) -> None:
    """A follower that was down while the others compacted their logs catches up from a
    snapshot: the sender counts the transfer and its bytes, the follower the install."""
    ids = ["n1", "n2", "n3"]
    addresses, metrics = addresses_of(ids)
    timings = {"heartbeat_ms": 50, "election_ms": 1000, "snapshot_every": 20}
    nodes = {n: start_node(tmp_path, n, addresses, metrics[n], **timings) for n in ids}
    try:
        with Client(list(addresses.values()), timeout=30) as client:
            client.set("warm", b"up")
            lagging = next(n for n in ids if n != client.status()["node_id"])
            nodes[lagging].stop()
            for i in range(100):  # the others snapshot every 20 entries, past the lagging one
                client.set(f"k{i}", b"v" * 100)
            nodes[lagging] = start_node(tmp_path, lagging, addresses, metrics[lagging], **timings)
            wait_for(
                lambda: value(scrape(metrics[lagging]), "dref_raft_snapshot_installs_total") >= 1,
                60,
                "the restarted follower to install a snapshot",
            )
            installed = scrape(metrics[lagging])
            others = {n: scrape(metrics[n]) for n in ids if n != lagging}
        installed_bytes = value(installed, "dref_raft_snapshot_installed_bytes_total")
        assert installed_bytes > 0
        assert value(installed, "dref_raft_snapshot_bytes") > 0
        # whoever led since (usually one node) sent at least the bytes that were installed
        to_lagging = (("peer", lagging),)
        sends = sum(
            o.get(("dref_raft_snapshot_sends_total", to_lagging), 0) for o in others.values()
        )
        sent = sum(
            o.get(("dref_raft_snapshot_sent_bytes_total", to_lagging), 0) for o in others.values()
        )
        assert sends >= 1
        assert sent >= installed_bytes
        for samples in others.values():  # both applied 101 entries: at least one compaction
            assert value(samples, "dref_raft_snapshots_taken_total") >= 1
            assert value(samples, "dref_raft_snapshot_bytes") > 0
    finally:
        for node in nodes.values():
            node.stop()


def test_a_used_metrics_port_stops_the_node_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (listen,) = free_ports(1)
        args = node_arguments("n1", f"127.0.0.1:{listen}", {}, tmp_path / "n1")
        args += ["--metrics-listen", f"127.0.0.1:{port}"]
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            NodeProcess(args, log=tmp_path / "n1.log")
        assert time.monotonic() - started < 15


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_prometheus(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_prometheus)
    with pytest.raises(ConfigError, match=r"pip install 'dref-py\[metrics\]'"):
        MetricsServer("127.0.0.1:0")


def test_client_metrics_count_calls_retries_and_unknown_outcomes(make_kv_cluster) -> None:
    from prometheus_client import CollectorRegistry

    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    follower = cluster.followers()[0]
    registry = CollectorRegistry()
    with Client([follower.address, leader.address], timeout=10) as client:
        client_metrics(client, registry)
        for i in range(5):
            client.set(f"k{i}", b"v")  # the first goes to the follower: not-leader, retried
        samples = registry_samples(registry)
        stats = client.stats()
    # five writes and the call opening the client's session
    assert samples["dref_client_requests_total"] == stats.calls == 6
    assert samples["dref_client_retries_total"] == stats.retries >= 1
    assert samples["dref_client_failures_total"] == 0
    assert samples["dref_client_unknown_outcomes_total"] == 0
    assert samples["dref_client_call_seconds_count"] == 6


def test_client_metrics_count_lock_grants_timeouts_releases_and_losses(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    addresses, metrics = addresses_of(["n1"])
    node = start_node(tmp_path, "n1", addresses, metrics["n1"])
    try:
        with dref.raft_client(list(addresses.values()), timeout=20) as ctx:
            backend = ctx.backend
            assert isinstance(backend, RaftBackend)
            registry = client_metrics(backend.client, CollectorRegistry(), locks=ctx.lock_stats)
            assert registry_samples(registry)["dref_client_lock_grants_total"] == 0
            with ctx.lock("job", ttl=5):
                assert not ctx.lock("job", ttl=5).acquire(timeout=0.1)
            held = ctx.lock("job", ttl=5)
            with pytest.raises(LockStolenError), held:
                backend.delete("job")  # from under the holder: its listener sees a loss
                assert held.lost.wait(20)
            samples = registry_samples(registry)
    finally:
        node.stop()
    assert samples["dref_client_lock_grants_total"] == 2
    assert samples["dref_client_lock_timeouts_total"] == 1
    assert samples["dref_client_lock_releases_total"] == 2
    assert samples["dref_client_lock_losses_total"] == 1
