"""`NodeConfig`: everything one embedded Raft node needs, validated once with ConfigError."""

from __future__ import annotations

import difflib
import errno
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dref.errors import ConfigError
from dref.wire.tls import ROLES, TLS

PEER_TRANSPORTS = ("socket", "grpc")
"""Ways a native node reaches its peers; see `NodeConfig.peer_transport`."""

UPSTREAM_SNAPSHOT_EVERY = 1000
"""Upstream's snapshotEvery default, which `dref node --interop` keeps unless told."""

DEFAULT_PORT = 8082
"""Upstream's gRPC port when `DREF_PORT` is not set (spec 1.7)."""


def split_address(address: object, what: str) -> tuple[str, int]:
    """Parse "host:port" (port 0 allowed); ConfigError naming `what` otherwise."""
    if not isinstance(address, str):
        raise ConfigError(f"{what} must be a 'host:port' string, got {address!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} must be 'host:port', got {address!r}")
    return host, int(port)


@dataclass(frozen=True)
class NodeConfig:
    """One node of a static cluster. Times are in seconds.

    `peers` maps the id of every OTHER voter to its "host:port". `listen` may use port 0
    (a free port is picked; `Node.address` tells which). With `upstream_files` the data
    directory holds upstream's formats: commands must be StateCommands and snapshots
    ClusterSnapshots; turn it off to replicate a state machine of your own.
    """

    node_id: str
    listen: str
    peers: Mapping[str, str]
    data_dir: Path
    heartbeat_interval: float = 0.1
    election_timeout: float = 1.0
    max_clock_drift: float = 0.1
    snapshot_every: int = 10_000
    snapshot_chunk_bytes: int = 1 << 20
    """A leader sends a snapshot in InstallSnapshot chunks of at most this many bytes."""
    rpc_timeout: float = 2.0
    keepalive_interval: float = 20.0
    """Seconds between pings on each connection with open streams (client pipelines and
    watches, peer streams); one unanswered for half as long is dropped, which frees the
    thread a vanished client or peer held."""
    upstream_files: bool = True
    peer_transport: str = "socket"
    """How this node sends to peers: "socket" (the native protocol, `wire/node_socket.py`;
    a peer without it is reached over gRPC) or "grpc" (one PeerStream per peer)."""
    peer_listen: str | None = None
    """"host:port" of the peer socket; default: the `listen` host on a free port, which
    peers learn from the gRPC port, so only `listen` needs to be reachable by name."""
    metrics_listen: str | None = None
    """"host:port" to serve Prometheus metrics on (needs `dref-py[metrics]`)."""
    unix_socket: str | None = None
    """A Unix socket path where the node also serves clients of this machine (faster
    than TCP on loopback); `dref.raft(...)` uses one in the data directory."""
    peer_sockets: Mapping[str, str] = field(default_factory=dict)
    """Where to reach some peers' sockets (id -> "host:port"), instead of asking their
    gRPC port: this node's own view wins, as behind a NAT, a sidecar or a proxy."""
    tick_interval: float = field(default=0.02)
    join: bool = False
    """Start outside the cluster (no peers) and wait for a leader to add this node."""
    node_services: tuple[str, ...] = ()
    """DNS names whose addresses are the cluster's nodes (`DREF_NODE_SERVICES`), each at
    the `listen` port: re-resolved every `address_poll_interval`, and the leader adds and
    removes members to match (`dref.raft.discovery`)."""
    address_poll_interval: float = 3.0
    """Seconds between re-resolutions of `node_services` (upstream's addressPollInterval)."""
    tls: TLS | None = None
    """Mutual TLS on every listener and link of the node (`dref.TLS(cert, key, ca)`): peers
    and clients must present a certificate of the same CA, a peer's naming the node id it
    claims. Without it the node trusts its network."""
    roles: Mapping[str, str] = field(default_factory=dict)
    """With TLS, the role (read, write, admin) of each client certificate name; a name not
    listed has the role its certificate states (`dref certs issue --role`), else none."""
    interop: bool = False
    """Speak upstream DRef's protocol exactly (spec section 4), to join a Scala or Rust
    cluster: upstream's guarantees and files only (`dref.raft.interop`). `peers` may then
    list this node too (upstream configs do); it is left out by id or by address."""

    def __post_init__(self) -> None:
        if not self.node_id or not isinstance(self.node_id, str):
            raise ConfigError("node_id must be a non-empty string")
        split_address(self.listen, "listen")
        if not isinstance(self.peers, Mapping):
            raise ConfigError(
                "peers must map each other voter's id to its 'host:port',"
                f" got a {type(self.peers).__name__}"
            )
        peers = dict(self.peers)
        if self.interop:
            peers = {
                peer: address
                for peer, address in peers.items()
                if peer != self.node_id and address != self.listen
            }
            for option, used in (("tls", self.tls is not None), ("join", self.join)):
                if used:
                    raise ConfigError(
                        f"{option} is a native-mode option; upstream's protocol has none"
                    )
        if self.join and peers:
            raise ConfigError("a joining node learns its peers from the leader; give none")
        if self.node_id in peers:
            raise ConfigError(f"peers must list the OTHER voters; it contains {self.node_id!r}")
        for peer_id, address in peers.items():
            if not peer_id:
                raise ConfigError("peer ids must be non-empty")
            _, port = split_address(address, f"address of peer {peer_id!r}")
            if port == 0:
                raise ConfigError(f"peer {peer_id!r} needs a real port, got {address!r}")
        object.__setattr__(self, "peers", peers)
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(f"data directory {self.data_dir} is a file, not a directory")
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval must be positive")
        if self.election_timeout <= self.heartbeat_interval:
            raise ConfigError("election_timeout must exceed heartbeat_interval")
        if not self.interop and not 0 < self.tick_interval <= self.heartbeat_interval:
            raise ConfigError("tick_interval must lie in (0, heartbeat_interval]")
        if not self.interop and not 0 <= self.max_clock_drift < self.election_timeout:
            raise ConfigError("max_clock_drift must lie in [0, election_timeout)")
        if self.snapshot_every < 0:
            raise ConfigError("snapshot_every must be >= 0 (0 disables snapshots)")
        if self.snapshot_chunk_bytes < 1:
            raise ConfigError("snapshot_chunk_bytes must be positive")
        if self.rpc_timeout <= 0:
            raise ConfigError("rpc_timeout must be positive")
        if self.keepalive_interval <= 0:
            raise ConfigError("keepalive_interval must be positive")
        if isinstance(self.node_services, str) or not all(
            isinstance(name, str) and name for name in self.node_services
        ):
            raise ConfigError("node_services must be a list of DNS names")
        object.__setattr__(self, "node_services", tuple(self.node_services))
        if not self.address_poll_interval > 0:
            raise ConfigError("address_poll_interval must be positive (seconds)")
        if self.tls is not None and not isinstance(self.tls, TLS):
            raise ConfigError(f"tls must be dref.TLS(cert=..., key=..., ca=...), got {self.tls!r}")
        if not isinstance(self.roles, Mapping):
            raise ConfigError("roles must map client certificate names to read, write or admin")
        for name, role in self.roles.items():
            if role not in ROLES:
                raise ConfigError(
                    f"role of {name!r} must be one of {', '.join(ROLES)}, got {role!r}"
                )
        object.__setattr__(self, "roles", dict(self.roles))
        if self.peer_transport not in PEER_TRANSPORTS:
            raise ConfigError(
                f"peer_transport must be one of {', '.join(PEER_TRANSPORTS)},"
                f" got {self.peer_transport!r}"
            )
        if self.peer_listen is not None:
            split_address(self.peer_listen, "peer_listen")
        if self.metrics_listen is not None:
            split_address(self.metrics_listen, "metrics_listen")
        if self.unix_socket is not None and len(os.fsencode(self.unix_socket)) > 100:
            raise ConfigError(f"unix_socket path is too long (over 100 bytes): {self.unix_socket}")
        if not isinstance(self.peer_sockets, Mapping):
            raise ConfigError("peer_sockets must map peer ids to 'host:port'")
        for peer_id, address in self.peer_sockets.items():
            split_address(address, f"peer socket address of {peer_id!r}")
        object.__setattr__(self, "peer_sockets", dict(self.peer_sockets))

    @classmethod
    def from_env(
        cls,
        data_dir: Path,
        *,
        bind_host: str = "127.0.0.1",
        node_id: str | None = None,
        environ: Mapping[str, str] | None = None,
        **options: object,
    ) -> NodeConfig:
        """Build a config from upstream's variables (spec 1.7): `DREF_PORT`,
        `DREF_NODE_ADDRESSES` (peer IPs) and `DREF_NODE_SERVICES` (DNS names), or, taking
        precedence as upstream's does, `DREF_K8S_SERVICE` (+ `DREF_K8S_NAMESPACE`): the
        ready addresses of that Kubernetes Endpoints object, followed like a DNS name.

        As upstream does, a peer's id is its IP and our own address (`bind_host:port`)
        is left out of the peers; our id defaults to `bind_host`, so every node agrees
        on every id.
        """
        env = os.environ if environ is None else environ
        _check_variable_names(env)
        port_text = env.get("DREF_PORT", "").strip() or str(DEFAULT_PORT)
        if not port_text.isdigit() or int(port_text) >= 65536:
            raise ConfigError(f"DREF_PORT must be a port number 0-65535, got {port_text!r}")
        port = int(port_text)
        ips = _split_list(env.get("DREF_NODE_ADDRESSES", ""))
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ConfigError(
                    "DREF_NODE_ADDRESSES must be a comma-separated list of IP addresses;"
                    f" {ip!r} is not one (DNS names go in DREF_NODE_SERVICES)"
                ) from None
        services = _split_list(env.get("DREF_NODE_SERVICES", ""))
        k8s_service = env.get("DREF_K8S_SERVICE", "").strip()
        if k8s_service:  # upstream's first choice, alone
            from dref.raft.kubernetes import k8s_service_name

            namespace = env.get("DREF_K8S_NAMESPACE", "").strip() or None
            ips, services = [], [k8s_service_name(k8s_service, namespace)]
        for name in services:
            ips.extend(resolve_service(name))
        return cls(
            node_id=node_id or bind_host,
            listen=f"{bind_host}:{port}",
            peers=service_peers(ips, port, bind_host),
            data_dir=data_dir,
            node_services=tuple(services),
            **options,  # type: ignore[arg-type]
        )


NODE_VARIABLES = (
    "DREF_PORT",
    "DREF_NODE_ADDRESSES",
    "DREF_NODE_SERVICES",
    "DREF_K8S_SERVICE",
    "DREF_K8S_NAMESPACE",
)
"""The environment variables `NodeConfig.from_env` reads."""


def _check_variable_names(env: Mapping[str, str]) -> None:
    """ConfigError for a DREF_* variable that looks like a misspelt node variable (other
    DREF_* names belong to other programs, such as the data CLI's DREF_ENDPOINTS)."""
    for name in env:
        if name.startswith("DREF_") and name not in NODE_VARIABLES:
            close = difflib.get_close_matches(name, NODE_VARIABLES, n=1, cutoff=0.9)
            if close:
                raise ConfigError(f"unknown variable {name}; did you mean {close[0]}?")


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def service_peers(ips: Iterable[str], port: int, own_host: str) -> dict[str, str]:
    """Upstream's endpoints for discovered IPs: id = the IP, address = "IP:port"; the
    node's own host is left out (spec 4.9: self-exclusion by address)."""
    return {ip: f"{ip}:{port}" for ip in dict.fromkeys(ips) if ip != own_host}


def resolve_service(name: str) -> list[str]:
    """Every address of DNS name `name`, in the resolver's order (for `k8s://NS/SERVICE`,
    the ready addresses of that Kubernetes Endpoints object); ConfigError if none."""
    if name.startswith("k8s://"):
        from dref.raft.kubernetes import endpoint_ips

        return endpoint_ips(name)
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"cannot resolve DREF_NODE_SERVICES name {name!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_bindable(listen: str) -> None:
    """ConfigError saying why `listen` cannot be bound, found by binding it briefly (gRPC
    would only log the reason to stderr and report a port of 0)."""
    host, port = split_address(listen, "listen")
    if port == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            probe.bind(sockaddr)
    except OSError as exc:
        reason = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {listen}: {reason}") from None


_BIND_ERRORS = {
    errno.EADDRINUSE: "the port is in use",
    errno.EADDRNOTAVAIL: "the host is not an address of this machine",
}
