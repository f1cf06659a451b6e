"""`Node`: one embedded Raft node — consensus, storage, transport and a state machine.

A node hosts the DRefConsensus services on its gRPC port and runs the actors of
`dref.actors`: the consensus actor (the pure RaftCore), the storage writer (group-commit
fsync), the applier (the state machine), the snapshot sender and a ticker; peers are
reached through a `PeerTransport` (gRPC PeerStreams unless another is given). Every
public call blocks only its caller, is thread-safe and takes a timeout.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

import grpc
import pykka

from dref.actors.admin_requests import (
    MembershipRequest,
    MembersQuery,
    MembersView,
    TransferRequest,
)
from dref.actors.applier import ApplierActor
from dref.actors.batch_inbox import BatchInbox
from dref.actors.consensus.blank_start import BlankRefused, JoinAdmitted, StartCheckOutcome
from dref.actors.consensus.config import RaftConfig, ReadPolicy
from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.membership import ChangeAction, MembershipChange
from dref.actors.consensus.messages import Message
from dref.actors.consensus.raft import RaftCore
from dref.actors.consensus_actor import ConsensusActor, ConsensusStatus
from dref.actors.local_reads import LocalReads
from dref.actors.node_messages import (
    ApplierStats,
    CallersWaiting,
    Connect,
    FsyncStats,
    Inbound,
    PeerReply,
    Proposal,
    ReadRequest,
    ServeRead,
    StatusQuery,
)
from dref.actors.peer_links import PeerLinks, grpc_links, socket_links
from dref.actors.safe_tell import safe_tell
from dref.actors.snapshot_sender import SnapshotSenderActor
from dref.actors.storage_writer import StorageWriterActor
from dref.actors.ticker import Ticker, monotonic_ms
from dref.actors.transport import (
    OnMessage,
    PeerSet,
    PeerTransport,
    Reachability,
    RoundTrips,
    log_reachability,
)
from dref.contracts.read_policy import ReadPolicyName
from dref.contracts.state_machine import StateMachine
from dref.errors import (
    BackendUnavailableError,
    ConfigError,
    ContextClosedError,
    DRefTimeoutError,
    MembershipError,
    QuorumLostError,
)
from dref.raft.config import NodeConfig, check_bindable, split_address
from dref.raft.discovery import ServiceDiscovery
from dref.raft.server.access import Access
from dref.raft.server.admin import admin_handlers
from dref.raft.status import NodeMetrics, NodeStatus
from dref.storage.data_dir_lock import DataDirLock
from dref.storage.node_identity import claim_identity, record_cluster_id, record_joining
from dref.storage.recovery import recover
from dref.storage.snapshot_image import restore_state
from dref.wire.consensus_service import CHANNEL_OPTIONS, ConsensusServicer
from dref.wire.node_socket import NodeSocketServer
from dref.wire.tls import TlsMaterial

logger = logging.getLogger("dref.raft")

__all__ = ["Node"]

ServiceRegistrar = Callable[[grpc.Server, "Node"], None]
"""Adds a servicer (for example the DRefRaft client service) to the node's gRPC server."""
TransportFactory = Callable[[str, OnMessage], PeerTransport]
"""Builds a transport for (node id, where peers' answers go)."""

_POLICIES = {"linearizable": ReadPolicy.READ_INDEX, "lease": ReadPolicy.LEASE}
_ASK_TIMEOUT = 5.0
_GRPC_WORKERS = 64
_MAX_INFLIGHT = 64
"""AppendEntries the core may have in flight per peer; one turn's are joined into one RPC."""


class Node:
    """A running Raft node; see the module doc. Use as a context manager or call close()."""

    def __init__(
        self,
        config: NodeConfig,
        state_machine: StateMachine,
        *,
        services: Iterable[ServiceRegistrar] = (),
        transport: TransportFactory | None = None,
        observe_fsync: Callable[[float], None] | None = None,
        observe_proposal: Callable[[float], Callable[[Future[bytes]], None]] | None = None,
    ) -> None:
        """`observe_fsync(seconds)` is told each group commit's duration (storage thread);
        `observe_proposal(start)` gives a done-callback for each proposal's future."""
        self._config = config
        self._observe_fsync = observe_fsync
        self._observe_proposal = observe_proposal
        self._transport_factory = transport or self._peer_links
        self._reachability = Reachability(log_reachability(config.node_id))
        """Both transports report to it (for `status`); it logs each change once."""
        self._round_trips = RoundTrips()
        """Heartbeat round trips the peer links time (for `status`)."""
        self._closed = False
        self.refusal: str | None = None
        """Why this node will not take part (its data was lost: see `_refuse_blank_start`);
        `dref node` exits with status 1 when it is set."""
        self._actors: list[pykka.ActorRef[Any]] = []
        self._transports: list[PeerTransport] = []
        self._ticker: Ticker | None = None
        self._discovery: ServiceDiscovery | None = None
        self._proposals: BatchInbox[Proposal] = BatchInbox()
        self._reads: BatchInbox[ReadRequest] = BatchInbox()
        node_id = config.node_id
        voters = frozenset() if config.join else frozenset(config.peers) | {node_id}
        host, _ = split_address(config.listen, "listen")
        self._executor = ThreadPoolExecutor(
            max_workers=_GRPC_WORKERS, thread_name_prefix=f"dref-grpc-{node_id}"
        )
        # No SO_REUSEPORT: a second node on a port in use must fail, not share it.
        server_options = [
            *CHANNEL_OPTIONS,
            *_keepalive_options(config),
            *_connection_limits(config),
            ("grpc.so_reuseport", 0),
        ]
        self.tls = None if config.tls is None else TlsMaterial(config.tls)
        """The node's certificates (re-read when their files change), None without TLS."""
        self.access = None if config.tls is None else Access(config.roles, self._is_node)
        """Who may call what (with TLS); None: every caller may call everything."""
        interceptors = [] if self.access is None else [self.access.interceptor()]
        self._server = grpc.server(
            self._executor, options=server_options, interceptors=interceptors
        )
        # Before anything reads or writes the directory: one node at a time, and its own.
        self._data_lock = DataDirLock(config.data_dir)
        self._peer_socket: NodeSocketServer | None = None
        self.cluster_id = ""
        """The id of this node's cluster ("" until its log told it): every peer handshake
        carries it, and a peer of another cluster is refused."""
        try:
            identity = claim_identity(config.data_dir, node_id)
            self.cluster_id = identity.cluster_id or ""
            check_bindable(config.listen)
            try:
                if self.tls is None:
                    port = self._server.add_insecure_port(config.listen)
                else:
                    credentials = self.tls.server_credentials()
                    port = self._server.add_secure_port(config.listen, credentials)
            except RuntimeError:
                port = 0
            if port == 0:
                raise ConfigError(
                    f"cannot listen on {config.listen}: the port is in use or the host is not"
                    " an address of this machine"
                )
            self._address = f"{host}:{port}"
            if config.peer_transport == "socket" and transport is None:
                self._peer_socket = self._bind_peer_socket(host)
            self._addresses = {**config.peers, node_id: self._address}
            recovered = recover(
                config.data_dir,
                voters,
                upstream_files=config.upstream_files,
                addresses=self._addresses,
            )
            empty = _holds_no_raft_state(recovered.durable)
            if config.join and empty:
                identity = record_joining(config.data_dir, node_id, True)
            checks = (not config.join and empty, identity.joining, bool(config.node_services))
            self._start_actors(recovered, voters, state_machine, checks)
            servicer = ConsensusServicer(
                node_id,
                self._peer_set.accepts,
                self.submit_peer_request,
                config.rpc_timeout,
                cluster_id=lambda: self.cluster_id,
            )
            peer_socket = self._peer_socket
            socket_port = None if peer_socket is None else peer_socket.port
            self._server.add_generic_rpc_handlers(servicer.handlers(socket_port=socket_port))
            self._server.add_generic_rpc_handlers([admin_handlers(self)])
            for register in services:
                register(self._server, self)
            self._server.start()
            if peer_socket is not None:
                peer_socket.serve(servicer.admit, self.submit_peer_request)
            self._ticker = Ticker(self._consensus, config.tick_interval, node_id=node_id)
            self._ticker.start()
            if config.node_services:
                host, port = split_address(self._address, "listen")
                self._discovery = ServiceDiscovery(
                    self, config.node_services, port, config.address_poll_interval, own_host=host
                )
                self._discovery.start()
        except BaseException:
            self.close()
            raise

    def _start_actors(
        self,
        recovered: Any,
        voters: frozenset[str],
        sm: StateMachine,
        checks: tuple[bool, bool, bool],
    ) -> None:
        """`checks`: the RaftCore's `blank_start`, `join_check` and `blank_start_may_join`."""
        config = self._config
        node_id = config.node_id
        snapshot = recovered.durable.snapshot
        if snapshot is not None:
            restore_state(sm, snapshot.data)
        storage = StorageWriterActor.start(
            recovered.log,
            recovered.voter_state,
            recovered.snapshots,
            base_index=recovered.base_index,
            last_index=recovered.last_index,
            node_id=node_id,
            observe_fsync=self._observe_fsync,
        )
        self._actors.append(storage)
        self._local = LocalReads(sm, recovered.base_index)
        applier = ApplierActor.start(
            sm,
            applied_index=recovered.base_index,
            applied_term=recovered.base_term,
            node_id=node_id,
            local=self._local,
            spool=recovered.snapshots.sink,
        )
        self._actors.append(applier)

        transport = self._transport_factory(node_id, self._answer)
        snapshot_transport = self._transport_factory(node_id, self._answer)
        self._transports = [transport, snapshot_transport]
        self._peer_set = PeerSet(
            node_id, self._addresses, self._transports, configured=dict(self._addresses)
        )
        core = RaftCore(
            node_id,
            sorted(voters),
            config=RaftConfig(
                heartbeat_interval_ms=round(config.heartbeat_interval * 1000),
                election_timeout_ms=round(config.election_timeout * 1000),
                max_clock_drift_ms=round(config.max_clock_drift * 1000),
                snapshot_every=config.snapshot_every,
                snapshot_chunk_bytes=config.snapshot_chunk_bytes,
                max_inflight=_MAX_INFLIGHT,
            ),
            rng=random.Random(),
            now_ms=monotonic_ms(),
            durable=recovered.durable,
            addresses=self._addresses,
            blank_start=checks[0],
            join_check=checks[1],
            blank_start_may_join=checks[2],
            receive_snapshot=recovered.snapshots.sink,
        )
        core.commit_to(recovered.commit_index)  # re-applied by the first turn's Apply
        self._core_state = core.state  # read-only here: `term` for log records
        snapshot_sender = SnapshotSenderActor.start(snapshot_transport, node_id=node_id)
        self._actors.append(snapshot_sender)
        self._consensus = ConsensusActor.start(
            core,
            storage=storage,
            applier=applier,
            transport=transport,
            leader_address=self._client_address,
            peers=self._peer_set,
            snapshot_sender=snapshot_sender,
            proposals=self._proposals,
            reads=self._reads,
            local=self._local,
            on_start_check=self._start_checked,
        )
        self._actors.insert(0, self._consensus)
        self._applier, self._storage = applier, storage
        storage.tell(Connect(consensus=self._consensus))
        applier.tell(Connect(consensus=self._consensus, storage=storage))

    # ------------------------------------------------------------------ public API

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._config.node_id

    @property
    def address(self) -> str:
        """The "host:port" this node serves on (the real port when listen used port 0)."""
        return self._address

    @property
    def socket_server(self) -> NodeSocketServer | None:
        """The node's socket (peers and native clients), None with `peer_transport="grpc"`."""
        return self._peer_socket

    @property
    def leader_id(self) -> str | None:
        """The leader this node knows, if any."""
        return self._consensus_status().leader_id

    @property
    def leader_address(self) -> str | None:
        """The known leader's "host:port", if any."""
        return self._addresses.get(self.leader_id or "")

    @property
    def term(self) -> int:
        """This node's current term, read without asking the actors (for log records,
        which the consensus thread itself writes; a moment old at most)."""
        return self._core_state.term

    @property
    def is_leader(self) -> bool:
        """Whether this node is the leader right now."""
        return self._consensus_status().role == "leader"

    def propose(self, command: bytes, *, timeout: float = 10.0) -> bytes:
        """Replicate `command`; return the state machine's result once it is committed and
        applied here. Raises NotLeaderError on a follower, QuorumLostError, DRefTimeoutError."""
        return _wait(self.propose_async(command), timeout, "proposal", self.healthy)

    def propose_async(self, command: bytes) -> Future[bytes]:
        """Start `propose` without waiting: the future gets its result or error.

        For servers that multiplex many callers on few threads; the future always ends
        (committed and applied, not leader, leadership or quorum lost, node closed)."""
        outcome: Future[bytes] = Future()
        self._check_open()
        if self._observe_proposal is not None:
            outcome.add_done_callback(self._observe_proposal(time.monotonic()))
        if self._proposals.put(Proposal(command, outcome)):
            safe_tell(self._consensus, CallersWaiting())
        return outcome

    def read(
        self, request: bytes, *, policy: ReadPolicyName = "linearizable", timeout: float = 10.0
    ) -> bytes:
        """Answer `request` with the state machine's `query`.

        "linearizable" confirms leadership with a quorum (ReadIndex; a follower asks the
        leader), "lease" skips that round while the leader lease holds, "stale" reads the
        local state now. NotLeaderError when no leader is known.
        """
        answer = self._lease_read(request, policy)
        if answer is not None:
            return answer
        return _wait(self._start_read(request, policy), timeout, "read", self.healthy)

    def read_async(
        self, request: bytes, *, policy: ReadPolicyName = "linearizable"
    ) -> Future[bytes]:
        """Start `read` without waiting (a lease read is answered at once when it can be)."""
        answer = self._lease_read(request, policy)
        if answer is None:
            return self._start_read(request, policy)
        outcome: Future[bytes] = Future()
        outcome.set_result(answer)
        return outcome

    def _lease_read(self, request: bytes, policy: ReadPolicyName) -> bytes | None:
        """A lease read's answer in the caller's thread, without actor hops, when the
        leader lease allows; None otherwise (and for the other policies)."""
        self._check_open()
        return self._local.try_query(request) if policy == "lease" else None

    def _start_read(self, request: bytes, policy: ReadPolicyName) -> Future[bytes]:
        """Hand a read to the actors; the future gets the answer."""
        outcome: Future[bytes] = Future()
        if policy == "stale":
            safe_tell(self._applier, ServeRead(0, request, outcome))
        elif policy in _POLICIES:
            if self._reads.put(ReadRequest(request, _POLICIES[policy], outcome)):
                safe_tell(self._consensus, CallersWaiting())
        else:
            raise ValueError(f"policy must be linearizable, lease or stale, not {policy!r}")
        return outcome

    def status(self) -> NodeStatus:
        """Role, term, leader, log positions and metrics of this node."""
        consensus = self._consensus_status()
        applied = self._ask(self._applier, ApplierStats())
        p50, p99, flushes = self._ask(self._storage, FsyncStats())
        leader = consensus.leader_id
        return NodeStatus(
            node_id=self.node_id,
            address=self._address,
            role=consensus.role,
            term=consensus.term,
            leader_id=leader,
            leader_address=self._addresses.get(leader or ""),
            commit_index=consensus.commit_index,
            applied_index=applied,
            last_index=consensus.last_index,
            snapshot_index=consensus.snapshot_index,
            match_indexes=consensus.match_indexes,
            voters=sorted(self._peer_set.voters),
            unreachable=self._reachability.unreachable,
            round_trips=self._round_trips.recent(self._config.election_timeout),
            removed=consensus.removed_by is not None,
            removed_by=consensus.removed_by,
            removed_at=consensus.removed_at,
            blank_start=consensus.blank_start,
            metrics=NodeMetrics(
                elections_started=consensus.elections_started,
                leader_changes=consensus.leader_changes,
                proposals=consensus.proposals,
                entries_committed=consensus.entries_committed,
                apply_lag=max(0, consensus.commit_index - applied),
                fsync_p50_ms=p50,
                fsync_p99_ms=p99,
                group_commits=flushes,
                snapshot_sends=consensus.snapshot_sends,
                snapshot_bytes_sent=consensus.snapshot_bytes_sent,
                snapshot_installs=consensus.snapshot_installs,
                snapshot_bytes_installed=consensus.snapshot_bytes_installed,
                snapshots_taken=consensus.snapshots_taken,
                snapshot_bytes=consensus.snapshot_bytes,
            ),
        )

    def transfer_leadership(self, to: str | None = None, *, timeout: float | None = None) -> str:
        """Hand leadership from this node (the leader) to voter `to` (None: the most
        up-to-date one); return the new leader's id. Raises NotLeaderError on a follower,
        LeaderTransferError when leadership did not move within two election timeouts."""
        outcome: Future[str] = Future()
        self._check_open()
        safe_tell(self._consensus, TransferRequest(to, outcome))
        wait = timeout if timeout is not None else 4 * self._config.election_timeout + 5.0
        leader: str = _wait(outcome, wait, "leadership transfer", self.healthy)  # type: ignore[arg-type,assignment]
        return leader

    def add_learner(self, node_id: str, address: str, *, timeout: float = 30.0) -> None:
        """Add a non-voting member that replicates (catching up from a snapshot if needed)."""
        self._change(MembershipChange(ChangeAction.ADD_LEARNER, node_id, address), timeout)

    def promote(self, node_id: str, *, timeout: float = 30.0) -> None:
        """Make a learner a voter once it has caught up (MembershipError if it is still
        behind when `timeout` passes)."""
        self._change(MembershipChange(ChangeAction.PROMOTE, node_id), timeout)

    def add_voter(self, node_id: str, address: str, *, timeout: float = 60.0) -> None:
        """Add `node_id` as a learner, wait until it has caught up, then promote it."""
        deadline = time.monotonic() + timeout
        if node_id not in self.members().membership.members:
            self.add_learner(node_id, address, timeout=timeout)
        self.promote(node_id, timeout=max(0.1, deadline - time.monotonic()))

    def remove(self, node_id: str, *, timeout: float = 30.0) -> None:
        """Remove a voter or learner (this node too: it steps down once that commits)."""
        self._change(MembershipChange(ChangeAction.REMOVE, node_id), timeout)

    def members(self) -> MembersView:
        """The configuration in force on this node (appended; `committed` says if it is)."""
        view: MembersView = self._ask(self._consensus, MembersQuery())
        return view

    def _change(self, change: MembershipChange, timeout: float) -> None:
        """Propose `change` and wait until it is committed and applied. A refusal that
        passes by itself (a new leader's first commit, another change in flight, a learner
        catching up) is retried until `timeout`; then the last refusal is raised."""
        what = f"membership change {change.action.value} {change.node_id}"
        deadline = time.monotonic() + timeout
        while True:
            outcome: Future[bytes] = Future()
            self._check_open()
            safe_tell(self._consensus, MembershipRequest(change, outcome))
            try:
                _wait(outcome, max(0.0, deadline - time.monotonic()), what, self.healthy)
                return
            except MembershipError as refused:
                if not refused.retryable or time.monotonic() >= deadline:
                    raise
            except DRefTimeoutError:  # say the whole time, not what the last try had left
                raise DRefTimeoutError(f"{what} not done within {timeout:g} s") from None
            time.sleep(min(_CHANGE_RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))

    def wait_for_leader(self, timeout: float = 20.0) -> str:
        """Block until this node knows a leader; return its id (DRefTimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader_id
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise DRefTimeoutError(f"node {self.node_id}: no leader within {timeout:g} s")
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def healthy(self) -> bool:
        """False once closed or once one of the node's actors stopped on an error (a bug, a
        failing disk): such a node makes no progress, so its process should exit."""
        return not self._closed and all(actor.is_alive() for actor in self._actors)

    def close(self) -> None:
        """Stop the ticker, the server and every actor (queued storage work is flushed), then
        unlock the data directory."""
        if self._closed:
            return
        self._closed = True
        if self._discovery is not None:
            self._discovery.stop()
        if self._ticker is not None:
            self._ticker.stop()
        self._server.stop(grace=0.2).wait(timeout=5)
        if self._peer_socket is not None:
            self._peer_socket.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for actor in self._actors:
            try:
                actor.stop(block=True, timeout=10)
            except pykka.ActorDeadError:
                pass
        for transport in self._transports:
            transport.close()
        self._data_lock.release()  # last: the storage writer has flushed and stopped

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------- internals

    def _bind_peer_socket(self, host: str) -> NodeSocketServer:
        config = self._config
        listen = config.peer_listen or f"{host}:0"
        socket_host, socket_port = split_address(listen, "peer_listen")
        try:
            return NodeSocketServer(
                config.node_id,
                socket_host,
                socket_port,
                stall_timeout=config.rpc_timeout,
                keepalive=config.keepalive_interval,
                unix_path=config.unix_socket,
                tls=self.tls,
                cluster_id=lambda: self.cluster_id,
            )
        except OSError as exc:
            where = listen if exc.filename is None else exc.filename
            raise ConfigError(f"cannot listen on node socket {where}: {exc.strerror}") from None

    def _peer_links(self, node_id: str, on_answer: OnMessage) -> PeerTransport:
        config = self._config
        if config.peer_transport == "grpc":
            open_link = grpc_links(config.rpc_timeout, self.tls, lambda: self.cluster_id)
        else:
            open_link = socket_links(
                node_id,
                timeout=config.rpc_timeout,
                keepalive=config.keepalive_interval,
                cluster_id=lambda: self.cluster_id,
                sockets=config.peer_sockets,
                tls=self.tls,
                advertise=self._address,
            )
        return PeerLinks(
            node_id,
            on_answer,
            open_link,
            on_reachability=self._reachability,
            round_trips=self._round_trips,
        )

    def adopt_cluster_id(self, cluster_id: str) -> None:
        """Record the cluster id this node's log carries, in the data directory (once) and
        for every later handshake; StorageError if the directory is another cluster's."""
        if cluster_id == self.cluster_id:
            return
        record_cluster_id(self._config.data_dir, self._config.node_id, cluster_id)
        self.cluster_id = cluster_id
        logger.info("%s: member of cluster %s", self._config.node_id, cluster_id)

    def _start_checked(self, outcome: StartCheckOutcome) -> None:
        """The checks of an empty start decided (consensus thread). An admitted joining node
        forgets it was joining; with service discovery a refused blank start waits to be
        added instead; a refusal is said once, with what to do. A refused node stays up
        but never votes; `dref node` exits on `refusal`."""
        node, data_dir = self.node_id, self._config.data_dir
        if isinstance(outcome, JoinAdmitted):
            record_joining(data_dir, node, False)
            return
        if isinstance(outcome, BlankRefused) and self._config.node_services:
            record_joining(data_dir, node, True)  # before the core takes any entry
            logger.warning(
                "%s started with no Raft state, but %s is already in term %d: it waits for"
                " discovery to add it as a learner before it votes",
                node,
                outcome.peer,
                outcome.term,
            )
            return
        if isinstance(outcome, BlankRefused):
            why = (
                f"{node} refuses to start: its data directory {data_dir} holds no Raft state,"
                f" but {outcome.peer} is already in term {outcome.term}, so this cluster ran"
                f" with {node} as a voter"
            )
        else:
            why = (
                f"{node} refuses to join: its data directory {data_dir} started empty with"
                f" --join, but the configuration (entry {outcome.config_index}) already has"
                f" {node} as a voter"
            )
        self.refusal = (
            f"{why}, and {node} may have voted or stored entries there before it lost them;"
            f" restore the directory, or run `dref members remove ADDRESS {node}`, then start"
            f" {node} with --join and an empty directory and run"
            f" `dref members add ADDRESS {node} HOST:PORT`"
        )
        logger.error("%s", self.refusal)

    def _client_address(self, node_id: str) -> str | None:
        """Where clients reach `node_id`: the address it advertised in its handshake with
        us, else the one we dial it at (a peer on gRPC, or before its first connection)."""
        if node_id == self._config.node_id:
            return self._address
        server = self._peer_socket
        advertised = None if server is None else server.advertised.get(node_id)
        return advertised or self._addresses.get(node_id)

    def _is_node(self, name: str) -> bool:
        """Whether `name` is this node's id or a member's (for `Access`)."""
        return name == self._config.node_id or self._peer_set.knows(name)

    def _answer(self, message: Message) -> None:
        """A peer's answer to one of our requests, on a transport thread."""
        safe_tell(self._consensus, PeerReply(message))

    def submit_peer_request(self, message: Message) -> Future[Message | None]:
        """Hand a peer's request to the consensus actor; the future gets the answer.
        Transports call this (the gRPC servicer, an in-memory network)."""
        reply: Future[Message | None] = Future()
        if not safe_tell(self._consensus, Inbound(message, reply)):
            reply.set_exception(ContextClosedError("node closed"))
        return reply

    def _consensus_status(self) -> ConsensusStatus:
        status: ConsensusStatus = self._ask(self._consensus, StatusQuery())
        return status

    def _ask(self, actor: pykka.ActorRef[Any], message: object) -> Any:
        self._check_open()
        try:
            return actor.ask(message, timeout=_ASK_TIMEOUT)
        except pykka.ActorDeadError:
            raise ContextClosedError(f"node {self.node_id} is stopped") from None
        except pykka.Timeout:
            raise DRefTimeoutError(f"node {self.node_id} did not answer in time") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError(f"node {self.node_id} is closed")
        if not self.healthy():
            raise BackendUnavailableError(f"node {self.node_id} has failed; see its log")


def _holds_no_raft_state(durable: DurableState) -> bool:
    """No term, vote, snapshot or entry: a first start, or a directory that was wiped."""
    return (
        durable.term == 0
        and durable.voted_for is None
        and durable.snapshot is None
        and not durable.entries
    )


def _keepalive_options(config: NodeConfig) -> list[tuple[str, int]]:
    """Server options that ping every connection with open streams each
    `keepalive_interval` and drop one whose answer takes half as long (gRPC 1.85 needs
    `ping_timeout_ms` for that; `keepalive_timeout_ms` alone never dropped it)."""
    every = round(config.keepalive_interval * 1000)
    patience = max(1, every // 2)
    return [
        ("grpc.keepalive_time_ms", every),
        ("grpc.keepalive_timeout_ms", patience),
        ("grpc.http2.ping_timeout_ms", patience),
        ("grpc.http2.min_time_between_pings_ms", every),
        ("grpc.http2.max_pings_without_data", 0),  # idle streams are pinged too
    ]


MAX_CONCURRENT_STREAMS = 128
"""Streams (calls) one gRPC connection may have open at once; a client's further calls
wait on its side. A peer needs one PeerStream plus snapshots, a client a Pipeline, its
Watches and a few unary calls."""
MAX_CONNECTION_IDLE = 300.0
"""Seconds a gRPC connection with no call open is kept; then the node ends it (GOAWAY) and
the client reconnects on its next call. Keepalive pings only reach connections with
streams, so this reclaims those of clients that vanished between calls."""
MAX_INCOMING_CONNECTIONS = 1024
"""gRPC connections the node holds at once; further ones are closed as they arrive (gRPC
has no hook to count them per remote host, as the node socket does)."""
MAX_PING_STRIKES = 2
"""Pings a client may send more often than the keepalive interval (with no data) before
the node ends its connection: HTTP/2 ping floods cost the node, not the client."""


def _connection_limits(config: NodeConfig) -> list[tuple[str, int]]:
    """Server options capping the gRPC connections, and what one may hold or send: open
    streams, idle time, and pings (no more often than the node's own keepalive, `MAX_PING_STRIKES`
    forgiven). Connections are not aged out: Watch and PeerStream streams live long."""
    return [
        ("grpc.max_allowed_incoming_connections", MAX_INCOMING_CONNECTIONS),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        ("grpc.max_connection_idle_ms", round(MAX_CONNECTION_IDLE * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", round(config.keepalive_interval * 1000)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


_HEALTH_CHECK_INTERVAL = 0.5
"""How often a waiting caller checks that the node has not failed under it."""

_CHANGE_RETRY_INTERVAL = 0.05
"""Pause between tries of a membership change the leader refused for a passing reason."""


def _wait(outcome: Future[bytes], timeout: float, what: str, healthy: Callable[[], bool]) -> bytes:
    """The outcome's result; an error once `timeout` passes or the node fails meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return outcome.result(timeout=max(0.0, min(remaining, _HEALTH_CHECK_INTERVAL)))
        except FutureTimeout:
            if outcome.done():
                raise
        if not healthy():
            raise QuorumLostError(f"the node failed while the {what} waited; outcome unknown")
        if remaining <= _HEALTH_CHECK_INTERVAL:
            raise DRefTimeoutError(f"{what} not done within {timeout:g} s") from None
