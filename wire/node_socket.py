"""The native socket protocol of a node: plain TCP, for peers and for clients.

A dialing node sends REQUESTS frames and gets ANSWERS frames back on the same
connection, each a `PeerFrame` whose envelopes carry the bytes a unary consensus RPC would
(so the codec is shared with gRPC, see `peer_stream`); a client does the same with
`PipelineFrame`s of key/value calls, served by a handler the node's services register.
Nothing blocks the thread that sends: `FrameSender` writes at once when the socket has
room and leaves the rest to a writer thread that joins everything queued meanwhile into
one write. One reader thread per
connection decodes each frame and hands its messages straight on: requests to the node,
answers to the waiting callback. Peers and clients learn where to connect from the node's
gRPC port (`SOCKET_PORT_PATH`), so membership keeps one address per node.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError

from dref.actors.consensus.messages import Message
from dref.wire.call_refused import CallRefused, RefusalLog, other_cluster
from dref.wire.consensus_codec import NATIVE_SERVICE, Rpc, encode_request, encode_response, rpc_of
from dref.wire.frames import (
    PROTOCOL_VERSION,
    ConnectionClosed,
    FrameError,
    FrameKind,
    FrameReader,
    Hello,
    encode_frame,
    refusal,
)
from dref.wire.peer_stream import RPC_BY_METHOD, OnReply, Submit, deliver_answer
from dref.wire.proto import dref_consensus_pb2 as pb
from dref.wire.tls import (
    TLS_RECORD_HANDSHAKE,
    Identity,
    TlsMaterial,
    TlsSession,
    diagnose_tls,
    open_channel,
)

logger = logging.getLogger("dref.raft")

SOCKET_PORT_METHOD = "SocketPort"
SOCKET_PORT_PATH = f"/{NATIVE_SERVICE}/{SOCKET_PORT_METHOD}"
"""Unary gRPC call answering the node's socket port as ASCII digits."""


class ClientSession(Protocol):
    """The node's side of one client connection."""

    def serve(self, payload: bytes) -> None:
        """Serve one REQUESTS frame (raises FrameError or CallRefused)."""
        ...

    def close(self) -> None:
        """The connection ended."""
        ...


OpenClientSession = Callable[["FrameSender", "Identity | None"], ClientSession]
"""Starts serving a client connection whose answers go out through the FrameSender; the
identity is the client's TLS certificate (None without TLS)."""

AdmitFrom = Callable[[Rpc, bytes, "Identity | None"], Message]
"""Decodes a peer's request and checks its sender against the connection's certificate
(None without TLS); raises CallRefused."""

Channel = socket.socket | TlsSession
"""What frames are read from and handshakes written to: the socket, or TLS over it."""

PONG_FRAME = encode_frame(FrameKind.PONG, b"")

MAX_BACKLOG_BYTES = 64 * 1024 * 1024
"""Bytes a connection queues for a peer that reads slower than we write; more is dropped."""
HANDSHAKE_TIMEOUT = 5.0
"""Seconds a new connection has to complete its HELLO."""
MAX_CONNECTIONS = 256
"""Open inbound connections a node serves at once; more are refused."""
MAX_CONNECTIONS_PER_HOST = 64
"""Open inbound TCP connections from one IP address; more are refused, so one host cannot
take every slot (Unix socket connections count only against `MAX_CONNECTIONS`)."""
RECONNECT_BACKOFF = (0.1, 0.5)
"""First and largest pause between connection attempts to an unreachable peer."""


class PeerRefused(ConnectionError):
    """The peer is not the node we meant to reach, or it refused us (logged once)."""


def _unix_listener(path: str) -> socket.socket:
    """A listening Unix socket at `path`, replacing a stale one a dead node left behind
    (the data directory's lock says no live node owns it)."""
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise FileExistsError(errno.EEXIST, "the file exists and is not a socket", path)
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    return listener


def _tune(sock: socket.socket, keepalive: float) -> None:
    """No Nagle delay; the kernel probes an idle connection so a vanished peer is noticed."""
    if sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        idle = max(1, round(keepalive))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class FrameSender:
    """Writes frames to a connected socket without ever blocking the caller.

    Whoever finds the socket idle writes at once (`MSG_DONTWAIT`); frames sent meanwhile
    queue in a bounded backlog and the writing thread sends them joined after its own.
    What the kernel buffer cannot take goes to the writer thread, which waits for room;
    if the peer takes nothing for `stall_timeout` the connection is closed (`on_broken`).
    With TLS, `seal` encrypts each run of frames as its writer takes it, so ciphertext
    leaves in the order it was made.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        name: str,
        stall_timeout: float,
        on_broken: Callable[[str], None],
        max_backlog: int = MAX_BACKLOG_BYTES,
        seal: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._sock = sock
        self._seal = seal
        self._stall_timeout = stall_timeout
        self._on_broken = on_broken
        self._max_backlog = max_backlog
        self._cond = threading.Condition(threading.Lock())
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._busy = False  # some thread owns the socket's write side
        self._tail: bytes | None = None  # handed to the writer thread
        self._closed = False
        threading.Thread(target=self._write_tails, name=f"{name}-writer", daemon=True).start()

    def send(self, frame: bytes) -> bool:
        """Queue or write `frame`; False when dropped (closed, or the backlog is full)."""
        with self._cond:
            if self._closed:
                return False
            if self._busy:
                if self._backlog_bytes + len(frame) > self._max_backlog:
                    return False
                self._backlog.append(frame)
                self._backlog_bytes += len(frame)
                return True
            self._busy = True
        data = frame if self._seal is None else self._seal(frame)
        while True:
            rest = self._write_some(data)
            with self._cond:
                if rest:
                    self._tail = rest
                    self._cond.notify_all()
                    return True
                if not self._backlog or self._closed:
                    self._busy = False
                    return True
                data = self._take_backlog()

    def _take_backlog(self) -> bytes:
        data = b"".join(self._backlog)
        self._backlog, self._backlog_bytes = [], 0
        return data if self._seal is None else self._seal(data)

    def _write_some(self, data: bytes) -> bytes:
        """Write without waiting; the bytes the socket had no room for."""
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return bytes(view)
            except OSError as exc:
                self._broken(f"send failed: {exc}")
                return b""
            view = view[sent:]
        return b""

    def _write_tails(self) -> None:
        while True:
            with self._cond:
                while self._tail is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                data, self._tail = self._tail, None
            while data:
                data = self._wait_and_write(data)
                if data:
                    continue
                with self._cond:
                    if self._closed or not self._backlog:
                        self._busy = False
                        break
                    data = self._take_backlog()

    def _wait_and_write(self, data: bytes) -> bytes:
        """Wait for room, write what fits; the rest ("" when done or broken)."""
        try:
            _, writable, _ = select.select([], [self._sock], [], self._stall_timeout)
        except (OSError, ValueError):  # closed under us
            return b""
        if not writable:
            self._broken(f"the peer read nothing for {self._stall_timeout:g} s")
            return b""
        return self._write_some(data)

    def _broken(self, reason: str) -> None:
        with self._cond:
            if self._closed:
                return
        self._on_broken(reason)

    def close(self) -> None:
        """Drop what is queued; the owner closes the socket."""
        with self._cond:
            self._closed = True
            self._backlog, self._backlog_bytes, self._tail = [], 0, None
            self._cond.notify_all()


def _shut(sock: socket.socket) -> None:
    """Close `sock` so a thread blocked reading it wakes up."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# ------------------------------------------------------------------------- serving


class NodeSocketServer:
    """Accepts peers' and clients' connections on the node's socket and serves them.

    Binds at once (so a port in use fails before the node starts) and accepts once
    `serve` is called; clients are served once `serve_clients` gave their handler.
    `cluster_id` returns the id this node knows ("" if none yet).
    """

    def __init__(
        self,
        node_id: str,
        host: str,
        port: int,
        *,
        cluster_id: Callable[[], str] = lambda: "",
        stall_timeout: float = 5.0,
        keepalive: float = 20.0,
        unix_path: str | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self._node_id = node_id
        self._tls = tls
        self._log_refusal = RefusalLog(node_id, logger)
        self._admit: AdmitFrom | None = None
        self._submit: Submit | None = None
        self._open_client: OpenClientSession | None = None
        self._cluster_id = cluster_id
        self._stall_timeout = stall_timeout
        self._keepalive = keepalive
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        # SO_REUSEADDR lets a restarted node take its port back from connections in
        # TIME_WAIT; unlike SO_REUSEPORT, it never lets two listeners share the port.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host.strip("[]"), port))
        except OSError:
            self._listener.close()
            raise
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._listeners = [self._listener]
        self.unix_path = unix_path
        """A Unix socket path also served (for local clients), if any."""
        if unix_path is not None:
            try:
                self._listeners.append(_unix_listener(unix_path))
            except OSError:
                self._listener.close()
                raise
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, str] = {}  # the remote host ("" over Unix)
        self._per_host: dict[str, int] = {}
        self._closed = False
        self.advertised: dict[str, str] = {}
        """Each peer's own client address, as its handshake told us."""

    def serve_clients(self, open_session: OpenClientSession) -> None:
        """Serve client connections with `open_session` (call before `serve`)."""
        self._open_client = open_session

    def serve(self, admit: AdmitFrom, submit: Submit) -> None:
        """Start accepting: `admit` decodes a request and checks its sender (raising
        `CallRefused`), `submit` hands it to the node."""
        self._admit, self._submit = admit, submit
        for listener in self._listeners:
            threading.Thread(
                target=self._accept,
                args=(listener,),
                name=f"dref-socket-accept-{self._node_id}",
                daemon=True,
            ).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections), {}
            self._per_host.clear()
        for listener in self._listeners:
            _shut(listener)
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
        for conn in connections:
            _shut(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, address = listener.accept()
            except OSError:
                return  # closed
            host = address[0] if conn.family != socket.AF_UNIX else ""
            with self._lock:
                if self._closed:
                    conn.close()
                    continue
                full = self._full(host)
                if full is None:
                    self._connections[conn] = host
                    if host:
                        self._per_host[host] = self._per_host.get(host, 0) + 1
            if full is not None:
                self._log_refusal(f"refused a connection from {host or 'a Unix socket'}: {full}")
                _send_quietly(conn, refusal(full))
                _shut(conn)
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="dref-peer-conn", daemon=True
            ).start()

    def _full(self, host: str) -> str | None:
        """Why a new connection from `host` is refused (None: it is served); under the lock."""
        if len(self._connections) >= MAX_CONNECTIONS:
            return f"node {self._node_id!r} serves {MAX_CONNECTIONS} connections (MAX_CONNECTIONS)"
        if host and self._per_host.get(host, 0) >= MAX_CONNECTIONS_PER_HOST:
            return (
                f"node {self._node_id!r} serves {MAX_CONNECTIONS_PER_HOST} connections from"
                f" {host} (MAX_CONNECTIONS_PER_HOST)"
            )
        return None

    def _serve(self, conn: socket.socket) -> None:
        peer = "?"
        sender: FrameSender | None = None
        session: ClientSession | None = None
        channel: Channel = conn
        try:
            _tune(conn, self._keepalive)
            conn.settimeout(HANDSHAKE_TIMEOUT)
            identity = None
            if self._tls is not None and conn.family != socket.AF_UNIX:
                tls = self._secure(conn)
                if tls is None:
                    return
                channel, identity = tls, tls.peer_identity()
            reader = FrameReader(channel)
            hello = self._handshake(channel, reader, identity)
            if hello is None:
                return
            peer = hello.node_id
            if hello.role == "peer" and hello.address:
                self.advertised[peer] = hello.address
            conn.settimeout(None)
            sender = FrameSender(
                conn,
                name=f"dref-{hello.role}-serve-{peer}",
                stall_timeout=self._stall_timeout,
                on_broken=lambda reason: _shut(conn),
                seal=channel.seal if isinstance(channel, TlsSession) else None,
            )
            if hello.role == "client":
                assert self._open_client is not None  # the handshake checked it
                session = self._open_client(sender, identity)
                serve_frame = session.serve
            else:
                serve_frame = partial(self._serve_requests, sender=sender, identity=identity)
            answer = Hello(self._node_id, peer, self._cluster_id(), role=hello.role)
            channel.sendall(answer.encode())
            self._read_requests(conn, reader, sender, serve_frame, hello.role)
        except CallRefused as exc:
            logger.warning("%s: refused peer %s: %s", self._node_id, peer, exc.details)
            _send_quietly(channel, refusal(exc.details))
        except FrameError as exc:
            logger.warning("%s: bad frame from peer %s: %s", self._node_id, peer, exc)
            _send_quietly(channel, refusal(str(exc)))
        except (ConnectionClosed, OSError) as exc:
            logger.debug("%s: peer connection from %s ended: %s", self._node_id, peer, exc)
        finally:
            if session is not None:
                session.close()
            if sender is not None:
                sender.close()
            self._forget(conn)
            _shut(conn)

    def _forget(self, conn: socket.socket) -> None:
        """Free the connection's slots."""
        with self._lock:
            host = self._connections.pop(conn, "")
            if host:
                left = self._per_host.get(host, 1) - 1
                if left:
                    self._per_host[host] = left
                else:
                    self._per_host.pop(host, None)

    def _secure(self, conn: socket.socket) -> TlsSession | None:
        """TLS on a new connection; None after refusing a plaintext caller (told why in a
        plaintext REFUSED frame) or a failed handshake (a certificate not of our CA)."""
        assert self._tls is not None
        first = conn.recv(1, socket.MSG_PEEK)
        if not first:
            return None
        if first[0] != TLS_RECORD_HANDSHAKE:
            self._log_refusal("refused a plaintext connection: this node requires TLS")
            _send_quietly(
                conn,
                refusal(
                    f"node {self._node_id!r} requires TLS: connect with a certificate of the"
                    " cluster CA (tls=dref.TLS(...), or --tls-cert/--tls-key/--tls-ca)"
                ),
            )
            return None
        try:
            return self._tls.server_session(conn, HANDSHAKE_TIMEOUT)
        except ssl.SSLError as exc:
            self._log_refusal(f"refused a TLS connection: {exc}")
        except (TimeoutError, ConnectionError) as exc:
            logger.debug("%s: a TLS handshake ended early: %s", self._node_id, exc)
        return None

    def _read_requests(
        self,
        conn: socket.socket,
        reader: FrameReader,
        sender: FrameSender,
        serve_frame: Callable[[bytes], None],
        role: str,
    ) -> None:
        """Serve REQUESTS frames until the connection ends; ping it when idle, and drop it
        when a ping goes unanswered for half the keepalive interval."""
        idle = self._keepalive
        conn.settimeout(idle)
        pinged = False
        while True:
            try:
                kind, payload = reader.read()
            except TimeoutError:
                if pinged:
                    raise ConnectionClosed(f"no answer to a ping within {idle / 2:g} s") from None
                pinged = True
                sender.send(encode_frame(FrameKind.PING, b""))
                conn.settimeout(idle / 2)
                continue
            if pinged:
                pinged = False
                conn.settimeout(idle)
            if kind is FrameKind.PONG:
                continue
            if kind is not FrameKind.REQUESTS:
                raise FrameError(f"unexpected {kind.name} frame from a {role}")
            serve_frame(payload)

    def _handshake(
        self, channel: Channel, reader: FrameReader, identity: Identity | None
    ) -> Hello | None:
        """The caller's HELLO if acceptable; otherwise refuse it and return None."""
        try:
            kind, payload = reader.read()
        except TimeoutError:
            logger.warning("%s: a peer connection sent no handshake in time", self._node_id)
            return None
        if kind is not FrameKind.HELLO:
            raise FrameError(f"expected a handshake, got a {kind.name} frame")
        hello = Hello.decode(payload)
        reason = self._refusal(hello, identity)
        if reason is None:
            return hello
        self._log_refusal(f"refused a connection from {hello.node_id!r}: {reason}")
        _send_quietly(channel, refusal(reason))
        return None

    def _refusal(self, hello: Hello, identity: Identity | None) -> str | None:
        ours = self._cluster_id()
        if hello.protocol != PROTOCOL_VERSION:
            return (
                f"protocol version {hello.protocol} is not supported"
                f" (this node speaks {PROTOCOL_VERSION})"
            )
        if hello.role == "client":
            if self._open_client is None:
                return f"node {self._node_id!r} serves no clients on its socket"
            return None
        if hello.role != "peer":
            return f"unknown role {hello.role!r}"
        if hello.expects != self._node_id:
            return f"this is node {self._node_id!r}, not {hello.expects!r}"
        if hello.node_id == self._node_id:
            return f"a node cannot connect to itself ({self._node_id!r})"
        if identity is not None and hello.node_id not in identity.names:
            return (
                f"its certificate names {sorted(identity.names)}, not the node id it claims"
                f" ({hello.node_id!r})"
            )
        return other_cluster(hello.node_id, hello.cluster_id, ours)

    def _serve_requests(
        self, payload: bytes, sender: FrameSender, identity: Identity | None
    ) -> None:
        admit, submit = self._admit, self._submit
        assert admit is not None and submit is not None  # set before accepting
        try:
            envelopes = pb.PeerFrame.FromString(payload).envelopes
        except (DecodeError, ValueError) as exc:
            raise FrameError(f"malformed PeerFrame: {exc}") from None
        for envelope in envelopes:
            rpc = RPC_BY_METHOD.get(envelope.method)
            if rpc is None:
                raise FrameError(f"unknown method {envelope.method!r}")
            message = admit(rpc, envelope.payload, identity)
            submit(message).add_done_callback(partial(_answer, sender, envelope.id, rpc))


def _answer(sender: FrameSender, ident: int, rpc: Rpc, reply: Future[Message | None]) -> None:
    """Send the node's answer to one request (none when the node failed: a lost call)."""
    try:
        payload = encode_response(rpc, reply.result(0)).SerializeToString()
    except Exception:  # noqa: BLE001 - the node failed or closed: a lost call
        return
    frame = pb.PeerFrame()
    frame.envelopes.add(id=ident, method=rpc.value.method, payload=payload)
    sender.send(encode_frame(FrameKind.ANSWERS, frame.SerializeToString()))


def _send_quietly(channel: Channel, data: bytes) -> None:
    try:
        (channel.sock if isinstance(channel, TlsSession) else channel).settimeout(1.0)
        channel.sendall(data)
    except (OSError, ssl.SSLError):
        pass


# ------------------------------------------------------------------------- calling


class PeerLink(Protocol):
    """One node's connection to one peer, whatever carries it (socket or gRPC)."""

    def send(self, message: Message, on_reply: OnReply) -> None: ...

    def watch_reachability(self, report: Callable[[str, bool], None]) -> None: ...

    def close(self) -> None: ...


DiscoverPort = Callable[[], "int | None"]
"""Asks a peer's gRPC port for its peer socket port; None: the peer has no socket."""


def grpc_port_discovery(
    address: str, timeout: float, tls: TlsMaterial | None = None, expected_name: str = ""
) -> DiscoverPort:
    """Discovery through the peer's gRPC port (`SOCKET_PORT_PATH`) at `address` (with TLS,
    its certificate must carry `expected_name`, default the host of `address`)."""

    def discover() -> int | None:
        with open_channel(address, tls, expected_name=expected_name) as channel:
            call = channel.unary_unary(
                SOCKET_PORT_PATH, request_serializer=None, response_deserializer=None
            )
            try:
                answer = call(b"", timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                    return None
                if exc.code() is grpc.StatusCode.UNAVAILABLE:
                    problem = diagnose_tls(address, tls, expected_name=expected_name)
                    if problem is not None:
                        raise PeerRefused(problem) from None
                raise ConnectionError(exc.details() or exc.code().name) from None
        if not answer.isdigit():
            raise ConnectionError(f"{address} answered a bad peer socket port {answer!r}")
        return int(answer)

    return discover


class PeerSocketClient:
    """Our connection to one peer's socket; `send` queues a request without blocking.

    A link thread finds the peer's socket port, connects, handshakes and then reads the
    answers, reconnecting with bounded backoff whenever the connection fails or the
    oldest request went unanswered for `timeout`. Requests sent while disconnected wait
    (bounded) for the next connection; lost ones are resent by the Raft core.
    """

    def __init__(
        self,
        node_id: str,
        peer_id: str,
        host: str,
        discover: DiscoverPort,
        *,
        timeout: float,
        cluster_id: Callable[[], str] = lambda: "",
        keepalive: float = 20.0,
        fallback: Callable[[], PeerLink] | None = None,
        tls: TlsMaterial | None = None,
        advertise: str = "",
    ) -> None:
        self.peer_id = peer_id
        self._tls = tls
        self._advertise = advertise
        self._node_id = node_id
        self._host = host.strip("[]")
        self._discover = discover
        self._timeout = timeout
        self._cluster_id = cluster_id
        self._keepalive = keepalive
        self._cond = threading.Condition(threading.Lock())
        self._sock: socket.socket | None = None
        self._sender: FrameSender | None = None
        self._waiting: list[bytes] = []  # frames sent while disconnected
        self._waiting_bytes = 0
        self._pending: dict[int, tuple[Rpc, OnReply, float]] = {}
        self._last_id = 0
        self._closed = False
        self._report: Callable[[str, bool], None] = lambda peer, up: None
        self._reachable = True
        self._last_failure = ""
        self._fallback = fallback
        self._fallback_link: PeerLink | None = None
        self.connected = threading.Event()
        """Set while a connection is up (or once the peer turned out to need gRPC)."""
        threading.Thread(target=self._run, name=f"dref-peer-link-{peer_id}", daemon=True).start()

    def watch_reachability(self, report: Callable[[str, bool], None]) -> None:
        """Call `report(peer, False)` when connecting fails, `True` once it works again."""
        self._report = report

    def send(self, message: Message, on_reply: OnReply) -> None:
        """Send a request; `on_reply` gets the answer. ValueError once closed."""
        rpc = rpc_of(message)
        if rpc is None:
            raise TypeError(f"{type(message).__name__} is not a request")
        fallback = self._fallback_link
        if fallback is not None:
            fallback.send(message, on_reply)
            return
        payload = encode_request(message).SerializeToString()
        now = time.monotonic()
        stuck: socket.socket | None = None
        with self._cond:
            if self._closed:
                raise ValueError("the connection to the peer is closed")
            self._last_id = ident = self._last_id + 1
            pending = self._pending
            if pending and now - next(iter(pending.values()))[2] > self._timeout:
                stuck = self._sock  # oldest request unanswered too long: reconnect
            pending[ident] = (rpc, on_reply, now)
            frame = pb.PeerFrame()
            frame.envelopes.add(id=ident, method=rpc.value.method, payload=payload)
            data = encode_frame(FrameKind.REQUESTS, frame.SerializeToString())
            sender = self._sender
            if sender is None:
                if self._waiting_bytes + len(data) <= MAX_BACKLOG_BYTES:
                    self._waiting.append(data)
                    self._waiting_bytes += len(data)
                else:
                    del pending[ident]
        if stuck is not None:
            logger.debug("%s: connection to %s stuck: reconnecting", self._node_id, self.peer_id)
            _shut(stuck)
        elif sender is not None and not sender.send(data):
            with self._cond:
                self._pending.pop(ident, None)

    def close(self) -> None:
        """Close the connection and stop reconnecting; requests in flight are dropped."""
        with self._cond:
            self._closed = True
            sock, self._sock = self._sock, None
            self._cond.notify_all()
        if sock is not None:
            _shut(sock)
        if self._fallback_link is not None:
            self._fallback_link.close()

    # ------------------------------------------------------------- link thread

    def _run(self) -> None:
        pause = RECONNECT_BACKOFF[0]
        port: int | None = None
        while not self._closed:
            try:
                if port is None:
                    port = self._discover()
                    if port is None:
                        self._use_fallback()
                        return
                sock, channel = self._connect(port)
            except Exception as exc:  # noqa: BLE001 - any failure: back off and try again
                if not isinstance(exc, OSError | FrameError):
                    logger.exception("%s: connecting to %s failed", self._node_id, self.peer_id)
                port = None  # the peer may have restarted on another port
                self._set_reachable(False, exc)
                self._pause(pause)
                pause = min(pause * 2, RECONNECT_BACKOFF[1])
                continue
            pause = RECONNECT_BACKOFF[0]
            self._set_reachable(True, None)
            self._read_answers(sock, channel)

    def _pause(self, seconds: float) -> None:
        with self._cond:
            if not self._closed:
                self._cond.wait(seconds)

    def _connect(self, port: int) -> tuple[socket.socket, Channel]:
        sock = socket.create_connection((self._host, port), timeout=self._timeout)
        try:
            _tune(sock, self._keepalive)
            channel: Channel = sock
            if self._tls is not None:
                try:
                    channel = self._tls.client_session(sock, self.peer_id, self._timeout)
                except ssl.SSLError as exc:
                    raise PeerRefused(
                        f"TLS with node {self.peer_id!r} at {self._host}:{port} failed: {exc}"
                    ) from None
            hello = Hello(self._node_id, self.peer_id, self._cluster_id(), address=self._advertise)
            channel.sendall(hello.encode())
            kind, payload = FrameReader(channel).read()
            if kind is FrameKind.REFUSED:
                reason = payload.decode(errors="replace")
                raise PeerRefused(f"node {self.peer_id!r} refused the connection: {reason}")
            if kind is not FrameKind.HELLO:
                raise FrameError(f"expected a handshake, got a {kind.name} frame")
            hello = Hello.decode(payload)
            if hello.node_id != self.peer_id:
                raise PeerRefused(
                    f"{self._host}:{port} is node {hello.node_id!r}, not {self.peer_id!r}"
                )
            refused = other_cluster(self.peer_id, hello.cluster_id, self._cluster_id())
            if refused is not None:
                raise PeerRefused(refused)
            sock.settimeout(None)
        except BaseException:
            _shut(sock)
            raise
        return sock, channel

    def _read_answers(self, sock: socket.socket, channel: Channel) -> None:
        sender = FrameSender(
            sock,
            name=f"dref-peer-link-{self.peer_id}",
            stall_timeout=self._timeout,
            on_broken=lambda reason: _shut(sock),
            seal=channel.seal if isinstance(channel, TlsSession) else None,
        )
        with self._cond:
            if self._closed:
                sender.close()
                _shut(sock)
                return
            self._sock, self._sender = sock, sender
            waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        self.connected.set()
        if waiting:
            sender.send(b"".join(waiting))
        reader = FrameReader(channel)
        try:
            while True:
                kind, payload = reader.read()
                if kind is FrameKind.REFUSED:
                    reason = payload.decode(errors="replace")
                    logger.warning("%s: peer %s refused: %s", self._node_id, self.peer_id, reason)
                    break
                if kind is FrameKind.PING:
                    sender.send(PONG_FRAME)
                    continue
                if kind is not FrameKind.ANSWERS:
                    raise FrameError(f"unexpected {kind.name} frame")
                envelopes = pb.PeerFrame.FromString(payload).envelopes
                with self._cond:
                    pop = self._pending.pop
                    answered = [(pop(e.id, None), e.payload) for e in envelopes]
                for entry, answer in answered:
                    if entry is not None:
                        deliver_answer(entry[0], answer, entry[1], self.peer_id)
        except (ConnectionClosed, OSError) as exc:
            logger.debug("%s: connection to %s ended: %s", self._node_id, self.peer_id, exc)
        except (FrameError, DecodeError) as exc:
            logger.warning("%s: bad frame from peer %s: %s", self._node_id, self.peer_id, exc)
        finally:
            self.connected.clear()
            sender.close()
            with self._cond:
                self._sock, self._sender = None, None
                self._pending.clear()
            _shut(sock)

    def _set_reachable(self, reachable: bool, failure: Exception | None) -> None:
        reason = str(failure) if failure is not None else ""
        if reason != self._last_failure:
            self._last_failure = reason
            if isinstance(failure, (PeerRefused, FrameError)):
                logger.warning("%s: %s", self._node_id, reason)
            elif failure is not None:
                logger.debug("%s: cannot reach %s: %s", self._node_id, self.peer_id, reason)
        if reachable != self._reachable:
            self._reachable = reachable
            self._report(self.peer_id, reachable)

    def _use_fallback(self) -> None:
        """The peer has no peer socket: hand every later request to the fallback link."""
        if self._fallback is None:
            logger.warning("%s: peer %s has no peer socket", self._node_id, self.peer_id)
            return
        logger.info("%s: peer %s has no peer socket: using gRPC", self._node_id, self.peer_id)
        link = self._fallback()
        link.watch_reachability(self._report)
        with self._cond:
            self._fallback_link = link
            self._waiting, self._waiting_bytes = [], 0
            self._pending.clear()
            closed = self._closed
        if closed:
            link.close()
        self.connected.set()
