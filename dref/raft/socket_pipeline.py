"""Many callers' key/value calls multiplexed on one socket connection per node.

The same `PipelineFrame`s as the gRPC Pipeline stream (`dref.raft.pipeline`), on the
node's own socket protocol (`wire/node_socket.py`): the calling thread writes its call
itself when the socket has room (joined with any others being written), one reader
thread per connection hands each result to its caller by releasing the caller's lock.
Failures have the shape of the gRPC pipeline's (`CallFailed`), so the client's retry and
leader-following logic is the same. A node without a socket (an older one, or one with
`peer_transport="grpc"`) is served by the gRPC `Pipeline` given as fallback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

import grpc

from dref.raft.pipeline import CallFailed, Pipeline, PipelineStats, Waiter, resolve
from dref.wire.frames import (
    ConnectionClosed,
    FrameError,
    FrameKind,
    FrameReader,
    Hello,
    encode_frame,
)
from dref.wire.node_socket import PONG_FRAME, Channel, DiscoverPort, FrameSender
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.tls import TlsMaterial, TlsSession

__all__ = ["SocketPipeline"]

_log = logging.getLogger("dref.raft")

NO_SOCKET_RETRY = 30.0
"""Seconds a node found without a socket is served by the fallback before asking again."""
CONNECT_TIMEOUT = 2.0
"""Longest a call waits for a connection to be opened (less if its own timeout is)."""


class SocketPipeline:
    """The socket pipeline to one node: connected on first use, again after a break."""

    def __init__(
        self,
        address: str,
        discover: DiscoverPort,
        fallback: Pipeline,
        *,
        unix_path: str | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self.address = address
        self._unix_path = unix_path
        self._tls = tls
        self._host = address.rpartition(":")[0].strip("[]")
        self._discover = discover
        self._fallback = fallback
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        self._connection: _Connection | None = None
        self._next_id = 1
        self._closed = False
        self._no_socket_until = 0.0
        self.stats = PipelineStats()
        """Counters, updated under the pipeline's lock; copy with `snapshot`."""

    @property
    def usable(self) -> bool:
        """False once closed, or while the fallback is in use and refuses pipelines."""
        if self._closed:
            return False
        return self._fallback.usable if self._on_fallback() else True

    def snapshot(self) -> PipelineStats:
        """A copy of the counters (the fallback's while it is in use)."""
        if self._on_fallback():
            return self._fallback.snapshot()
        with self._lock:
            return dataclasses.replace(self.stats)

    def call(self, call: native.PipelineCall, timeout: float) -> Any:
        """Send `call` and wait at most `timeout` s for its NativeGetResponse or
        WriteResponse; raises `CallFailed` as the gRPC pipeline does."""
        if self._on_fallback():
            return self._fallback.call(call, timeout)
        deadline = time.monotonic() + timeout
        connection = self._connected(deadline)
        if connection is None:
            return self._fallback.call(call, max(0.001, deadline - time.monotonic()))
        with self._lock:
            call.id = self._next_id
            self._next_id += 1
            self.stats.calls_sent += 1
            self.stats.frames_sent += 1
        waiter = connection.submit(call)
        if not waiter.wait(deadline - time.monotonic()):
            connection.forget(call.id)
            if not waiter.finished():
                raise CallFailed(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no answer from {self.address} within {timeout:g} s",
                )
        if waiter.error is not None:
            raise waiter.error
        with self._lock:
            self.stats.results_received += 1
        return waiter.result

    def close(self) -> None:
        """Close the connection (waiting calls fail with CANCELLED) and the fallback."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close(grpc.StatusCode.CANCELLED, "the pipeline is closed")
        self._fallback.close()

    def _on_fallback(self) -> bool:
        return time.monotonic() < self._no_socket_until

    def _connected(self, deadline: float) -> _Connection | None:
        """The open connection, opened now if needed; None when the node has no socket."""
        connection = self._connection
        if connection is not None and not connection.broken:
            return connection
        if not self._connecting.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise CallFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no connection to {self.address} in time"
            )
        try:
            connection = self._connection
            if connection is not None and not connection.broken:
                return connection
            if self._closed:
                raise CallFailed(grpc.StatusCode.CANCELLED, "the pipeline is closed")
            limit = max(0.001, min(CONNECT_TIMEOUT, deadline - time.monotonic()))
            try:
                opened = self._open_unix(limit)
                if opened is None:
                    port = self._discover()
                    if port is None:
                        _log.info("%s has no socket: its calls go on gRPC", self.address)
                        self._no_socket_until = time.monotonic() + NO_SOCKET_RETRY
                        return None
                    sock = socket.create_connection((self._host, port), limit)
                    opened = _handshake(sock, self._tls, self._host, limit)
            except (OSError, FrameError, ssl.SSLError) as exc:
                # "failed to connect": the call was surely not sent, so a write may retry
                raise CallFailed(
                    grpc.StatusCode.UNAVAILABLE, f"failed to connect to {self.address}: {exc}"
                ) from None
            connection = _Connection(*opened, self.address, self._count)
            with self._lock:
                self.stats.streams += 1
                if self._closed:
                    connection.close(grpc.StatusCode.CANCELLED, "the pipeline is closed")
                    raise CallFailed(grpc.StatusCode.CANCELLED, "the pipeline is closed")
                self._connection = connection
            return connection
        finally:
            self._connecting.release()

    def _open_unix(self, timeout: float) -> tuple[socket.socket, Channel] | None:
        """A connection on the node's Unix socket (never TLS: the socket file's permissions
        guard it), or None (none given, or it failed)."""
        if self._unix_path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self._unix_path)
        except OSError as exc:
            sock.close()
            _log.debug("%s: no Unix socket at %s: %s", self.address, self._unix_path, exc)
            return None
        return _handshake(sock, None, "", timeout)

    def _count(self, frames: int) -> None:
        with self._lock:
            self.stats.frames_received += frames


def _handshake(
    sock: socket.socket, tls: TlsMaterial | None, host: str, timeout: float
) -> tuple[socket.socket, Channel]:
    """`sock`, connected to a node, and what to read and write it through, after TLS (with
    `tls`: the node's certificate must name `host`) and the client handshake (raises
    OSError, ssl.SSLError or FrameError, closing it)."""
    try:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        channel: Channel = sock if tls is None else tls.client_session(sock, host, timeout)
        channel.sendall(Hello(f"client-{os.getpid()}", "", role="client").encode())
        kind, payload = FrameReader(channel).read()
        if kind is FrameKind.REFUSED:
            raise ConnectionRefusedError(f"refused: {payload.decode(errors='replace')}")
        if kind is not FrameKind.HELLO:
            raise FrameError(f"expected a handshake, got a {kind.name} frame")
        Hello.decode(payload)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock, channel


class _Connection:
    """One open connection: the callers waiting on it by call id, and its reader thread."""

    def __init__(self, sock: socket.socket, channel: Channel, address: str, count: Any) -> None:
        self._sock = sock
        self._channel = channel
        self._address = address
        self._count = count
        self._lock = threading.Lock()
        self._pending: dict[int, Waiter] = {}
        self._failure: CallFailed | None = None
        self._sender = FrameSender(
            sock,
            name=f"dref-client-{address}",
            stall_timeout=CONNECT_TIMEOUT * 5,
            on_broken=lambda reason: self.close(grpc.StatusCode.UNAVAILABLE, reason),
            seal=channel.seal if isinstance(channel, TlsSession) else None,
        )
        threading.Thread(target=self._read, name=f"dref-client-{address}", daemon=True).start()

    @property
    def broken(self) -> bool:
        return self._failure is not None

    def submit(self, call: native.PipelineCall) -> Waiter:
        """Send `call`; its waiter (already failed if the connection broke)."""
        waiter = Waiter()
        with self._lock:
            failure = self._failure
            if failure is None:
                self._pending[call.id] = waiter
        if failure is not None:
            waiter.error = failure
            waiter.finish()
            return waiter
        frame = native.PipelineFrame(calls=[call]).SerializeToString()
        if not self._sender.send(encode_frame(FrameKind.REQUESTS, frame)):
            self.close(grpc.StatusCode.UNAVAILABLE, "the connection cannot take more calls")
        return waiter

    def forget(self, call_id: int) -> None:
        """Drop a call whose caller stopped waiting (its late answer is ignored)."""
        with self._lock:
            self._pending.pop(call_id, None)

    def close(self, code: grpc.StatusCode, details: str) -> None:
        """Break the connection: every waiting call fails with (code, details)."""
        with self._lock:
            if self._failure is not None:
                return
            self._failure = CallFailed(code, details)
            waiters, self._pending = list(self._pending.values()), {}
        self._sender.close()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for waiter in waiters:
            waiter.error = self._failure
            waiter.finish()

    def _read(self) -> None:
        reader = FrameReader(self._channel)
        try:
            while True:
                kind, payload = reader.read()
                if kind is FrameKind.REFUSED:
                    reason = payload.decode(errors="replace")
                    raise FrameError(f"{self._address} refused the connection: {reason}")
                if kind is FrameKind.PING:
                    self._sender.send(PONG_FRAME)
                    continue
                if kind is not FrameKind.ANSWERS:
                    raise FrameError(f"unexpected {kind.name} frame from {self._address}")
                results = native.PipelineFrame.FromString(payload).results
                self._count(1)
                with self._lock:
                    pop = self._pending.pop
                    ready = [(pop(r.id, None), r) for r in results]
                for waiter, result in ready:
                    if waiter is not None:
                        resolve(waiter, result)
        except (ConnectionClosed, OSError) as exc:
            details = f"connection to {self._address} lost: {exc}"
        except Exception as exc:  # noqa: BLE001 - a malformed frame: the connection is unusable
            _log.warning("bad frame from %s: %s", self._address, exc)
            details = f"connection to {self._address} broken: {exc}"
        self.close(grpc.StatusCode.UNAVAILABLE, details)
