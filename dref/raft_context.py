"""DRef contexts on Raft: `raft_context` embeds a key/value node, `raft_client_context` only
talks to a running cluster. Both return a `dref.context.Context` over a `RaftBackend`.

With ``isolate=True`` (the default) the embedded node runs in a child process
(``python -m dref.cli node``), so the application's own CPU-bound threads cannot hold the
GIL long enough to delay heartbeats and cause elections. The child exits when the parent
does (it watches a pipe on its stdin) and when the context closes. ``isolate=False`` runs
the node in this process (fewer moving parts, for tests and light applications).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dref.backend import ReadPolicyName
from dref.context import Context
from dref.contracts.changes import DEFAULT_HISTORY_REVISIONS
from dref.errors import ConfigError
from dref.raft.client import Client
from dref.raft_backend import DEFAULT_TTL, RaftBackend
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.client_protocol import DEFAULT_MAX_VALUE_SIZE
from dref.wire.tls import TLS

__all__ = ["raft_client_context", "raft_context"]


def raft_context(
    *,
    node_id: str,
    listen: str,
    peers: Mapping[str, str],
    data_dir: str | Path,
    isolate: bool = True,
    heartbeat_interval: float | None = None,
    election_timeout: float | None = None,
    snapshot_every: int | None = None,
    default_ttl: float = DEFAULT_TTL,
    timeout: float = 10.0,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ready_timeout: float = 30.0,
    read_policy: ReadPolicyName = "linearizable",
    metrics_listen: str | None = None,
    tls: TLS | None = None,
    roles: Mapping[str, str] | None = None,
    history_revisions: int = DEFAULT_HISTORY_REVISIONS,
    interop: bool = False,
) -> Context:
    """A context on a key/value node embedded here (`peers`: the OTHER voters' id -> address).

    Times are in seconds; None keeps the node's defaults. Calls go through the local node
    to the leader; `timeout` bounds each call. Closing the context stops the node.
    `metrics_listen` ("host:port") serves the node's Prometheus metrics there. `tls`
    (`dref.TLS(cert, key, ca)`, a certificate naming `node_id`) turns on mutual TLS for the
    node and for this context's calls; `roles` maps client certificate names to roles.
    `history_revisions` changes stay in the node's memory for `ref.changes(after=...)`.
    `interop=True` runs the node in interop mode, to join a Scala or Rust DRef cluster
    (upstream's protocol and guarantees: `dref.interop_backend`; README "Interop mode").
    """
    from dref.raft.config import NodeConfig

    options: dict[str, Any] = {}
    if heartbeat_interval is not None:
        options["heartbeat_interval"] = heartbeat_interval
    if election_timeout is not None:
        options["election_timeout"] = election_timeout
    if snapshot_every is not None:
        options["snapshot_every"] = snapshot_every
    if metrics_listen is not None:
        options["metrics_listen"] = metrics_listen
    if tls is not None:
        options["tls"] = tls
    if roles:
        options["roles"] = roles
    if interop:
        options["interop"] = True
    config = NodeConfig(node_id, listen, peers, Path(data_dir), **options)  # checks them all
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    stop: Callable[[], object]
    node_state: KeyValueStateMachine | None = None
    unix_sockets: dict[str, str] = {}  # the child's Unix socket, for our calls to it
    if isolate:
        from dref.raft.node_process import NodeProcess, node_arguments

        arguments = node_arguments(
            node_id,
            listen,
            peers,
            data,
            heartbeat_ms=_ms(heartbeat_interval),
            election_ms=_ms(election_timeout),
            snapshot_every=snapshot_every,
        )
        if interop:
            arguments.append("--interop")
        else:
            arguments += ["--max-value-size", str(max_value_size)]
            arguments += ["--history-revisions", str(history_revisions)]
        if metrics_listen is not None:
            arguments += ["--metrics-listen", metrics_listen]
        if config.tls is not None:
            arguments += ["--tls-cert", str(config.tls.cert), "--tls-key", str(config.tls.key)]
            arguments += ["--tls-ca", str(config.tls.ca)]
        for name, role in config.roles.items():
            arguments += ["--role", f"{name}={role}"]
        unix_path = None if interop else _unix_socket_path(data)
        if unix_path is not None:
            arguments += ["--unix-socket", unix_path]
        child = NodeProcess(arguments, ready_timeout=ready_timeout, log=data / "node.log")
        address, stop = child.address, child.stop
        if unix_path is not None:
            unix_sockets[address] = unix_path
    elif interop:
        from dref.raft.interop.node import InteropNode

        interop_node = InteropNode(config)
        address, stop = interop_node.address, interop_node.close
        node_state = interop_node.engine.state_machine
    else:
        from dref.raft.kv_node import KeyValueNode

        node = KeyValueNode(
            config, max_value_size=max_value_size, history_revisions=history_revisions
        )
        address, stop = node.address, node.close
    if interop:
        return _interop_context(
            [address, *config.peers.values()],
            timeout=timeout,
            default_ttl=default_ttl,
            max_value_size=max_value_size,
            on_close=stop,
            node_state=None if isolate else node_state,
        )
    try:
        client = Client(
            [address, *peers.values()], timeout=timeout, unix_sockets=unix_sockets, tls=tls
        )
    except BaseException:
        stop()
        raise
    backend = RaftBackend(
        client,
        default_ttl=default_ttl,
        max_value_size=max_value_size,
        on_close=stop,
    )
    return Context(backend, read_policy=read_policy)


def _unix_socket_path(data_dir: Path) -> str | None:
    """Where the child node serves this process on a Unix socket; None when the path
    would be too long for one (the calls then go over loopback TCP)."""
    path = str(data_dir.resolve() / "node.sock")
    return path if len(path.encode()) <= 100 else None


def raft_client_context(
    addresses: list[str],
    *,
    default_ttl: float = DEFAULT_TTL,
    timeout: float = 10.0,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    read_policy: ReadPolicyName = "linearizable",
    tls: TLS | None = None,
    interop: bool = False,
) -> Context:
    """A context on the running cluster reachable at some of `addresses` ("host:port");
    `read_policy` is how `DRef.get` reads unless told otherwise; `tls`
    (`dref.TLS(cert, key, ca)`) for a cluster with TLS. `interop=True` for a cluster that
    speaks upstream's protocol (Scala or Rust DRef nodes, or `dref node --interop`)."""
    if interop:
        if tls is not None:
            raise ConfigError("upstream's protocol is plaintext: interop=True takes no tls")
        return _interop_context(
            _checked_addresses(addresses),
            timeout=timeout,
            default_ttl=default_ttl,
            max_value_size=max_value_size,
        )
    client = Client(_checked_addresses(addresses), timeout=timeout, tls=tls)
    backend = RaftBackend(client, default_ttl=default_ttl, max_value_size=max_value_size)
    return Context(backend, read_policy=read_policy)


def _interop_context(
    addresses: list[str],
    *,
    timeout: float,
    default_ttl: float,
    max_value_size: int,
    on_close: Callable[[], object] | None = None,
    node_state: KeyValueStateMachine | None = None,
) -> Context:
    """A context over `DRefRaft` calls to an upstream-protocol cluster (change streams fed
    by `node_state`, the state machine of an interop node in this process, if given)."""
    from dref.interop_backend import InteropBackend
    from dref.raft.interop.client import UpstreamClient

    backend = InteropBackend(
        UpstreamClient(addresses, timeout=timeout),
        default_ttl=default_ttl,
        max_value_size=max_value_size,
        on_close=on_close,
        node_state=node_state,
    )
    return Context(backend)


def _checked_addresses(addresses: object) -> list[str]:
    """`addresses` as a list of "host:port" (each with a real port); ConfigError otherwise."""
    from dref.raft.config import split_address

    if isinstance(addresses, str | bytes) or not isinstance(addresses, list | tuple):
        raise ConfigError(
            "addresses must be a list of 'host:port' strings, got "
            f"{type(addresses).__name__} {addresses!r} (for one node: [{addresses!r}])"
        )
    if not addresses:
        raise ConfigError("addresses must name at least one node ('host:port')")
    for address in addresses:
        _, port = split_address(address, "each address")
        if port == 0:
            raise ConfigError(f"address {address!r} needs a real port")
    return list(addresses)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
