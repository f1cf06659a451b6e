"""The `dref` command: one entry point whose subcommands live beside the parts they drive.

* ``dref compat generate|check DIR`` - golden vectors.
* ``dref node ...`` - run one key/value Raft node until SIGTERM/SIGINT.
* ``dref cluster up --nodes N`` - run N local nodes as child processes until Ctrl-C.
* ``dref status ADDRESS [--json]`` - one node's role, term, indexes and metrics.
* ``dref get|set|delete|watch|lock NAME ...`` - values and locks (`dref.data_cli`).
* ``dref certs init DIR`` / ``dref certs issue ...`` - a cluster CA and certificates for TLS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dref.data_cli import add_data_commands, run_data_command
from dref.errors import ConfigError, DRefError
from dref.tls_options import add_tls_arguments, tls_of
from dref.wire.tls import TLS


def _package_version() -> str:
    try:
        return version("dref-py")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `dref` subcommand."""
    parser = argparse.ArgumentParser(prog="dref", description="dref-py command line")
    parser.add_argument("--version", action="version", version=f"dref-py {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    compat = commands.add_parser("compat", help="golden vectors: generate DIR | check DIR")
    compat.add_argument(
        "compat_args", nargs=argparse.REMAINDER, help="generate DIR | check DIR"
    )

    node = commands.add_parser(
        "node",
        help="run one key/value Raft node",
        description="Options override --config; with neither --listen nor --config the "
        "node is configured from DREF_PORT / DREF_NODE_ADDRESSES / DREF_NODE_SERVICES"
        " (or DREF_K8S_SERVICE / DREF_K8S_NAMESPACE).",
    )
    node.add_argument("--id", dest="node_id", help="this node's id")
    node.add_argument("--listen", help="HOST:PORT to serve on (port 0: a free one)")
    node.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="another voter of the cluster (repeat for each)",
    )
    node.add_argument("--data-dir", type=Path, help="where the node keeps its files")
    node.add_argument("--config", type=Path, help="a TOML or JSON file with the same keys")
    node.add_argument("--bind-host", default="127.0.0.1", help="own IP in DREF_* mode")
    node.add_argument("--heartbeat-ms", type=int, help="leader heartbeat interval (default 100)")
    node.add_argument("--election-ms", type=int, help="election timeout (default 1000)")
    node.add_argument(
        "--snapshot-every", type=int, help="applied entries between snapshots (0: never)"
    )
    node.add_argument("--keepalive-ms", type=int, help="ping streams' connections this often")
    node.add_argument(
        "--address-poll-ms",
        type=int,
        help="re-resolve DREF_NODE_SERVICES this often (default 3000, as upstream)",
    )
    node.add_argument("--max-value-size", type=int, help="largest value in bytes")
    node.add_argument(
        "--history-revisions",
        type=int,
        help="changes kept in memory for resumable change streams, ref.changes(after=...)"
        " (default 10000; 0 keeps none)",
    )
    node.add_argument(
        "--peer-transport",
        choices=["socket", "grpc"],
        help="how to reach peers: the native socket protocol (default; gRPC for a peer"
        " without it) or gRPC streams; also DREF_PEER_TRANSPORT",
    )
    node.add_argument(
        "--peer-listen",
        metavar="HOST:PORT",
        help="where peers connect for the socket protocol (default: the --listen host on a"
        " free port, which peers learn through --listen)",
    )
    node.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs dref-py[metrics];"
        " also DREF_METRICS_LISTEN)",
    )
    node.add_argument(
        "--unix-socket",
        metavar="PATH",
        help="also serve clients of this machine on a Unix socket at PATH",
    )
    node.add_argument(
        "--peer-socket",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="reach peer ID's socket here instead of asking its --listen address (repeatable)",
    )
    node.add_argument(
        "--join",
        action="store_true",
        help="start outside the cluster (no --peer) and wait for `dref members add` on the leader",
    )
    add_tls_arguments(node)
    node.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="NAME=ROLE",
        help="with TLS: the role (read, write, admin) of client certificate NAME (repeatable)",
    )
    node.add_argument(
        "--interop",
        action="store_true",
        help="speak upstream DRef's protocol exactly, to join a Scala or Rust cluster"
        " (upstream's guarantees and files only; decimal ids as upstream's)",
    )
    node.add_argument("--log-level", default="INFO", help="DEBUG, INFO (default), WARNING")
    node.add_argument("--exit-on-stdin-close", action="store_true", help=argparse.SUPPRESS)

    cluster = commands.add_parser("cluster", help="run a local cluster: cluster up --nodes N")
    cluster.add_argument("action", choices=["up"], help="up: start the nodes until Ctrl-C")
    cluster.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    cluster.add_argument("--base-port", type=int, help="ports base, base+1, ... (default: free)")
    cluster.add_argument(
        "--data-dir", type=Path, help="keep node data here (default: a new temporary directory)"
    )
    cluster.add_argument(
        "--restart", action="store_true", help="restart a node that exits (default: report it)"
    )
    cluster.add_argument("--heartbeat-ms", type=int, help="leader heartbeat interval")
    cluster.add_argument("--election-ms", type=int, help="election timeout")
    cluster.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS: make a CA and certificates (dref certs) under the data directory,"
        " and print the client options",
    )

    status = commands.add_parser("status", help="show one node's status")
    status.add_argument("address", help="HOST:PORT of the node")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    add_tls_arguments(status)

    transfer = commands.add_parser("transfer-leader", help="hand leadership to another voter")
    transfer.add_argument("address", help="HOST:PORT of any node (the leader is found)")
    transfer.add_argument("--to", default="", help="target voter id (default: most caught up)")
    transfer.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    add_tls_arguments(transfer)

    members = commands.add_parser("members", help="list or change the cluster's members")
    members.add_argument(
        "action",
        choices=["list", "add", "add-learner", "promote", "remove"],
        help="list; add (a voter, after it catches up); add-learner; promote; remove",
    )
    members.add_argument("address", help="HOST:PORT of any node (the leader is found)")
    members.add_argument("node_id", nargs="?", default="", help="member to change")
    members.add_argument("node_address", nargs="?", default="", help="its HOST:PORT (add)")
    members.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    add_tls_arguments(members)
    _add_certs_command(commands)
    add_data_commands(commands)
    return parser


def _add_certs_command(commands: Any) -> None:
    """`dref certs init|issue`: the CA and certificates that --tls-cert/--tls-key/--tls-ca read."""
    certs = commands.add_parser(
        "certs",
        help="certificates for mutual TLS: certs init DIR | certs issue ...",
        description="Make a cluster CA, then one certificate per node or client signed by it"
        " (needs dref-py[tls]).",
    )
    actions = certs.add_subparsers(dest="certs_command", required=True)
    init = actions.add_parser("init", help="make a cluster CA: DIR/ca.crt and DIR/ca.key")
    init.add_argument("directory", type=Path, help="where to write ca.crt and ca.key")
    init.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    init.add_argument("--force", action="store_true", help="replace an existing ca.key")

    issue = actions.add_parser(
        "issue",
        help="sign a node or client certificate: OUT/NAME.crt, OUT/NAME.key, OUT/ca.crt",
    )
    issue.add_argument("--ca", type=Path, required=True, help="the directory of certs init")
    issue.add_argument(
        "--name", required=True, help="node id or client name: the CN and a DNS (or IP) SAN"
    )
    issue.add_argument("--out", type=Path, required=True, help="where to write the files")
    issue.add_argument(
        "--role", help="read, write or admin: recorded as the subject's OU (default: none)"
    )
    issue.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    issue.add_argument(
        "--local",
        action="store_true",
        help="also valid for localhost and 127.0.0.1 (for dref cluster up)",
    )
    issue.add_argument(
        "--force", action="store_true", help="replace existing NAME.crt, NAME.key and ca.crt"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the `dref` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "data_command", None) is not None:
        return run_data_command(args)
    try:
        if args.command == "compat":
            from dref.compat.__main__ import main as compat_main

            return compat_main(args.compat_args)
        if args.command == "node":
            return _run_node(args)
        if args.command == "cluster":
            return _cluster_up(args)
        if args.command == "status":
            return _show_status(args)
        if args.command == "transfer-leader":
            return _transfer_leader(args)
        if args.command == "members":
            return _members(args)
        if args.command == "certs":
            return _certs(args)
    except DRefError as exc:
        print(f"dref {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2


# -- dref node -------------------------------------------------------------------------


def _node_config(args: argparse.Namespace) -> Any:
    """The NodeConfig from --config, the options over it, or the DREF_* variables."""
    from dref.node_config_file import read_config_file
    from dref.raft.config import UPSTREAM_SNAPSHOT_EVERY, NodeConfig

    settings: dict[str, Any] = read_config_file(args.config) if args.config else {}
    node_id = args.node_id or settings.get("node_id") or settings.get("id")
    listen = args.listen or settings.get("listen")
    peers = {**settings.get("peers", {}), **_id_addresses(args.peer, "--peer")}
    data_dir = args.data_dir or settings.get("data_dir")
    if data_dir is None:
        raise ConfigError("--data-dir (or data_dir in --config) is required")
    timings: dict[str, Any] = {}
    for key, option in (
        ("heartbeat_ms", args.heartbeat_ms),
        ("election_ms", args.election_ms),
        ("snapshot_every", args.snapshot_every),
        ("keepalive_ms", args.keepalive_ms),
        ("address_poll_ms", args.address_poll_ms),
    ):
        value = option if option is not None else settings.get(key)
        if value is not None:
            timings[key] = value
    options: dict[str, Any] = {}
    if "heartbeat_ms" in timings:
        options["heartbeat_interval"] = timings["heartbeat_ms"] / 1000
    if "election_ms" in timings:
        options["election_timeout"] = timings["election_ms"] / 1000
    if "snapshot_every" in timings:
        options["snapshot_every"] = timings["snapshot_every"]
    if "keepalive_ms" in timings:
        options["keepalive_interval"] = timings["keepalive_ms"] / 1000
    if "address_poll_ms" in timings:
        options["address_poll_interval"] = timings["address_poll_ms"] / 1000
    for key, given, variable in (
        ("peer_transport", args.peer_transport, "DREF_PEER_TRANSPORT"),
        ("peer_listen", args.peer_listen, ""),
        ("metrics_listen", args.metrics_listen, "DREF_METRICS_LISTEN"),
        ("unix_socket", args.unix_socket, ""),
    ):  # the option, else the config file, else the environment
        chosen = given or settings.get(key) or os.environ.get(variable, "").strip()
        if chosen:
            options[key] = str(chosen)
    peer_sockets = {
        **settings.get("peer_sockets", {}),
        **_id_addresses(args.peer_socket, "--peer-socket"),
    }
    if peer_sockets:
        options["peer_sockets"] = peer_sockets
    if args.join:
        options["join"] = True
    if args.interop:
        options["interop"] = True
        options.setdefault("snapshot_every", UPSTREAM_SNAPSHOT_EVERY)
    tls = tls_of(args, settings)
    if tls is not None:
        options["tls"] = tls
    roles = {**settings.get("roles", {}), **_id_addresses(args.role, "--role", "NAME=ROLE")}
    if roles:
        options["roles"] = roles
    if listen is None:
        return NodeConfig.from_env(
            Path(data_dir), bind_host=args.bind_host, node_id=node_id, **options
        )
    if not node_id:
        raise ConfigError("--id (or node_id in --config) is required with --listen")
    return NodeConfig(
        node_id=str(node_id), listen=str(listen), peers=peers, data_dir=Path(data_dir), **options
    )


def _id_addresses(items: list[str], flag: str, shape: str = "ID=HOST:PORT") -> dict[str, str]:
    """`flag KEY=VALUE` options (`shape` says which) as a dict; ConfigError on one without
    "=" or with an empty key."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} must be {shape}, got {item!r}")
        pairs[key] = value
    return pairs


def _run_node(args: argparse.Namespace) -> int:
    from dref.raft.kv_node import KeyValueNode, NodeLogFilter
    from dref.raft.node_process import READY_PREFIX

    config = _node_config(args)
    if config.interop:
        return _run_interop_node(config, args)
    log_filter = NodeLogFilter(config.node_id)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(log_filter)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s node=%(node_id)s term=%(term)s %(name)s: %(message)s"
        )
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    options: dict[str, Any] = {}
    if args.max_value_size is not None:
        options["max_value_size"] = args.max_value_size
    if args.history_revisions is not None:
        options["history_revisions"] = args.history_revisions
    node = KeyValueNode(config, **options)
    log_filter.node = node
    log = logging.getLogger("dref.node")
    try:
        if args.exit_on_stdin_close:
            threading.Thread(
                target=_wait_for_eof, args=(stop,), name="dref-stdin-watch", daemon=True
            ).start()
        log.info("serving on %s with peers %s", node.address, dict(config.peers) or "none")
        print(f"{READY_PREFIX} {node.node_id} {node.address}", flush=True)
        while not stop.wait(1.0):  # wakes on a signal or stdin EOF; the timeout lets the
            if node.node.refusal is not None:  # main thread run signal handlers promptly
                return 1  # the node logged why, once
            if not node.node.healthy():
                log.critical("a part of the node failed (see above); exiting so it restarts")
                return 1
        log.info("shutting down")
    finally:
        node.close()
    return 0


def _run_interop_node(config: Any, args: argparse.Namespace) -> int:
    """`dref node --interop`: serve until SIGTERM / SIGINT (or stdin closes)."""
    from dref.raft.interop.node import InteropNode
    from dref.raft.node_process import READY_PREFIX

    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s node={config.node_id} %(name)s: %(message)s",
        force=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = InteropNode(config)
    try:
        if args.exit_on_stdin_close:
            threading.Thread(
                target=_wait_for_eof, args=(stop,), name="dref-stdin-watch", daemon=True
            ).start()
        print(f"{READY_PREFIX} {node.node_id} {node.address}", flush=True)
        while not stop.wait(1.0):  # the timeout lets the main thread run signal handlers
            pass
    finally:
        node.close()
    return 0


def _wait_for_eof(stop: threading.Event) -> None:
    """Set `stop` when stdin closes (the parent died or let us go)."""
    try:  # os.read: no buffered-reader lock for interpreter shutdown to trip over
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    stop.set()


# -- dref cluster up ---------------------------------------------------------------------


def _cluster_up(args: argparse.Namespace) -> int:
    from dref.raft.node_process import free_ports

    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if args.base_port is None:
        ports = free_ports(args.nodes)
    else:
        ports = [args.base_port + i for i in range(args.nodes)]
    addresses = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="dref-cluster-"))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    tls_flags = _cluster_certificates(root, list(addresses)) if args.tls else {}
    cluster = _LocalCluster(addresses, root, args, tls_flags)
    try:
        for node_id in addresses:
            cluster.start(node_id)
        endpoints = ",".join(addresses.values())
        print(f"endpoints {endpoints}  (export DREF_ENDPOINTS={endpoints})", flush=True)
        if args.tls:
            admin = root / "certs" / "admin"
            print(
                f"TLS: export DREF_TLS_CERT={admin}.crt DREF_TLS_KEY={admin}.key"
                f" DREF_TLS_CA={root / 'certs' / 'ca.crt'}  (an admin client)",
                flush=True,
            )
        print(f"data in {root}", flush=True)
        _wait_until_formed(addresses, root / "certs" if args.tls else None, stop)
        print("cluster up; press Ctrl-C to stop", flush=True)
        while not stop.wait(0.5) and cluster.watch():
            pass
    finally:
        codes = cluster.stop()
    print("cluster stopped", flush=True)
    return 0 if stop.is_set() and not any(codes) else 1


def _wait_until_formed(
    addresses: dict[str, str], certs: Path | None, stop: threading.Event, timeout: float = 60.0
) -> None:
    """Return once every node knows a leader and votes (a node started empty waits until it
    has seen its peers at term 0: README, On-disk files), so a node stopped right after
    "cluster up" leaves a cluster that works; after `timeout` go on and say so."""
    from dref.raft.client import Client

    tls = None if certs is None else TLS(certs / "admin.crt", certs / "admin.key", certs / "ca.crt")
    deadline = time.monotonic() + timeout
    with Client(list(addresses.values()), timeout=2.0, tls=tls) as client:
        while not stop.is_set():
            try:
                statuses = [client.status(address) for address in addresses.values()]
            except DRefError:
                statuses = []
            if statuses and all(s["leader_id"] and not s["blank_start"] for s in statuses):
                return
            if time.monotonic() > deadline:
                print(f"no leader every node agrees on within {timeout:g} s", flush=True)
                return
            stop.wait(0.1)  # a poll under a deadline


def _cluster_certificates(root: Path, node_ids: list[str]) -> dict[str, list[str]]:
    """A CA and certificates for `dref cluster up --tls` under `root` (kept, with the data,
    so a restarted node finds them): each node's `--tls-*` options, and an `admin` client."""
    from dref.certs import init_ca, issue_certificate

    if not (root / "ca" / "ca.key").exists():
        init_ca(root / "ca")
    certs = root / "certs"
    flags = {}
    for name in [*node_ids, "admin"]:
        if not (certs / f"{name}.crt").exists():
            role = "admin" if name == "admin" else None
            issue_certificate(root / "ca", name, certs, role=role, local=True)
        flags[name] = ["--tls-cert", str(certs / f"{name}.crt"), "--tls-key"]
        flags[name] += [str(certs / f"{name}.key"), "--tls-ca", str(certs / "ca.crt")]
    return flags


class _LocalCluster:
    """The `dref node` children of `dref cluster up`: a node that exits is reported, and
    restarted with `--restart` (at most once every RESTART_PAUSE seconds each)."""

    RESTART_PAUSE = 2.0

    def __init__(
        self,
        addresses: dict[str, str],
        root: Path,
        args: argparse.Namespace,
        tls_flags: dict[str, list[str]],
    ) -> None:
        self._addresses = addresses
        self._root = root
        self._args = args
        self._tls_flags = tls_flags
        self._children: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._exited: set[str] = set()

    def start(self, node_id: str) -> None:
        from dref.raft.node_process import NodeProcess, node_arguments

        address = self._addresses[node_id]
        peers = {p: a for p, a in self._addresses.items() if p != node_id}
        data_dir = self._root / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        arguments = node_arguments(
            node_id,
            address,
            peers,
            data_dir,
            heartbeat_ms=self._args.heartbeat_ms,
            election_ms=self._args.election_ms,
        )
        arguments += self._tls_flags.get(node_id, [])
        child = NodeProcess(arguments, log=data_dir / "node.log")
        self._children[node_id], self._started[node_id] = child, time.monotonic()
        log = data_dir / "node.log"
        print(f"{node_id} {address} pid {child.process.pid} (log: {log})", flush=True)

    def watch(self) -> bool:
        """Report (and maybe restart) nodes that exited; False once none is left."""
        now = time.monotonic()
        for node_id, child in list(self._children.items()):
            if child.alive:
                continue
            code = child.process.poll()
            if not self._args.restart:
                del self._children[node_id]
                running = ", ".join(sorted(self._children)) or "none"
                print(
                    f"{node_id} exited with status {code}; still running: {running}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            if node_id not in self._exited:
                self._exited.add(node_id)
                print(f"{node_id} exited with status {code}; restarting it", flush=True)
            if now - self._started[node_id] < self.RESTART_PAUSE:
                continue  # it ran only briefly: wait before trying again
            self._exited.discard(node_id)
            try:
                self.start(node_id)
            except DRefError as exc:
                print(f"{node_id} did not restart: {exc}", file=sys.stderr, flush=True)
                self._started[node_id] = now
        return bool(self._children)

    def stop(self) -> list[int]:
        return [child.stop() for child in self._children.values() if child.alive]


# -- dref status ---------------------------------------------------------------------------


def _show_status(args: argparse.Namespace) -> int:
    from dref.raft.client import Client

    with Client([args.address], timeout=args.timeout, tls=tls_of(args)) as client:
        status = client.status(args.address)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(_format_status(status))
    return 0


def _format_status(status: dict[str, Any]) -> str:
    """A node status as a short human-readable report."""
    lines = [
        f"node      {status.get('node_id')} at {status.get('address')}",
        f"role      {status.get('role')}   term {status.get('term')}",
        f"leader    {status.get('leader_id') or 'none known'}"
        + (f" at {status['leader_address']}" if status.get("leader_address") else ""),
        f"voters    {', '.join(status.get('voters') or []) or '?'}"
        f"   unreachable {', '.join(status.get('unreachable') or []) or 'none'}",
        f"log       commit {status.get('commit_index')}   applied {status.get('applied_index')}"
        f"   last {status.get('last_index')}   snapshot {status.get('snapshot_index')}",
    ]
    for peer, match in sorted((status.get("match_indexes") or {}).items()):
        lines.append(f"follower  {peer}: match index {match}")
    metrics = status.get("metrics") or {}
    if metrics:
        lines.append("metrics   " + "   ".join(f"{k} {v}" for k, v in sorted(metrics.items())))
    return "\n".join(lines)


# -- dref transfer-leader / dref members -------------------------------------------------

_MEMBER_ACTIONS = {"add": "add_voter", "add-learner": "add_learner"}


def _admin_call(
    address: str, method: str, request: Any, timeout: float, tls: TLS | None
) -> Any:
    """Call an admin RPC on the leader: follow not_leader redirects, and while an election
    runs (no leader known yet) ask again until `timeout`; DRefError when it fails."""
    import grpc

    from dref.errors import BackendUnavailableError
    from dref.wire.consensus_codec import NATIVE_SERVICE
    from dref.wire.proto import dref_consensus_pb2 as pb
    from dref.wire.tls import TlsMaterial, diagnose_tls, open_channel

    material = None if tls is None else TlsMaterial(tls)

    response_type = type(request).__name__.replace("Request", "Response")
    deadline = time.monotonic() + timeout
    asked = address
    while True:
        with open_channel(asked, material) as channel:
            call = channel.unary_unary(
                f"/{NATIVE_SERVICE}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=getattr(pb, response_type).FromString,
            )
            try:
                response = call(request, timeout=max(0.0, deadline - time.monotonic()) + 5.0)
            except grpc.RpcError as exc:
                if asked == address:
                    explained = diagnose_tls(asked, material) or exc.details()
                    raise BackendUnavailableError(f"{asked}: {explained}") from None
                response = None  # a stale leader hint: start again from the given node
        if response is not None and response.error_kind != "not_leader":
            if response.error_kind:
                raise DRefError(f"{response.error_kind}: {response.error}")
            return response
        if time.monotonic() >= deadline:
            raise DRefError(f"no leader found from {address} within {timeout:g} s")
        hint = response.leader_hint if response is not None else ""
        if hint and hint != asked:
            asked = hint
        else:
            asked = address
            time.sleep(_NO_LEADER_PAUSE)


_NO_LEADER_PAUSE = 0.1
"""Seconds between asks while the cluster elects a leader."""


def _transfer_leader(args: argparse.Namespace) -> int:
    from dref.wire.proto import dref_consensus_pb2 as pb

    request = pb.TransferLeadershipRequest(target=args.to, timeout=args.timeout)
    response = _admin_call(
        args.address, "TransferLeadership", request, args.timeout, tls_of(args)
    )
    print(f"leader is now {response.leader_id}")
    return 0


def _members(args: argparse.Namespace) -> int:
    from dref.wire.proto import dref_consensus_pb2 as pb

    if args.action != "list" and not args.node_id:
        raise ConfigError(f"members {args.action} needs a NODE_ID")
    if args.action in ("add", "add-learner") and not args.node_address:
        raise ConfigError(f"members {args.action} needs the new node's HOST:PORT")
    request = pb.MembershipRequest(
        action=_MEMBER_ACTIONS.get(args.action, args.action),
        node_id=args.node_id,
        address=args.node_address,
        timeout=args.timeout,
    )
    response = _admin_call(args.address, "ChangeMembership", request, args.timeout, tls_of(args))
    for member in response.members:
        role = "voter" if member.voter else "learner"
        print(f"{member.node_id}\t{role}\t{member.address}")
    return 0


# -- dref certs ------------------------------------------------------------------------


def _certs(args: argparse.Namespace) -> int:
    """Run `dref certs init|issue` and print the files it wrote."""
    from dref.certs import init_ca, issue_certificate

    if args.certs_command == "init":
        ca = init_ca(args.directory, days=args.days, force=args.force)
        print(f"wrote {ca.cert} (CA certificate, valid {args.days} days: give it to every node)")
        print(f"wrote {ca.key} (CA private key, mode 0600: keep it secret)")
        return 0
    files = issue_certificate(
        args.ca,
        args.name,
        args.out,
        role=args.role,
        days=args.days,
        local=args.local,
        force=args.force,
    )
    print(f"wrote {files.cert} (certificate of {args.name}, valid {args.days} days)")
    print(f"wrote {files.key} (its private key, mode 0600)")
    print(f"wrote {files.ca} (the CA certificate, for --tls-ca)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
