"""A cluster of real `dref node` processes on loopback with a fault proxy on every link.

For every ordered pair of nodes (A, B) a `FaultProxy` P_AB forwards to B's real listen
address, and A is started with ``--peer B=<P_AB>``; a second proxy S_AB forwards to B's
peer socket (a fixed ``--peer-listen``) and A gets ``--peer-socket B=<S_AB>``. So every
consensus message A sends to B, and B's reply on that connection, crosses the link's
proxies, whichever transport carries it. Cutting the link A-B partitions both directions.
Clients talk to the nodes' real addresses, so client traffic never crosses a proxy.

`FaultyCluster` starts, SIGKILLs, SIGSTOPs/SIGCONTs and restarts nodes from their data
dirs, partitions the cluster into groups, delays or resets links, and finds the leader
every reachable node agrees on. Every process it started is killed by `close()`.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import grpc

from dref.errors import BackendUnavailableError, DRefError, NotLeaderError, QuorumLostError
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports, node_arguments
from dref.wire.proto.dref_pb2 import GetElementRequest
from dref.wire.tls import TLS
from testkit.fault_proxy import FaultProxy
from testkit.upstream_peer import client_stub

__all__ = ["FaultyCluster"]

_POLL = 0.05
_NOT_CONNECTED = "failed to connect to all addresses"
"""gRPC's UNAVAILABLE detail when no connection was made, so nothing was sent."""


class FaultyCluster:
    """`size` `dref node` processes n1..nN with data dirs under `root` and a proxy mesh."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        snapshot_every: int | None = None,
        seed: int = 0,
        tls: bool = False,
        interop: bool = False,
    ) -> None:
        """With `tls`, a CA and certificates made by `dref.certs` under `root`: every node
        runs mutual TLS, and this harness's clients use an admin certificate. With
        `interop`, nodes run `dref node --interop` with decimal ids, as upstream's."""
        self.root = root
        self.interop = interop
        self.ids = [f"{'' if interop else 'n'}{i}" for i in range(1, size + 1)]
        ports = free_ports(2 * size)
        self.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(self.ids, ports, strict=False)}
        self.socket_ports = dict(zip(self.ids, ports[size:], strict=True))
        """Each node's peer socket port (fixed, so the socket links can be proxied too)."""
        self.timings = {
            "heartbeat_ms": heartbeat_ms,
            "election_ms": election_ms,
            "snapshot_every": snapshot_every,
        }
        self.proxies: dict[tuple[str, str], FaultProxy] = {}
        """The link a -> b to b's gRPC port (what a's membership address for b names)."""
        self.socket_proxies: dict[tuple[str, str], FaultProxy] = {}
        """The link a -> b to b's peer socket, which carries the consensus traffic."""
        for index, (a, b) in enumerate(itertools.permutations(self.ids, 2)):
            self.proxies[(a, b)] = FaultProxy(
                ("127.0.0.1", ports[self.ids.index(b)]), seed=seed + index
            )
            self.socket_proxies[(a, b)] = FaultProxy(
                ("127.0.0.1", self.socket_ports[b]), seed=seed + 1000 + index
            )
        self.processes: dict[str, NodeProcess] = {}
        self.pids: dict[str, set[int]] = {}
        """Every pid each node has run as (restarts add one)."""
        self.paused: set[str] = set()
        self._clients: list[Client] = []
        self.tls: TLS | None = None
        if tls:
            from dref.certs import init_ca, issue_certificate

            certs = root / "certs"
            init_ca(root / "ca")
            for name in self.ids:
                issue_certificate(root / "ca", name, certs, local=True)
            issue_certificate(root / "ca", "harness", certs, role="admin", local=True)
            self.tls = TLS(certs / "harness.crt", certs / "harness.key", certs / "ca.crt")

    # -- addresses ------------------------------------------------------------------------

    def proxy_address(self, source: str, target: str) -> str:
        """The address `source` dials to reach `target`."""
        host, port = self.proxies[(source, target)].address
        return f"{host}:{port}"

    def real_addresses(self) -> dict[str, str]:
        """Every proxy address mapped to the real address of the node behind it."""
        return {self.proxy_address(a, b): self.addresses[b] for a, b in self.proxies}

    def client(
        self,
        node_ids: Iterable[str] | None = None,
        *,
        timeout: float = 5.0,
        strict_writes: bool = False,
    ) -> Client:
        """A client knowing the real addresses of `node_ids` (default: all); closed by
        `close()`. A node hints the leader by the address it dials, which here is a proxy:
        the client maps it to the node's real address, so client traffic never goes
        through a faulty link meant for peers. With `strict_writes` a write is retried only
        when it surely did not happen (a not-leader answer, or no connection at all), as
        a Jepsen client must: a retried write may apply twice."""
        ids = list(self.ids if node_ids is None else node_ids)
        client = Client(
            [self.addresses[n] for n in ids],
            timeout=timeout,
            address_map=self.real_addresses(),
            retry=_retry_only_surely_unapplied_writes if strict_writes else None,
            tls=self.tls,
        )
        self._clients.append(client)
        return client

    # -- processes ------------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        """Start (or restart, from its data dir) `node_id`; returns once it serves."""
        peers = {p: self.proxy_address(node_id, p) for p in self.ids if p != node_id}
        data = self.root / node_id
        data.mkdir(parents=True, exist_ok=True)
        args = node_arguments(node_id, self.addresses[node_id], peers, data, **self.timings)
        if self.interop:  # upstream's protocol: gRPC on the --listen port only
            self.processes[node_id] = NodeProcess([*args, "--interop"], log=data / "node.log")
            self.pids.setdefault(node_id, set()).add(self.processes[node_id].process.pid)
            return
        args += ["--peer-listen", f"127.0.0.1:{self.socket_ports[node_id]}"]
        for peer in peers:
            host, port = self.socket_proxies[(node_id, peer)].address
            args += ["--peer-socket", f"{peer}={host}:{port}"]
        if self.tls is not None:
            certs = self.tls.ca.parent
            args += ["--tls-cert", str(certs / f"{node_id}.crt")]
            args += ["--tls-key", str(certs / f"{node_id}.key"), "--tls-ca", str(self.tls.ca)]
        self.processes[node_id] = NodeProcess(args, log=data / "node.log", ready_timeout=60.0)
        self.pids.setdefault(node_id, set()).add(self.processes[node_id].process.pid)

    def start_all(self) -> FaultyCluster:
        """Start every node that is not running."""
        for node_id in self.ids:
            if not self.alive(node_id):
                self.start(node_id)
        return self

    def alive(self, node_id: str) -> bool:
        """Whether `node_id` has a live process (paused counts as alive)."""
        process = self.processes.get(node_id)
        return process is not None and process.alive

    def running(self) -> list[str]:
        """Nodes alive and not paused."""
        return [n for n in self.ids if self.alive(n) and n not in self.paused]

    def kill(self, node_id: str) -> None:
        """SIGKILL `node_id` (no clean shutdown: whatever is not fsynced is lost)."""
        process = self.processes.get(node_id)
        if process is None:
            return
        self.paused.discard(node_id)
        process.kill()

    def kill_all(self) -> None:
        """SIGKILL every node at once, then reap them."""
        for process in self.processes.values():
            if process.alive:
                process.process.send_signal(signal.SIGKILL)
        for node_id in list(self.processes):
            self.kill(node_id)

    def restart(self, node_id: str) -> None:
        """SIGKILL `node_id` if it runs, then start it again from its data dir."""
        self.kill(node_id)
        self.start(node_id)

    def pause(self, node_id: str) -> None:
        """SIGSTOP `node_id`: it keeps its sockets but does nothing until `resume`."""
        if self.alive(node_id):
            self.processes[node_id].process.send_signal(signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: str) -> None:
        """SIGCONT `node_id`."""
        if self.alive(node_id):
            self.processes[node_id].process.send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    # -- network --------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Black-hole both directions of the link a-b."""
        for link in ((a, b), (b, a)):
            for proxy in self._link(*link):
                proxy.partition()

    def cut_one_way(self, a: str, b: str) -> None:
        """Nothing `a` sends reaches `b` (requests on a's connections to b, answers on b's
        connections to a); everything `b` sends still reaches `a`."""
        for proxy in self._link(a, b):
            proxy.hold_one_way(dialer_bytes=True)
        for proxy in self._link(b, a):
            proxy.hold_one_way(dialer_bytes=False)

    def partition(self, *groups: Collection[str]) -> None:
        """Heal, then cut every link between nodes of different groups (nodes in no group
        form one more group)."""
        self.heal()
        rest = set(self.ids) - set().union(*map(set, groups))
        named = [set(g) for g in groups] + ([rest] if rest else [])
        side = {n: i for i, group in enumerate(named) for n in group}
        for a, b in self.proxies:
            if side[a] != side[b]:
                for proxy in self._link(a, b):
                    proxy.partition()

    def isolate(self, node_id: str) -> None:
        """Cut `node_id` from every other node."""
        self.partition({node_id})

    def heal(self) -> None:
        """Remove every network fault (partitions, delays, drops)."""
        for proxy in self._every_proxy():
            proxy.heal()

    def delay_all(self, seconds: float) -> None:
        """Delay every chunk on every link by `seconds`."""
        for proxy in self._every_proxy():
            proxy.delay(seconds)

    def drop_all(self, probability: float) -> None:
        """Reset connections on every link at random chunks with `probability`."""
        for proxy in self._every_proxy():
            proxy.drop(probability)

    def reset_links(self) -> None:
        """Close every connection on every link now."""
        for proxy in self._every_proxy():
            proxy.reset()

    def _link(self, a: str, b: str) -> tuple[FaultProxy, FaultProxy]:
        """Both proxies of the directed link a -> b."""
        return self.proxies[(a, b)], self.socket_proxies[(a, b)]

    def _every_proxy(self) -> list[FaultProxy]:
        return [*self.proxies.values(), *self.socket_proxies.values()]

    # -- observation ----------------------------------------------------------------------

    def status(self, node_id: str, timeout: float = 2.0) -> dict[str, Any] | None:
        """`node_id`'s status, or None if it does not answer within `timeout`."""
        if node_id in self.paused or not self.alive(node_id):
            return None
        address = self.addresses[node_id]
        with contextlib.closing(Client([address], timeout=timeout, tls=self.tls)) as client:
            try:
                return client.status(self.addresses[node_id], timeout=timeout)
            except DRefError:
                return None

    def leader(self, timeout: float = 60.0, among: Collection[str] | None = None) -> str:
        """The leader that every running node of `among` (default: all running) names, itself
        a leader; polls until `timeout`."""
        if self.interop:
            return self._interop_leader(timeout, among)
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            nodes = [n for n in self.running() if among is None or n in among]
            last = {n: self.status(n) for n in nodes}
            leaders = {s["leader_id"] if s else None for s in last.values()}
            if len(leaders) == 1 and None not in leaders:
                leader = str(leaders.pop())
                if leader in last and (last[leader] or {}).get("role") == "leader":
                    return leader
            time.sleep(_POLL)  # a poll under a deadline
        summary = {n: (s or {}).get("role", "no answer") for n, s in last.items()}
        dead = [n for n in self.ids if not self.alive(n)]
        raise AssertionError(
            f"no agreed leader within {timeout:g} s: roles {summary}, paused"
            f" {sorted(self.paused)}, dead {dead}"
        )

    def _interop_leader(self, timeout: float, among: Collection[str] | None) -> str:
        """Upstream's protocol has no status call: the leader is the running node that
        serves a read (only a leader confirmed by a quorum does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node_id in self.running():
                if among is not None and node_id not in among:
                    continue
                stub = client_stub(self.addresses[node_id])
                try:
                    stub.GetElement(GetElementRequest(name="leader-probe"), timeout=1.0)
                except grpc.RpcError:
                    continue
                return node_id
            time.sleep(_POLL)  # a poll under a deadline
        raise AssertionError(f"no interop leader within {timeout:g} s; running {self.running()}")

    def logs(self, tail: int = 40) -> str:
        """The last `tail` lines of every node's log, for failure reports."""
        parts = []
        for node_id in self.ids:
            path = self.root / node_id / "node.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {node_id} ---\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        """Close clients, SIGCONT and SIGKILL every node, close every proxy. Idempotent."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        for node_id in list(self.paused):
            self.resume(node_id)
        self.kill_all()
        for proxy in self._every_proxy():
            proxy.close()

    def __enter__(self) -> FaultyCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retry_only_surely_unapplied_writes(error: DRefError, write: bool) -> bool:
    """The retry policy of `strict_writes`: reads retry freely, writes only after a
    not-leader answer or a connection that never opened (the client reports that as
    unavailable and retryable; anything uncertain it raises itself)."""
    if not write:
        return True
    return isinstance(error, NotLeaderError) or (
        isinstance(error, BackendUnavailableError) and not isinstance(error, QuorumLostError)
    )
